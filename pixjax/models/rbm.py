"""Bernoulli restricted Boltzmann machine as pure functions, with scikit-learn's
``BernoulliRBM`` semantics (``sklearn/neural_network/_rbm.py``).

Energy ``E(v, h) = -v.b_v - h.b_h - v W h`` with binary ``v`` (``[n_visible]``, values in
``[0, 1]`` are read as probabilities) and binary ``h`` (``[n_components]``).

Training is persistent contrastive divergence (Tieleman 2008, "stochastic maximum
likelihood") exactly as scikit-learn runs it:

* ``batch_size`` persistent hidden chains start at zeros;
* per batch, the positive phase uses ``P(h | v_data)``; one Gibbs half-step from the
  chains gives ``v_neg ~ P(v | h_chain)`` and ``P(h | v_neg)``;
* the update is ``learning_rate / rows * (v_pos^T h_pos - v_neg^T h_neg)`` (``rows`` =
  rows of the data batch), the same for the biases;
* the chains become a Bernoulli sample of ``P(h | v_neg)``;
* batches are fixed contiguous slices of the data (``gen_even_slices``), every epoch.

:func:`fit` runs all epochs and batches as one ``lax.scan``; it is ``vmap``-able over
keys, learning rates and datasets (folds) of equal shape, and can return snapshots of
the parameters after chosen epochs (epochs are a prefix of a longer run, so one scan of
80 epochs also gives the models of 20 and 40).
Parameters are float32 (scikit-learn computes in float64).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pixjax.types import PRNGKey


class RBMParams(NamedTuple):
    """Attributes:
    weights: ``[n_visible, n_components]`` (scikit-learn's ``components_.T``).
    hidden_bias: ``[n_components]`` (``intercept_hidden_``).
    visible_bias: ``[n_visible]`` (``intercept_visible_``).
    """

    weights: jax.Array
    hidden_bias: jax.Array
    visible_bias: jax.Array


class RBMState(NamedTuple):
    """Training state: parameters and the persistent hidden chains ``[batch, n_comp]``."""

    params: RBMParams
    chains: jax.Array


def check_data(x, name: str = "x") -> None:
    """Raises ``ValueError`` unless ``x`` is a non-empty 2-D array of values in [0, 1]."""
    shape = np.shape(x)
    if len(shape) != 2 or shape[0] == 0 or shape[1] == 0:
        raise ValueError(
            f"{name}: expected a non-empty 2-D array [n_samples, n_features] of values "
            f"in [0, 1], got shape {shape}"
        )
    if not isinstance(x, jax.core.Tracer):
        arr = np.asarray(x)  # a concrete array closed over by a jit: no staged ops
        lo, hi = float(arr.min()), float(arr.max())
        if not (lo >= 0.0 and hi <= 1.0):
            raise ValueError(
                f"{name}: expected values in [0, 1] (scale pixels by 1/255), got "
                f"min {lo} and max {hi}"
            )


def check_hyperparameters(
    *, n_components=1, learning_rate=1.0, batch_size=1, n_iter=1
) -> None:
    """Raises ``ValueError`` naming the first argument out of range."""
    for name, value in (
        ("n_components", n_components),
        ("batch_size", batch_size),
        ("n_iter", n_iter),
    ):
        values = np.atleast_1d(np.asarray(value))
        if not np.issubdtype(values.dtype, np.integer) or (values <= 0).any():
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    lrs = np.atleast_1d(np.asarray(learning_rate, dtype=float))
    if not (np.isfinite(lrs) & (lrs > 0)).all():
        raise ValueError(f"learning_rate: expected a number > 0, got {learning_rate!r}")


def init(key: PRNGKey, n_visible: int, n_components: int) -> RBMParams:
    """Weights ``N(0, 0.01^2)``, biases zero (scikit-learn's initialisation)."""
    check_hyperparameters(n_components=n_components)
    w = 0.01 * jax.random.normal(key, (n_visible, n_components), jnp.float32)
    return RBMParams(
        w, jnp.zeros((n_components,), jnp.float32), jnp.zeros((n_visible,), jnp.float32)
    )


def mean_hiddens(params: RBMParams, v: jax.Array) -> jax.Array:
    """``P(h = 1 | v)`` ``[..., n_components]``: the features scikit-learn's ``transform``
    returns."""
    return jax.nn.sigmoid(v @ params.weights + params.hidden_bias)


transform = mean_hiddens


def mean_visibles(params: RBMParams, h: jax.Array) -> jax.Array:
    """``P(v = 1 | h)`` ``[..., n_visible]``."""
    return jax.nn.sigmoid(h @ params.weights.T + params.visible_bias)


def sample_hiddens(key: PRNGKey, params: RBMParams, v: jax.Array) -> jax.Array:
    """A Bernoulli sample of ``h | v`` (float 0 / 1)."""
    p = mean_hiddens(params, v)
    return (jax.random.uniform(key, p.shape) < p).astype(p.dtype)


def sample_visibles(key: PRNGKey, params: RBMParams, h: jax.Array) -> jax.Array:
    """A Bernoulli sample of ``v | h`` (float 0 / 1)."""
    p = mean_visibles(params, h)
    return (jax.random.uniform(key, p.shape) < p).astype(p.dtype)


def gibbs(key: PRNGKey, params: RBMParams, v: jax.Array) -> jax.Array:
    """One Gibbs step ``v -> h -> v'`` (samples)."""
    kh, kv = jax.random.split(key)
    return sample_visibles(kv, params, sample_hiddens(kh, params, v))


def free_energy(params: RBMParams, v: jax.Array) -> jax.Array:
    """``F(v) = -v.b_v - sum_j softplus((v W + b_h)_j)`` ``[...]``."""
    return -(v @ params.visible_bias) - jnp.sum(
        jax.nn.softplus(v @ params.weights + params.hidden_bias), axis=-1
    )


def score_samples(key: PRNGKey, params: RBMParams, v: jax.Array) -> jax.Array:
    """Pseudo-likelihood ``[N]`` as scikit-learn computes it: flip one random feature
    ``i`` per sample, ``n_features * log sigmoid(F(v_flipped) - F(v))``."""
    n, d = v.shape
    idx = jax.random.randint(key, (n,), 0, d)
    flipped = v.at[jnp.arange(n), idx].set(1.0 - v[jnp.arange(n), idx])
    return d * jax.nn.log_sigmoid(free_energy(params, flipped) - free_energy(params, v))


def _mix32(z: jax.Array) -> jax.Array:
    """A bijective avalanche of ``uint32`` words (the "lowbias32" finaliser)."""
    z = z ^ (z >> 16)
    z = z * jnp.uint32(0x7FEB352D)
    z = z ^ (z >> 15)
    z = z * jnp.uint32(0x846CA68B)
    return z ^ (z >> 16)


def step_uniforms(key: PRNGKey, shape: Sequence[int]) -> jax.Array:
    """The uniforms of one :func:`pcd_step`: float32 in ``[0, 1)`` (24-bit, the
    resolution of ``jax.random.uniform``'s float32), a pure function of ``key``.

    A counter-based generator: two words drawn with ``key`` (threefry) seed two rounds
    of a 32-bit integer hash of each element's index. One step needs
    ``batch x (n_visible + n_components)`` uniforms, and threefry takes about 10 ns
    per element on a CPU, a third of the whole step (200 components); the hash takes
    about 1. The draws pass the uniformity and independence checks of
    ``tests/test_rbm.py``; every other sampler of this module uses
    ``jax.random``.
    """
    n = int(np.prod(shape))
    if n >= 2**32:
        raise ValueError(f"shape: expected fewer than 2**32 elements, got {n}")
    seed = jax.random.bits(key, (2,), jnp.uint32)
    z = jnp.arange(n, dtype=jnp.uint32) * jnp.uint32(0x9E3779B9) + seed[0]
    z = _mix32(_mix32(z) ^ seed[1])
    return ((z >> 8).astype(jnp.float32) * (1.0 / (1 << 24))).reshape(tuple(shape))


def init_state(params: RBMParams, batch_size: int) -> RBMState:
    """Chains at zeros, as scikit-learn starts them."""
    return RBMState(params, jnp.zeros((batch_size, params.hidden_bias.shape[0])))


def pcd_step(
    key: PRNGKey,
    state: RBMState,
    v_pos: jax.Array,
    learning_rate: float | jax.Array,
    mask: jax.Array | None = None,
) -> RBMState:
    """One persistent-CD update on the batch ``v_pos`` ``[batch, n_visible]``.

    Args:
      key: randomness of this step (the negative sample and the new chains).
      state: parameters and chains (``[batch_size, n_components]``).
      v_pos: the data batch; rows beyond the data (padding) are marked by ``mask``.
      learning_rate: scikit-learn's ``learning_rate`` (divided by the rows here).
      mask: ``[batch]`` bool, valid rows (default: all). A batch with no valid row
        leaves the state unchanged.

    Returns:
      The new state.
    """
    params, chains = state
    batch, n_vis = v_pos.shape
    n_chains, n_comp = chains.shape
    # One draw of uniforms for both samples of the step.
    u = step_uniforms(key, (n_chains, n_vis + n_comp))
    v_neg = (u[:, :n_vis] < mean_visibles(params, chains)).astype(v_pos.dtype)
    if mask is not None:
        v_pos = v_pos * mask.astype(v_pos.dtype)[:, None]
    # Positive and negative phase in one matmul each way.
    both = jnp.concatenate([v_pos, v_neg])
    h_both = mean_hiddens(params, both)
    if mask is not None:
        h_both = h_both.at[:batch].multiply(mask.astype(h_both.dtype)[:, None])
    h_neg = h_both[batch:]
    signed = jnp.concatenate([v_pos, -v_neg])  # v_pos^T h_pos - v_neg^T h_neg
    rows = batch if mask is None else jnp.sum(mask)
    step = learning_rate / jnp.maximum(rows, 1)
    sign = jnp.concatenate([jnp.ones(batch), -jnp.ones(n_chains)])
    new = RBMParams(
        params.weights + step * (signed.T @ h_both),
        params.hidden_bias + step * (sign @ h_both),
        params.visible_bias + step * jnp.sum(signed, axis=0),
    )
    new_chains = (u[:, n_vis:] < h_neg).astype(h_neg.dtype)
    if mask is None:
        return RBMState(new, new_chains)
    keep = rows > 0
    return RBMState(
        jax.tree.map(lambda a, b: jnp.where(keep, a, b), new, params),
        jnp.where(keep, new_chains, chains),
    )


def batch_slices(n_samples: int, batch_size: int) -> list[tuple[int, int]]:
    """scikit-learn's fixed batches: ``ceil(n / batch_size)`` contiguous slices of
    ``batch_size`` rows, the last one shorter when ``batch_size`` does not divide ``n``."""
    n_batches = -(-n_samples // batch_size)
    return [
        (i * batch_size, min((i + 1) * batch_size, n_samples)) for i in range(n_batches)
    ]


def _batched(x: jax.Array, batch_size: int, n_valid: jax.Array | None):
    """``x`` ``[N, D]`` -> ``[B, batch_size, D]`` and a ``[B, batch_size]`` row mask
    (rows past ``n_valid`` — padding for a vmapped fold — are masked too); the mask is
    None when every batch is full."""
    n = x.shape[0]
    n_batches = -(-n // batch_size)
    pad = n_batches * batch_size - n
    xb = jnp.pad(x, ((0, pad), (0, 0))).reshape(n_batches, batch_size, -1)
    if pad == 0 and n_valid is None:
        return xb, None
    row = jnp.arange(n_batches * batch_size).reshape(n_batches, batch_size)
    limit = n if n_valid is None else n_valid
    return xb, row < limit


def fit(
    key: PRNGKey,
    x: jax.Array,
    *,
    n_components: int,
    learning_rate: float | jax.Array = 0.1,
    batch_size: int = 10,
    n_iter: int = 10,
    snapshots: Sequence[int] | None = None,
    n_valid: jax.Array | None = None,
) -> RBMParams:
    """Trains an RBM on ``x`` ``[N, n_visible]`` (values in ``[0, 1]``) as scikit-learn's
    ``BernoulliRBM(n_components, learning_rate, batch_size, n_iter).fit(x)`` does.

    Args:
      key: initialisation and sampling randomness (split inside).
      x: training data.
      n_components, batch_size, n_iter: static sizes.
      learning_rate: may be traced (``vmap`` over learning rates).
      snapshots: increasing epochs (1..``n_iter``) after which to return the
        parameters; the result is then stacked ``[len(snapshots), ...]``.
      n_valid: the number of real rows when ``x`` is padded (``vmap`` over folds of
        unequal size); with it the batches are those of the first ``n_valid`` rows
        only where ``batch_size`` divides ``n_valid``.

    Returns:
      :class:`RBMParams` (stacked along a leading axis with ``snapshots``).
    """
    if not isinstance(x, jax.core.Tracer):
        check_data(x)
    check_hyperparameters(
        n_components=n_components, batch_size=batch_size, n_iter=n_iter
    )
    if not isinstance(learning_rate, jax.core.Tracer):
        check_hyperparameters(learning_rate=learning_rate)
    snaps = (n_iter,) if snapshots is None else tuple(int(s) for s in snapshots)
    if (
        not snaps
        or list(snaps) != sorted(set(snaps))
        or not 1 <= snaps[0] <= snaps[-1] <= n_iter
    ):
        raise ValueError(
            f"snapshots: expected increasing epochs in 1..{n_iter}, got {snapshots!r}"
        )
    x = jnp.asarray(x, jnp.float32)
    k_init, k_train = jax.random.split(key)
    state = init_state(init(k_init, x.shape[1], n_components), batch_size)
    xb, mask = _batched(x, batch_size, n_valid)
    n_batches = xb.shape[0]

    def epoch(state, e):
        def step(state, b):
            # keyed by (epoch, batch): the same draws whatever padding follows
            k = jax.random.fold_in(jax.random.fold_in(k_train, e), b)
            m = None if mask is None else mask[b]
            return pcd_step(k, state, xb[b], learning_rate, m), None

        return jax.lax.scan(step, state, jnp.arange(n_batches))[0], None

    outs, done = [], 0
    for s in snaps:  # epochs are a prefix of a longer run: scan on from the last one
        state, _ = jax.lax.scan(epoch, state, jnp.arange(done, s))
        outs.append(state.params)
        done = s
    if snapshots is None:
        return state.params
    return jax.tree.map(lambda *a: jnp.stack(a), *outs)


class RBMClassifier(nn.Module):
    """The RBM -> logistic regression pipeline as one Linen model (``"rbm_lr"`` in the
    registry), so that every pixjax experiment (pixel changes, FGSM, shifts) runs on it.

    ``images [N, H, W, C]`` in ``[0, 1]`` are flattened to the visible units; the
    features are ``P(h = 1 | v)``; the logits are ``features @ kernel + bias``. The
    variables are ``{"params": {"rbm": RBMParams fields, "logistic": {"kernel",
    "bias"}}}``: fill them from :func:`fit` and a logistic regression with
    :func:`pipeline_variables`. The visible bias is kept (it does not affect the
    features) so that the RBM can still be sampled from a checkpoint.

    Attributes:
      n_components: hidden units.
      num_classes: output logits.
    """

    n_components: int = 200
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        del train
        v = x.reshape(x.shape[0], -1).astype(jnp.float32)
        d = v.shape[1]
        init_w = nn.initializers.normal(0.01)
        zeros = nn.initializers.zeros_init()
        rbm_params = RBMParams(
            self.param("rbm_weights", init_w, (d, self.n_components)),
            self.param("rbm_hidden_bias", zeros, (self.n_components,)),
            self.param("rbm_visible_bias", zeros, (d,)),
        )
        features = mean_hiddens(rbm_params, v)
        kernel = self.param("lr_kernel", zeros, (self.n_components, self.num_classes))
        bias = self.param("lr_bias", zeros, (self.num_classes,))
        return features @ kernel + bias


def pipeline_variables(
    params: RBMParams, kernel: jax.Array, bias: jax.Array
) -> dict[str, dict[str, jax.Array]]:
    """Variables of :class:`RBMClassifier` from an RBM and a logistic regression
    (``kernel`` ``[n_components, classes]``, ``bias`` ``[classes]``)."""
    return {
        "params": {
            "rbm_weights": params.weights,
            "rbm_hidden_bias": params.hidden_bias,
            "rbm_visible_bias": params.visible_bias,
            "lr_kernel": kernel,
            "lr_bias": bias,
        }
    }
