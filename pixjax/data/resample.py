"""Pillow-exact image resizing in JAX.

:func:`resize` gives, for uint8 images, the same bytes as Pillow's ``Image.resize``
(``reducing_gap`` off, the whole image as the box) for every Pillow filter, on any
backend: the filter coefficients are computed on the host in float64 exactly as
Pillow's C code computes them (``libImaging/Resample.c``, ``Geometry.c``), and the
resampling itself is integer arithmetic, so a GPU or TPU produces the bytes Pillow
produces on a CPU. Train on an accelerator with the pixels your Pillow serving code
will see.

What Pillow does, and so what this module does (Pillow 7 onwards; checked against the
installed Pillow in ``tests/test_resample.py``):

* **Separable passes**, one per axis, a pass skipped when that side keeps its size.
  Pillow up to 12 always runs the horizontal pass first; Pillow 13 (PR #9549) runs the
  vertical pass first when the height shrinks by more than twice as many pixels as the
  width (``H - h > 0 and H - h > 2 * (W - w)``). The order changes the bytes (the
  intermediate image is rounded), so ``order="auto"`` follows the installed Pillow.
* **Filters** (``support`` in input pixels): box 0.5, bilinear (triangle) 1, Hamming 1
  (``sin(pi x) / (pi x) * (0.54 + 0.46 cos(pi x))``, with single-precision 0.54 /
  0.46 as in the C source), bicubic 2 (Keys' cubic with ``a = -0.5``), Lanczos 3
  (``sinc(x) sinc(x / 3)``). When shrinking by ``scale = in / out > 1`` the support
  is stretched by ``scale`` (antialiasing).
* **Coefficients** of output pixel ``i``: centre ``(i + 0.5) * scale``; input pixels
  ``xmin = int(centre - support + 0.5)`` (clamped to 0) up to ``int(centre + support +
  0.5)`` (clamped to the size) weighted by ``filter((x - centre + 0.5) / max(scale,
  1))`` and normalised to sum 1, in double precision.
* **8-bit images**: coefficients rounded half away from zero to fixed point with 22
  fractional bits; each output value is ``clip((2**21 + sum(value * coeff)) >> 22,
  0, 255)`` in 32-bit integers, and the image between the two passes is uint8.
* **Float images** (Pillow's mode ``"F"``): the double coefficients, the intermediate
  image float32. Here the sums are float32 with compensated (Kahan) accumulation, which
  stays within ``1e-4`` of Pillow on the 0..255 scale (the largest error seen is
  ``6.1e-5``, a few float32 units in the last place), as clean-fid's "clean" resize
  (Parmar et al., CVPR 2022) uses it.
* **Nearest** is Pillow's affine scaling: source index ``int(x0)`` with ``x0`` starting
  at ``scale / 2`` and advanced by ``+= scale`` in double precision (the accumulated
  rounding is reproduced).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

METHODS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")
MODES = ("uint8", "float")
ORDERS = ("auto", "pillow13", "horizontal")
# The largest output side accepted: beyond it a typo (100000) would exhaust memory.
MAX_SIDE = 16384

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed point for 8-bit images: 22 bits

# Pillow's Hamming window uses the single-precision literals 0.54f and 0.46f.
_HAMMING_A = float(np.float32(0.54))
_HAMMING_B = float(np.float32(0.46))


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _hamming(x: float) -> float:
    x = abs(x)
    if x == 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    x = x * math.pi
    return math.sin(x) / x * (_HAMMING_A + _HAMMING_B * math.cos(x))


def _bicubic(x: float) -> float:
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


# method -> (filter, support in input pixels at scale 1)
_FILTERS = {
    "box": (_box, 0.5),
    "bilinear": (_bilinear, 1.0),
    "hamming": (_hamming, 1.0),
    "bicubic": (_bicubic, 2.0),
    "lanczos": (_lanczos, 3.0),
}


@functools.lru_cache(maxsize=256)
def coefficients(in_size: int, out_size: int, method: str) -> tuple[np.ndarray, ...]:
    """Pillow's resampling coefficients for one axis (``precompute_coeffs``).

    Args:
      in_size, out_size: pixels along the axis (positive ints).
      method: a filter of :data:`METHODS` other than ``"nearest"``.

    Returns:
      ``(first, weights)``: ``first`` int32 ``[out_size]``, the first input pixel of
      each output pixel; ``weights`` float64 ``[out_size, ksize]``, normalised, zero
      past the last input pixel used (``ksize = 2 * ceil(support) + 1``). Read-only.
    """
    fn, support = _FILTERS[method]
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    ss = 1.0 / filterscale
    first = np.zeros(out_size, np.int32)
    weights = np.zeros((out_size, ksize), np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # int(): C's truncation
        xmax = min(int(center + support + 0.5), in_size) - xmin
        w = [fn((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for v in w:  # summed in order, as the C loop
            total += v
        if total != 0.0:
            w = [v / total for v in w]
        first[xx] = xmin
        weights[xx, :xmax] = w
    first.flags.writeable = False
    weights.flags.writeable = False
    return first, weights


def fixed_point(weights: np.ndarray) -> np.ndarray:
    """Pillow's 8-bit coefficients: ``weights * 2**22`` rounded half away from zero
    (``normalize_coeffs_8bpc``), int32."""
    scaled = np.asarray(weights, np.float64) * (1 << PRECISION_BITS)
    return np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5)).astype(np.int32)


@functools.lru_cache(maxsize=256)
def nearest_index(in_size: int, out_size: int) -> np.ndarray:
    """Source pixel of each output pixel for Pillow's nearest filter (int32
    ``[out_size]``): ``ImagingScaleAffine``'s accumulated double-precision position."""
    step = in_size / out_size
    pos = step * 0.5
    out = np.zeros(out_size, np.int32)
    for x in range(out_size):
        out[x] = min(-1 if pos < 0 else int(pos), in_size - 1)
        pos += step
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=1)
def _installed_order() -> str:
    try:
        import PIL
    except ImportError:  # pragma: no cover - Pillow is a dependency of pixjax
        return "pillow13"
    major = int(PIL.__version__.split(".")[0])
    return "pillow13" if major >= 13 else "horizontal"


def vertical_first(in_hw: tuple[int, int], out_hw: tuple[int, int], order: str) -> bool:
    """Whether Pillow runs the vertical pass first (see the module doc)."""
    if order == "auto":
        order = _installed_order()
    if order == "horizontal":
        return False
    dh, dw = in_hw[0] - out_hw[0], in_hw[1] - out_hw[1]
    return dh > 0 and dh > 2 * dw


def _check(images, size, method: str, mode: str, order: str) -> tuple[int, int]:
    if order not in ORDERS:
        raise ValueError(f"order: expected one of {ORDERS}, got {order!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    if (
        not isinstance(size, Sequence)
        or isinstance(size, str)
        or len(size) != 2
        or any(
            isinstance(v, bool)
            or not isinstance(v, int | np.integer)
            or not 1 <= v <= MAX_SIDE
            for v in size
        )
    ):
        raise ValueError(
            f"size: expected (height, width), two integers 1..{MAX_SIDE}, got {size!r}"
        )
    shape = np.shape(images)
    if len(shape) != 4 or min(shape[1:], default=0) < 1:
        raise ValueError(
            f"images: expected shape [N, H, W, C] with H, W, C >= 1, got {shape}"
        )
    dtype = np.dtype(images.dtype)
    if mode == "uint8" and dtype != np.uint8:
        raise ValueError(
            f"images: mode 'uint8' expects dtype uint8 (0..255), got {dtype}; pass "
            "mode='float' for float images on the 0..255 scale"
        )
    if mode == "float" and not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"images: mode 'float' expects a floating dtype (values on the 0..255 "
            f"scale), got {dtype}; pass mode='uint8' for uint8 images"
        )
    return int(size[0]), int(size[1])


def _taps(first: np.ndarray, ksize: int, in_size: int) -> np.ndarray:
    # Past a pixel's last input the weight is 0: any valid index will do there.
    return np.minimum(first[:, None] + np.arange(ksize)[None, :], in_size - 1)


def _take(x: jax.Array, axis: int, idx: np.ndarray) -> jax.Array:
    return jnp.take(x, jnp.asarray(idx), axis=axis)


def _kernel(k: np.ndarray, axis: int, ndim: int) -> jax.Array:
    """One tap's coefficients ``[out]``, shaped to broadcast along ``axis``."""
    return jnp.asarray(k).reshape(k.shape + (1,) * (ndim - axis - 1))


# Up to this many taps per output pixel the loop over taps is unrolled: one gather per
# tap, each fused by XLA into the sum (a single gather of all taps materialises
# [.., out, ksize, ..] and ran 2-4x slower on the CPU). Beyond it (a huge shrink
# factor: Lanczos 300 -> 1 has 1801 taps) a lax.scan keeps the compile time bounded.
UNROLL_TAPS = 64


def _over_taps(step, state, x: jax.Array, axis: int, idx: np.ndarray, kernels):
    """``state = step(state, values, kernels_j)`` for each tap ``j``: ``values`` are
    ``x`` gathered at ``idx[:, j]`` along ``axis``, ``kernels_j`` the tap's
    coefficients of each array in ``kernels`` (``[out, ksize]``), broadcastable."""
    ndim = x.ndim
    if idx.shape[1] <= UNROLL_TAPS:
        for j in range(idx.shape[1]):
            ks = [_kernel(k[:, j], axis, ndim) for k in kernels]
            state = step(state, _take(x, axis, idx[:, j]), ks)
        return state

    def body(state, tap):
        i, ks = tap
        ks = [k.reshape(k.shape + (1,) * (ndim - axis - 1)) for k in ks]
        return step(state, jnp.take(x, i, axis=axis), ks), None

    taps = (
        jnp.asarray(idx.T),
        [jnp.asarray(np.ascontiguousarray(k.T)) for k in kernels],
    )
    return jax.lax.scan(body, state, taps)[0]


def _out_shape(x: jax.Array, axis: int, out_size: int) -> tuple[int, ...]:
    return x.shape[:axis] + (out_size,) + x.shape[axis + 1 :]


def _pass_uint8(x: jax.Array, axis: int, out_size: int, method: str) -> jax.Array:
    """One 8-bit pass along ``axis`` (1 rows, 2 columns) of int32 ``x`` holding 0..255."""
    first, weights = coefficients(x.shape[axis], out_size, method)
    idx = _taps(first, weights.shape[1], x.shape[axis])

    def add(acc, values, ks):  # int32 sums: exact and order-free on any backend
        return acc + values * ks[0]

    acc = jnp.full(_out_shape(x, axis, out_size), 1 << (PRECISION_BITS - 1), jnp.int32)
    acc = _over_taps(add, acc, x, axis, idx, [fixed_point(weights)])
    return jnp.clip(acc >> PRECISION_BITS, 0, 255)


def _pass_float(x: jax.Array, axis: int, out_size: int, method: str) -> jax.Array:
    """One float pass along ``axis``: float32 sums, Kahan-compensated over the taps."""
    first, weights = coefficients(x.shape[axis], out_size, method)
    idx = _taps(first, weights.shape[1], x.shape[axis])
    # The float64 weights as an unevaluated sum hi + lo of two float32s.
    hi = weights.astype(np.float32)
    lo = (weights - hi.astype(np.float64)).astype(np.float32)

    def add(state, values, ks):
        total, carry = state
        for k in ks:
            term = values * k - carry
            new = total + term
            carry = (new - total) - term
            total = new
        return total, carry

    zero = jnp.zeros(_out_shape(x, axis, out_size), jnp.float32)
    return _over_taps(add, (zero, zero), x, axis, idx, [hi, lo])[0]


@functools.partial(jax.jit, static_argnames=("size", "method", "mode", "order"))
def _resize(
    images, size: tuple[int, int], method: str, mode: str, order: str
) -> jax.Array:
    h, w = size
    if method == "nearest":
        rows = nearest_index(images.shape[1], h)
        cols = nearest_index(images.shape[2], w)
        return images[:, rows][:, :, cols]
    one_pass = _pass_uint8 if mode == "uint8" else _pass_float
    x = images.astype(jnp.int32 if mode == "uint8" else jnp.float32)
    axes = [(2, w), (1, h)]  # (axis, output size): horizontal, then vertical
    if vertical_first(images.shape[1:3], size, order):
        axes.reverse()
    for axis, out_size in axes:
        if x.shape[axis] != out_size:
            x = one_pass(x, axis, out_size, method)
    return x.astype(jnp.uint8) if mode == "uint8" else x


def resize(
    images: jax.Array | np.ndarray,
    size: tuple[int, int],
    method: str = "bicubic",
    *,
    mode: str = "uint8",
    order: str = "auto",
) -> jax.Array:
    """Resizes a batch exactly as Pillow's ``Image.resize`` does (see the module doc).

    Jit-able (``size``, ``method`` and ``mode`` are static) and vmap-able; compiled
    once per shape. Integer arithmetic in ``"uint8"`` mode, so every backend gives the
    same bytes.

    Args:
      images: ``[N, H, W, C]``; uint8 ``0..255`` for ``mode="uint8"``, a floating
        dtype (values on the 0..255 scale, as Pillow's mode "F") for ``mode="float"``.
        Each channel is resized independently, as Pillow does for "L" and "RGB".
      size: ``(height, width)`` of the output, ints ``1..MAX_SIDE`` (16384; Pillow
        takes ``(width, height)``).
      method: one of :data:`METHODS`, Pillow's filter names in lower case
        (``Image.Resampling.NEAREST`` ... ``LANCZOS``).
      mode: ``"uint8"`` (byte-identical to Pillow on uint8 "L" / "RGB" images) or
        ``"float"`` (Pillow's mode "F" within ``1e-4``; float32 output, unclipped:
        bicubic and Lanczos overshoot).
      order: which pass runs first: ``"auto"`` (the installed Pillow's rule),
        ``"pillow13"`` (Pillow >= 13) or ``"horizontal"`` (Pillow <= 12: always the
        horizontal pass first).

    Returns:
      ``[N, height, width, C]``, uint8 (``mode="uint8"``) or float32 (``"float"``).

    Raises:
      ValueError: naming the argument: an unknown ``method`` / ``mode`` / ``order`` (the accepted
        ones listed), a ``size`` that is not two positive ints, images that are not
        ``[N, H, W, C]``, or of the wrong dtype for ``mode``.
    """
    size = _check(images, size, method, mode, order)
    if order == "auto":
        order = _installed_order()
    return _resize(images, size=size, method=method, mode=mode, order=order)
