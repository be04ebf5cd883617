"""Bernoulli restricted Boltzmann machine as pure JAX functions.

A binary RBM (Smolensky 1986; Hinton 2002) with visible units ``v`` in ``[0, 1]``
(probabilities or binary values) and binary hidden units ``h``::

    E(v, h) = -v . c - h . b - v W h
    P(h_j = 1 | v) = sigmoid(v W + b)_j
    P(v_i = 1 | h) = sigmoid(h W^T + c)_i
    F(v) = -v . c - sum_j softplus(v W + b)_j      (free energy)

trained by persistent contrastive divergence (PCD, Tieleman 2008; "stochastic maximum
likelihood"). The semantics are those of scikit-learn's ``BernoulliRBM``
(``sklearn/neural_network/_rbm.py``), so a model fitted here is interchangeable with
one fitted there:

* ``W`` starts as ``N(0, 0.01^2)`` (standard deviation 0.01), both biases at zero;
* ``batch_size`` persistent hidden chains start at zeros;
* each minibatch does one Gibbs step of the chains (``h -> v_neg -> h_neg``); the
  positive phase uses the probabilities ``P(h | v_pos)``, the negative phase the
  probabilities ``P(h | v_neg)``; the step is ``learning_rate / rows`` times the
  *summed* statistics (``rows`` = rows of the minibatch), i.e. ``learning_rate`` times
  the batch-mean gradient;
* the chains are then resampled from ``P(h | v_neg)`` (before the update);
* minibatches are fixed and contiguous: ``ceil(n / batch_size)`` slices of
  ``batch_size`` rows in data order, the last one shorter when ``batch_size`` does not
  divide ``n`` (scikit-learn's ``gen_even_slices(n_batches * batch_size, n_batches)``
  clipped at ``n``). A short last batch still uses all ``batch_size`` chains for the
  negative statistics and divides by its own row count, as scikit-learn does.

Orientation: ``RBMParams.components`` is ``[n_components, n_visible]``, as
scikit-learn's ``components_`` (the matrix ``W`` above is its transpose); the
hidden-to-visible product of the Gibbs step is then a plain row-major matmul, the
faster layout for XLA on the CPU.

Everything is float32, jit-able and vmap-able. Randomness is explicit: every sampling
function takes a key, and :func:`pcd_update` takes the uniform draws themselves, so a
step can be replayed exactly (e.g. against a numpy implementation). The training loop
:func:`make_fit` is one compiled ``lax.scan`` over epochs and minibatches; the
learning rate, the data and the key are traced, so ``jax.vmap`` over learning rates,
folds and seeds batches whole trainings into one call.

Random draws of the training loop: a PCD step needs ``batch_size * (n_visible +
n_components)`` uniforms (~10^4 for MNIST). Drawing them with ``jax.random.uniform``
(threefry, 20 rounds per pair of words) costs about as much as the step's three
matmuls on a CPU, so :func:`pcd_uniforms` draws 64 random bits per step from the key
(``jax.random.bits``) and expands them with a counter-based hash (two rounds of the
``lowbias32`` integer mixer of C. Wellons' hash-prospector, the first keyed by
xor, the second by addition), ~3x cheaper. Every ``(step, unit)`` pair gets its own
hash input, so draws do not repeat across steps; they are not threefry's stream,
which matters only when comparing draw by draw with ``jax.random``. The stand-alone
samplers (:func:`sample_hiddens`, :func:`gibbs`, ...) use ``jax.random.uniform``.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.types import PRNGKey

INIT_STD = 0.01  # scikit-learn's BernoulliRBM: components_ ~ N(0, 0.01)


class RBMParams(NamedTuple):
    """Parameters of a Bernoulli RBM (a pytree).

    Attributes:
      components: float32 ``[n_components, n_visible]`` (scikit-learn's
        ``components_``; ``W^T`` in the module docstring).
      intercept_hidden: float32 ``[n_components]`` (``b``).
      intercept_visible: float32 ``[n_visible]`` (``c``).
    """

    components: jax.Array
    intercept_hidden: jax.Array
    intercept_visible: jax.Array


def init(
    key: PRNGKey, n_visible: int, n_components: int, dtype=jnp.float32
) -> RBMParams:
    """Initial parameters: ``W ~ N(0, 0.01^2)``, zero biases (as scikit-learn).

    Args:
      key: PRNG key.
      n_visible: number of visible units (features, e.g. 784 for MNIST).
      n_components: number of hidden units.

    Returns:
      :class:`RBMParams` with ``components`` ``[n_components, n_visible]``.
    """
    check_positive_int(n_visible, "n_visible")
    check_positive_int(n_components, "n_components")
    w = INIT_STD * jax.random.normal(key, (n_components, n_visible), dtype)
    return RBMParams(
        components=w,
        intercept_hidden=jnp.zeros((n_components,), dtype),
        intercept_visible=jnp.zeros((n_visible,), dtype),
    )


def init_chains(batch_size: int, n_components: int, dtype=jnp.float32) -> jax.Array:
    """The persistent hidden chains at the start of training: zeros
    ``[batch_size, n_components]`` (scikit-learn's ``h_samples_``)."""
    return jnp.zeros((batch_size, n_components), dtype)


def params_from_sklearn(
    components: np.ndarray,
    intercept_hidden: np.ndarray,
    intercept_visible: np.ndarray,
    dtype=jnp.float32,
) -> RBMParams:
    """:class:`RBMParams` from scikit-learn's ``components_`` ``[n_components,
    n_visible]``, ``intercept_hidden_`` and ``intercept_visible_``."""
    return RBMParams(
        components=jnp.asarray(components, dtype),
        intercept_hidden=jnp.asarray(intercept_hidden, dtype),
        intercept_visible=jnp.asarray(intercept_visible, dtype),
    )


def params_to_sklearn(params: RBMParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(components_, intercept_hidden_, intercept_visible_)`` as numpy arrays in
    scikit-learn's orientation (to set on a fitted ``BernoulliRBM``)."""
    return (
        np.asarray(params.components),
        np.asarray(params.intercept_hidden),
        np.asarray(params.intercept_visible),
    )


# --------------------------------------------------------------------------- model


def mean_hiddens(params: RBMParams, v: jax.Array) -> jax.Array:
    """``P(h = 1 | v) = sigmoid(v W + b)``: ``[..., n_visible] -> [..., n_components]``."""
    return jax.nn.sigmoid(v @ params.components.T + params.intercept_hidden)


def transform(params: RBMParams, v: jax.Array) -> jax.Array:
    """The learned features, ``P(h = 1 | v)`` (scikit-learn's ``transform``).

    Args:
      params: RBM parameters.
      v: ``[N, n_visible]`` float in ``[0, 1]``.

    Returns:
      ``[N, n_components]`` float32 in ``(0, 1)``.
    """
    return mean_hiddens(params, v)


def mean_visibles(params: RBMParams, h: jax.Array) -> jax.Array:
    """``P(v = 1 | h) = sigmoid(h W^T + c)``: ``[..., n_components] -> [...,
    n_visible]``."""
    return jax.nn.sigmoid(h @ params.components + params.intercept_visible)


def _bernoulli(u: jax.Array, p: jax.Array) -> jax.Array:
    """Binary sample ``u < p`` as floats (``u`` uniform in ``[0, 1)``)."""
    return (u < p).astype(p.dtype)


def sample_hiddens(key: PRNGKey, params: RBMParams, v: jax.Array) -> jax.Array:
    """A binary sample of ``h ~ P(h | v)``, ``[..., n_components]`` float32 of 0 / 1."""
    p = mean_hiddens(params, v)
    return _bernoulli(jax.random.uniform(key, p.shape, p.dtype), p)


def sample_visibles(key: PRNGKey, params: RBMParams, h: jax.Array) -> jax.Array:
    """A binary sample of ``v ~ P(v | h)``, ``[..., n_visible]`` float32 of 0 / 1."""
    p = mean_visibles(params, h)
    return _bernoulli(jax.random.uniform(key, p.shape, p.dtype), p)


def gibbs(key: PRNGKey, params: RBMParams, v: jax.Array) -> jax.Array:
    """One Gibbs step ``v -> h ~ P(h | v) -> v' ~ P(v | h)``; returns binary ``v'``."""
    hidden_key, visible_key = jax.random.split(key)
    h = sample_hiddens(hidden_key, params, v)
    return sample_visibles(visible_key, params, h)


def free_energy(params: RBMParams, v: jax.Array) -> jax.Array:
    """``F(v) = -v . c - sum_j softplus(v W + b)_j``: ``[..., n_visible] -> [...]``."""
    pre = v @ params.components.T + params.intercept_hidden
    return -(v @ params.intercept_visible) - jnp.sum(jax.nn.softplus(pre), axis=-1)


def score_samples(key: PRNGKey, params: RBMParams, v: jax.Array) -> jax.Array:
    """Pseudo-likelihood of each row of ``v``, as scikit-learn's ``score_samples``.

    One randomly chosen visible unit of each sample is flipped (``x -> 1 - x``) and the
    score is ``n_visible * log sigmoid(F(v_flipped) - F(v))``. Stochastic: the flipped
    unit depends on ``key``. Meaningful for binary ``v``.

    Args:
      key: PRNG key (chooses the flipped unit of each row).
      params: RBM parameters.
      v: ``[N, n_visible]``.

    Returns:
      ``[N]`` float32, the pseudo-log-likelihoods (<= 0).
    """
    n, d = v.shape
    unit = jax.random.randint(key, (n,), 0, d)
    flip = jax.nn.one_hot(unit, d, dtype=v.dtype)
    v_flipped = v + flip * (1.0 - 2.0 * v)
    delta = free_energy(params, v_flipped) - free_energy(params, v)
    return -d * jax.nn.softplus(-delta)


# --------------------------------------------------------------------------- PCD


def _lowbias32(x: jax.Array) -> jax.Array:
    """C. Wellons' ``lowbias32`` integer mixer (hash-prospector): uint32 -> uint32."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def counter_uniforms(seed: jax.Array, shape: tuple[int, ...], dtype=jnp.float32):
    """Uniforms in ``[0, 1)`` (24-bit resolution) hashed from a 64-bit ``seed``.

    ``u[i] = lowbias32(lowbias32(i ^ seed[0]) + seed[1]) >> 8`` over the flat index
    ``i`` (a counter-based generator: no state, every element independent).

    Args:
      seed: uint32 ``[2]``, e.g. ``jax.random.bits(key, (2,), jnp.uint32)``.
      shape: output shape (at most ``2**32`` elements).
    """
    i = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    x = _lowbias32(_lowbias32(i ^ seed[0]) + seed[1])
    return (x >> 8).astype(dtype) * jnp.asarray(2.0**-24, dtype)


def step_seed(key: PRNGKey) -> jax.Array:
    """The 64 random bits (uint32 ``[2]``) that seed one PCD step's uniforms."""
    return jax.random.bits(key, (2,), jnp.uint32)


def pcd_uniforms(
    key: PRNGKey, batch_size: int, n_visible: int, n_components: int, dtype=jnp.float32
) -> tuple[jax.Array, jax.Array]:
    """The uniform draws of one :func:`pcd_step`: ``(u_visible [batch_size,
    n_visible], u_hidden [batch_size, n_components])``, from
    :func:`counter_uniforms` seeded by :func:`step_seed` ``(key)``."""
    return _split_uniforms(step_seed(key), batch_size, n_visible, n_components, dtype)


def _split_uniforms(seed, batch_size, n_visible, n_components, dtype):
    u = counter_uniforms(seed, (batch_size, n_visible + n_components), dtype)
    return u[:, :n_visible], u[:, n_visible:]


def pcd_update(
    params: RBMParams,
    chains: jax.Array,
    v_pos: jax.Array,
    u_visible: jax.Array,
    u_hidden: jax.Array,
    learning_rate: jax.Array | float,
    row_mask: jax.Array | None = None,
) -> tuple[RBMParams, jax.Array]:
    """One persistent-CD update with the uniform draws given explicitly.

    This is scikit-learn's ``BernoulliRBM._fit`` with its two ``rng.uniform`` calls
    replaced by ``u_visible`` and ``u_hidden``::

        h_pos  = P(h | v_pos)
        v_neg  = u_visible < P(v | chains)         # one Gibbs step of the chains
        h_neg  = P(h | v_neg)
        step   = learning_rate / rows
        W     += step * (v_pos^T h_pos - v_neg^T h_neg); b, c likewise
        chains = u_hidden < h_neg

    Args:
      params: current parameters.
      chains: ``[B, n_components]`` persistent hidden states (0 / 1).
      v_pos: ``[R, n_visible]`` the minibatch in ``[0, 1]``.
      u_visible: ``[B, n_visible]`` uniform in ``[0, 1)``.
      u_hidden: ``[B, n_components]`` uniform in ``[0, 1)``.
      learning_rate: scalar (may be traced, e.g. vmapped over a grid).
      row_mask: optional ``[R]`` bool; only ``True`` rows of ``v_pos`` count (a padded
        short batch) and ``rows`` is their number. With no ``True`` row, ``params``
        and ``chains`` are returned unchanged.

    Returns:
      ``(params, chains)`` after the update.
    """
    w, b, c = params  # w: [n_components, n_visible]
    r = v_pos.shape[0]
    v_neg = _bernoulli(u_visible, jax.nn.sigmoid(chains @ w + c))
    # The positive and negative hidden probabilities in one product.
    h = jax.nn.sigmoid(jnp.concatenate([v_pos, v_neg], axis=0) @ w.T + b)
    h_pos, h_neg = h[:r], h[r:]
    if row_mask is None:
        rows = r
    else:
        mask = row_mask.astype(w.dtype)[:, None]
        v_pos, h_pos = v_pos * mask, h_pos * mask
        h = jnp.concatenate([h_pos, h_neg], axis=0)
        rows = jnp.maximum(jnp.sum(mask), 1.0)
    step = learning_rate / rows
    # h_pos^T v_pos - h_neg^T v_neg as one product of stacked factors.
    grad_w = h.T @ jnp.concatenate([v_pos, -v_neg], axis=0)
    new_params = RBMParams(
        components=w + step * grad_w,
        intercept_hidden=b + step * (h_pos.sum(0) - h_neg.sum(0)),
        intercept_visible=c + step * (v_pos.sum(0) - v_neg.sum(0)),
    )
    new_chains = _bernoulli(u_hidden, h_neg)
    if row_mask is not None:
        keep = jnp.any(row_mask)
        new_params = jax.tree.map(
            lambda new, old: jnp.where(keep, new, old), new_params, params
        )
        new_chains = jnp.where(keep, new_chains, chains)
    return new_params, new_chains


def pcd_step(
    key: PRNGKey,
    params: RBMParams,
    chains: jax.Array,
    v_pos: jax.Array,
    learning_rate: jax.Array | float,
    row_mask: jax.Array | None = None,
) -> tuple[RBMParams, jax.Array]:
    """One persistent-CD update on the minibatch ``v_pos`` ``[R, n_visible]``.

    Draws the uniforms with :func:`pcd_uniforms` ``(key, ...)`` and applies
    :func:`pcd_update`. ``chains`` is ``[B, n_components]`` (start with
    :func:`init_chains`).

    Returns:
      ``(params, chains)`` after the update.
    """
    n_components, n_visible = params.components.shape
    u_visible, u_hidden = pcd_uniforms(
        key, chains.shape[0], n_visible, n_components, params.components.dtype
    )
    return pcd_update(
        params, chains, v_pos, u_visible, u_hidden, learning_rate, row_mask
    )


# --------------------------------------------------------------------------- fit


class BatchLayout(NamedTuple):
    """Static description of scikit-learn's fixed minibatches of ``n`` rows."""

    n_samples: int
    batch_size: int
    n_batches: int  # ceil(n_samples / batch_size)
    padded: bool  # True when the last batch is short (rows masked)


def batch_layout(n_samples: int, batch_size: int) -> BatchLayout:
    """``ceil(n / batch_size)`` contiguous batches; the last one may be short."""
    n_batches = max(1, math.ceil(n_samples / batch_size))
    return BatchLayout(
        n_samples, batch_size, n_batches, n_batches * batch_size != n_samples
    )


def make_fit(
    n_samples: int,
    n_visible: int,
    *,
    n_components: int = 256,
    batch_size: int = 10,
    n_iter: int = 10,
    snapshot_epochs: Sequence[int] | None = None,
    masked: bool | None = None,
) -> Callable[..., RBMParams]:
    """Builds the pure training function for data of a fixed size.

    The returned ``fit_fn(key, X, learning_rate, n_rows=None) -> RBMParams`` trains
    from :func:`init` ``(split(key)[0], ...)`` for ``n_iter`` epochs over the fixed
    contiguous minibatches of ``X`` ``[n_samples, n_visible]``: nested ``lax.scan``
    over epochs and minibatches, where step ``t`` (counting minibatches over the whole
    run) is exactly ``pcd_step(fold_in(split(key)[1], t), ...)`` (the step seeds of an
    epoch are drawn together, outside the inner scan). It is pure: ``jax.jit`` it, and
    ``jax.vmap`` it over keys (seeds), ``X`` (folds) and ``learning_rate`` (a grid)
    to train many RBMs in one call.

    ``n_rows`` (traced, optional) trains on the first ``n_rows`` rows of ``X`` only,
    exactly as a ``fit_fn`` built for ``X[:n_rows]`` would: the batches of a smaller
    set are a prefix of those of a larger one, batches past ``ceil(n_rows /
    batch_size)`` are no-ops and step keys count only real batches. This lets folds of
    unequal sizes share one vmapped call (build with ``masked=True``).

    Args:
      n_samples: rows of ``X`` (static: it fixes the batches).
      n_visible: columns of ``X``.
      n_components: hidden units.
      batch_size: rows per minibatch (and number of persistent chains).
      n_iter: epochs.
      snapshot_epochs: if given, strictly increasing epoch counts in ``1..n_iter``;
        ``fit_fn`` then returns the parameters after each of them, stacked on a
        leading axis ``[S, ...]``. Epochs are a prefix of a longer run, so one run of
        ``n_iter`` epochs yields the models of every shorter ``n_iter`` exactly.
      masked: compile the row-masked step (needed for a short last batch or
        ``n_rows``); ``None``: only when ``batch_size`` does not divide ``n_samples``.

    Returns:
      ``fit_fn(key, X, learning_rate, n_rows=None)``.
    """
    check_positive_int(n_samples, "n_samples")
    check_positive_int(n_visible, "n_visible")
    check_positive_int(n_components, "n_components")
    check_positive_int(batch_size, "batch_size")
    check_positive_int(n_iter, "n_iter")
    layout = batch_layout(n_samples, batch_size)
    masked = layout.padded if masked is None else bool(masked)
    if snapshot_epochs is None:
        segments = (n_iter,)
    else:
        snaps = [int(e) for e in snapshot_epochs]
        if not snaps or sorted(set(snaps)) != snaps or snaps[0] < 1:
            raise ValueError(
                "snapshot_epochs: expected strictly increasing epoch counts >= 1, got "
                f"{tuple(snapshot_epochs)}"
            )
        if snaps[-1] > n_iter:
            raise ValueError(
                f"snapshot_epochs: expected epochs <= n_iter={n_iter}, got {snaps}"
            )
        segments = tuple(int(s) for s in np.diff([0, *snaps]))
    nb, bs = layout.n_batches, batch_size

    def fit_fn(
        key: PRNGKey,
        X: jax.Array,
        learning_rate: jax.Array | float,
        n_rows: jax.Array | int | None = None,
    ) -> RBMParams:
        dtype = jnp.float32
        X = jnp.asarray(X, dtype)
        if X.shape != (n_samples, n_visible):
            raise ValueError(
                f"X: expected shape {(n_samples, n_visible)} (the size make_fit was "
                f"built for), got {X.shape}"
            )
        init_key, train_key = jax.random.split(key)
        params = init(init_key, n_visible, n_components, dtype)
        chains = init_chains(bs, n_components, dtype)
        batches = jnp.pad(X, ((0, nb * bs - n_samples), (0, 0)))
        batches = batches.reshape(nb, bs, n_visible)
        lr = jnp.asarray(learning_rate, dtype)
        if masked:
            rows = n_samples if n_rows is None else n_rows
            masks = jnp.arange(nb * bs).reshape(nb, bs) < rows
            real_batches = (rows + bs - 1) // bs  # step keys count these only
        else:
            if n_rows is not None:
                raise ValueError("n_rows: needs make_fit(..., masked=True)")
            masks, real_batches = None, nb

        def batch_step(carry, inputs):
            params, chains = carry
            v_pos, mask, seed = inputs
            u_visible, u_hidden = _split_uniforms(
                seed, bs, n_visible, n_components, dtype
            )
            carry = pcd_update(params, chains, v_pos, u_visible, u_hidden, lr, mask)
            return carry, None

        def epoch_step(carry, epoch):
            steps = epoch * real_batches + jnp.arange(nb)
            seeds = jax.vmap(lambda t: step_seed(jax.random.fold_in(train_key, t)))(
                steps
            )
            carry, _ = jax.lax.scan(batch_step, carry, (batches, masks, seeds))
            return carry, None

        carry, start, snapshots = (params, chains), 0, []
        for length in segments:
            epochs = jnp.arange(start, start + length)
            carry, _ = jax.lax.scan(epoch_step, carry, epochs)
            start += length
            snapshots.append(carry[0])
        if snapshot_epochs is None:
            return carry[0]
        return jax.tree.map(lambda *a: jnp.stack(a), *snapshots)

    return fit_fn


def fit(
    key: PRNGKey,
    X: jax.Array | np.ndarray,
    *,
    n_components: int = 256,
    learning_rate: float = 0.1,
    batch_size: int = 10,
    n_iter: int = 10,
) -> RBMParams:
    """Fits a Bernoulli RBM to ``X`` (scikit-learn's ``BernoulliRBM.fit``).

    Defaults are scikit-learn's. Compiled once per data shape and static
    hyperparameters (``learning_rate`` is traced).

    Args:
      key: PRNG key (initial weights and every Gibbs draw).
      X: ``[N, n_visible]`` values in ``[0, 1]`` (e.g. images / 255, flattened).
      n_components: hidden units.
      learning_rate: step size.
      batch_size: rows per minibatch and number of persistent chains.
      n_iter: epochs.

    Returns:
      The fitted :class:`RBMParams`.

    Raises:
      ValueError: bad ``X`` or hyperparameters (checked before any work).
    """
    check_hyperparameters(
        n_components=n_components,
        learning_rate=learning_rate,
        batch_size=batch_size,
        n_iter=n_iter,
    )
    X = check_visible(X, "X")
    fit_fn = _jitted_fit(
        X.shape[0], X.shape[1], int(n_components), int(batch_size), int(n_iter)
    )
    return fit_fn(key, X, jnp.float32(learning_rate))


@functools.lru_cache(maxsize=32)
def _jitted_fit(n, d, n_components, batch_size, n_iter):
    return jax.jit(
        make_fit(n, d, n_components=n_components, batch_size=batch_size, n_iter=n_iter)
    )


# --------------------------------------------------------------------------- checks


def check_positive_int(value, name: str) -> int:
    """``value`` as an int, or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer (>= 1), got {value!r}")
    return int(value)


def check_positive_float(value, name: str) -> float:
    """``value`` as a float, or ValueError naming ``name``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return float(value)


def check_hyperparameters(
    *, n_components=None, learning_rate=None, batch_size=None, n_iter=None
) -> None:
    """Checks the given RBM hyperparameters (``None``: not checked).

    Raises:
      ValueError: naming the argument and the accepted values.
    """
    if n_components is not None:
        check_positive_int(n_components, "n_components")
    if learning_rate is not None:
        check_positive_float(learning_rate, "learning_rate")
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size")
    if n_iter is not None:
        check_positive_int(n_iter, "n_iter")


def check_visible(X, name: str = "X") -> jax.Array:
    """Checks a visible-unit matrix and returns it as float32.

    Accepts ``[N, n_visible]`` real values in ``[0, 1]`` (images must be scaled, e.g.
    ``uint8 / 255``, and flattened). Value checks are skipped for traced arrays.

    Raises:
      ValueError: naming ``name``: wrong ndim, no rows or columns, non-real dtype,
        non-finite values or values outside ``[0, 1]``.
    """
    if isinstance(X, jax.core.Tracer):
        if X.ndim != 2:
            raise ValueError(
                f"{name}: expected a 2-D array [n_samples, n_features], got shape "
                f"{X.shape}"
            )
        return X.astype(jnp.float32)
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise ValueError(
            f"{name}: expected a 2-D array [n_samples, n_features] (flatten images: "
            f"X.reshape(len(X), -1)), got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"{name}: expected at least one row and column, got {arr.shape}"
        )
    if not (
        np.issubdtype(arr.dtype, np.floating)
        or np.issubdtype(arr.dtype, np.integer)
        or arr.dtype == np.bool_
    ):
        raise ValueError(
            f"{name}: expected real values in [0, 1], got dtype {arr.dtype}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values in [0, 1], got NaN or inf")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        hint = " (divide uint8 images by 255)" if hi > 1.0 else ""
        raise ValueError(
            f"{name}: expected values in [0, 1], got range [{lo:.4g}, {hi:.4g}]{hint}"
        )
    return jnp.asarray(arr, jnp.float32)
