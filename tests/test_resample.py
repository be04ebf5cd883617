"""The Pillow-exact JAX resize (pixjax.data.resample) against Pillow itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from pixjax.data import load_mnist_sample, resample

FILTERS = {m: getattr(Image.Resampling, m.upper()) for m in resample.METHODS}

# 59 (input (H, W), output (h, w)) pairs: up, down, 8x both ways, mixed, 1-pixel sides,
# one side unchanged, the Pillow-13 vertical-first cases and their mirror images.
PAIRS = [
    ((28, 28), (64, 64)),
    ((28, 28), (20, 20)),
    ((28, 28), (224, 224)),
    ((28, 28), (3, 3)),
    ((28, 28), (28, 56)),
    ((28, 28), (56, 28)),
    ((64, 64), (8, 8)),
    ((8, 8), (64, 64)),
    ((96, 96), (12, 12)),
    ((12, 12), (96, 96)),
    ((13, 17), (40, 7)),
    ((17, 13), (7, 40)),
    ((100, 37), (11, 300)),
    ((37, 100), (300, 11)),
    ((5, 5), (1, 1)),
    ((1, 1), (5, 5)),
    ((1, 9), (4, 3)),
    ((9, 1), (3, 4)),
    ((2, 3), (3, 2)),
    ((7, 9), (7, 30)),
    ((9, 7), (30, 7)),
    ((31, 29), (29, 31)),
    ((30, 40), (20, 30)),
    ((30, 40), (50, 35)),
    ((50, 50), (10, 60)),
    ((50, 50), (60, 10)),
    ((20, 10), (5, 40)),
    ((10, 20), (40, 5)),
    ((48, 48), (47, 47)),
    ((47, 47), (48, 48)),
    ((64, 48), (32, 24)),
    ((64, 48), (21, 16)),
    ((33, 33), (11, 11)),
    ((11, 11), (33, 33)),
    ((19, 23), (57, 69)),
    ((57, 69), (19, 23)),
    ((120, 80), (15, 10)),
    ((15, 10), (120, 80)),
    ((25, 25), (24, 26)),
    ((40, 16), (10, 16)),
    ((16, 40), (16, 10)),
    ((3, 4), (31, 5)),
    ((45, 45), (16, 16)),
    ((16, 16), (45, 45)),
    ((60, 20), (6, 18)),
    ((20, 60), (18, 6)),
    ((64, 64), (63, 9)),
    ((64, 64), (9, 63)),
    ((27, 14), (13, 28)),
    ((14, 27), (28, 13)),
    ((80, 40), (30, 39)),
    ((40, 80), (39, 30)),
    ((6, 6), (48, 5)),
    ((100, 100), (7, 13)),
    ((7, 13), (100, 100)),
    ((32, 32), (256, 256)),
    # huge shrink factors: more than UNROLL_TAPS taps per output pixel (lax.scan path)
    ((300, 300), (1, 1)),
    ((300, 7), (1, 300)),
    ((17, 250), (250, 3)),
]


def _images(hw, channels, seed):
    """Random bytes with hard 0/255 edges in the first image (exercises clipping)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (2, *hw, channels), dtype=np.uint8)
    x[0] = (x[0] > 127).astype(np.uint8) * 255
    return x


def _pillow(images, size, method):
    """Pillow's Image.resize on each image: "L" for grey, "RGB" for colour."""
    h, w = size
    out = []
    for im in images:
        if im.shape[-1] == 1:
            r = Image.fromarray(im[..., 0], "L").resize((w, h), FILTERS[method])
            out.append(np.asarray(r)[..., None])
        else:
            out.append(
                np.asarray(Image.fromarray(im, "RGB").resize((w, h), FILTERS[method]))
            )
    return np.stack(out)


def _pillow_float(images, size, method):
    """Pillow's mode "F" resize of every channel (clean-fid's resize)."""
    h, w = size
    return np.stack(
        [
            np.stack(
                [
                    np.asarray(
                        Image.fromarray(im[..., c].astype(np.float32), "F").resize(
                            (w, h), FILTERS[method]
                        )
                    )
                    for c in range(im.shape[-1])
                ],
                -1,
            )
            for im in images
        ]
    )


def test_grid_has_at_least_50_pairs_both_ways():
    assert len(set(PAIRS)) == len(PAIRS) >= 50
    assert any(i[0] >= 8 * o[0] and i[1] >= 8 * o[1] for i, o in PAIRS)  # 8x down
    assert any(o[0] >= 8 * i[0] and o[1] >= 8 * i[1] for i, o in PAIRS)  # 8x up
    # Both ways of summing the taps: unrolled, and the scan beyond UNROLL_TAPS taps.
    taps = [resample.coefficients(i[1], o[1], "lanczos")[1].shape[1] for i, o in PAIRS]
    assert min(taps) <= resample.UNROLL_TAPS < max(taps)
    # Both pass orders of Pillow 13 occur.
    orders = {resample.vertical_first(i, o, "pillow13") for i, o in PAIRS}
    assert orders == {True, False}


@pytest.mark.parametrize("half", [0, 1])
@pytest.mark.parametrize("method", resample.METHODS)
def test_uint8_bytes_equal_pillow_grey_and_rgb(method, half):
    # One call per pair: channels 0..2 are an RGB image, channel 3 a grey one
    # (pixjax resizes channels independently, as Pillow does within "RGB").
    for n, (hw, size) in enumerate(PAIRS):
        if n % 2 != half:
            continue
        x = _images(hw, 4, n)
        got = np.asarray(resample.resize(x, size, method))
        assert got.dtype == np.uint8 and got.shape == (2, *size, 4)
        for part, want in (
            (got[..., :3], _pillow(x[..., :3], size, method)),
            (got[..., 3:], _pillow(x[..., 3:], size, method)),
        ):
            diff = np.abs(part.astype(int) - want)
            assert diff.max() == 0, (method, hw, size, part.shape[-1], diff.max())


def test_grey_and_rgb_batches_equal_pillow():
    # The plain 1- and 3-channel shapes, on real images.
    digits = load_mnist_sample("test").images[:16]
    rgb = np.concatenate([digits, digits[::-1], digits[::2].repeat(2, 0)], -1)
    for x in (digits, rgb):
        for method in resample.METHODS:
            for size in ((64, 64), (20, 11)):
                got = np.asarray(resample.resize(x, size, method))
                np.testing.assert_array_equal(got, _pillow(x, size, method))


@pytest.mark.parametrize("method", resample.METHODS)
def test_float_mode_within_1e4_of_pillow_mode_f(method):
    worst = 0.0
    for n, (hw, size) in enumerate(PAIRS[::2]):
        x = _images(hw, 1, n).astype(np.float32)
        got = np.asarray(resample.resize(x, size, method, mode="float"))
        want = _pillow_float(x, size, method)
        assert got.dtype == np.float32 and got.shape == want.shape
        worst = max(worst, float(np.abs(got - want).max()))
    assert worst <= 1e-4, worst


def test_real_digits_up_and_down_equal_pillow():
    x = load_mnist_sample("test").images[:64]
    for size in ((64, 64), (20, 20), (224, 224), (7, 7)):
        for method in ("bilinear", "bicubic", "lanczos"):
            got = np.asarray(resample.resize(x, size, method))
            np.testing.assert_array_equal(got, _pillow(x, size, method))


def test_float_mode_on_unit_range_matches_pillow():
    # clean-fid's use: float values, here [0, 1], resized bicubic in mode "F".
    rng = np.random.default_rng(3)
    x = (rng.random((2, 40, 30, 3)) > 0.5).astype(np.float32)
    got = np.asarray(resample.resize(x, (17, 61), "bicubic", mode="float"))
    np.testing.assert_allclose(got, _pillow_float(x, (17, 61), "bicubic"), atol=1e-6)
    assert got.min() < 0 or got.max() > 1  # unclipped: bicubic overshoots


@pytest.mark.parametrize(
    "hw, size", [((50, 50), (10, 60)), ((30, 40), (20, 30)), ((64, 64), (8, 8))]
)
def test_pass_orders_are_one_axis_pillow_resizes_in_sequence(hw, size):
    # A one-axis Pillow resize is a single pass; two of them in sequence give each
    # order's bytes independently of Pillow's own choice.
    x = _images(hw, 1, 7)
    h, w = size
    horizontal = _pillow(_pillow(x, (hw[0], w), "bicubic"), size, "bicubic")
    vertical = _pillow(_pillow(x, (h, hw[1]), "bicubic"), size, "bicubic")
    got_h = resample.resize(x, size, "bicubic", order="horizontal")
    np.testing.assert_array_equal(got_h, horizontal)
    got_13 = resample.resize(x, size, "bicubic", order="pillow13")
    want_13 = vertical if resample.vertical_first(hw, size, "pillow13") else horizontal
    np.testing.assert_array_equal(got_13, want_13)


def test_coefficients_by_hand():
    # Bilinear 4 -> 2: scale 2, support 2; pixel 0 centred at 1.0 takes inputs 0..2
    # with triangle weights (0.75, 0.75, 0.25) / 1.75.
    first, w = resample.coefficients(4, 2, "bilinear")
    assert first.tolist() == [0, 1]
    np.testing.assert_allclose(w[0, :3], np.array([0.75, 0.75, 0.25]) / 1.75)
    assert w.shape == (2, 5)
    # Fixed point: 22 fractional bits, rounded half away from zero.
    k = resample.fixed_point(np.array([0.5, -0.25, 1e-7, -1e-7]))
    assert k.tolist() == [1 << 21, -(1 << 20), 0, 0]
    assert resample.fixed_point(np.array([3.5 / (1 << 22)])).tolist() == [4]
    assert resample.fixed_point(np.array([-3.5 / (1 << 22)])).tolist() == [-4]
    # Nearest 3 -> 7: positions (i + 0.5) * 3 / 7 = 0.21, 0.64, 1.07, 1.5, 1.93, 2.36,
    # 2.79, truncated.
    assert resample.nearest_index(3, 7).tolist() == [0, 0, 1, 1, 1, 2, 2]


def test_jit_vmap_and_identity():
    from pixjax.perturb import pipeline

    assert pipeline.resize is resample.resize  # the name for it
    x = _images((28, 28), 1, 0)
    f = jax.jit(lambda im: resample.resize(im, (64, 64), "lanczos"))
    np.testing.assert_array_equal(f(x), _pillow(x, (64, 64), "lanczos"))
    per_image = jax.vmap(lambda im: resample.resize(im[None], (20, 20), "box")[0])(x)
    np.testing.assert_array_equal(per_image, _pillow(x, (20, 20), "box"))
    for method in resample.METHODS:  # same size: a copy, as Pillow
        np.testing.assert_array_equal(resample.resize(x, (28, 28), method), x)
    assert isinstance(resample.resize(jnp.asarray(x), (5, 5), "hamming"), jax.Array)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"method": "cubic"}, "method: expected one of"),
        ({"method": "BICUBIC"}, "method: expected one of"),
        ({"mode": "int"}, "mode: expected one of"),
        ({"order": "vertical"}, "order: expected one of"),
        ({"size": (0, 5)}, "size: expected"),
        ({"size": (10**9, 1)}, r"integers 1\.\.16384"),
        ({"size": (5, -1)}, "size: expected"),
        ({"size": 5}, "size: expected"),
        ({"size": (5.0, 5)}, "size: expected"),
        ({"size": (True, 5)}, "size: expected"),
        ({"images": np.zeros((4, 4, 1), np.uint8)}, "images: expected shape"),
        ({"images": np.zeros((1, 4, 4, 1), np.float32)}, "mode='float'"),
        ({"images": np.zeros((1, 4, 4, 1), np.uint8), "mode": "float"}, "mode='uint8'"),
        ({"images": np.zeros((1, 4, 4, 1), np.int32)}, "expects dtype uint8"),
    ],
)
def test_bad_input_names_the_argument(kwargs, match):
    args = {"images": np.zeros((1, 4, 4, 1), np.uint8), "size": (2, 2)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        resample.resize(**args)
