"""The distinct positions of a pixel change (Floyd's algorithm, loop-free): the same
positions as the sequential algorithm, bit for bit, for the same key (an independent
plain-Python reference on the same draws), on both sides of the comparison / sort
crossover and with long chains of repeated draws; distinct, inside the region, and
uniform over all subsets. The CPU runs Floyd's sequential loop (faster there) and
other backends the loop-free form: both are checked against the reference."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from pixjax.perturb import PixelConfig, params_at, pixel_change
from pixjax.perturb import pixels as pixels_mod

SORT_FROM = pixels_mod._SORT_FROM
PICKS = pixels_mod._picks  # the backend dispatch, before the fixture replaces it


@pytest.fixture(autouse=True)
def loop_free(monkeypatch):
    """Every test here draws through the loop-free form (what a GPU or TPU runs)."""
    monkeypatch.setattr(pixels_mod, "_picks", pixels_mod._floyd_picks)


@pytest.mark.parametrize("n, base", [(1, 0), (8, 3), (64, 0), (64, 720), (300, 484)])
def test_cpu_loop_and_loop_free_pick_the_same(n, base):
    draws = jax.random.uniform(jax.random.key(n + base), (50, n))
    bases = jnp.full((50,), base, jnp.int32)
    loop = jax.jit(jax.vmap(pixels_mod._floyd_loop))(draws, bases)
    free = jax.jit(jax.vmap(pixels_mod._floyd_picks))(draws, bases)
    on_cpu = jax.jit(jax.vmap(PICKS))(draws, bases)
    np.testing.assert_array_equal(loop, free)
    np.testing.assert_array_equal(on_cpu, loop)
    for row, d in zip(np.asarray(loop), np.asarray(draws), strict=True):
        np.testing.assert_array_equal(row, floyd_reference(d, base)[0])


def floyd_reference(draws, base):
    """Sequential Floyd (Bentley & Floyd 1987) in plain Python on float32 ``draws``.

    Returns ``(picks, chain)``: the pick of every step, and per step the length of
    the chain of repeats behind it (0: no repeat; 1: ``t_j`` equals an earlier
    ``t_i``; ``1 + chain[p]``: ``t_j`` is the top value of an earlier repeated step
    ``p``)."""
    picks, chain, where, drawn = [], [], {}, set()
    for j, d in enumerate(np.asarray(draws, np.float32)):
        top = int(base) + j
        t = min(int(np.floor(np.float32(d) * np.float32(top + 1))), top)
        if t in where:  # picked before: take the top value
            chain.append(1 if t in drawn else 1 + chain[where[t]])
            pick = top
        else:
            chain.append(0)
            pick = t
        assert pick not in where
        where[pick] = j
        drawn.add(t)
        picks.append(pick)
    return picks, chain


def reference_index(draws, num, region, shape, per_channel):
    """The ``index`` that ``sample`` must return, from the sequential reference."""
    h, w, c = shape
    rh, rw = region
    per_pixel = c if per_channel else 1
    units = h * w * per_pixel
    picks, chain = floyd_reference(draws, rh * rw * per_pixel - num)
    out = []
    for j, r in enumerate(picks):
        if j >= num:
            out.append(units)
            continue
        pix, ch = (r // c, r % c) if per_channel else (r, 0)
        y = (h - rh) // 2 + pix // rw
        x = (w - rw) // 2 + pix % rw
        out.append((y * w + x) * per_pixel + ch)
    return out, chain[:num]


def sampled(shape, max_num, cfg, keys, per_channel=False):
    """``(index [K, max_num], draws [K, max_num])`` of ``sample`` for every key."""
    change = pixel_change(shape, max_num, per_channel=per_channel)
    params = params_at(change.make_params([cfg]), 0)
    image = jnp.zeros(shape, jnp.float32)

    def one(key):
        pos_key, _ = jax.random.split(key)  # as sample does
        draws = jax.random.uniform(pos_key, (max_num,))
        return change.sample(key, image, params).index, draws

    index, draws = jax.jit(jax.vmap(one))(keys)
    return np.asarray(index), np.asarray(draws)


def keys_for(n, seed=0):
    return jax.random.split(jax.random.key(seed), n)


# (shape, max_num, num, region or None, per_channel, number of keys)
CASES = [
    ((28, 28, 1), 1, 1, None, False, 64),
    ((28, 28, 1), 8, 5, None, False, 64),
    ((28, 28, 1), 64, 64, None, False, 64),
    ((28, 28, 1), 64, 20, (10, 7), False, 64),
    ((12, 10, 3), 9, 9, (3, 3), False, 64),  # num == region units: every pixel
    ((12, 10, 3), 27, 27, (3, 3), True, 64),  # ... every pixel-channel entry
    ((12, 10, 3), 30, 27, (3, 3), True, 64),  # max_num > num == region units
    ((5, 7, 4), 140, 140, None, True, 32),  # the whole image, per channel
    ((28, 28, 1), SORT_FROM - 1, SORT_FROM - 1, None, False, 16),  # comparisons
    ((28, 28, 1), SORT_FROM, SORT_FROM, None, False, 16),  # sort
    ((28, 28, 1), 784, 784, None, False, 8),  # sort, every pixel
    ((28, 28, 1), 784, 300, (20, 20), False, 8),  # sort, region, num < max_num
    ((16, 16, 3), 300, 300, (10, 10), True, 8),  # sort, every entry of a region
    ((224, 224, 3), 150528, 150528, None, True, 1),  # every entry of an ImageNet image
]


@pytest.mark.parametrize("shape, max_num, num, region, per_channel, n_keys", CASES)
def test_same_positions_as_sequential_floyd(
    shape, max_num, num, region, per_channel, n_keys
):
    cfg = PixelConfig(num, region=region)
    index, draws = sampled(shape, max_num, cfg, keys_for(n_keys), per_channel)
    rh, rw = cfg.region_hw(shape)
    units = shape[0] * shape[1] * (shape[2] if per_channel else 1)
    region_units = rh * rw * (shape[2] if per_channel else 1)
    for k in range(n_keys):
        expected, _ = reference_index(draws[k], num, (rh, rw), shape, per_channel)
        assert index[k].tolist() == expected, f"key {k}"
    if num == region_units:  # every position of the region, each once
        h, w, c = shape
        per_pixel = c if per_channel else 1
        top, left = (h - rh) // 2, (w - rw) // 2
        full = sorted(
            ((y * w + x) * per_pixel + ch)
            for y in range(top, top + rh)
            for x in range(left, left + rw)
            for ch in range(per_pixel)
        )
        for k in range(n_keys):
            assert sorted(index[k, :num].tolist()) == full
            assert (index[k, num:] == units).all()


@pytest.mark.parametrize("sort_from", [10**9, 0], ids=["compare", "sort"])
@pytest.mark.parametrize("units", [5, 18, 40])
def test_chained_repeats_both_paths(monkeypatch, sort_from, units):
    """num == every unit of a tiny image: repeats chain through earlier repeats, and
    both ways of finding repeated draws (forced at trace time) follow them."""
    monkeypatch.setattr(pixels_mod, "_SORT_FROM", sort_from)
    shape = (1, units, 1)
    n_keys = 400
    index, draws = sampled(shape, units, PixelConfig(units), keys_for(n_keys, units))
    longest = 0
    for k in range(n_keys):
        expected, chain = reference_index(draws[k], units, (1, units), shape, False)
        assert index[k].tolist() == expected, f"key {k}"
        longest = max(longest, max(chain))
    assert longest >= 3, f"no chain of 3 or more repeats (longest {longest})"


def test_picks_match_reference_on_adversarial_draws(monkeypatch):
    """Hand-made draws: every step draws the previous step's top value (the longest
    possible chain), always 0, or always its top; both paths agree with the
    reference."""
    n = 40
    base = 0
    for pattern in ("prev_top", "zero", "top"):
        if pattern == "prev_top":  # t_j = j - 1: step j hits top_{j-1}
            t = np.maximum(np.arange(n) - 1, 0)
        elif pattern == "zero":
            t = np.zeros(n, int)
        else:
            t = np.arange(n)
        # a draw in the middle of t's interval [t / (top + 1), (t + 1) / (top + 1))
        draws = ((t + 0.5) / (np.arange(n) + base + 1)).astype(np.float32)
        picks, chain = floyd_reference(draws, base)
        assert sorted(picks) == list(range(n))
        if pattern == "prev_top":  # step j repeats through steps j - 1, ..., 1
            assert max(chain) == n - 1
        for sort_from in (10**9, 0):
            monkeypatch.setattr(pixels_mod, "_SORT_FROM", sort_from)
            got = jax.jit(pixels_mod._floyd_picks)(jnp.asarray(draws), jnp.int32(base))
            assert np.asarray(got).tolist() == picks, (pattern, sort_from)


@pytest.mark.parametrize("per_channel", [False, True])
def test_distinct_and_inside_region(per_channel):
    shape, region, num, max_num = (17, 23, 3), (9, 6), 40, 50
    index, _ = sampled(
        shape, max_num, PixelConfig(num, region=region), keys_for(256, 3), per_channel
    )
    h, w, c = shape
    per_pixel = c if per_channel else 1
    units = h * w * per_pixel
    pix = index[:, :num] // per_pixel
    y, x = pix // w, pix % w
    top, left = (h - region[0]) // 2, (w - region[1]) // 2
    assert ((y >= top) & (y < top + region[0])).all()
    assert ((x >= left) & (x < left + region[1])).all()
    assert (index[:, num:] == units).all()
    for row in index[:, :num]:
        assert len(set(row.tolist())) == num


@pytest.mark.parametrize(
    "sort_from, max_num",
    [(10**9, 3), (10**9, 5), (0, 3)],
    ids=["compare", "masked", "sort"],
)
def test_uniform_over_all_subsets(monkeypatch, sort_from, max_num):
    """Every 3-subset of 6 positions is equally likely (chi-square over all 20)."""
    monkeypatch.setattr(pixels_mod, "_SORT_FROM", sort_from)
    n, k, n_keys = 6, 3, 20000
    index, _ = sampled((2, 3, 1), max_num, PixelConfig(k), keys_for(n_keys, 11))
    subsets = {s: i for i, s in enumerate(itertools.combinations(range(n), k))}
    counts = np.zeros(len(subsets))
    for row in np.sort(index[:, :k], axis=1):
        counts[subsets[tuple(row.tolist())]] += 1
    assert counts.sum() == n_keys
    assert stats.chisquare(counts).pvalue > 1e-3
