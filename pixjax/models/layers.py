"""Layer kernels that are faster than XLA's generic ones on the CPU.

XLA's CPU convolution is slow for layers with one or two input channels (the first
layer of every grayscale model): on 500 MNIST images LeNet-5's first convolution (5x5,
6 channels) takes ~20-30 ms, ~5x PyTorch, and max pooling's gradient (select-and-scatter)
is slow too. Here:

* :class:`ConvReluPool` / :func:`conv_relu_pool`: convolution -> ReLU -> 2x2 max pooling
  computed per pooling phase as sums of strided slices, one fused loop (~2.5 ms instead
  of ~14 ms for that layer), with a hand-written backward pass. LeNet-5 uses it: its
  forward pass runs ~4x faster than with XLA's kernels and ~2x PyTorch's, its input
  gradient ~2x faster (``benchmarks/bench_fgsm.py`` measures whole attacks).
* :func:`conv_general_dilated`: ``lax.conv_general_dilated``'s signature, the
  shift-and-add form where it applies (NHWC / HWIO, unit strides and dilations, no
  groups, at most :data:`SMALL_IN_CHANNELS` input channels, CPU backend), XLA's
  everywhere else; safe as ``nn.Conv(..., conv_general_dilated=conv_general_dilated)``.
* :func:`max_pool_2x2`: 2x2 / stride 2 pooling whose gradient is elementwise.

All equal XLA's composition up to float32 summation order, gradients included (tested,
ties in pooling windows too).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
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


def _pool_phases(x: jax.Array, kernel: jax.Array, bias: jax.Array):
    """Pooled ``relu(conv + bias)`` and which of the four window positions won.

    Each pooling phase (the VALID convolution at even / odd rows and columns) is a sum
    of strided slices of ``x``; their maximum is the pooled map. Nothing is computed
    twice, and XLA fuses the whole layer into one loop (pooling a fused convolution
    instead makes XLA recompute the convolution once per window position).

    Returns:
      ``(pre, phase)``: the pooled pre-activation ``[N, ph, pw, Co]`` (bias added) and
      the winning phase ``0..3`` (row-major in the window; the first on ties, as in
      PyTorch and ``reduce_window``).
    """
    kh, kw, ci, _ = kernel.shape
    ph, pw = (x.shape[1] - kh + 1) // 2, (x.shape[2] - kw + 1) // 2
    best = phase = None
    for p, (di, dj) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        acc = None
        for i in range(kh):
            for j in range(kw):
                r, c0 = di + i, dj + j
                for c in range(ci):
                    sl = x[
                        :, r : r + 2 * ph - 1 : 2, c0 : c0 + 2 * pw - 1 : 2, c : c + 1
                    ]
                    term = sl * kernel[i, j, c]
                    acc = term if acc is None else acc + term
        if best is None:
            best, phase = acc, jnp.zeros(acc.shape, jnp.int8)
        else:
            phase = jnp.where(acc > best, jnp.int8(p), phase)
            best = jnp.maximum(best, acc)
    return best + bias, phase


@jax.custom_vjp
def conv_relu_pool(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """``max_pool_2x2(relu(conv(x, kernel) + bias))`` for a VALID, stride-1 convolution
    with few input channels (``[N, H, W, Ci]``, ``[kh, kw, Ci, Co]``, ``[Co]``).

    Forward: one fused loop per pooling phase (:func:`_pool_phases`). Backward: the
    pooled gradient goes back to the winning position of each window (through the
    ReLU), then through the convolution (the fused input gradient of
    :func:`shift_conv`; XLA's kernel gradient). Equal to differentiating the unfused
    composition.
    """
    return jax.nn.relu(_pool_phases(x, kernel, bias)[0])


def _conv_relu_pool_fwd(x, kernel, bias):
    pre, phase = _pool_phases(x, kernel, bias)
    return jax.nn.relu(pre), (x, kernel, pre > 0, phase)


def _conv_relu_pool_bwd(res, g):
    x, kernel, active, phase = res
    kh, kw = kernel.shape[:2]
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    g = jnp.where(active, g, 0)
    n, ph, pw, co = g.shape
    # Scatter each window's gradient to its winning position: [N, ph, 2, pw, 2, Co].
    onehot = phase[..., None] == jnp.arange(4, dtype=jnp.int8)  # [N, ph, pw, Co, 4]
    full = jnp.where(onehot, g[..., None], 0).reshape(n, ph, pw, co, 2, 2)
    full = full.transpose(0, 1, 4, 2, 5, 3).reshape(n, 2 * ph, 2 * pw, co)
    full = jnp.pad(full, ((0, 0), (0, oh - 2 * ph), (0, ow - 2 * pw), (0, 0)))
    gx = _shift_conv_input_grad(full, kernel, x.shape[1], x.shape[2])
    _, kernel_vjp = jax.vjp(lambda k: _xla_valid_conv(x, k), kernel)
    return gx.astype(x.dtype), kernel_vjp(full)[0], jnp.sum(g, axis=(0, 1, 2))


conv_relu_pool.defvjp(_conv_relu_pool_fwd, _conv_relu_pool_bwd)


def _conv_relu_pool_reference(x, kernel, bias):
    return max_pool_2x2(jax.nn.relu(_xla_valid_conv(x, kernel) + bias))


class ConvReluPool(nn.Module):
    """``nn.Conv`` (stride 1) -> ReLU -> 2x2 max pooling, with ``nn.Conv``'s parameters
    (``kernel`` ``[kh, kw, Ci, Co]`` LeCun-normal, ``bias`` zeros), so checkpoints of
    the unfused layers load unchanged. On the CPU with at most
    :data:`SMALL_IN_CHANNELS` input channels it runs :func:`conv_relu_pool`; elsewhere
    the plain composition.
    """

    features: int
    kernel_size: tuple[int, int]
    padding: int = 0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (kh, kw, x.shape[-1], self.features),
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        kernel, bias = kernel.astype(x.dtype), bias.astype(x.dtype)
        p = self.padding
        if p:
            x = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        if jax.default_backend() == "cpu" and x.shape[-1] <= SMALL_IN_CHANNELS:
            return conv_relu_pool(x, kernel, bias)
        y = lax.conv_general_dilated(
            x, kernel, (1, 1), "VALID", dimension_numbers=_NHWC
        )
        return max_pool_2x2(jax.nn.relu(y + bias))
