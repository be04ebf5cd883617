"""Attack objectives on one example's logits, written so that float32 cannot hide their
gradient.

Each objective is the value an attack *ascends*. It is written as
``outer(inner(logits, label, target))`` with ``outer`` strictly increasing, so the
gradient of the objective is a positive multiple of the gradient of ``inner``. Attacks
only use the *direction* of the input gradient (its sign for L-inf, its unit vector for
L2), so they back-propagate ``grad inner`` (normalised per example) and never the
``outer'`` factor, which is what underflows when a model is very sure:

* ``cross_entropy`` (default): ``-log p_y = softplus(logsumexp_{j != y} z_j - z_y)``.
  Written as ``-log_softmax(z)[y]`` its logit gradient is ``softmax(z) - onehot(y)``,
  whose entries all round to 0 in float32 once ``p_y`` rounds to 1 (53 of the first 500
  bundled MNIST test images with the shipped LeNet-5). Here ``inner`` is the log-space
  margin ``logsumexp_{j != y} z_j - z_y`` whose logit gradient is
  ``(softmax of the other logits, -1 at y)``: never zero, exact in float32, and exactly
  parallel to the cross-entropy gradient (``outer = softplus``, ``outer' = sigmoid > 0``).
  Targeted: ascend ``log p_t = log_sigmoid(z_t - logsumexp_{j != t} z_j)``.
* ``margin``: Carlini & Wagner (2017), "Towards Evaluating the Robustness of Neural
  Networks", objective f6 without the confidence clamp: ``max_{j != y} z_j - z_y``
  (untargeted), ``z_t - max_{j != t} z_j`` (targeted). Its gradient direction does not
  change when the logits are multiplied by a positive factor (temperature, defensive
  distillation), so it is the loss to use against gradient masking of that kind.
* ``dlr``: Croce & Hein (2020), "Reliable evaluation of adversarial robustness with an
  ensemble of diverse parameter-free attacks" (AutoAttack), the Difference of Logits
  Ratio: ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12)`` (untargeted; ``pi`` sorts
  the logits in decreasing order; needs 3 classes) and
  ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`` (targeted; needs 4 classes).
  Invariant to shifting and to positive scaling of the logits (up to float rounding).

All functions here take ``logits [C]`` (one example, any float dtype) and integer class
scalars; batch them with ``jax.vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

LOSSES = ("cross_entropy", "margin", "dlr")
# Fewest classes each loss is defined for: (untargeted, targeted).
MIN_CLASSES = {"cross_entropy": (2, 2), "margin": (2, 2), "dlr": (3, 4)}


class AttackLoss(NamedTuple):
    """An attack objective ``outer(inner(logits, label, target))`` (to ascend).

    Attributes:
      name: one of :data:`LOSSES`.
      targeted: whether ``target`` is used.
      inner: ``(logits [C], label [] int, target [] int) -> []``; its gradient gives the
        attack direction.
      outer: strictly increasing ``[] -> []``; ``outer(inner)`` is the objective's value.
    """

    name: str
    targeted: bool
    inner: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    outer: Callable[[jax.Array], jax.Array]

    def value(
        self, logits: jax.Array, label: jax.Array, target: jax.Array
    ) -> jax.Array:
        """The objective's value for one example (what the attack ascends)."""
        return self.outer(self.inner(logits, label, target))

    def logit_direction(
        self, logits: jax.Array, label: jax.Array, target: jax.Array
    ) -> jax.Array:
        """``[C]``: ``grad_logits`` of the objective up to a positive factor, scaled so
        its largest entry is 1 in magnitude (all zeros when the gradient is zero)."""
        g = jax.grad(self.inner)(logits, label, target)
        m = jnp.max(jnp.abs(g))
        return g / jnp.where(m > 0, m, 1.0)


def _others(logits: jax.Array, cls: jax.Array) -> jax.Array:
    """``[C]`` bool: every class but ``cls``."""
    return jnp.arange(logits.shape[-1]) != cls


def _logsumexp_others(logits: jax.Array, cls: jax.Array) -> jax.Array:
    return jax.nn.logsumexp(logits, where=_others(logits, cls))


def _max_others(logits: jax.Array, cls: jax.Array) -> jax.Array:
    return jnp.max(logits, where=_others(logits, cls), initial=-jnp.inf)


def cross_entropy(logits: jax.Array, label: jax.Array) -> jax.Array:
    """``-log p_label`` for one example, accurate (and with an exact-signed gradient)
    when ``p_label`` rounds to 1: ``softplus(logsumexp_{j != y} z_j - z_y)``.

    Args:
      logits: ``[C]`` float.
      label: integer scalar in ``0..C-1``.

    Returns:
      The cross-entropy, a float scalar ``>= 0`` (nats).
    """
    return jax.nn.softplus(_logsumexp_others(logits, label) - logits[label])


def margin(logits: jax.Array, label: jax.Array) -> jax.Array:
    """Carlini-Wagner logit margin ``max_{j != y} z_j - z_y`` for one example (positive
    iff the example is misclassified)."""
    return _max_others(logits, label) - logits[label]


def dlr(logits: jax.Array, label: jax.Array) -> jax.Array:
    """Croce & Hein's untargeted Difference of Logits Ratio for one example (``C >= 3``):
    ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12)``."""
    z = jnp.sort(logits)[::-1]
    return margin(logits, label) / (z[0] - z[2] + 1e-12)


def _ce_inner(z, y, _t):
    return _logsumexp_others(z, y) - z[y]


def _ce_targeted_inner(z, _y, t):
    return z[t] - _logsumexp_others(z, t)


def _margin_inner(z, y, _t):
    return margin(z, y)


def _margin_targeted_inner(z, _y, t):
    return -margin(z, t)


def _dlr_inner(z, y, _t):
    return dlr(z, y)


def _dlr_targeted_inner(z, y, t):
    s = jnp.sort(z)[::-1]
    return (z[t] - z[y]) / (s[0] - 0.5 * (s[2] + s[3]) + 1e-12)


def _identity(u):
    return u


_TABLE = {
    ("cross_entropy", False): (_ce_inner, jax.nn.softplus),
    ("cross_entropy", True): (_ce_targeted_inner, jax.nn.log_sigmoid),
    ("margin", False): (_margin_inner, _identity),
    ("margin", True): (_margin_targeted_inner, _identity),
    ("dlr", False): (_dlr_inner, _identity),
    ("dlr", True): (_dlr_targeted_inner, _identity),
}


def check_loss(loss: str, targeted: bool = False, num_classes: int | None = None):
    """Raises ``ValueError`` naming ``loss`` for an unknown name or too few classes."""
    if loss not in LOSSES:
        raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
    need = MIN_CLASSES[loss][int(bool(targeted))]
    if num_classes is not None and num_classes < need:
        kind = "targeted" if targeted else "untargeted"
        raise ValueError(
            f"loss: {loss!r} ({kind}) needs a model with at least {need} classes, "
            f"this one has {num_classes}"
        )


def get_loss(loss: str = "cross_entropy", targeted: bool = False) -> AttackLoss:
    """The attack objective called ``loss`` (one of :data:`LOSSES`).

    Raises:
      ValueError: for an unknown name, listing the accepted ones.
    """
    check_loss(loss, targeted)
    inner, outer = _TABLE[(loss, bool(targeted))]
    return AttackLoss(loss, bool(targeted), inner, outer)
