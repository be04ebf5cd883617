"""Variation operators of the direct encoding against Deb's formulas written out here
in float64 (Deb 2001, pp. 113 and 124; sferes2 evo_float.hpp) and their statistics."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixjax.search import (
    polynomial_delta,
    polynomial_mutation,
    sbx_children,
    sbx_crossover,
)


def _deb_delta(u, eta):
    u = np.float64(u)
    if u < 0.5:
        return (2 * u) ** (1 / (eta + 1)) - 1
    return 1 - (2 * (1 - u)) ** (1 / (eta + 1))


def _deb_sbx(u, y1, y2, eta):
    """Deb's bounded SBX on [0, 1], float64, for y1 < y2."""
    out = []
    for beta in (1 + 2 * (y1 - 0) / (y2 - y1), 1 + 2 * (1 - y2) / (y2 - y1)):
        alpha = 2 - beta ** (-(eta + 1))
        if u <= 1 / alpha:
            out.append((u * alpha) ** (1 / (eta + 1)))
        else:
            out.append((1 / (2 - u * alpha)) ** (1 / (eta + 1)))
    c1 = 0.5 * ((y1 + y2) - out[0] * (y2 - y1))
    c2 = 0.5 * ((y1 + y2) + out[1] * (y2 - y1))
    return min(max(c1, 0.0), 1.0), min(max(c2, 0.0), 1.0)


@pytest.mark.parametrize("eta", [1.0, 15.0])
def test_polynomial_delta_is_debs(eta):
    us = np.array([0.0, 0.01, 0.25, 0.4999, 0.5, 0.75, 0.99, 0.999999], np.float32)
    got = np.asarray(polynomial_delta(jnp.asarray(us), eta))
    want = np.array([_deb_delta(u, eta) for u in us])
    np.testing.assert_allclose(got, want, atol=2e-6)
    assert np.all(np.abs(got) <= 1.0)


@pytest.mark.parametrize("eta", [2.0, 2.5, 10.0])  # whole eta + 1: integer powers
def test_sbx_children_are_debs(eta):
    rng = np.random.default_rng(0)
    for _ in range(200):
        y = np.sort(rng.uniform(0, 1, 2)).astype(np.float32)
        if y[1] - y[0] < 1e-3:
            continue
        u = np.float32(rng.uniform())
        lo, hi = sbx_children(jnp.float32(u), jnp.float32(y[0]), jnp.float32(y[1]), eta)
        want = _deb_sbx(np.float64(u), np.float64(y[0]), np.float64(y[1]), eta)
        np.testing.assert_allclose([float(lo), float(hi)], want, atol=5e-5)
    # the hard corners, batched: u near 0, at 0.5 and near 1 (where 2 - u alpha
    # would cancel), parents at the bounds, gaps down to 1e-6
    us = np.float32([0.0, 2.0**-23, 0.25, 0.5, 0.9, 0.999, 1 - 2.0**-20, 1 - 2.0**-23])
    pairs = [(0.016, 0.368), (0.0, 1.0), (0.0, 0.3), (0.7, 1.0), (0.45, 0.4500011)]
    pairs += [(0.2, 0.2 + g) for g in (1e-3, 1e-4, 1e-5, 1e-6)]
    U, Y = np.meshgrid(us, np.arange(len(pairs)), indexing="ij")
    y = np.float32(pairs)[Y.ravel()]
    lo, hi = sbx_children(jnp.asarray(U.ravel()), y[:, 0], y[:, 1], eta)
    for i, (u, (y1, y2)) in enumerate(zip(U.ravel(), y, strict=True)):
        want = _deb_sbx(np.float64(u), np.float64(y1), np.float64(y2), eta)
        np.testing.assert_allclose([lo[i], hi[i]], want, rtol=0, atol=1e-6)
    # equal parents: both children keep the value (sferes2 would leave them unset)
    lo, hi = sbx_children(jnp.float32(0.3), jnp.float32(0.7), jnp.float32(0.7), eta)
    assert float(lo) == float(hi) == pytest.approx(0.7)


def test_mutation_rate_range_and_determinism():
    key = jax.random.key(0)
    genomes = jax.random.uniform(jax.random.key(1), (200, 784))
    keys = jax.random.split(key, 200)

    @chex.assert_max_traces(n=1)
    def mutate(k, g):
        return polynomial_mutation(k, g, rate=0.1, eta=15.0)

    batched = jax.jit(jax.vmap(mutate))
    out = batched(keys, genomes)
    again = batched(keys, genomes)
    np.testing.assert_array_equal(out, again)
    assert out.shape == genomes.shape and out.dtype == genomes.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    changed = np.asarray(out != genomes).mean()
    assert 0.095 < changed < 0.105  # 156,800 genes at rate 0.1: sd 0.00076
    # vmap equals a loop of jitted calls over genomes (op by op, outside jit, a few
    # genes in a row may round a few ulp differently)
    one = jax.jit(lambda k, g: polynomial_mutation(k, g, rate=0.1, eta=15.0))
    for i in (0, 7):
        np.testing.assert_array_equal(out[i], one(keys[i], genomes[i]))
    # steps are of order 1/eta: the mean |delta| of polynomial mutation is 1/(eta+2)
    # before clipping; test on genes in the middle where no clipping happens
    mid = jnp.full((100_000,), 0.5)
    step = polynomial_mutation(jax.random.key(3), mid, rate=1.0, eta=15.0) - 0.5
    assert float(jnp.mean(jnp.abs(step))) == pytest.approx(1 / 17, rel=0.02)
    none = polynomial_mutation(key, genomes[0], rate=0.0, eta=15.0)
    np.testing.assert_array_equal(none, genomes[0])


def test_crossover_probability_and_children():
    a = jax.random.uniform(jax.random.key(1), (2000, 64))
    b = jax.random.uniform(jax.random.key(2), (2000, 64))
    keys = jax.random.split(jax.random.key(0), 2000)
    cross = jax.jit(
        jax.vmap(lambda k, x, y: sbx_crossover(k, x, y, eta=10.0, probability=0.5))
    )
    ca, cb = cross(keys, a, b)
    assert (
        float(jnp.min(jnp.minimum(ca, cb))) >= 0
        and float(jnp.max(jnp.maximum(ca, cb))) <= 1
    )
    copied = np.asarray(
        jnp.all(((ca == a) & (cb == b)) | ((ca == b) & (cb == a)), axis=1)
    )
    assert 0.46 < copied.mean() < 0.54  # half the pairs are copies (probability 0.5)
    # crossed pairs: per gene the two children straddle the parents' midpoint as SBX
    # does (sum preserved away from the bounds)
    crossed = ~copied
    mid_a, mid_b = np.asarray(a[crossed]), np.asarray(b[crossed])
    inner = (np.minimum(mid_a, mid_b) > 0.3) & (np.maximum(mid_a, mid_b) < 0.7)
    s_child = np.asarray(ca[crossed] + cb[crossed])[inner]
    s_parent = (mid_a + mid_b)[inner]
    assert np.median(np.abs(s_child - s_parent)) < 0.01
    never = jax.vmap(lambda k, x, y: sbx_crossover(k, x, y, eta=10.0, probability=0.0))
    na, nb = never(keys[:50], a[:50], b[:50])
    assert bool(
        jnp.all(((na == a[:50]) & (nb == b[:50])) | ((na == b[:50]) & (nb == a[:50])))
    )
