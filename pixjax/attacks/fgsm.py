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

Numerics (why pixjax's numbers can differ slightly from float32 libraries): the loss
(``loss=``, :mod:`pixjax.attacks.losses`) is differentiated in log space, so the input
gradient keeps its exact direction when the model is so sure that ``p_y`` rounds to 1 in
float32 (there ``softmax - onehot`` is zero or rounding noise, and FGSM / PGD in
float32 PyTorch, torchattacks or ART do not move the image, or move it at random); the
L2 direction is scaled by ``max |g|`` before squaring, so it neither underflows nor
leaves the eps ball. Images whose input gradient is still exactly zero (dead ReLUs,
flat regions, a saturated ``margin``-free model) are counted in every result
(``zero_gradient``) and reported with a :class:`VanishedGradientWarning` when the call
is not traced: their "robustness" is not evidence of anything.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.attacks.losses import check_loss, get_loss
from pixjax.data.base import check_float_images, check_labels, check_positive_int
from pixjax.types import PRNGKey

LogitsFn = Callable[[jax.Array], jax.Array]
NORMS = ("linf", "l2")


class VanishedGradientWarning(UserWarning):
    """Some images had an exactly zero input gradient: the attack could not move them,
    so their robust accuracy says nothing about robustness."""


def _concrete(x) -> bool:
    return x is not None and not isinstance(x, jax.core.Tracer)


def warn_zero_gradient(zero_gradient, attack: str = "attack") -> int:
    """Host-side: warn (:class:`VanishedGradientWarning`) when any image had an exactly
    zero input gradient. Traced values are skipped.

    Args:
      zero_gradient: ``[N]`` bool mask, or an integer count.
      attack: what to name in the message.

    Returns:
      The number of such images (``-1`` when traced).
    """
    if not _concrete(zero_gradient):
        return -1
    z = np.asarray(zero_gradient)
    count = int(z.sum()) if z.dtype == bool else int(z)
    total = f" of {z.size}" if z.dtype == bool else ""
    if count:
        warnings.warn(
            f"{attack}: {count}{total} images have an exactly zero (or non-finite) "
            "input gradient; the attack cannot move them, so they look robust without "
            "being so (try loss='margin', or check the model for saturated or masked "
            "gradients)",
            VanishedGradientWarning,
            stacklevel=3,
        )
    return count


def _max_l2(image_shape) -> float:
    """The largest L2 distance between two images in ``[0, 1]``: ``sqrt(H * W * C)``."""
    return math.sqrt(float(np.prod(image_shape)))


def _numbers(name: str, value) -> np.ndarray:
    """``value`` as float64, refusing what is not real numbers (None, strings,
    booleans, complex numbers, objects)."""
    a = None if value is None or isinstance(value, str | bytes) else np.asarray(value)
    if a is None or not (
        np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
    ):
        raise ValueError(f"{name}: expected real numbers, got {value!r}")
    return a.astype(np.float64)


def check_args(
    eps,
    norm: str = "linf",
    targeted: bool = False,
    targets=None,
    labels=None,
    num_classes: int | None = None,
    *,
    loss: str = "cross_entropy",
    step_size=None,
    steps=None,
    image_shape: Sequence[int] | None = None,
    num_images: int | None = None,
    one_eps: bool = False,
) -> None:
    """Host-side checks of attack arguments (traced values are skipped).

    Args:
      eps: one value or a sequence: ``[0, 1]`` for L-inf; ``[0, sqrt(H W C)]`` for L2
        when ``image_shape`` is given (finite and ``>= 0`` otherwise).
      norm: one of :data:`NORMS`.
      targeted, targets, labels: as in :func:`fgsm`; labels / targets are checked for
        integer dtype, equal shapes and (with ``num_classes``) range.
      num_classes: the model's number of classes.
      loss: one of :data:`pixjax.attacks.losses.LOSSES`.
      step_size, steps: PGD's step (``(0, 1]`` L-inf, ``(0, sqrt(H W C)]`` L2) and a
        positive integer number of steps; ``None`` skips them.
      image_shape: ``(H, W, C)``, for the L2 ranges.
      num_images: ``N``; labels must then have shape ``(N,)``.
      one_eps: ``eps`` must be a single number (FGSM, PGD), not a sequence.

    Raises:
      ValueError: naming the argument and the accepted values.
    """
    if norm not in NORMS:
        raise ValueError(f"norm: expected one of {NORMS}, got {norm!r}")
    if num_classes is not None:
        check_positive_int("num_classes", num_classes)
    check_loss(loss, targeted, num_classes)
    top = _max_l2(image_shape) if image_shape is not None else math.inf
    if norm == "linf":
        accepted = "values in [0, 1] (L-inf, pixel space)"
    elif image_shape is not None:
        accepted = f"L2 lengths in [0, {top:.4g}] (sqrt(H*W*C), pixel space)"
    else:
        accepted = "finite values >= 0 (L2 length in pixel space)"
    if eps is None:
        raise ValueError("eps: expected real numbers, got None")
    if one_eps and np.ndim(eps) != 0:
        raise ValueError(
            f"eps: expected one value (fgsm_sweep takes several), got {eps!r}"
        )
    if np.ndim(eps) > 1:
        raise ValueError(f"eps: expected a 1-D sequence of values, got {eps!r}")
    if _concrete(eps):
        e = _numbers("eps", eps)
        if e.size == 0:
            raise ValueError("eps: expected at least one value, got none")
        hi = 1.0 if norm == "linf" else top
        if np.any(~np.isfinite(e)) or e.min() < 0 or e.max() > hi:
            raise ValueError(f"eps: expected {accepted}, got {eps}")
    if step_size is not None and _concrete(step_size):
        hi = 1.0 if norm == "linf" else top
        if np.ndim(step_size) != 0:
            raise ValueError(f"step_size: expected one number, got {step_size!r}")
        s = float(_numbers("step_size", step_size))
        if not (math.isfinite(s) and 0 < s <= hi):
            what = "(0, 1]" if norm == "linf" else f"(0, {hi:.4g}]"
            raise ValueError(f"step_size: expected a number in {what}, got {step_size}")
    if steps is not None:
        check_positive_int("steps", steps)
    if num_images is not None:
        check_labels(labels, num_images=num_images)
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
    for name, arr in (("labels", labels), ("targets", targets)):
        if arr is not None:
            check_labels(arr, num_classes, argument=name)


def _arrays(*values):
    """Lists and tuples (array-likes) as jax arrays; arrays and ``None`` unchanged."""
    return tuple(jnp.asarray(v) if isinstance(v, list | tuple) else v for v in values)


def check_attack(
    logits_fn: LogitsFn,
    images,
    labels,
    eps,
    *,
    norm: str = "linf",
    targeted: bool = False,
    targets=None,
    loss: str = "cross_entropy",
    num_classes: int | None = None,
    step_size=None,
    steps=None,
    one_eps: bool = False,
) -> int:
    """Every check an attack entry point makes before any work: images
    (:func:`pixjax.data.check_float_images`), labels / targets shapes, dtypes and classes, eps, norm,
    loss, and PGD's step size and steps (:func:`check_args`).

    Returns:
      The number of classes: the number of logits ``logits_fn`` returns, found by
      abstract evaluation (no computation); ``num_classes``, when given, must equal it.

    Raises:
      ValueError: naming the argument and the accepted values.
    """
    check_float_images(images)
    n = images.shape[0]
    out = jax.eval_shape(logits_fn, images)
    if len(out.shape) != 2 or out.shape[0] != n:
        raise ValueError(
            f"logits_fn: expected logits of shape [{n}, classes], got {out.shape}"
        )
    if num_classes is not None:
        check_positive_int("num_classes", num_classes)
    if num_classes is not None and num_classes != out.shape[-1]:
        raise ValueError(
            f"num_classes: expected the model's {out.shape[-1]} logits, got "
            f"{num_classes!r}"
        )
    num_classes = int(out.shape[-1])
    check_args(
        eps,
        norm,
        targeted,
        targets,
        labels,
        num_classes,
        loss=loss,
        step_size=step_size,
        steps=steps,
        image_shape=images.shape[1:],
        num_images=n,
        one_eps=one_eps,
    )
    return num_classes


class LossGradient(NamedTuple):
    """Result of :func:`loss_gradient` (``N`` images).

    Attributes:
      grad: ``[N, H, W, C]`` float: the ascent direction of each image's loss, a
        positive per-image multiple of ``grad_x loss`` (the logits' gradient is scaled
        to a largest entry of 1 before back-propagation, so it cannot underflow).
      logits: ``[N, classes]`` logits of the images.
      loss: ``[N]`` the objective's value per image (cross-entropy in nats for
        ``loss="cross_entropy"``; minus it for the targeted form).
      zero_gradient: ``[N]`` bool: the input gradient is exactly zero (non-finite
        entries are set to zero first) on an image the attack has not already won
        (untargeted: still classified as its label; targeted: not yet the target).
        On a won image a flat loss is expected (e.g. DLR when the label ranks third)
        and is not counted.
    """

    grad: jax.Array
    logits: jax.Array
    loss: jax.Array
    zero_gradient: jax.Array


def loss_gradient(
    logits_fn: LogitsFn,
    images: jax.Array,
    labels: jax.Array,
    targets: jax.Array | None = None,
    *,
    loss: str = "cross_entropy",
) -> LossGradient:
    """The direction in which each image's attack objective grows, and its value.

    Untargeted: the objective is ``loss`` of ``labels`` (ascend). Targeted (``targets``
    given): the objective of reaching ``targets`` (for cross-entropy, ``log p_t``).
    Losses are defined per image (:mod:`pixjax.attacks.losses`), so each image's
    gradient is independent of the batch; only its direction is meaningful.

    Args:
      logits_fn: ``images -> logits [N, classes]``.
      images: ``[N, H, W, C]`` float in ``[0, 1]``.
      labels: ``[N]`` int true classes.
      targets: ``[N]`` int target classes, or ``None`` (untargeted).
      loss: ``"cross_entropy"`` (default), ``"margin"`` or ``"dlr"``.

    Returns:
      A :class:`LossGradient`.

    Raises:
      ValueError: bad images, labels, targets or loss (see :func:`check_attack`).
    """
    images, labels, targets = _arrays(images, labels, targets)
    check_attack(
        logits_fn,
        images,
        labels,
        0.0,
        targeted=targets is not None,
        targets=targets,
        loss=loss,
    )
    g = _loss_gradient(logits_fn, images, labels, targets, loss)
    warn_zero_gradient(g.zero_gradient, "loss_gradient")
    return g


def _loss_gradient(logits_fn, images, labels, targets, loss) -> LossGradient:
    objective = get_loss(loss, targets is not None)
    tgt = labels if targets is None else targets
    logits, vjp = jax.vjp(logits_fn, images)
    direction = jax.vmap(objective.logit_direction)(logits, labels, tgt)
    (grad,) = vjp(direction.astype(logits.dtype))
    # Non-finite entries move nothing. The zero test reads this cleaned gradient (one
    # max reduction): reading the raw one beside it made XLA on the CPU compute the
    # backward pass twice (2x the gradient's time, measured on LeNet-5).
    grad = jnp.where(jnp.isfinite(grad), grad, 0)
    size = jnp.max(jnp.abs(grad.reshape(grad.shape[0], -1)), axis=1)
    value = jax.vmap(objective.value)(logits, labels, tgt)
    pred = jnp.argmax(logits, -1)
    won = pred != labels if targets is None else pred == targets
    won &= jnp.isfinite(jnp.max(jnp.abs(logits), axis=-1))  # NaN wins nothing
    zero = (size == 0) & ~won
    return LossGradient(grad, logits, value, zero)


def _is_key(key) -> bool:
    """A typed PRNG key (``jax.random.key``) or a raw ``uint32[2]`` one."""
    dtype = getattr(key, "dtype", None)
    if dtype is None:
        return False
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return np.ndim(key) == 0
    return dtype == jnp.uint32 and np.shape(key) == (2,)


def _per_image(v: jax.Array, ndim: int) -> jax.Array:
    return v.reshape((-1,) + (1,) * (ndim - 1))


def _l2_norm(x: jax.Array) -> jax.Array:
    """``[N]`` L2 norms of the images of ``x``, computed as ``s * ||x / s||`` with
    ``s = max |x|`` so that neither squares underflow nor overflow."""
    flat = x.reshape(x.shape[0], -1)
    s = jnp.max(jnp.abs(flat), axis=1)
    safe = jnp.where(s > 0, s, 1.0)
    return s * jnp.linalg.norm(flat / safe[:, None], axis=1)


def _direction(grad: jax.Array, norm: str) -> jax.Array:
    """Unit step per image: ``sign(grad)`` (L-inf) or ``grad / ||grad||_2`` (L2, scaled
    by ``max |grad|`` first); zero where the gradient is zero."""
    if norm == "linf":
        return jnp.sign(grad)
    flat = grad.reshape(grad.shape[0], -1)
    s = jnp.max(jnp.abs(flat), axis=1)
    scaled = grad / _per_image(jnp.where(s > 0, s, 1.0), grad.ndim)
    n = jnp.linalg.norm(scaled.reshape(grad.shape[0], -1), axis=1)
    return scaled / _per_image(jnp.where(n > 0, n, 1.0), grad.ndim)


class AttackResult(NamedTuple):
    """Result of :func:`fgsm` and :func:`pgd` (``N`` images).

    Attributes:
      images: ``[N, H, W, C]`` adversarial images in ``[0, 1]`` (same dtype as the
        input).
      zero_gradient: ``[N]`` bool: the input gradient was exactly zero or not finite
        (FGSM), or so at one or more steps (PGD), on an image the attack had not yet
        won: the attack could not move it there.
    """

    images: jax.Array
    zero_gradient: jax.Array

    @property
    def num_zero_gradient(self) -> jax.Array:
        """The number of images with a vanished gradient (int scalar)."""
        return jnp.sum(self.zero_gradient)


def fgsm(
    logits_fn: LogitsFn,
    images: jax.Array,
    labels: jax.Array,
    eps: float | jax.Array,
    *,
    targeted: bool = False,
    targets: jax.Array | None = None,
    norm: str = "linf",
    loss: str = "cross_entropy",
    num_classes: int | None = None,
) -> AttackResult:
    """One FGSM step (Goodfellow et al. 2014; L2: the fast gradient method).

    Args:
      logits_fn: ``images -> logits [N, classes]``.
      images: ``[N, H, W, C]`` float in ``[0, 1]`` (``N >= 1``, finite).
      labels: ``[N]`` int true classes in ``0..classes-1``.
      eps: step size in ``[0, 1]`` pixel units (L-inf), or the L2 length of the step in
        ``[0, sqrt(H * W * C)]``.
      targeted: step towards ``targets`` instead of away from ``labels``.
      targets: ``[N]`` int target classes (targeted only).
      norm: ``"linf"`` (sign of the gradient) or ``"l2"`` (normalised gradient; the
        step's L2 length is ``eps`` up to float rounding, less after clipping).
      loss: ``"cross_entropy"`` (default), ``"margin"`` (Carlini-Wagner; invariant to
        scaling the logits) or ``"dlr"`` (Croce & Hein); see
        :mod:`pixjax.attacks.losses`.
      num_classes: labels / targets are checked against it (default: the number of
        logits ``logits_fn`` returns).

    Returns:
      An :class:`AttackResult`: images ``[N, H, W, C]`` clipped to ``[0, 1]`` and the
      ``[N]`` zero-gradient mask. Warns (:class:`VanishedGradientWarning`) when called
      untraced and some gradient is exactly zero.

    Raises:
      ValueError: for bad images (dtype, shape, empty, non-finite, outside ``[0, 1]``),
        labels, targets, eps, norm or loss, before any work.
    """
    images, labels, targets = _arrays(images, labels, targets)
    check_attack(
        logits_fn,
        images,
        labels,
        eps,
        norm=norm,
        targeted=targeted,
        targets=targets,
        loss=loss,
        num_classes=num_classes,
        one_eps=True,
    )
    g = _loss_gradient(logits_fn, images, labels, targets if targeted else None, loss)
    adv = jnp.clip(images + eps * _direction(g.grad, norm), 0.0, 1.0)
    warn_zero_gradient(g.zero_gradient, "fgsm")
    return AttackResult(adv.astype(images.dtype), g.zero_gradient)


class EpsSweep(NamedTuple):
    """Result of :func:`fgsm_sweep` (``E`` eps values, ``N`` images).

    Attributes:
      pred: ``[E, N]`` predictions on the adversarial images.
      success: ``[E, N]`` bool; untargeted: ``pred != labels``; targeted:
        ``pred == targets``.
      clean_pred: ``[N]`` predictions on the clean images.
      zero_gradient: ``[N]`` bool: the input gradient was exactly zero (the image is
        not moved at any eps).
    """

    pred: jax.Array
    success: jax.Array
    clean_pred: jax.Array
    zero_gradient: jax.Array


def fgsm_sweep(
    logits_fn: LogitsFn,
    images: jax.Array,
    labels: jax.Array,
    eps: Sequence[float] | jax.Array,
    *,
    targeted: bool = False,
    targets: jax.Array | None = None,
    norm: str = "linf",
    loss: str = "cross_entropy",
    num_classes: int | None = None,
    return_images: bool = False,
) -> EpsSweep | tuple[EpsSweep, jax.Array]:
    """FGSM at many eps values with one gradient: ``E`` forward passes, one backward.

    Args: as :func:`fgsm`, with ``eps`` a 1-D sequence ``[E]``.

    Returns:
      An :class:`EpsSweep`; with ``return_images`` also the adversarial images
      ``[E, N, H, W, C]``.

    Raises:
      ValueError: as :func:`fgsm`.
    """
    images, labels, targets = _arrays(images, labels, targets)
    check_attack(
        logits_fn,
        images,
        labels,
        eps,
        norm=norm,
        targeted=targeted,
        targets=targets,
        loss=loss,
        num_classes=num_classes,
    )
    eps = jnp.asarray(eps, images.dtype).reshape(-1)
    g = _loss_gradient(logits_fn, images, labels, targets if targeted else None, loss)
    direction = _direction(g.grad, norm)

    def at(e):
        adv = jnp.clip(images + e * direction, 0.0, 1.0)
        pred = jnp.argmax(logits_fn(adv), -1)
        return pred, adv

    pred, adv = jax.lax.map(at, eps)
    success = pred == targets if targeted else pred != labels
    out = EpsSweep(pred, success, jnp.argmax(g.logits, -1), g.zero_gradient)
    warn_zero_gradient(g.zero_gradient, "fgsm_sweep")
    return (out, adv) if return_images else out


def project(x: jax.Array, images: jax.Array, eps, norm: str) -> jax.Array:
    """Projects ``x`` onto the ``norm`` ball of radius ``eps`` around ``images``, then
    onto ``[0, 1]`` (which only shrinks the distance). L2 norms are computed with
    :func:`_l2_norm` (no underflow), so ``||result - images|| <= eps`` up to the
    float32 rounding of ``images + delta`` (about 6e-8 per pixel near 1: relative
    1e-5 on MNIST-size images at eps >= 0.1, more for tiny eps)."""
    delta = x - images
    if norm == "linf":
        delta = jnp.clip(delta, -eps, eps)
    else:
        n = _l2_norm(delta)
        scale = jnp.where(n > eps, eps / jnp.where(n > 0, n, 1.0), 1.0)
        delta = delta * _per_image(scale, delta.ndim)
    return jnp.clip(images + delta, 0.0, 1.0)


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
    loss: str = "cross_entropy",
    num_classes: int | None = None,
) -> AttackResult:
    """Iterative FGSM / PGD (Kurakin et al. 2016; Madry et al. 2018) as one
    ``lax.fori_loop``.

    Args:
      key: PRNG key for the random start (may be ``None`` without one).
      eps: radius of the ball around ``images`` (L-inf or L2), ``[0, 1]`` pixel units.
      step_size: ``alpha`` of each step: ``(0, 1]`` (L-inf) or ``(0, sqrt(H W C)]``.
      steps: number of steps, a positive Python int (static).
      random_start: start from a uniform point in the L-inf ball (or a random direction
        of random length in the L2 ball).
      Other arguments: as :func:`fgsm`.

    Returns:
      An :class:`AttackResult`: images ``[N, H, W, C]`` in ``[0, 1]`` within ``eps`` of
      ``images`` (L2: up to float32 rounding, see :func:`project`), and the ``[N]``
      mask of images whose gradient vanished at one or more steps before the attack
      had won them.

    Raises:
      ValueError: as :func:`fgsm`, and for ``step_size``, ``steps`` and a missing key.
    """
    images, labels, targets = _arrays(images, labels, targets)
    check_attack(
        logits_fn,
        images,
        labels,
        eps,
        norm=norm,
        targeted=targeted,
        targets=targets,
        loss=loss,
        num_classes=num_classes,
        step_size=step_size,
        steps=steps,
        one_eps=True,
    )
    if step_size is None:
        raise ValueError("step_size: expected a positive number, got None")
    if random_start and key is None:
        raise ValueError("key: random_start=True needs a PRNG key, got None")
    if random_start and not _is_key(key):
        raise ValueError(
            f"key: expected a PRNG key such as jax.random.key(0), got {key!r}"
        )
    tgt = targets if targeted else None

    x = images
    if random_start:
        if norm == "linf":
            x = images + jax.random.uniform(
                key, images.shape, images.dtype, minval=-eps, maxval=eps
            )
        else:
            d_key, r_key = jax.random.split(key)
            d = _direction(jax.random.normal(d_key, images.shape, images.dtype), "l2")
            r = jax.random.uniform(r_key, (images.shape[0],), images.dtype) * eps
            x = images + d * _per_image(r, images.ndim)
        x = project(x, images, eps, norm)

    def body(_, carry):
        x, zero = carry
        g = _loss_gradient(logits_fn, x, labels, tgt, loss)
        x = project(x + step_size * _direction(g.grad, norm), images, eps, norm)
        return x, zero | g.zero_gradient

    zero0 = jnp.zeros(images.shape[0], bool)
    adv, zero = jax.lax.fori_loop(0, int(steps), body, (x, zero0))
    warn_zero_gradient(zero, "pgd")
    return AttackResult(adv.astype(images.dtype), zero)
