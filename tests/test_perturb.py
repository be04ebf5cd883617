"""Pixel changes: exactly Num pixels, inside the region, within +-R, determinism,
vmap == loop, no recompilation, every image size and channel count, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixjax.perturb import PixelConfig, change_pixels, pixel_change, stack_configs
from pixjax.perturb.shifts import shift

# 0.5 + 1/1020 is not a whole pixel level, so every redrawn value differs from it.
OFF_GRID = 0.5 + 1.0 / 1020.0


def _changed(before, after):
    """Per-pixel and per-entry change masks of [N, H, W, C] arrays."""
    d = np.asarray(before) != np.asarray(after)
    return d.any(-1), d


def _region(shape):
    h, w, _ = shape
    return max(1, h - 2 - h // 3), max(1, w - w // 2)  # off-centre parity on purpose


CASES = [
    (shape, per_channel, num)
    for shape in [(28, 28, 1), (32, 32, 3), (17, 23, 3), (5, 7, 4)]
    for per_channel in (False, True)
    for num in (1, 7, 20)
    if num <= _region(shape)[0] * _region(shape)[1] * (shape[2] if per_channel else 1)
] + [((224, 224, 3), False, 64), ((224, 224, 3), True, 64)]


@pytest.mark.parametrize("shape, per_channel, num", CASES)
def test_exactly_num_change_inside_region(shape, per_channel, num):
    h, w, c = shape
    region = _region(shape)
    x = jnp.full((6, *shape), OFF_GRID, jnp.float32)
    cfg = PixelConfig(num, region=region)
    y = change_pixels(jax.random.key(1), x, cfg, per_channel=per_channel)
    pix, entries = _changed(x, y)
    if per_channel:
        assert (entries.reshape(6, -1).sum(1) == num).all()
    else:
        assert (pix.reshape(6, -1).sum(1) == num).all()
        # every channel of a changed pixel is redrawn
        assert (entries.sum(-1)[pix] == c).all()
    top, left = (h - region[0]) // 2, (w - region[1]) // 2
    inside = np.zeros((h, w), bool)
    inside[top : top + region[0], left : left + region[1]] = True
    assert not pix[:, ~inside].any()
    assert ((np.asarray(y) >= 0) & (np.asarray(y) <= 1)).all()


@pytest.mark.parametrize("magnitude", [1, 10, 127])
def test_relative_changes_stay_within_r(magnitude):
    x = jax.random.uniform(jax.random.key(3), (16, 28, 28, 3))
    x = jnp.round(x * 255) / 255
    cfg = PixelConfig(50, magnitude=magnitude, relative=True)
    y = change_pixels(jax.random.key(4), x, cfg)
    delta = np.abs(np.asarray(y) - np.asarray(x)) * 255
    assert delta.max() <= magnitude + 1e-3
    # quantised to whole pixel levels
    levels = np.asarray(y) * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)


def test_absolute_values_within_zero_to_r():
    x = jnp.full((8, 28, 28, 1), OFF_GRID)
    y = change_pixels(jax.random.key(5), x, PixelConfig(30, magnitude=40))
    pix, _ = _changed(x, y)
    new = np.asarray(y)[..., 0][pix] * 255
    assert new.min() >= 0 and new.max() <= 40 + 1e-4
    assert len(np.unique(np.round(new))) > 20  # actually random over 0..40


def test_relative_clips_to_valid_range():
    x = jnp.ones((4, 10, 10, 1))
    y = change_pixels(
        jax.random.key(0), x, PixelConfig(100, magnitude=127, relative=True)
    )
    assert float(y.max()) <= 1.0 and float(y.min()) >= 1.0 - 127 / 255 - 1e-6


def test_positions_uniform_over_region():
    # Each pixel of a 4x4 region is hit ~num/16 of the time.
    x = jnp.full((4000, 8, 8, 1), OFF_GRID)
    y = change_pixels(jax.random.key(7), x, PixelConfig(3, region=4))
    pix, _ = _changed(x, y)
    freq = pix.mean(0)[2:6, 2:6]
    np.testing.assert_allclose(freq, 3 / 16, atol=0.03)


def test_same_key_same_images_different_key_different():
    x = jnp.full((4, 28, 28, 1), OFF_GRID)
    cfg = PixelConfig(10)
    a = change_pixels(jax.random.key(0), x, cfg)
    b = change_pixels(jax.random.key(0), x, cfg)
    c = change_pixels(jax.random.key(1), x, cfg)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # different images in a batch get different positions
    assert not np.array_equal(a[0], a[1])


def test_vmap_over_configs_equals_loop():
    shape = (28, 28, 1)
    configs = [
        PixelConfig(1),
        PixelConfig(8, magnitude=40, relative=True),
        PixelConfig(16, region=12),
        PixelConfig(64),
    ]
    change = pixel_change(shape, 64)
    params = stack_configs(configs, shape)
    x = jax.random.uniform(jax.random.key(2), shape)
    keys = jax.random.split(jax.random.key(9), len(configs))
    one = jax.jit(lambda p, k: change.apply(change.sample(k, x, p), x))
    batched = jax.jit(jax.vmap(one))(params, keys)
    for i in range(len(configs)):
        p = jax.tree_util.tree_map(lambda a, i=i: a[i], params)
        single = one(p, keys[i])
        # same positions exactly; values equal up to float rounding of k / 255
        np.testing.assert_array_equal(batched[i] != x, single != x)
        np.testing.assert_allclose(batched[i], single, atol=1e-6)
        # a change built for exactly this num gives the same image
        own = pixel_change(shape, configs[i].num)
        np.testing.assert_allclose(
            own.apply(own.sample(keys[i], x, p), x), single, atol=1e-6
        )


def test_vmap_over_images_equals_loop():
    change = pixel_change((12, 12, 3), 5)
    p = jax.tree_util.tree_map(
        lambda a: a[0], stack_configs([PixelConfig(5)], (12, 12, 3))
    )
    xs = jax.random.uniform(jax.random.key(0), (5, 12, 12, 3))
    keys = jax.random.split(jax.random.key(1), 5)
    fn = jax.jit(lambda k, x: change.apply(change.sample(k, x, p), x))
    batched = jax.jit(jax.vmap(fn))(keys, xs)
    for i in range(5):
        np.testing.assert_allclose(batched[i], fn(keys[i], xs[i]), atol=1e-6)


def test_no_recompilation_across_configs():
    shape = (28, 28, 1)
    change = pixel_change(shape, 64)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(key, x, params):
        return change.apply(change.sample(key, x, params), x)

    x = jnp.zeros(shape)
    for cfg in [PixelConfig(1), PixelConfig(64, 10, True), PixelConfig(4, region=6)]:
        p = jax.tree_util.tree_map(lambda a: a[0], stack_configs([cfg], shape))
        run(jax.random.key(0), x, p).block_until_ready()


@pytest.mark.parametrize(
    "cfg, match",
    [
        (PixelConfig(0), "num: expected 1..784"),
        (PixelConfig(785), "num: expected 1..784"),
        (PixelConfig(17, region=4), "num: expected 1..16"),
        (PixelConfig(2, magnitude=0), r"magnitude: expected a value in \(0, 255\]"),
        (PixelConfig(2, magnitude=256), r"magnitude: expected a value in \(0, 255\]"),
        (PixelConfig(2, region=29), "region: expected a centred region"),
        (PixelConfig(2, region=(28, 0)), "region: expected a centred region"),
        (PixelConfig(1.5), "num: expected a positive integer"),
    ],
)
def test_bad_configs_raise_clear_errors(cfg, match):
    with pytest.raises(ValueError, match=match):
        stack_configs([cfg], (28, 28, 1))


def test_empty_grid_and_bad_max_num():
    with pytest.raises(ValueError, match="configs: expected at least one"):
        stack_configs([], (28, 28, 1))
    with pytest.raises(ValueError, match="max_num: expected 1..784"):
        pixel_change((28, 28, 1), 0)
    with pytest.raises(ValueError, match="image_shape"):
        pixel_change((28, 28), 3)


def test_shift_zero_fill():
    x = jnp.arange(16.0).reshape(4, 4, 1)
    down = shift(x, 1, 0)
    np.testing.assert_array_equal(down[0], 0)
    np.testing.assert_array_equal(down[1:], x[:-1])
    left = shift(x, 0, -1)
    np.testing.assert_array_equal(left[:, -1], 0)
    np.testing.assert_array_equal(left[:, :-1], x[:, 1:])
    # traced shifts vmap
    out = jax.vmap(lambda d: shift(x, d, d))(jnp.array([0, 1, -1]))
    np.testing.assert_array_equal(out[0], x)


def test_change_pixels_rejects_bad_images():
    cfg = PixelConfig(2)
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="images: expected values in \\[0, 1\\]"):
        change_pixels(k, jnp.full((1, 8, 8, 1), 2.0), cfg)
    with pytest.raises(ValueError, match="images: expected float values"):
        change_pixels(k, jnp.zeros((1, 8, 8, 1), jnp.uint8), cfg)
    with pytest.raises(ValueError, match=r"images: expected shape \[N, H, W, C\]"):
        change_pixels(k, jnp.zeros((8, 8, 1)), cfg)
