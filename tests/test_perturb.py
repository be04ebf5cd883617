"""Perturbations: contract checks over the registry (shapes, range, determinism,
vmap == loop, no recompilation, host-side validation), then pixel changes (exactly Num
pixels, inside the region, within +-R, draws bit-identical to the reference, every
image size and channel count, bad input), shifts and Gaussian noise."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixjax.perturb import (
    NUDGES,
    PERTURBATIONS,
    NoiseParams,
    PixelConfig,
    ShiftParams,
    change_pixels,
    get_perturbation,
    nudge,
    nudge_configs,
    params_at,
    pixel_change,
    stack_configs,
)
from pixjax.perturb.shifts import shift

# ------------------------------------------------------------ registry contract

SHAPE = (12, 10, 3)

# name -> (static settings, configurations; the first one is random)
REGISTRY_CASES = {
    "pixel_change": (
        {"max_num": 9},
        [
            PixelConfig(9),
            PixelConfig(4, magnitude=40, relative=True),
            {"num": 3, "region": [6, 4]},
        ],
    ),
    "shift": ({}, [{"max_shift": 3}, {"dy": -1}, {"dx": 2, "max_shift": 1}]),
    "gaussian_noise": ({}, [{"sigma": 0.2}, {"sigma": 0.0}, {"sigma": 1.0}]),
    "gaussian_noise/quantize": (
        {"quantize": True},
        [{"sigma": 0.1}, {"sigma": 0.02}, {"sigma": 0.5}],
    ),
}


def _build(case):
    static, configs = REGISTRY_CASES[case]
    pert = get_perturbation(case.split("/")[0], SHAPE, **static)
    return pert, pert.make_params(configs)


def _image(seed=0):
    return jax.random.uniform(jax.random.key(seed), SHAPE, jnp.float32)


def test_registry_cases_cover_every_perturbation():
    assert {c.split("/")[0] for c in REGISTRY_CASES} == set(PERTURBATIONS)


@pytest.mark.parametrize("case", list(REGISTRY_CASES))
def test_contract_shapes_dtype_range(case):
    pert, params = _build(case)
    assert pert.name == case.split("/")[0] and pert.image_shape == SHAPE
    x = _image()
    sample, apply = jax.jit(pert.sample), jax.jit(pert.apply)
    draws = []
    for k in range(len(REGISTRY_CASES[case][1])):
        p = params_at(params, k)
        draw = sample(jax.random.key(k), x, p)
        draws.append(jax.tree_util.tree_map(jnp.shape, draw))
        y = apply(draw, x)
        assert y.shape == SHAPE and y.dtype == jnp.float32
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    # every configuration draws the same shapes (one compiled function serves a grid)
    assert all(d == draws[0] for d in draws)


@pytest.mark.parametrize("case", list(REGISTRY_CASES))
def test_contract_same_key_same_output_different_key_different(case):
    pert, params = _build(case)
    x, p = _image(), params_at(params, 0)
    fn = jax.jit(lambda k: pert.apply(pert.sample(k, x, p), x))
    a, b = fn(jax.random.key(5)), fn(jax.random.key(5))
    np.testing.assert_array_equal(a, b)
    outs = {np.asarray(fn(jax.random.key(s))).tobytes() for s in range(6)}
    assert len(outs) > 1  # the first configuration is random


@pytest.mark.parametrize("case", list(REGISTRY_CASES))
def test_contract_vmap_equals_loop(case):
    pert, params = _build(case)
    k = len(REGISTRY_CASES[case][1])
    xs = jax.vmap(_image)(jnp.arange(k))
    keys = jax.random.split(jax.random.key(9), k)
    one = lambda key, x, p: pert.apply(pert.sample(key, x, p), x)
    batched = jax.jit(jax.vmap(one))(keys, xs, params)
    for i in range(k):
        single = jax.jit(one)(keys[i], xs[i], params_at(params, i))
        np.testing.assert_allclose(batched[i], single, atol=1e-6)


@pytest.mark.parametrize("case", list(REGISTRY_CASES))
def test_contract_no_recompilation_on_second_call(case):
    pert, params = _build(case)
    chex.clear_trace_counter()  # the counter is keyed by the function's code

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(key, x, p):
        return pert.apply(pert.sample(key, x, p), x)

    for k in range(len(REGISTRY_CASES[case][1])):
        run(jax.random.key(k), _image(k), params_at(params, k)).block_until_ready()


@pytest.mark.parametrize("case", list(REGISTRY_CASES))
def test_contract_host_validation(case):
    pert, params = _build(case)
    pert.check_params(params)  # what make_params built passes
    with pytest.raises(ValueError, match="configs: expected at least one"):
        pert.make_params([])
    with pytest.raises(ValueError, match="unknown field"):
        pert.make_params([{"bogus": 1}])
    with pytest.raises(ValueError, match="params: expected a stacked"):
        pert.check_params(
            NoiseParams(jnp.zeros(2))
            if "noise" not in case
            else ShiftParams(*(jnp.zeros(2, jnp.int32),) * 3)
        )
    with pytest.raises(ValueError, match="params: expected stacked params"):
        pert.check_params(params_at(params, 0))


@pytest.mark.parametrize(
    "name, static, configs, match",
    [
        (
            "pixel_change",
            {"max_num": 4},
            [PixelConfig(5)],
            "num: expected at most max_num=4",
        ),
        (
            "pixel_change",
            {"max_num": 4},
            [{"num": 2, "magnitude": 300}],
            r"magnitude: expected a value in \(0, 255\]",
        ),
        (
            "pixel_change",
            {"max_num": 4},
            [{"magnitude": 3}],
            "missing required field 'num'",
        ),
        ("shift", {}, [{"dy": 12}], r"dy: expected \|dy\| \+ max_shift < 12"),
        (
            "shift",
            {},
            [{"dx": -7, "max_shift": 3}],
            r"dx: expected \|dx\| \+ max_shift < 10",
        ),
        ("shift", {}, [{"max_shift": -1}], "max_shift: expected integers >= 0"),
        ("shift", {}, [{"dy": 1.5}], "dy: expected an integer"),
        (
            "gaussian_noise",
            {},
            [{"sigma": -0.1}],
            r"sigma: expected a standard deviation in \[0, 1\]",
        ),
        (
            "gaussian_noise",
            {},
            [{"sigma": 2.0}],
            r"sigma: expected a standard deviation in \[0, 1\]",
        ),
        (
            "gaussian_noise",
            {},
            [{"sigma": float("nan")}],
            "sigma: expected a standard deviation",
        ),
        ("gaussian_noise", {}, [{}], r"missing required field\(s\) \['sigma'\]"),
        ("gaussian_noise", {}, [{"sigma": "0.1"}], "sigma: expected a number"),
    ],
)
def test_bad_params_raise_clear_errors(name, static, configs, match):
    pert = get_perturbation(name, SHAPE, **static)
    with pytest.raises(ValueError, match=match):
        pert.make_params(configs)


def test_check_params_catches_hand_built_params():
    change = pixel_change(SHAPE, 4)
    with pytest.raises(ValueError, match="num: expected at most max_num=4"):
        change.check_params(stack_configs([PixelConfig(6)], SHAPE))
    noise = get_perturbation("gaussian_noise", SHAPE)
    with pytest.raises(ValueError, match="sigma"):
        noise.check_params(NoiseParams(sigma=jnp.asarray([0.1, 1.5])))


def test_get_perturbation_errors_list_the_accepted_values():
    with pytest.raises(ValueError, match=r"unknown name 'jpeg'; expected one of \["):
        get_perturbation("jpeg", SHAPE)
    with pytest.raises(ValueError, match=r"accepted settings: \['max_num'"):
        get_perturbation("pixel_change", SHAPE, max_nm=3)
    with pytest.raises(
        ValueError, match=r"missing required setting\(s\) \['max_num'\]"
    ):
        get_perturbation("pixel_change", SHAPE)
    with pytest.raises(ValueError, match="image_shape: expected"):
        get_perturbation("shift", (12, 10))


# ------------------------------------------------------------------ pixel changes


def test_pixel_draws_bit_identical_to_reference():
    """Positions and values of today's draws (recorded from the pre-protocol code)."""
    shape = (6, 5, 3)
    x = (jnp.arange(90, dtype=jnp.float32).reshape(shape) * 2.0 + 10.0) / 255.0
    configs = [
        PixelConfig(3, magnitude=40, relative=True, region=(4, 3)),
        PixelConfig(5, magnitude=100),
    ]
    expected = {
        (False, 0): (
            [13, 11, 22, 30, 30],
            [[106, 113, 66], [57, 46, 56], [127, 112, 140], [0, 0, 0], [33, 7, 13]],
            3,
        ),
        (False, 1): (
            [13, 8, 25, 20, 18],
            [[73, 79, 18], [26, 11, 20], [32, 10, 43], [48, 34, 35], [91, 59, 66]],
            5,
        ),
        (True, 0): ([48, 34, 68, 90, 90], [[124], [101], [120], [0], [0]], 3),
        (True, 1): ([45, 27, 79, 62, 55], [[73], [79], [18], [26], [11]], 5),
    }
    for per_channel in (False, True):
        change = pixel_change(shape, 5, per_channel=per_channel)
        params = change.make_params(configs)
        sample = jax.jit(change.sample)
        for k in range(2):
            d = sample(jax.random.key(42), x, params_at(params, k))
            index, levels, num = expected[(per_channel, k)]
            assert np.asarray(d.index).tolist() == index
            assert np.round(np.asarray(d.values) * 255).astype(int).tolist() == levels
            assert np.asarray(d.mask).tolist() == [True] * num + [False] * (5 - num)


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


# ------------------------------------------------------------------ shifts, noise


def test_shift_perturbation_fixed_offsets_are_the_nudges():
    x = jax.random.uniform(jax.random.key(0), (3, 9, 8, 1))
    pert = get_perturbation("shift", (9, 8, 1))
    params = pert.make_params(nudge_configs(2))
    one = lambda key, img, p: pert.apply(pert.sample(key, img, p), img)
    per_nudge = jax.vmap(
        lambda p: jax.vmap(lambda img: one(jax.random.key(0), img, p))(x)
    )
    np.testing.assert_array_equal(per_nudge(params), nudge(x, 2))
    assert len(nudge_configs()) == len(NUDGES)


def test_shift_perturbation_random_part_within_max_shift():
    pert = get_perturbation("shift", (9, 8, 1))
    p = params_at(pert.make_params([{"dy": 1, "dx": -2, "max_shift": 2}]), 0)
    keys = jax.random.split(jax.random.key(3), 400)
    draws = np.asarray(
        jax.vmap(lambda k: pert.sample(k, jnp.zeros((9, 8, 1)), p))(keys)
    )
    assert draws[:, 0].min() == -1 and draws[:, 0].max() == 3
    assert draws[:, 1].min() == -4 and draws[:, 1].max() == 0
    # the apply step is the zero-fill shift
    x = jnp.arange(72.0).reshape(9, 8, 1) / 72
    np.testing.assert_array_equal(pert.apply(jnp.asarray([1, -2]), x), shift(x, 1, -2))


def test_gaussian_noise_sigma_clip_and_quantize():
    shape = (64, 64, 3)
    x = jnp.full(shape, 0.5, jnp.float32)
    plain = get_perturbation("gaussian_noise", shape)
    quant = get_perturbation("gaussian_noise", shape, quantize=True)
    params = plain.make_params([{"sigma": 0.05}, {"sigma": 0.0}, {"sigma": 1.0}])
    key = jax.random.key(1)
    p0, p1, p2 = (params_at(params, k) for k in range(3))
    y = plain.apply(plain.sample(key, x, p0), x)
    assert float(jnp.std(y - x)) == pytest.approx(0.05, rel=0.05)
    np.testing.assert_array_equal(plain.apply(plain.sample(key, x, p1), x), x)
    big = plain.apply(plain.sample(key, x, p2), x)
    assert float(big.min()) == 0.0 and float(big.max()) == 1.0  # clipped
    yq = quant.apply(quant.sample(key, x, p0), x)
    levels = np.asarray(yq) * 255
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    # quantisation rounds the unquantised result to the nearest level
    np.testing.assert_allclose(yq, np.round(np.asarray(y) * 255) / 255, atol=1e-6)
