"""Gradient attacks on a logits function: FGSM (one step) and iterative FGSM / PGD.

FGSM: Goodfellow, Shlens & Szegedy (2014), "Explaining and Harnessing Adversarial
Examples": ``x' = clip(x + eps * sign(grad_x loss(x, y)), 0, 1)``. Targeted: step *down*
the loss of the target class. The L2 variant steps along ``grad / ||grad||_2``.
PGD (Madry et al. 2018) repeats the step with a step size ``alpha``, projecting back
onto the eps-ball around ``x`` and onto ``[0, 1]``, optionally from a random start.

All functions take ``logits_fn(images [N, H, W, C] in [0, 1]) -> logits [N, classes]``
(build one with ``functools.partial(model.apply, variables)``); normalisation lives
inside the model, so ``eps`` is in the ``[0, 1]`` pixel space. Everything is pure and
jit-able; a list of eps values is one compiled call with the gradient computed once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pixjax.types import PRNGKey

LogitsFn = Callable[[jax.Array], jax.Array]
NORMS = ("linf", "l2")


def check_args(
    eps,
    norm: str = "linf",
    targeted: bool = False,
    targets=None,
    labels=None,
    num_classes: int | None = None,
) -> None:
    """Host-side checks of attack arguments (traced values are skipped).

    Raises:
      ValueError: naming the argument and the accepted values.
    """
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
    if not isinstance(eps, jax.core.Tracer):
        e = np.asarray(eps, np.float64)
        if e.size == 0:
            raise ValueError("eps: expected at least one value in [0, 1], got none")
        bad = np.any(~np.isfinite(e)) or e.min() < 0
        if norm == "linf" and (bad or e.max() > 1):
            raise ValueError(
                f"eps: expected values in [0, 1] (L-inf, pixel space), got {eps}"
            )
        if norm == "l2" and bad:
            raise ValueError(
                f"eps: expected finite values >= 0 (L2 length in pixel space), got {eps}"
            )
    if targeted and targets is None:
        raise ValueError("targets: a targeted attack needs target classes, got None")
    if not targeted and targets is not None:
        raise ValueError("targets: given, but targeted=False; pass targeted=True")
    if targets is not None and labels is not None:
        if np.shape(targets) != np.shape(labels):
            raise ValueError(
                f"targets: expected shape {np.shape(labels)} like labels, got "
                f"{np.shape(targets)}"
            )
    if num_classes is not None:
        for name, arr in (("labels", labels), ("targets", targets)):
            if arr is None or isinstance(arr, jax.core.Tracer):
                continue
            a = np.asarray(arr)
            if a.size and (a.min() < 0 or a.max() >= num_classes):
                raise ValueError(
                    f"{name}: expected classes in 0..{num_classes - 1}, got range "
                    f"[{a.min()}, {a.max()}]"
                )


def _num_classes(logits_fn: LogitsFn, images) -> int:
    """The number of logits, from an abstract evaluation (no computation)."""
    return int(jax.eval_shape(logits_fn, images).shape[-1])


def _check_batch(images, labels) -> None:
    if images.ndim != 4:
        raise ValueError(f"images: expected shape [N, H, W, C], got {images.shape}")
    if labels is not None and np.shape(labels) != (images.shape[0],):
        raise ValueError(
            f"labels: expected shape ({images.shape[0]},) to match images, got "
            f"{np.shape(labels)}"
        )


def loss_gradient(
    logits_fn: LogitsFn,
    images: jax.Array,
    labels: jax.Array,
    targets: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Gradient of the attack objective w.r.t. the images, and the clean logits.

    Untargeted: cross-entropy of ``labels`` (ascend). Targeted: minus the cross-entropy
    of ``targets`` (ascending it descends the target loss). Per-image losses are summed,
    so each image's gradient is independent of the batch.
    """
    cls = labels if targets is None else targets
    sign = 1.0 if targets is None else -1.0

    def objective(x):
        logits = logits_fn(x)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, cls)
        return sign * jnp.sum(loss), logits

    grad, logits = jax.grad(objective, has_aux=True)(images)
    return grad, logits


def _direction(grad: jax.Array, norm: str) -> jax.Array:
    if norm == "linf":
        return jnp.sign(grad)
    flat = grad.reshape(grad.shape[0], -1)
    n = jnp.linalg.norm(flat, axis=1)
    n = jnp.where(n > 0, n, 1.0)
    return grad / n.reshape((-1,) + (1,) * (grad.ndim - 1))


def fgsm(
    logits_fn: LogitsFn,
    images: jax.Array,
    labels: jax.Array,
    eps: float | jax.Array,
    *,
    targeted: bool = False,
    targets: jax.Array | None = None,
    norm: str = "linf",
    num_classes: int | None = None,
) -> jax.Array:
    """One FGSM step.

    Args:
      logits_fn: ``images -> logits``.
      images: ``[N, H, W, C]`` float in ``[0, 1]``.
      labels: ``[N]`` true classes.
      eps: step size in ``[0, 1]`` pixel units (L-inf), or the L2 length of the step
        (``>= 0``; at most ``sqrt(H * W * C)`` is meaningful).
      targeted: step towards ``targets`` instead of away from ``labels``.
      targets: ``[N]`` target classes (targeted only).
      norm: ``"linf"`` (sign of the gradient) or ``"l2"`` (normalised gradient).
      num_classes: labels / targets are checked against it (default: the number of
        logits ``logits_fn`` returns).

    Returns:
      Adversarial images ``[N, H, W, C]`` clipped to ``[0, 1]``.
    """
    _check_batch(images, labels)
    num_classes = num_classes or _num_classes(logits_fn, images)
    check_args(eps, norm, targeted, targets, labels, num_classes)
    grad, _ = loss_gradient(logits_fn, images, labels, targets if targeted else None)
    return jnp.clip(images + eps * _direction(grad, norm), 0.0, 1.0)


class EpsSweep(NamedTuple):
    """Result of :func:`fgsm_sweep` (``E`` eps values, ``N`` images).

    Attributes:
      pred: ``[E, N]`` predictions on the adversarial images.
      success: ``[E, N]`` bool; untargeted: ``pred != labels``; targeted:
        ``pred == targets``.
      clean_pred: ``[N]`` predictions on the clean images.
    """

    pred: jax.Array
    success: jax.Array
    clean_pred: jax.Array


def fgsm_sweep(
    logits_fn: LogitsFn,
    images: jax.Array,
    labels: jax.Array,
    eps: Sequence[float] | jax.Array,
    *,
    targeted: bool = False,
    targets: jax.Array | None = None,
    norm: str = "linf",
    return_images: bool = False,
) -> EpsSweep | tuple[EpsSweep, jax.Array]:
    """FGSM at many eps values with one gradient: ``E`` forward passes, one backward.

    Args: as :func:`fgsm`, with ``eps`` a 1-D sequence ``[E]``.

    Returns:
      An :class:`EpsSweep`; with ``return_images`` also the adversarial images
      ``[E, N, H, W, C]``.
    """
    _check_batch(images, labels)
    check_args(eps, norm, targeted, targets, labels, _num_classes(logits_fn, images))
    eps = jnp.asarray(eps, jnp.float32).reshape(-1)
    grad, logits = loss_gradient(
        logits_fn, images, labels, targets if targeted else None
    )
    direction = _direction(grad, norm)

    def at(e):
        adv = jnp.clip(images + e * direction, 0.0, 1.0)
        pred = jnp.argmax(logits_fn(adv), -1)
        return pred, adv

    pred, adv = jax.lax.map(at, eps)
    success = pred == targets if targeted else pred != labels
    out = EpsSweep(pred=pred, success=success, clean_pred=jnp.argmax(logits, -1))
    return (out, adv) if return_images else out


def pgd(
    logits_fn: LogitsFn,
    key: PRNGKey | None,
    images: jax.Array,
    labels: jax.Array,
    eps: float,
    *,
    step_size: float,
    steps: int,
    random_start: bool = True,
    targeted: bool = False,
    targets: jax.Array | None = None,
    norm: str = "linf",
) -> jax.Array:
    """Iterative FGSM / PGD as one ``lax.fori_loop``.

    Args:
      key: PRNG key for the random start (may be ``None`` without one).
      eps: radius of the ball around ``images`` (L-inf or L2), ``[0, 1]`` pixel units.
      step_size: ``alpha`` of each step.
      steps: number of steps (static).
      random_start: start from a uniform point in the L-inf ball (or a random direction
        of random length in the L2 ball).
      Other arguments: as :func:`fgsm`.

    Returns:
      Adversarial images ``[N, H, W, C]`` in ``[0, 1]`` within ``eps`` of ``images``.
    """
    _check_batch(images, labels)
    check_args(eps, norm, targeted, targets, labels, _num_classes(logits_fn, images))
    if int(steps) <= 0:
        raise ValueError(f"steps: expected a positive integer, got {steps}")
    if not isinstance(step_size, jax.core.Tracer) and not step_size > 0:
        raise ValueError(f"step_size: expected a positive number, got {step_size}")
    if random_start and key is None:
        raise ValueError("key: random_start=True needs a PRNG key, got None")
    tgt = targets if targeted else None

    def project(x):
        delta = x - images
        if norm == "linf":
            delta = jnp.clip(delta, -eps, eps)
        else:
            flat = delta.reshape(delta.shape[0], -1)
            n = jnp.linalg.norm(flat, axis=1)
            scale = jnp.minimum(1.0, eps / jnp.maximum(n, 1e-12))
            delta = delta * scale.reshape((-1,) + (1,) * (delta.ndim - 1))
        return jnp.clip(images + delta, 0.0, 1.0)

    x = images
    if random_start:
        if norm == "linf":
            x = images + jax.random.uniform(key, images.shape, minval=-eps, maxval=eps)
        else:
            d_key, r_key = jax.random.split(key)
            d = jax.random.normal(d_key, images.shape)
            d = _direction(d, "l2")
            r = jax.random.uniform(r_key, (images.shape[0],)) * eps
            x = images + d * r.reshape((-1,) + (1,) * (images.ndim - 1))
        x = project(x)

    def body(_, x):
        grad, _ = loss_gradient(logits_fn, x, labels, tgt)
        return project(x + step_size * _direction(grad, norm))

    return jax.lax.fori_loop(0, int(steps), body, x)
