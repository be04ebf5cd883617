"""Batched FGSM over a dataset (host-side driver around :mod:`pixjax.attacks`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.attacks import check_args, fgsm, fgsm_sweep


class Adversarial(NamedTuple):
    """FGSM images of a dataset, quantised to 8 bits (as saved images are).

    Attributes:
      images: ``[N, H, W, C]`` uint8 adversarial images.
      pred: ``[N]`` predictions on them.
      clean_pred: ``[N]`` predictions on the clean images.
    """

    images: np.ndarray
    pred: np.ndarray
    clean_pred: np.ndarray


@functools.lru_cache(maxsize=8)
def _fgsm_step(apply_fn, eps: float, norm: str):
    @jax.jit
    def step(variables, x_u8, y):
        f = functools.partial(apply_fn, variables)
        x = x_u8.astype(jnp.float32) / 255.0
        adv = fgsm(f, x, y, eps, norm=norm)
        adv_u8 = jnp.round(adv * 255.0).astype(jnp.uint8)
        pred = jnp.argmax(f(adv_u8.astype(jnp.float32) / 255.0), -1)
        return adv_u8, pred, jnp.argmax(f(x), -1)

    return step


def _batches(n: int, batch: int):
    for s in range(0, n, batch):
        yield s, min(s + batch, n)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    if a.shape[0] == size:
        return a
    return np.concatenate([a, np.zeros((size - a.shape[0], *a.shape[1:]), a.dtype)])


def fgsm_dataset(
    apply_fn: Any,
    variables: Any,
    images: np.ndarray,
    labels: np.ndarray,
    eps: float,
    *,
    norm: str = "linf",
    batch_size: int = 500,
) -> Adversarial:
    """Untargeted FGSM on every image (uint8 in, uint8 out), in fixed-size batches."""
    check_args(eps, norm)
    step = _fgsm_step(apply_fn, float(eps), norm)
    n = images.shape[0]
    b = min(batch_size, n)
    adv, pred, clean = [], [], []
    for s, e in _batches(n, b):
        a, p, c = step(variables, _pad(images[s:e], b), _pad(labels[s:e], b))
        adv.append(np.asarray(a)[: e - s])
        pred.append(np.asarray(p)[: e - s])
        clean.append(np.asarray(c)[: e - s])
    return Adversarial(np.concatenate(adv), np.concatenate(pred), np.concatenate(clean))


def eps_curve(
    apply_fn: Any,
    variables: Any,
    images: np.ndarray,
    labels: np.ndarray,
    eps: Sequence[float],
    *,
    norm: str = "linf",
    batch_size: int = 500,
) -> dict[str, list[float]]:
    """Robust accuracy and attack success (among clean-correct images) per eps, with
    one gradient per batch for all eps (:func:`pixjax.attacks.fgsm_sweep`)."""
    eps_arr = jnp.asarray(eps, jnp.float32)

    @jax.jit
    def step(variables, x_u8, y):
        f = functools.partial(apply_fn, variables)
        out = fgsm_sweep(f, x_u8.astype(jnp.float32) / 255.0, y, eps_arr, norm=norm)
        return out.pred, out.clean_pred

    n = images.shape[0]
    b = min(batch_size, n)
    preds, cleans = [], []
    for s, e in _batches(n, b):
        p, c = step(variables, _pad(images[s:e], b), _pad(labels[s:e], b))
        preds.append(np.asarray(p)[:, : e - s])
        cleans.append(np.asarray(c)[: e - s])
    pred, clean = np.concatenate(preds, 1), np.concatenate(cleans)
    ok = clean == labels
    return {
        "eps": [float(v) for v in eps],
        "robust_accuracy": [float(np.mean(p == labels)) for p in pred],
        "success_rate": [
            float(np.mean(p[ok] != labels[ok])) if ok.any() else float("nan")
            for p in pred
        ],
    }
