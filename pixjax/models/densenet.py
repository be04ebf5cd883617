"""DenseNet-BC (Huang et al. 2017, "Densely Connected Convolutional Networks") as
torchvision defines it, as Flax Linen modules.

Each dense layer is BN-ReLU-conv1x1 (``bn_size * growth_rate`` channels) then
BN-ReLU-conv3x3 (``growth_rate`` channels); its output is concatenated (channel axis)
to everything before it in the block. Transitions halve channels (BN-ReLU-conv1x1) and
resolution (2x2 average pool). DenseNet-121 has 7,978,856 parameters. BatchNorm follows
PyTorch (see :class:`pixjax.models.resnet.BatchNorm`); conventions are described in
:mod:`pixjax.models.resnet`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixjax.models.resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchNorm,
    max_pool,
    normalize,
)

# torchvision uses Kaiming-normal (fan_in) for DenseNet's convolutions.
kaiming_fan_in = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class DenseLayer(nn.Module):
    """One bottleneck layer: returns the ``growth_rate`` new channels only."""

    growth_rate: int
    bn_size: int = 4
    drop_rate: float = 0.0
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = functools.partial(
            BatchNorm, use_running_average=not train, dtype=self.dtype
        )
        conv = functools.partial(
            nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=kaiming_fan_in
        )
        y = nn.relu(norm(name="norm1")(x))
        y = conv(self.bn_size * self.growth_rate, (1, 1), padding=0, name="conv1")(y)
        y = nn.relu(norm(name="norm2")(y))
        y = conv(self.growth_rate, (3, 3), padding=1, name="conv2")(y)
        if self.drop_rate > 0:
            y = nn.Dropout(self.drop_rate, deterministic=not train)(y)
        return y


class DenseNet(nn.Module):
    """torchvision's DenseNet.

    Attributes:
      growth_rate: channels each dense layer adds (32; 48 for DenseNet-161).
      block_config: dense layers per block, e.g. ``(6, 12, 24, 16)`` (DenseNet-121).
      num_init_features: channels of the stem convolution (64; 96 for DenseNet-161).
      bn_size: bottleneck width multiplier.
      drop_rate: dropout after each dense layer (0 in torchvision's models).
      num_classes: number of logits.
      mean, std: ImageNet normalisation applied inside the model.
      dtype: compute dtype; parameters and logits stay float32.

    ``__call__(x, train=False)``: ``x`` ``[N, H, W, 3]`` in ``[0, 1]`` (at least 32x32),
    logits ``[N, num_classes]`` float32. ``train=True`` needs
    ``mutable=["batch_stats"]``.
    """

    growth_rate: int = 32
    block_config: Sequence[int] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    drop_rate: float = 0.0
    num_classes: int = 1000
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        norm = functools.partial(
            BatchNorm, use_running_average=not train, dtype=self.dtype
        )
        conv = functools.partial(
            nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=kaiming_fan_in
        )
        x = normalize(x, self.mean, self.std, self.dtype)
        x = conv(
            self.num_init_features, (7, 7), (2, 2), padding=3, name="features_conv0"
        )(x)
        x = nn.relu(norm(name="features_norm0")(x))
        x = max_pool(x, 3, 2, padding=1)
        channels = self.num_init_features
        for b, num_layers in enumerate(self.block_config, start=1):
            features = [x]
            for i in range(1, num_layers + 1):
                inputs = features[0] if i == 1 else jnp.concatenate(features, axis=-1)
                features.append(
                    DenseLayer(
                        self.growth_rate,
                        self.bn_size,
                        self.drop_rate,
                        dtype=self.dtype,
                        name=f"features_denseblock{b}_denselayer{i}",
                    )(inputs, train)
                )
            x = jnp.concatenate(features, axis=-1)
            channels += num_layers * self.growth_rate
            if b != len(self.block_config):
                channels //= 2
                x = nn.relu(norm(name=f"features_transition{b}_norm")(x))
                x = conv(
                    channels, (1, 1), padding=0, name=f"features_transition{b}_conv"
                )(x)
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(norm(name="features_norm5")(x))
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier")(x)
        return x.astype(jnp.float32)
