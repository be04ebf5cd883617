"""Fitness targets of the fooling-images search: ``images -> class probabilities``.

A target is any function ``logits_fn(images [P, H, W, C] float32 in [0, 1]) ->
logits [P, C]`` (built at the edge with ``functools.partial(model.apply, variables)``,
:func:`pixjax.models.logits_fn`): LeNet-5, the RBM + logistic-regression pipeline
(``rbm_lr``), any zoo model. Several networks make an *ensemble* target whose
probabilities are the mean of their softmaxes (Nguyen et al. 2015, sec. 3.3 asks
whether an ensemble is still fooled).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

LogitsFn = Callable[[jax.Array], jax.Array]


def target_probs(logits_fns: LogitsFn | Sequence[LogitsFn]) -> Callable:
    """``images [P, H, W, C] -> probs float32 [P, C]``: the softmax of one network, or
    the mean of the softmaxes of several (an ensemble; all must return the same number
    of classes).

    Raises:
      ValueError: an empty sequence, or an entry that is not callable.
    """
    fns = [logits_fns] if callable(logits_fns) else list(logits_fns)
    if not fns:
        raise ValueError("logits_fns: expected at least one network, got none")
    bad = [i for i, f in enumerate(fns) if not callable(f)]
    if bad:
        raise ValueError(f"logits_fns: entries {bad} are not callable")

    def probs(images: jax.Array) -> jax.Array:
        out = [jax.nn.softmax(f(images).astype(jnp.float32), axis=-1) for f in fns]
        return out[0] if len(out) == 1 else jnp.mean(jnp.stack(out), axis=0)

    return probs


__all__ = ["LogitsFn", "target_probs"]
