"""Which resizers agree: the parity table of pixjax.perturb.pipeline as a test.

The same uint8 inputs (16 real MNIST test digits 28 -> 64 and 28 -> 20; 4 real photos
224 -> 96) go through every library's resize; every pair of outputs is compared.
``pytest -s`` prints the tables. What was measured (Pillow 13.0, OpenCV 5.0,
torchvision 0.28 / torch 2.13 CPU, jax 0.10.2, max |difference| in 0..255 levels;
mean in brackets; the asserts leave a margin):

========================================  =========  =========  ==========
pair                                      MNIST 64   MNIST 20   photos 96
========================================  =========  =========  ==========
pixjax M vs pillow M (all 6 filters)      0          0          0
torchvision bilinear (aa) vs pillow       0          1 (0.009)  0
torchvision bicubic (aa) vs pillow        1 (0.001)  1 (0.001)  1 (0.002)
jax linear (aa) + round vs pillow         1 (0.04)   1 (0.04)   1 (0.12)
opencv linear vs pillow bilinear          1 (0.05)   68 (3.5)   74 (3.3)
opencv linear vs torchvision noaa         1 (0.05)   1 (0.03)   1 (0.11)
opencv cubic vs pillow bicubic            27 (0.9)   55 (2.8)   76 (3.4)
opencv nearest vs pillow nearest          255 (6.1)  255 (18)   217 (9.9)
opencv area vs pillow box                 144 (3.4)  112 (5.0)  38 (1.6)
opencv lanczos4 vs pillow lanczos         32 (0.6)   51 (2.9)   92 (3.5)
torchvision bicubic aa vs noaa            18 (0.8)   55 (2.7)   76 (3.4)
jax cubic + round vs pillow bicubic       21 (0.13)  9 (0.16)   4 (0.13)
========================================  =========  =========  ==========

Why, where it is known: without antialiasing (OpenCV's linear / cubic / lanczos4,
torchvision and jax ``noaa``) a downscale samples instead of averaging, so it is far
from Pillow on downsampling and close on upsampling. OpenCV's cubic and torchvision's
non-antialiased bicubic use Keys' ``a = -0.75``; Pillow, and torchvision's antialiased
bicubic (ported from Pillow), use ``a = -0.5``: they differ even when upsampling.
OpenCV's nearest takes ``floor(i * scale)`` (no half-pixel centre). jax's cubic keeps
float between its two passes where Pillow's uint8 image is rounded and clipped to
0..255 after the first pass (on float images the two agree within 1e-4, as do OpenCV
cubic and torchvision bicubic ``noaa``).
"""

import sys
import types

if "torchvision" not in sys.modules:  # its C extension is a CUDA build: skip its ops
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations"
    )

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from pixjax import data  # noqa: E402
from pixjax.perturb import pipeline as pl  # noqa: E402

PILLOW = pl.LIBRARIES["pillow"]
FAMILIES = (  # pairs printed: methods that claim to be the same filter
    {"nearest"},
    {"box", "area"},
    {"bilinear", "linear"},
    {"bicubic", "cubic"},
    {"lanczos", "lanczos4"},
)


def settings(size: int) -> list[str]:
    """The compared pipelines, all ending in uint8."""
    specs = [f"resize:pillow:{m}:{size}" for m in PILLOW]
    specs += [f"resize:pixjax:{m}:{size}" for m in pl.LIBRARIES["pixjax"]]
    specs += [
        f"resize:opencv:{m}:{size}"
        for m in ("linear", "cubic", "area", "nearest", "lanczos4")
    ]
    specs += [
        f"resize:torchvision:{m}:{size}{aa}"
        for m in ("bilinear", "bicubic")
        for aa in ("", ":noaa")
    ]
    specs += [
        f"resize:jax:{m}:{size}{aa}|uint8:round"
        for m in ("linear", "cubic")
        for aa in ("", ":noaa")
    ]
    return specs


@pytest.fixture(scope="module")
def tables():
    digits = data.load_mnist_sample("test").images[:16]
    photos = data.load("photos:sample").images[:4]
    assert photos.shape == (4, 224, 224, 3) and photos.dtype == np.uint8
    cases = {"mnist 28->64": (digits, 64), "mnist 28->20": (digits, 20)}
    cases["photos 224->96"] = (photos, 96)
    out = {}
    for name, (images, size) in cases.items():
        table = pl.parity_table(images, settings(size))
        table["size"] = size
        out[name] = table
        print(f"\n### {name}: pairs of one filter family\n")
        print(pl.format_parity_table({**table, "rows": family_rows(table)}))
    return out


def family_rows(table) -> list[dict]:
    def family(label):
        method = label.split("|")[0].split(":")[2]
        return next((i for i, f in enumerate(FAMILIES) if method in f), None)

    return [r for r in table["rows"] if family(r["a"]) == family(r["b"]) is not None]


def row(table, a: str, b: str) -> dict:
    """The row of settings ``a`` and ``b`` (``{size}`` filled in), either order."""
    a, b = a.format(size=table["size"]), b.format(size=table["size"])
    for r in table["rows"]:
        if {r["a"], r["b"]} == {a, b}:
            return r
    raise KeyError((a, b))


CASES = ("mnist 28->64", "mnist 28->20", "photos 224->96")


def test_table_shape_and_versions(tables):
    n = len(settings(8))
    for table in tables.values():
        assert len(table["rows"]) == n * (n - 1) // 2
        assert set(table["dtypes"].values()) == {"uint8"}
    versions = tables[CASES[0]]["versions"]
    for lib in ("pillow", "opencv", "torchvision", "jax"):
        assert versions[lib], f"{lib} version missing: {versions}"
    text = pl.format_parity_table(tables[CASES[0]])
    assert text.count("\n| `resize:") == len(tables[CASES[0]]["rows"])
    assert f"pillow {versions['pillow']}" in text


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", PILLOW)
def test_pixjax_is_pillow_exactly(tables, case, method):
    r = row(
        tables[case],
        f"resize:pixjax:{method}:{{size}}",
        f"resize:pillow:{method}:{{size}}",
    )
    assert r["exact"] and r["max_abs"] == 0 and r["psnr_db"] == np.inf


# (a, b, {case: (max_abs bound, mean_abs bound)}): pairs that agree within a level.
AGREE = [
    (
        "resize:torchvision:bilinear:{size}",
        "resize:pillow:bilinear:{size}",
        {CASES[0]: (0, 0), CASES[1]: (1, 0.03), CASES[2]: (0, 0)},
    ),
    (
        "resize:torchvision:bilinear:{size}:noaa",
        "resize:pillow:bilinear:{size}",
        {CASES[0]: (0, 0)},  # upsampling: antialias changes nothing
    ),
    (
        "resize:torchvision:bicubic:{size}",
        "resize:pillow:bicubic:{size}",
        {case: (1, 0.01) for case in CASES},
    ),
    (
        "resize:jax:linear:{size}|uint8:round",
        "resize:pillow:bilinear:{size}",
        {CASES[0]: (1, 0.08), CASES[1]: (1, 0.08), CASES[2]: (1, 0.2)},
    ),
    (
        "resize:opencv:linear:{size}",
        "resize:pillow:bilinear:{size}",
        {CASES[0]: (1, 0.1)},  # upsampling only
    ),
    (
        "resize:opencv:linear:{size}",
        "resize:torchvision:bilinear:{size}:noaa",
        {case: (1, 0.2) for case in CASES},
    ),
    (
        "resize:opencv:linear:{size}",
        "resize:jax:linear:{size}:noaa|uint8:round",
        {case: (1, 0.15) for case in CASES},
    ),
    (
        "resize:jax:linear:{size}|uint8:round",
        "resize:jax:linear:{size}:noaa|uint8:round",
        {CASES[0]: (0, 0)},
    ),
    (
        "resize:jax:cubic:{size}|uint8:round",
        "resize:jax:cubic:{size}:noaa|uint8:round",
        {CASES[0]: (0, 0)},
    ),
]


@pytest.mark.parametrize("a, b, bounds", AGREE)
def test_settings_that_agree(tables, a, b, bounds):
    for case, (max_bound, mean_bound) in bounds.items():
        r = row(tables[case], a, b)
        assert r["max_abs"] <= max_bound, (case, r)
        assert r["mean_abs"] <= mean_bound, (case, r)
        assert r["exact"] == (max_bound == 0), (case, r)


# (a, b, {case: (max_abs above, mean_abs above)}): pairs that do not agree.
DISAGREE = [
    (
        "resize:opencv:linear:{size}",
        "resize:pillow:bilinear:{size}",
        {CASES[1]: (30, 1.5), CASES[2]: (30, 1.5)},  # downsampling: no antialias
    ),
    (
        "resize:torchvision:bilinear:{size}:noaa",
        "resize:torchvision:bilinear:{size}",
        {CASES[1]: (30, 1.5), CASES[2]: (30, 1.5)},
    ),
    (
        "resize:jax:linear:{size}:noaa|uint8:round",
        "resize:pillow:bilinear:{size}",
        {CASES[1]: (30, 1.5), CASES[2]: (30, 1.5)},
    ),
    (
        "resize:opencv:cubic:{size}",
        "resize:pillow:bicubic:{size}",
        {CASES[0]: (10, 0.3), CASES[1]: (20, 1), CASES[2]: (30, 1.5)},
    ),
    (
        "resize:torchvision:bicubic:{size}:noaa",
        "resize:torchvision:bicubic:{size}",
        {CASES[0]: (8, 0.3), CASES[1]: (20, 1), CASES[2]: (30, 1.5)},
    ),
    (
        "resize:opencv:nearest:{size}",
        "resize:pillow:nearest:{size}",
        {case: (100, 2) for case in CASES},
    ),
    (
        "resize:opencv:area:{size}",
        "resize:pillow:box:{size}",
        {CASES[0]: (50, 1), CASES[1]: (50, 1.5), CASES[2]: (20, 0.5)},
    ),
    (
        "resize:opencv:lanczos4:{size}",
        "resize:pillow:lanczos:{size}",
        {CASES[0]: (10, 0.2), CASES[1]: (20, 1), CASES[2]: (30, 1.5)},
    ),
    (
        "resize:jax:cubic:{size}|uint8:round",
        "resize:pillow:bicubic:{size}",
        {CASES[0]: (8, 0.05), CASES[1]: (3, 0.05), CASES[2]: (2, 0.05)},
    ),
]


@pytest.mark.parametrize("a, b, bounds", DISAGREE)
def test_settings_that_disagree(tables, a, b, bounds):
    for case, (max_above, mean_above) in bounds.items():
        r = row(tables[case], a, b)
        assert r["max_abs"] > max_above, (case, r)
        assert r["mean_abs"] > mean_above, (case, r)


def test_float_paths_explain_the_cubic_differences():
    """On float32 images the cubic disagreements above vanish: jax cubic is Pillow's
    float bicubic, OpenCV cubic is torchvision's non-antialiased bicubic."""
    digits = data.load_mnist_sample("test").images[:16]
    table = pl.parity_table(
        digits,
        [
            "float|resize:pillow:bicubic:64",
            "resize:jax:cubic:64",
            "float|resize:opencv:cubic:64",
            "float|resize:torchvision:bicubic:64:noaa",
        ],
    )
    rows = {(r["a"].split(":")[1], r["b"].split(":")[1]): r for r in table["rows"]}
    assert rows[("pillow", "jax")]["max_abs"] < 1e-3
    assert rows[("opencv", "torchvision")]["max_abs"] < 1e-3
    assert rows[("pillow", "opencv")]["max_abs"] > 5  # a = -0.5 vs a = -0.75
