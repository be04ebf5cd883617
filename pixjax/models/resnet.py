"""ResNet (He et al. 2016, "Deep Residual Learning for Image Recognition") as Flax Linen
modules that load torchvision's weights, plus the torch-compatible layers that all the
torchvision ports share (:class:`BatchNorm`, :func:`max_pool`,
:func:`adaptive_avg_pool`, :func:`normalize`).

Layout and conventions (shared by ``alexnet``, ``vgg``, ``densenet``, ``squeezenet``):

* Input ``[N, H, W, 3]`` float in ``[0, 1]``; ImageNet normalisation (``mean``/``std``
  fields) happens inside the model, so attacks and perturbations work in pixel space.
* Submodule names spell torchvision's ``state_dict`` names with ``_`` for ``.``
  (``layer1_0/downsample_0`` is ``layer1.0.downsample.0``); ``pixjax.models.convert``
  relies on that to map weights by name.
* ``dtype`` sets the compute dtype (e.g. ``jnp.bfloat16``); parameters stay float32 and
  the logits are returned as float32. Checked on an H100 (jax 0.11.2) and on AVX2 CPUs
  (jax 0.10.2). Known problem: on a CPU with AMX / AVX512-BF16 (Sapphire Rapids),
  jax 0.11.2's CPU backend returned NaN logits for ResNet-18 in bfloat16 (jitted
  ``apply``; the same model with ``capture_intermediates=True``, float32, and the GPU
  were fine). ``tests/test_zoo.py::test_bfloat16_compute_agrees_on_top1`` catches it;
  use float32 on such CPUs.

ResNet here is torchvision's "v1.5": the stride of a bottleneck block sits on its 3x3
convolution. ResNet-18 has 11,689,512 parameters, ResNet-50 25,557,032.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision initialises convolutions with Kaiming-normal (fan_out, ReLU gain).
kaiming_fan_out = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def normalize(
    x: jax.Array, mean: Sequence[float], std: Sequence[float], dtype: Any = None
) -> jax.Array:
    """``(x - mean) / std`` per channel in float32, then cast to ``dtype`` if given."""
    x = jnp.asarray(x, jnp.float32)
    x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return x if dtype is None else x.astype(dtype)


def max_pool(
    x: jax.Array, kernel: int, stride: int, padding: int = 0, ceil_mode: bool = False
) -> jax.Array:
    """PyTorch's ``nn.MaxPool2d(kernel, stride, padding, ceil_mode)`` on NHWC input.

    Padding is ``-inf`` (never selected). ``ceil_mode=True`` (SqueezeNet) keeps a last,
    partial window: the bottom / right edge gets the extra ``-inf`` padding it needs,
    and, as in PyTorch, a window that would start inside the right padding is dropped.
    """
    pads = []
    for size in x.shape[1:3]:
        span = size + 2 * padding - kernel
        if span < 0:
            raise ValueError(
                f"max_pool: input {tuple(x.shape[1:3])} is smaller than the "
                f"{kernel}x{kernel} window"
            )
        if ceil_mode:
            out = -(-span // stride) + 1
            if (out - 1) * stride >= size + padding:
                out -= 1
            hi = max(padding, (out - 1) * stride + kernel - size - padding)
        else:
            hi = padding
        pads.append((padding, hi))
    return nn.max_pool(x, (kernel, kernel), strides=(stride, stride), padding=pads)


def _adaptive_avg_pool_axis(x: jax.Array, axis: int, out: int) -> jax.Array:
    size = x.shape[axis]
    if size == out:
        return x
    if size % out == 0:
        shape = (*x.shape[:axis], out, size // out, *x.shape[axis + 1 :])
        return jnp.mean(x.reshape(shape), axis=axis + 1)
    # PyTorch's bins: [floor(i * size / out), ceil((i + 1) * size / out)); they overlap
    # when size is not a multiple of out and repeat rows when size < out.
    bins = [(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]
    return jnp.stack(
        [jnp.mean(lax.slice_in_dim(x, s, e, axis=axis), axis=axis) for s, e in bins],
        axis=axis,
    )


def adaptive_avg_pool(x: jax.Array, output_size: tuple[int, int]) -> jax.Array:
    """PyTorch's ``nn.AdaptiveAvgPool2d(output_size)`` on NHWC input ``[N, H, W, C]``.

    Output bin ``i`` of an axis of length ``n`` averages rows
    ``floor(i * n / out) .. ceil((i + 1) * n / out) - 1`` (PyTorch's boundaries), so
    torchvision's classifier weights apply to inputs of any size.
    """
    x = _adaptive_avg_pool_axis(x, 1, output_size[0])
    return _adaptive_avg_pool_axis(x, 2, output_size[1])


class BatchNorm(nn.Module):
    """Batch normalisation with PyTorch's ``nn.BatchNorm2d`` semantics.

    Variables are named as in ``flax.linen.BatchNorm`` (params ``scale``, ``bias``;
    ``batch_stats`` ``mean``, ``var``), so checkpoints are interchangeable. It differs
    from ``flax.linen.BatchNorm`` in one respect, on purpose: in training mode the
    running variance is updated with the *unbiased* batch variance
    (``var * n / (n - 1)``, ``n`` = values per channel), as PyTorch does; Flax updates it
    with the biased one. Normalisation itself uses the biased variance (both
    libraries). Statistics are computed in float32 in two passes.

    Attributes:
      use_running_average: ``True`` for inference (``not train``).
      momentum: running-average decay; 0.9 here is PyTorch's ``momentum=0.1``.
      epsilon: added to the variance (PyTorch's ``eps``).
      dtype: output dtype (``None``: float32 for float32 input).
      axis_name: a mapped axis (``pmap`` / ``shard_map`` / ``vmap``) over which batch
        statistics are averaged; not needed under ``jit`` with sharded global arrays.
    """

    use_running_average: bool = False
    momentum: float = 0.9
    epsilon: float = 1e-5
    dtype: Any = None
    axis_name: str | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        ra_mean = self.variable(
            "batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32)
        )
        ra_var = self.variable(
            "batch_stats", "var", lambda: jnp.ones((c,), jnp.float32)
        )
        if self.use_running_average:
            mean, var = ra_mean.value, ra_var.value
        else:
            xf = x.astype(jnp.float32)
            axes = tuple(range(x.ndim - 1))
            n = math.prod(x.shape[:-1])
            mean = jnp.mean(xf, axes)
            if self.axis_name is not None:
                mean = lax.pmean(mean, self.axis_name)
            var = jnp.mean(jnp.square(xf - mean), axes)
            if self.axis_name is not None:
                var = lax.pmean(var, self.axis_name)
                n = n * lax.psum(1, self.axis_name)
            if not self.is_initializing():
                m = self.momentum
                unbiased = var * (n / jnp.maximum(n - 1, 1))
                ra_mean.value = m * ra_mean.value + (1.0 - m) * mean
                ra_var.value = m * ra_var.value + (1.0 - m) * unbiased
        mul = scale * lax.rsqrt(var + self.epsilon)
        y = (x - mean) * mul + bias
        return y if self.dtype is None else y.astype(self.dtype)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (torchvision ``BasicBlock``, ResNet-18/34)."""

    features: int
    strides: int = 1
    downsample: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = functools.partial(
            nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=kaiming_fan_out
        )
        norm = functools.partial(
            BatchNorm, use_running_average=not train, dtype=self.dtype
        )
        s = (self.strides, self.strides)
        y = conv(self.features, (3, 3), s, padding=1, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = conv(self.features, (3, 3), padding=1, name="conv2")(y)
        y = norm(name="bn2")(y)
        if self.downsample:
            x = conv(self.features, (1, 1), s, padding=0, name="downsample_0")(x)
            x = norm(name="downsample_1")(x)
        return nn.relu(y + x)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 (x4 channels), torchvision ``Bottleneck``."""

    features: int
    strides: int = 1
    downsample: bool = False
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        conv = functools.partial(
            nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=kaiming_fan_out
        )
        norm = functools.partial(
            BatchNorm, use_running_average=not train, dtype=self.dtype
        )
        s = (self.strides, self.strides)
        y = conv(self.features, (1, 1), padding=0, name="conv1")(x)
        y = nn.relu(norm(name="bn1")(y))
        y = conv(self.features, (3, 3), s, padding=1, name="conv2")(y)
        y = nn.relu(norm(name="bn2")(y))
        y = conv(self.features * 4, (1, 1), padding=0, name="conv3")(y)
        y = norm(name="bn3")(y)
        if self.downsample:
            x = conv(self.features * 4, (1, 1), s, padding=0, name="downsample_0")(x)
            x = norm(name="downsample_1")(x)
        return nn.relu(y + x)


class ResNet(nn.Module):
    """torchvision's ResNet.

    Attributes:
      stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18,
        ``(3, 4, 6, 3)`` for ResNet-50.
      block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"`` (ResNet-50/101/152).
      num_classes: number of logits.
      mean, std: ImageNet normalisation applied inside the model.
      dtype: compute dtype; parameters and logits stay float32.

    ``__call__(x, train=False)``: ``x`` ``[N, H, W, 3]`` in ``[0, 1]`` (any size from
    about 32x32), logits ``[N, num_classes]`` float32. ``train=True`` normalises with
    batch statistics and needs ``mutable=["batch_stats"]``; the running variance update
    follows PyTorch (unbiased), see :class:`BatchNorm`.
    """

    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    block: str = "basic"
    num_classes: int = 1000
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.block not in ("basic", "bottleneck"):
            raise ValueError(
                f"ResNet block: expected 'basic' or 'bottleneck', got {self.block!r}"
            )
        block_cls = BasicBlock if self.block == "basic" else Bottleneck
        expansion = 1 if self.block == "basic" else 4
        x = normalize(x, self.mean, self.std, self.dtype)
        x = nn.Conv(
            64,
            (7, 7),
            (2, 2),
            padding=3,
            use_bias=False,
            dtype=self.dtype,
            kernel_init=kaiming_fan_out,
            name="conv1",
        )(x)
        x = BatchNorm(use_running_average=not train, dtype=self.dtype, name="bn1")(x)
        x = max_pool(nn.relu(x), 3, 2, padding=1)
        in_features = 64
        for i, num_blocks in enumerate(self.stage_sizes):
            features = 64 * 2**i
            for j in range(num_blocks):
                strides = 2 if (i > 0 and j == 0) else 1
                downsample = strides != 1 or in_features != features * expansion
                x = block_cls(
                    features,
                    strides=strides,
                    downsample=downsample,
                    dtype=self.dtype,
                    name=f"layer{i + 1}_{j}",
                )(x, train)
                in_features = features * expansion
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")(x)
        return x.astype(jnp.float32)
