"""Host-side image pipelines (pixjax.perturb.pipeline).

Every op is checked against an independent computation: the library called directly
(Pillow, OpenCV, torchvision, ``jax.image.resize``), hand-made arrays (dtype
conversions, channel order, crops, shifts) or ``pixjax.perturb.shifts.shift``.
"""

import io
import math
import os
import subprocess
import sys
import types

if "torchvision" not in sys.modules:  # its C extension is a CUDA build: skip its ops
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations"
    )

import cv2  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision.transforms.v2.functional as TF  # noqa: E402
from PIL import Image  # noqa: E402

from pixjax import data  # noqa: E402
from pixjax.perturb import pipeline as pl  # noqa: E402
from pixjax.perturb.shifts import shift as jax_shift  # noqa: E402

PILLOW_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "hamming": Image.Resampling.HAMMING,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
OPENCV_FLAGS = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos4": cv2.INTER_LANCZOS4,
}


@pytest.fixture(scope="module")
def digits():
    """8 real MNIST test digits, uint8 [8, 28, 28, 1]."""
    return data.load_mnist_sample("test").images[:8]


@pytest.fixture(scope="module")
def rgb():
    """3 real photos cropped to uint8 [3, 40, 48, 3] (small, so ops stay fast)."""
    photos = data.load("photos:sample").images
    return np.ascontiguousarray(photos[:3, 60:100, 70:118])


def _noise(shape, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    if dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    return rng.uniform(0, 255, shape).astype(dtype)


# ------------------------------------------------------------------------- resize


@pytest.mark.parametrize("method", pl.LIBRARIES["pillow"])
def test_pillow_resize_matches_pillow_grey(digits, method):
    out = pl.apply(f"resize:pillow:{method}:17x33", digits)
    ref = np.stack(
        [
            np.asarray(
                Image.fromarray(d[:, :, 0], "L").resize(
                    (33, 17), PILLOW_FILTERS[method]
                )
            )
            for d in digits
        ]
    )[..., None]
    assert out.dtype == np.uint8 and out.shape == (8, 17, 33, 1)
    np.testing.assert_array_equal(out, ref)


def test_pillow_resize_matches_pillow_rgb_float_and_other_channels(rgb):
    out = pl.apply("resize:pillow:bicubic:20x30", rgb)
    ref = np.stack(
        [np.asarray(Image.fromarray(x, "RGB").resize((30, 20), 3)) for x in rgb]
    )
    np.testing.assert_array_equal(out, ref)
    # float32: each channel a mode "F" image, float32 out (not rounded, not clipped).
    xf = rgb.astype(np.float32)
    out = pl.apply("resize:pillow:lanczos:20x30", xf, value_range=(0, 255))
    ref = np.stack(
        [
            np.stack(
                [
                    np.asarray(Image.fromarray(x[:, :, k], "F").resize((30, 20), 1))
                    for k in range(3)
                ],
                axis=-1,
            )
            for x in xf
        ]
    )
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ref)
    assert out.min() < 0 or out.max() > 255 or not np.all(out == np.round(out))
    # 2 channels: each as its own mode "L" image.
    x2 = _noise((2, 9, 7, 2))
    out = pl.apply("resize:pillow:bilinear:5", x2)
    for n in range(2):
        for k in range(2):
            ref = Image.fromarray(x2[n, :, :, k], "L").resize((5, 5), 2)
            np.testing.assert_array_equal(out[n, :, :, k], np.asarray(ref))


@pytest.mark.parametrize("method", pl.LIBRARIES["opencv"])
def test_opencv_resize_matches_cv2(digits, rgb, method):
    flag = OPENCV_FLAGS[method]
    out = pl.apply(f"resize:opencv:{method}:20x36", digits)
    ref = np.stack([cv2.resize(d, (36, 20), interpolation=flag) for d in digits])
    assert out.shape == (8, 20, 36, 1) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, ref[..., None])  # cv2 drops the grey axis
    out = pl.apply(f"resize:opencv:{method}:25", rgb)
    ref = np.stack([cv2.resize(x, (25, 25), interpolation=flag) for x in rgb])
    np.testing.assert_array_equal(out, ref)
    xf = rgb.astype(np.float32)
    out = pl.apply(f"resize:opencv:{method}:50x70", xf, value_range=(0, 255))
    ref = np.stack([cv2.resize(x, (70, 50), interpolation=flag) for x in xf])
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, ref)


def test_opencv_resize_more_than_four_channels():
    x = _noise((2, 12, 10, 6))
    out = pl.apply("resize:opencv:linear:7x9", x)
    ref = np.stack([cv2.resize(im, (9, 7), interpolation=cv2.INTER_LINEAR) for im in x])
    np.testing.assert_array_equal(out, ref)
    assert pl.apply("resize:opencv:area:5", x).shape == (2, 5, 5, 6)


@pytest.mark.parametrize(
    "spec, size, method, antialias",
    [
        ("bilinear:20", (20, 20), "BILINEAR", True),
        ("bilinear:20:noaa", (20, 20), "BILINEAR", False),
        ("bicubic:20", (20, 20), "BICUBIC", True),
        ("bicubic:50x44:noaa", (50, 44), "BICUBIC", False),
        ("nearest:50x44", (50, 44), "NEAREST", False),
        ("nearest-exact:20", (20, 20), "NEAREST_EXACT", False),
    ],
)
def test_torchvision_resize_matches_torchvision(
    digits, rgb, spec, size, method, antialias
):
    mode = TF.InterpolationMode[method]
    for x in (digits, rgb, rgb.astype(np.float32)):
        out = pl.apply(f"resize:torchvision:{spec}", x, value_range=(0, 255))
        t = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        ref = TF.resize(t, list(size), interpolation=mode, antialias=antialias)
        assert out.dtype == x.dtype and out.shape[1:3] == size
        np.testing.assert_array_equal(out, ref.permute(0, 2, 3, 1).numpy())


def test_torchvision_import_without_the_test_workaround(tmp_path):
    """The library imports torchvision on its own (a fresh process, no stub): where
    torchvision's C extension does not fit the installed torch it retries without its
    operator registrations."""
    script = (
        "import numpy as np\n"
        "from pixjax.perturb import pipeline as pl\n"
        "x = np.arange(2 * 6 * 6 * 3, dtype=np.uint8).reshape(2, 6, 6, 3)\n"
        "print(pl.apply('resize:torchvision:bilinear:3x4', x).shape)\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "(2, 3, 4, 3)"


def test_torchvision_resize_in_chunks(monkeypatch, rgb):
    whole = pl.apply("resize:torchvision:bilinear:16", rgb)
    monkeypatch.setattr(pl, "_TORCH_CHUNK_ELEMENTS", 1)  # one image per chunk
    np.testing.assert_array_equal(
        pl.apply("resize:torchvision:bilinear:16", rgb), whole
    )


@pytest.mark.parametrize(
    "spec, method, antialias",
    [
        ("linear:20", "linear", True),
        ("linear:20:noaa", "linear", False),
        ("cubic:40x36", "cubic", True),
        ("lanczos3:20", "lanczos3", True),
        ("lanczos5:20:noaa", "lanczos5", False),
        ("nearest:40x36", "nearest", True),
    ],
)
def test_jax_resize_matches_jax_unrounded(digits, spec, method, antialias):
    out = pl.apply(f"resize:jax:{spec}", digits)
    h, w = out.shape[1:3]
    ref = jax.image.resize(
        jnp.asarray(digits), (8, h, w, 1), method=method, antialias=antialias
    )
    # jax keeps uint8 for nearest only; the step always gives float32.
    assert out.dtype == np.float32
    assert ref.dtype == (jnp.uint8 if method == "nearest" else jnp.float32)
    np.testing.assert_array_equal(out, np.asarray(ref, np.float32))
    if method != "nearest":  # float32 out, NOT rounded: that is jax's uint8 behaviour
        assert not np.all(out == np.round(out))
    xf = digits.astype(np.float32) / 255
    np.testing.assert_array_equal(
        pl.apply(f"resize:jax:{spec}", xf, value_range=(0, 1)), out
    )


@pytest.mark.parametrize("method", ["bilinear", "bicubic"])
def test_pixjax_resize_equals_pillow(digits, rgb, method):
    # Both pass orders: Pillow 13 resizes vertically first when the height shrinks by
    # more than twice the width (21x30, 20x27 here), horizontally first otherwise.
    for x in (digits, rgb):
        for size in ("21x30", "20x27", "21x17", "40x36", "30x21"):
            np.testing.assert_array_equal(
                pl.apply(f"resize:pixjax:{method}:{size}", x),
                pl.apply(f"resize:pillow:{method}:{size}", x),
            )
    xf = rgb.astype(np.float32)
    out = pl.apply(f"resize:pixjax:{method}:21x17", xf, value_range=(0, 255))
    ref = pl.apply(f"resize:pillow:{method}:21x17", xf, value_range=(0, 255))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-3)


# ------------------------------------------------------------------ encode / decode


def test_png_is_lossless(digits, rgb):
    for x in (digits, rgb, _noise((2, 7, 9, 4))):
        out = pl.apply("png", x)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, x)
        assert out.tobytes() == x.tobytes()


def test_jpeg_matches_pillow_and_quality_orders_error(digits, rgb):
    def pillow_jpeg(im, **kw):
        buf = io.BytesIO()
        Image.fromarray(im[:, :, 0] if im.shape[2] == 1 else im).save(
            buf, format="JPEG", **kw
        )
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())))

    out = pl.apply("jpeg:60", digits)
    ref = np.stack([pillow_jpeg(d, quality=60) for d in digits])[..., None]
    np.testing.assert_array_equal(out, ref)
    out = pl.apply("jpeg:60:422", rgb)
    ref = np.stack([pillow_jpeg(x, quality=60, subsampling=1) for x in rgb])
    np.testing.assert_array_equal(out, ref)
    # q100 is close but not lossless; lower quality, larger error (monotone here).
    mean = {
        q: pl.difference_stats(digits, pl.apply(f"jpeg:{q}", digits))["mean_abs"]
        for q in (10, 50, 90, 100)
    }
    assert pl.difference_stats(digits, pl.apply("jpeg:100", digits))["max_abs"] <= 4
    assert mean[10] > mean[50] > mean[90] > mean[100]
    assert mean[10] > 3 * mean[90]
    # Chroma subsampling matters on RGB; Pillow's default is 4:2:0.
    s444, s420 = pl.apply("jpeg:90:444", rgb), pl.apply("jpeg:90:420", rgb)
    assert pl.difference_stats(s444, s420)["mean_abs"] > 0.5
    assert (
        pl.difference_stats(rgb, s444)["mean_abs"]
        < pl.difference_stats(rgb, s420)["mean_abs"]
    )
    np.testing.assert_array_equal(pl.apply("jpeg:90", rgb), s420)


# ----------------------------------------------------------------- dtypes and pixels


def test_uint8_modes_on_hand_made_values():
    x = np.array(
        [2.5, 3.5, -0.4, -1.0, 255.6, 300.0, 0.49, 254.5, 511.9, -256.0, 1e6],
        np.float32,
    ).reshape(1, 1, -1, 1)
    step = {m: pl.parse(f"uint8:{m}").steps[0] for m in pl.UINT8_MODES}
    out = {m: step[m](x).ravel().tolist() for m in pl.UINT8_MODES}
    assert out["round"] == [2, 4, 0, 0, 255, 255, 0, 254, 255, 0, 255]
    assert out["trunc"] == [2, 3, 0, 0, 255, 255, 0, 254, 255, 0, 255]
    assert out["wrap"] == [2, 3, 0, 255, 255, 44, 0, 254, 255, 0, 64]
    assert all(step[m](x).dtype == np.uint8 for m in pl.UINT8_MODES)
    u = _noise((1, 2, 3, 1))
    np.testing.assert_array_equal(pl.apply("uint8:wrap", u), u)  # identity on uint8


def test_uint8_step_rejects_non_finite_naming_the_step():
    x = np.full((1, 2, 2, 1), np.nan, np.float32)
    with pytest.raises(ValueError, match=r"pipeline step 2 'uint8:round'.*NaN"):
        pl.parse("clip|uint8:round")(x)
    with pytest.raises(ValueError, match=r"pipeline step 1 'uint8:trunc'.*NaN"):
        pl.parse("uint8:trunc").steps[0](x * np.inf)


def test_float_clip_bgr():
    u = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    f = pl.apply("float", u)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f, u.astype(np.float32))
    x = np.array([-3.5, 0.0, 12.25, 255.0, 260.0], np.float32).reshape(1, 1, 5, 1)
    c = pl.parse("clip")(x)  # beyond 0..255: only a Pipeline call takes it
    assert c.dtype == np.float32
    assert c.ravel().tolist() == [0.0, 0.0, 12.25, 255.0, 255.0]
    b = pl.apply("bgr", u)
    assert b[0, 0, 0].tolist() == [2, 1, 0] and b[0, 1, 1].tolist() == [11, 10, 9]
    np.testing.assert_array_equal(pl.apply("bgr|bgr", u), u)


def test_crop_and_shift_on_hand_made_arrays():
    x = np.arange(1, 21, dtype=np.uint8).reshape(1, 4, 5, 1)
    c = pl.apply("crop:1:2:0:3", x)
    assert c[0, :, :, 0].tolist() == [[6, 7]]
    s = pl.apply("shift:1:-2", x)
    assert s[0, :, :, 0].tolist() == [
        [0, 0, 0, 0, 0],
        [3, 4, 5, 0, 0],
        [8, 9, 10, 0, 0],
        [13, 14, 15, 0, 0],
    ]


@pytest.mark.parametrize("dy, dx", [(0, 0), (3, -2), (-5, 7), (27, -27)])
def test_shift_matches_jax_shift(digits, dy, dx):
    ref = jax.vmap(jax_shift, in_axes=(0, None, None))(jnp.asarray(digits), dy, dx)
    np.testing.assert_array_equal(pl.apply(f"shift:{dy}:{dx}", digits), ref)


# ------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "spec",
    [
        "identity",
        "resize:pillow:bilinear:64",
        "resize:pillow:lanczos:64x48",
        "resize:opencv:linear:64|jpeg:75|uint8:round",
        "resize:opencv:lanczos4:7x300",
        "resize:torchvision:bilinear:224:noaa",
        "resize:torchvision:nearest-exact:32",
        "resize:jax:lanczos5:10x12:noaa|clip|uint8:wrap",
        "resize:jax:nearest:8",
        "resize:pixjax:hamming:33x9",
        "jpeg:1",
        "jpeg:100:444",
        "jpeg:50:422|png",
        "float|clip|uint8:trunc|bgr",
        "crop:0:0:0:0|crop:1:2:3:4",
        "shift:-3:4|shift:0:0",
    ],
)
def test_parse_round_trips(spec):
    p = pl.parse(spec)
    assert str(p) == spec
    assert pl.parse(str(p)) == p
    assert hash(p) == hash(pl.parse(spec))


@pytest.mark.parametrize(
    "spec, canonical",
    [
        (" resize : Pillow : BILINEAR : 64x64 ", "resize:pillow:bilinear:64"),
        ("resize:torchvision:bicubic:32:aa", "resize:torchvision:bicubic:32"),
        ("resize:jax:linear:5x6:AA", "resize:jax:linear:5x6"),
        ("none", "identity"),
        ("  identity ", "identity"),
        ("jpeg: 075 | UINT8:Round", "jpeg:75|uint8:round"),
        ("shift:+2:-0", "shift:2:0"),
    ],
)
def test_parse_normalises(spec, canonical):
    p = pl.parse(spec)
    assert str(p) == canonical and pl.parse(canonical) == p


def test_parse_structure():
    p = pl.parse("resize:torchvision:bilinear:64x48:noaa|jpeg:75|crop:1:2:3:4")
    assert p.steps == (
        pl.Step("resize", ("torchvision", "bilinear", (64, 48), False)),
        pl.Step("jpeg", (75, None)),
        pl.Step("crop", (1, 2, 3, 4)),
    )
    assert pl.parse("resize:pillow:box:3").steps[0].args[3] is None
    assert pl.parse("identity") == pl.Pipeline(())
    assert set(pl.STEPS) == {
        "resize", "jpeg", "png", "uint8", "float", "clip", "bgr", "crop", "shift"
    }  # fmt: skip


BAD_SPECS = [
    ("blur:3", 1, "unknown step 'blur'.*'resize', 'jpeg'"),
    ("png|resize:skimage:linear:3", 2, "unknown library 'skimage'.*'pillow'"),
    ("resize:opencv:bilinear:64", 1, r"unknown opencv method 'bilinear'.*'linear'"),
    ("resize:pillow:linear:64", 1, r"unknown pillow method.*'bilinear'"),
    ("resize:jax:bicubic:64", 1, r"unknown jax method.*'cubic'"),
    ("resize:pillow:bilinear:0", 1, r"size must be integers 1\.\.16384"),
    ("resize:pillow:bilinear:-3", 1, r"size must be integers 1\.\.16384"),
    ("resize:pillow:bilinear:100000", 1, r"size must be integers 1\.\.16384"),
    ("resize:pillow:bilinear:99999999999999999999", 1, "size must be S"),
    ("resize:pillow:bilinear:\uff12\uff10", 1, "size must be S"),  # full-width 20
    ("jpeg:7\u0665", 1, "quality must be an integer"),  # Arabic-Indic 5
    ("resize:pillow:bilinear:64x", 1, "size must be S"),
    ("resize:pillow:bilinear:64x0", 1, r"size must be integers 1\.\.16384"),
    ("resize:pillow:bilinear:x64", 1, "size must be S"),
    ("resize:pillow:bilinear", 1, r"expected resize:LIB:METHOD:SIZE"),
    ("resize:pillow:bilinear:64:aa", 1, "accepted only for.*not pillow"),
    ("resize:opencv:linear:64:noaa", 1, "accepted only for.*not opencv"),
    ("resize:torchvision:nearest:64:aa", 1, "does not apply to torchvision nearest"),
    ("resize:jax:nearest:64:noaa", 1, "does not apply to jax nearest"),
    ("resize:jax:linear:64:yes", 1, "'aa' or 'noaa'"),
    ("resize:jax:linear:64:aa:aa", 1, r"expected resize:LIB"),
    ("uint8:round|jpeg:0", 2, r"quality must be an integer 1\.\.100, got '0'"),
    ("jpeg:101", 1, r"quality must be an integer 1\.\.100, got '101'"),
    ("jpeg:abc", 1, r"quality must be an integer 1\.\.100, got 'abc'"),
    ("jpeg:75.5", 1, "quality must be an integer"),
    ("jpeg:75:411", 1, r"subsampling must be one of \('444', '422', '420'\)"),
    ("jpeg", 1, r"expected jpeg:QUALITY"),
    ("uint8:floor", 1, r"unknown uint8 mode 'floor'.*'round', 'trunc', 'wrap'"),
    ("uint8", 1, r"expected uint8:round\|trunc\|wrap"),
    ("png:9", 1, "'png' alone"),
    ("crop:1:1", 1, r"expected crop:T:B:L:R"),
    ("crop:1:1:-1:0", 1, "non-negative"),
    ("shift:1", 1, r"expected shift:DY:DX"),
    ("shift:1:a", 1, "shifts must be integers"),
    ("png||png", 2, "empty step"),
    ("png|", 2, "empty step"),
]


@pytest.mark.parametrize("spec, index, why", BAD_SPECS)
def test_parse_errors_name_the_step(spec, index, why):
    text = spec.split("|")[index - 1].strip()
    with pytest.raises(ValueError, match=f"pipeline step {index} ") as e:
        pl.parse(spec)
    assert f"step {index} {text!r}:" in str(e.value)
    assert e.match(why)


def test_parse_rejects_non_strings_and_empty():
    with pytest.raises(ValueError, match="empty spec; use 'identity'"):
        pl.parse("  ")
    with pytest.raises(ValueError, match="expected a spec string"):
        pl.parse(3)


def test_hand_built_steps_are_checked(digits):
    with pytest.raises(ValueError, match=r"step 1 'jpeg:101': quality must be"):
        pl.apply(pl.Pipeline((pl.Step("jpeg", (101, None)),)), digits)
    with pytest.raises(ValueError, match=r"step 1 .*not a valid step"):
        pl.apply(pl.Pipeline((pl.Step("jpeg", (75,)),)), digits)
    with pytest.raises(ValueError, match=r"step 1 .*not a valid step"):
        pl.as_pipeline(pl.Step("resize", ("pillow", "bilinear", [4, 4], None)))
    with pytest.raises(ValueError, match=r"step 2: expected a Step"):
        pl.as_pipeline(pl.Pipeline((pl.Step("png"), "png")))
    step = pl.Step("resize", ("pillow", "bilinear", (5, 6), None))
    np.testing.assert_array_equal(
        step(digits), pl.apply("resize:pillow:bilinear:5x6", digits)
    )
    assert pl.as_pipeline(step) == pl.Pipeline((step,))


# --------------------------------------------------------------------------- apply


def test_float_images_need_a_value_range(digits):
    with pytest.raises(ValueError, match=r"value_range: float32 .*\(0, 1\).*got None"):
        pl.apply("png", digits.astype(np.float32))
    with pytest.raises(ValueError, match=r"value_range: expected None.*\(0, 255\)"):
        pl.apply("png", digits.astype(np.float32), value_range=(0, 2))
    with pytest.raises(ValueError, match="value_range: uint8 images"):
        pl.apply("png", digits, value_range=(0, 1))
    with pytest.raises(ValueError, match="images: expected uint8"):
        pl.apply("png", digits.astype(np.int32))
    with pytest.raises(ValueError, match=r"images: expected a non-empty array"):
        pl.apply("png", digits[0])
    with pytest.raises(ValueError, match=r"images: expected a non-empty array"):
        pl.apply("png", digits[:0])


def test_value_range_01_equals_the_uint8_path(digits, rgb):
    for x in (digits, rgb):
        x01 = x.astype(np.float64) / 255
        np.testing.assert_array_equal(
            pl.apply("uint8:round", x01, value_range=(0, 1)), x
        )
        for spec in ("resize:pillow:bicubic:13", "resize:jax:cubic:13", "crop:1:2:3:4"):
            np.testing.assert_array_equal(
                pl.apply(spec, x01.astype(np.float32), value_range=(0, 1)),
                pl.apply("float|" + spec, x),
            )
        np.testing.assert_array_equal(
            pl.apply("float", x.astype(np.float64), value_range=[0, 255]),
            x.astype(np.float32),
        )


def test_floats_outside_the_range_or_non_finite_error(digits):
    x = digits.astype(np.float32) / 255
    with pytest.raises(ValueError, match=r"images: expected values in \[0.0, 1.0\]"):
        pl.apply("float", x * 1.01, value_range=(0, 1))
    with pytest.raises(ValueError, match=r"images: expected values in \[0.0, 255.0\]"):
        pl.apply("float", x - 0.5, value_range=(0, 255))
    x[0, 3, 3, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or infinite"):
        pl.apply("uint8:round", x, value_range=(0, 1))


def test_callable_pipelines(digits):
    def invert(images):
        return 255 - images

    np.testing.assert_array_equal(pl.apply(invert, digits), 255 - digits)
    out = pl.apply(lambda x: x * 2.0, digits)  # float64 back -> float32
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, digits * np.float32(2))
    for bad, why in [
        (lambda x: x[0], r"\[N, H', W', C'\] images with N = 8, got shape"),
        (lambda x: x[:3], r"N = 8, got shape \(3,"),
        (lambda x: x.astype(np.int16), "dtype int16"),
        (lambda x: x * np.nan, "NaN or infinite"),
    ]:
        with pytest.raises(ValueError, match=r"pipeline '<lambda>': .*" + why):
            pl.apply(bad, digits)
    with pytest.raises(ValueError, match="pipeline: expected a spec string"):
        pl.apply(3, digits)


def test_checks_happen_before_any_work(monkeypatch, digits):
    calls = []
    monkeypatch.setitem(pl._OPS, "resize", lambda x, *a: calls.append(1) or x)
    with pytest.raises(ValueError, match=r"step 3 'jpeg:75': expects uint8 .*float32"):
        pl.apply("resize:pillow:bilinear:20|float|jpeg:75", digits)
    with pytest.raises(ValueError, match=r"step 2 'jpeg:75'.*resize:jax.*uint8:round"):
        pl.apply("resize:jax:linear:20|jpeg:75", digits)
    with pytest.raises(ValueError, match="step 2 'jpeg:101'"):
        pl.apply("resize:pillow:bilinear:20|jpeg:101", digits)
    with pytest.raises(ValueError, match=r"step 2 'crop:10:10:0:0': removes 20 of 20"):
        pl.apply("resize:pillow:bilinear:20|crop:10:10:0:0", digits)
    with pytest.raises(ValueError, match=r"step 2 'shift:0:-20': expects \|DY\| < 20"):
        pl.apply("resize:pillow:bilinear:20|shift:0:-20", digits)
    with pytest.raises(ValueError, match=r"step 2 'bgr': expects 3 channels"):
        pl.apply("resize:pillow:bilinear:20|bgr", digits)
    with pytest.raises(ValueError, match=r"step 1 'jpeg:75': expects grey or RGB"):
        pl.apply("jpeg:75", _noise((1, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"step 1 'png': expects uint8.*the input"):
        pl.apply("png", digits.astype(np.float32), value_range=(0, 255))
    assert calls == []


def test_missing_optional_library_names_the_extra(monkeypatch, digits):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    with pytest.raises(ValueError, match=r"step 2 .*pixjax\[opencv\]"):
        pl.apply("png|resize:opencv:linear:8", digits)


def test_output_dtype():
    u8, f32 = np.dtype(np.uint8), np.dtype(np.float32)
    assert pl.output_dtype(pl.parse("identity"), np.uint8) == u8
    assert pl.output_dtype("identity", np.float64) == f32
    assert pl.output_dtype("resize:pillow:bicubic:8", "uint8") == u8
    assert pl.output_dtype("resize:jax:cubic:8", np.uint8) == f32
    assert pl.output_dtype("resize:jax:cubic:8|uint8:round|jpeg:9", np.uint8) == u8
    assert pl.output_dtype("float|resize:opencv:area:8|clip", np.uint8) == f32
    with pytest.raises(ValueError, match="step 2 'png': expects uint8"):
        pl.output_dtype("float|png", np.uint8)
    with pytest.raises(ValueError, match="input_dtype: expected uint8 or a floating"):
        pl.output_dtype("png", np.int32)
    with pytest.raises(ValueError, match="known only by running it"):
        pl.output_dtype(lambda x: x, np.uint8)


def test_outputs_are_fresh_arrays(rgb):
    for spec in ("identity", "bgr|bgr", "crop:0:0:0:0", "resize:pixjax:nearest:40x48"):
        out = pl.apply(spec, rgb)
        assert out.flags.writeable and not np.shares_memory(out, rgb)
        np.testing.assert_array_equal(out, rgb)


# --------------------------------------------------------------------- comparisons


def test_difference_stats_on_hand_made_arrays():
    a = np.zeros((2, 2, 2, 1), np.uint8)
    b = a.copy()
    b[0, 0, 0, 0] = 4
    b[0, 1, 1, 0] = 2
    s = pl.difference_stats(a, b)
    assert s["max_abs"] == 4 and s["mean_abs"] == 6 / 8
    assert s["share_values_differing"] == 2 / 8 and s["share_images_differing"] == 0.5
    assert s["mse"] == pytest.approx(20 / 8)
    assert s["psnr_db"] == pytest.approx(10 * math.log10(255**2 / (20 / 8)))
    assert s["exact"] is False
    np.testing.assert_array_equal(s["per_image_max_abs"], [4, 0])
    np.testing.assert_array_equal(s["per_image_mean_abs"], [1.5, 0])
    # uint8 vs float: computed in float64, no wrap-around.
    s = pl.difference_stats(a, b.astype(np.float32) + 0.5)
    assert s["max_abs"] == 4.5 and s["share_values_differing"] == 1
    same = pl.difference_stats(b, b.astype(np.float64))
    assert same["exact"] is True and same["psnr_db"] == math.inf
    assert same["max_abs"] == 0 and same["share_images_differing"] == 0
    with pytest.raises(ValueError, match=r"a, b: .*\(2, 2, 2, 1\) and \(2, 2, 1, 1\)"):
        pl.difference_stats(a, b[:, :, :1])
    with pytest.raises(ValueError, match="b: expected finite"):
        pl.difference_stats(a, np.full(a.shape, np.inf))


def test_library_versions_and_parity_table(digits):
    versions = pl.library_versions()
    assert set(versions) == {"pillow", "opencv", "torchvision", "torch", "jax", "numpy"}
    assert versions["numpy"] == np.__version__
    table = pl.parity_table(
        digits,
        [
            "resize:pillow:bilinear:20",
            "resize:pixjax:bilinear:20",
            pl.parse("png|resize:opencv:linear:20"),
        ],
    )
    assert [(r["a"], r["b"]) for r in table["rows"]] == [
        ("resize:pillow:bilinear:20", "resize:pixjax:bilinear:20"),
        ("resize:pillow:bilinear:20", "png|resize:opencv:linear:20"),
        ("resize:pixjax:bilinear:20", "png|resize:opencv:linear:20"),
    ]
    assert table["rows"][0]["exact"] and table["rows"][0]["psnr_db"] == math.inf
    assert not table["rows"][1]["exact"]
    assert table["shape"] == (8, 20, 20, 1) and table["versions"] == versions
    text = pl.format_parity_table(table)
    assert "| `resize:pillow:bilinear:20` | `resize:pixjax:bilinear:20` | yes |" in text
    assert "Versions: pillow" in text
    with pytest.raises(ValueError, match="outputs of one shape"):
        pl.parity_table(digits, ["resize:pillow:bilinear:20", "png"])
    with pytest.raises(ValueError, match="at least two"):
        pl.parity_table(digits, ["png"])
    with pytest.raises(ValueError, match="distinct"):
        pl.parity_table(digits, ["png", " png "])


def test_output_shape_is_static_and_checked():
    spec = "crop:1:2:3:4|resize:pillow:bilinear:20x30|jpeg:75"
    assert pl.output_shape(spec, (5, 28, 28, 1)) == (5, 20, 30, 1)
    x = np.zeros((2, 28, 28, 1), np.uint8)
    assert pl.apply(spec, x).shape == (2, 20, 30, 1)
    assert pl.output_shape("shift:1:-1|png", (1, 8, 9, 3)) == (1, 8, 9, 3)
    with pytest.raises(ValueError, match="step 2"):
        pl.output_shape("resize:pillow:bilinear:8|bgr", (1, 28, 28, 1))
    with pytest.raises(ValueError, match="input_shape"):
        pl.output_shape("png", (28, 28, 1))
    with pytest.raises(ValueError, match="callable"):
        pl.output_shape(lambda x: x, (1, 4, 4, 1))
