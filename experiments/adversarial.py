"""Batched FGSM over a dataset (host-side driver around :mod:`pixjax.attacks`).

Every input is checked here, before any work, with the same one-line errors as the
library's attacks (the CLI turns them into exit status 2); images whose input gradient
vanished are counted and warned about (:class:`pixjax.attacks.VanishedGradientWarning`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.attacks import check_args, fgsm, fgsm_sweep, warn_zero_gradient
from pixjax.data import check_images, check_positive_int, to_float
from pixjax.evaluation import classify, map_batches
from pixjax.models import num_logits


class Adversarial(NamedTuple):
    """FGSM images of a dataset, quantised to 8 bits (as saved images are).

    Attributes:
      images: ``[N, H, W, C]`` uint8 adversarial images.
      pred: ``[N]`` predictions on them.
      clean_pred: ``[N]`` predictions on the clean images.
      zero_gradient: ``[N]`` bool: the input gradient was exactly zero (not moved).
    """

    images: np.ndarray
    pred: np.ndarray
    clean_pred: np.ndarray
    zero_gradient: np.ndarray


def check_dataset_attack(
    apply_fn: Any,
    variables: Any,
    images: np.ndarray,
    labels: np.ndarray,
    eps,
    *,
    norm: str,
    loss: str,
    batch_size: int = 1,
    one_eps: bool = False,
) -> None:
    """uint8 ``[N, H, W, C]`` images (``N >= 1``), labels ``[N]`` inside the model's
    classes, eps (one value with ``one_eps``, else a sequence) / norm / loss in range,
    a positive integer batch size.

    Raises:
      ValueError: naming the argument and the accepted values.
    """
    check_images(images)
    if len(images) == 0:
        raise ValueError("images: expected a non-empty dataset, got 0 images")
    check_positive_int("batch_size", batch_size)
    check_args(
        eps,
        norm,
        labels=None if labels is None else np.asarray(labels),
        num_classes=num_logits(apply_fn, variables, images.shape[1:]),
        loss=loss,
        image_shape=images.shape[1:],
        num_images=len(images),
        one_eps=one_eps,
    )
    if not one_eps and np.ndim(eps) != 1:
        raise ValueError(f"eps: expected a sequence of values, got {eps!r}")


@functools.lru_cache(maxsize=8)
def _fgsm_step(apply_fn, eps: float, norm: str, loss: str):
    @jax.jit
    def step(variables, x_u8, y):
        f = functools.partial(apply_fn, variables)
        x = to_float(x_u8)
        res = fgsm(f, x, y, eps, norm=norm, loss=loss)
        adv_u8 = jnp.round(res.images * 255.0).astype(jnp.uint8)
        pred = classify(f(to_float(adv_u8)))[0]
        return adv_u8, pred, classify(f(x))[0], res.zero_gradient

    return step


@functools.lru_cache(maxsize=8)
def _sweep_step(apply_fn, eps: tuple[float, ...], norm: str, loss: str):
    eps_arr = jnp.asarray(eps, jnp.float32)

    @jax.jit
    def step(variables, x_u8, y):
        f = functools.partial(apply_fn, variables)
        x = to_float(x_u8)
        out = fgsm_sweep(f, x, y, eps_arr, norm=norm, loss=loss)
        return out.pred, out.clean_pred, out.zero_gradient

    return step


def fgsm_dataset(
    apply_fn: Any,
    variables: Any,
    images: np.ndarray,
    labels: np.ndarray,
    eps: float,
    *,
    norm: str = "linf",
    loss: str = "cross_entropy",
    batch_size: int = 500,
) -> Adversarial:
    """Untargeted FGSM on every image (uint8 in, uint8 out), in fixed-size batches.

    Raises:
      ValueError: bad images, labels, eps, norm or loss (before any work).
    """
    labels = None if labels is None else np.asarray(labels)
    check_dataset_attack(
        apply_fn,
        variables,
        images,
        labels,
        eps,
        norm=norm,
        loss=loss,
        batch_size=batch_size,
        one_eps=True,
    )
    step = _fgsm_step(apply_fn, float(eps), norm, loss)
    result = Adversarial(
        *map_batches(
            step, [images, labels], batch_size=batch_size, broadcast=(variables,)
        )
    )
    warn_zero_gradient(
        result.zero_gradient, f"FGSM (eps {float(eps):g}, {norm}, {loss})"
    )
    return result


def eps_curve(
    apply_fn: Any,
    variables: Any,
    images: np.ndarray,
    labels: np.ndarray,
    eps: Sequence[float],
    *,
    norm: str = "linf",
    loss: str = "cross_entropy",
    batch_size: int = 500,
) -> dict[str, Any]:
    """Robust accuracy and attack success (among clean-correct images) per eps, with
    one gradient per batch for all eps (:func:`pixjax.attacks.fgsm_sweep`), and the
    number of images whose input gradient was exactly zero (``zero_gradient``).

    Raises:
      ValueError: bad images, labels, eps, norm or loss (before any work).
    """
    labels = None if labels is None else np.asarray(labels)
    check_dataset_attack(
        apply_fn,
        variables,
        images,
        labels,
        eps,
        norm=norm,
        loss=loss,
        batch_size=batch_size,
    )
    step = _sweep_step(apply_fn, tuple(float(e) for e in eps), norm, loss)
    pred, clean, zeros = map_batches(
        step,
        [images, labels],
        batch_size=batch_size,
        broadcast=(variables,),
        out_axes=(1, 0, 0),
    )
    zero = int(zeros.sum())
    warn_zero_gradient(zero, f"FGSM eps curve ({norm}, {loss})")
    ok = clean == labels
    return {
        "eps": [float(v) for v in eps],
        "norm": norm,
        "loss": loss,
        "zero_gradient": zero,
        "robust_accuracy": [float(np.mean(p == labels)) for p in pred],
        "success_rate": [
            float(np.mean(p[ok] != labels[ok])) if ok.any() else float("nan")
            for p in pred
        ],
    }
