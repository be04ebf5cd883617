"""Drop-in layer kernels that are faster than XLA's generic ones on the CPU.

XLA's CPU convolution is slow for layers with one or two input channels (the first
layer of every grayscale model): on 500 MNIST images LeNet-5's first convolution (5x5,
6 channels) takes ~20-30 ms, ~5x PyTorch. Written as a sum of shifted, broadcast
products it takes ~5 ms; the whole LeNet-5 forward pass runs ~1.5x faster and its input
gradient ~1.3x (``benchmarks/bench_fgsm.py`` measures whole attacks and sweeps).

:func:`conv_general_dilated` has ``lax.conv_general_dilated``'s signature and takes the
fast path only where it applies (NHWC / HWIO, unit strides and dilations, no groups,
at most :data:`SMALL_IN_CHANNELS` input channels, CPU backend); everything else goes to
``lax.conv_general_dilated`` unchanged, so it is safe as
``nn.Conv(..., conv_general_dilated=conv_general_dilated)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

SMALL_IN_CHANNELS = 2
_NHWC = ("NHWC", "HWIO", "NHWC")


def _shift_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """VALID cross-correlation ``[N, H, W, Ci] x [kh, kw, Ci, Co]`` by shift-and-add."""
    kh, kw, ci, _ = kernel.shape
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            for c in range(ci):
                term = x[:, i : i + oh, j : j + ow, c : c + 1] * kernel[i, j, c]
                out = term if out is None else out + term
    return out


def _shift_conv_input_grad(
    g: jax.Array, kernel: jax.Array, h: int, w: int
) -> jax.Array:
    """Gradient of :func:`_shift_conv` w.r.t. its input ``[N, h, w, Ci]``: the output
    channels are contracted first (one small matmul), then each tap is put back in place
    (a sum of padded slices that XLA fuses into one loop)."""
    kh, kw, ci, co = kernel.shape
    oh, ow = g.shape[1], g.shape[2]
    taps = (g @ kernel.reshape(kh * kw * ci, co).T).reshape(*g.shape[:3], kh, kw, ci)
    out = None
    for i in range(kh):
        for j in range(kw):
            pads = ((0, 0), (i, h - oh - i), (j, w - ow - j), (0, 0))
            term = jnp.pad(taps[:, :, :, i, j, :], pads)
            out = term if out is None else out + term
    return out


def _xla_valid_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return lax.conv_general_dilated(x, kernel, (1, 1), "VALID", dimension_numbers=_NHWC)


@jax.custom_vjp
def shift_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """VALID, stride-1 convolution (cross-correlation) for few input channels.

    Args:
      x: ``[N, H, W, Ci]``.
      kernel: ``[kh, kw, Ci, Co]`` (Flax's HWIO layout).

    Returns:
      ``[N, H - kh + 1, W - kw + 1, Co]``, equal to ``lax.conv_general_dilated`` up to
      float32 summation order. Differentiable in both arguments. Under ``jax.grad``
      the forward pass is XLA's convolution (the fused sum was slower next to the
      backward pass), the input gradient the fused form, the kernel gradient XLA's.
    """
    return _shift_conv(x, kernel)


def _shift_conv_fwd(x, kernel):
    return _xla_valid_conv(x, kernel), (x, kernel)


def _shift_conv_bwd(res, g):
    x, kernel = res
    gx = _shift_conv_input_grad(g, kernel, x.shape[1], x.shape[2])
    _, kernel_vjp = jax.vjp(lambda k: _xla_valid_conv(x, k), kernel)
    return gx.astype(x.dtype), kernel_vjp(g)[0]


shift_conv.defvjp(_shift_conv_fwd, _shift_conv_bwd)


def _fast_path(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation,
    rhs_dilation,
    dimension_numbers,
    feature_group_count,
    batch_group_count,
) -> bool:
    ones = (1,) * (lhs.ndim - 2)
    return (
        jax.default_backend() == "cpu"
        and lhs.ndim == 4
        and dimension_numbers is not None
        and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
        and tuple(window_strides) == ones
        and tuple(lhs_dilation or ones) == ones
        and tuple(rhs_dilation or ones) == ones
        and feature_group_count == 1
        and batch_group_count == 1
        and rhs.shape[2] <= SMALL_IN_CHANNELS
        and lhs.dtype == rhs.dtype
    )


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """``lax.conv_general_dilated`` with :func:`shift_conv` where it is faster (see the
    module docstring for when); same arguments, same result up to float rounding."""
    if _fast_path(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation,
        rhs_dilation,
        dimension_numbers,
        feature_group_count,
        batch_group_count,
    ):
        if isinstance(padding, str):
            padding = lax.padtype_to_pads(
                lhs.shape[1:3], rhs.shape[:2], (1, 1), padding
            )
        pads = tuple((int(lo), int(hi)) for lo, hi in padding)
        if min(min(pair) for pair in pads) >= 0:  # negative padding (cropping): XLA
            x = jnp.pad(lhs, ((0, 0), *pads, (0, 0)))
            out = shift_conv(x, rhs)
            if preferred_element_type is not None:
                out = out.astype(preferred_element_type)
            return out
    return lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides,
        padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 on ``[N, H, W, C]`` (floor mode, like
    ``nn.max_pool(x, (2, 2), strides=(2, 2))``), as the maximum of four strided slices.

    Same values as ``reduce_window``; its gradient is elementwise masks instead of
    XLA's select-and-scatter, which is slow on the CPU. Where a window holds equal
    maxima the whole gradient goes to the first in row-major order, as in PyTorch and
    ``reduce_window`` (flat background regions tie constantly: a FGSM sign depends
    on it).
    """
    h, w = x.shape[1] - x.shape[1] % 2, x.shape[2] - x.shape[2] % 2
    x = x[:, :h, :w, :]
    top = _first_max(x[:, 0::2, 0::2], x[:, 0::2, 1::2])
    bottom = _first_max(x[:, 1::2, 0::2], x[:, 1::2, 1::2])
    return _first_max(top, bottom)


def _first_max(a: jax.Array, b: jax.Array) -> jax.Array:
    # ``where`` sends the whole gradient of a tie to ``a`` (``jnp.maximum`` halves it).
    return jnp.where(a >= b, a, b)
