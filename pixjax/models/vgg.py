"""VGG (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale
Image Recognition") as torchvision defines it, as Flax Linen modules.

Configurations A, B, D, E are VGG-11, -13, -16, -19; ``batch_norm=True`` inserts a
BatchNorm after every convolution (torchvision's ``vgg*_bn``, see
:class:`pixjax.models.resnet.BatchNorm`). Adaptive average pooling to 7x7, then a
4096-4096 classifier with dropout after each of the first two linear layers. VGG-16 has
138,357,544 parameters. Conventions are described in :mod:`pixjax.models.resnet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixjax.models.alexnet import flatten_channels_first
from pixjax.models.resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BatchNorm,
    adaptive_avg_pool,
    kaiming_fan_out,
    max_pool,
    normalize,
)

# Output channels of each 3x3 convolution; "M" is a 2x2 max pool.
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "A": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "B": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "D": (
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, "M"),
        *(512, 512, 512, "M", 512, 512, 512, "M"),
    ),
    "E": (
        *(64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"),
        *(512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
    ),
}


class VGG(nn.Module):
    """torchvision's VGG.

    Attributes:
      config: ``"A"`` (VGG-11), ``"B"`` (13), ``"D"`` (16) or ``"E"`` (19).
      batch_norm: BatchNorm after each convolution (the ``_bn`` variants).
      num_classes: number of logits.
      dropout_rate: classifier dropout (only when ``train=True``; needs a ``'dropout'``
        rng).
      mean, std: ImageNet normalisation applied inside the model.
      dtype: compute dtype; parameters and logits stay float32.

    ``__call__(x, train=False)``: ``x`` ``[N, H, W, 3]`` in ``[0, 1]`` (at least 32x32),
    logits ``[N, num_classes]`` float32. With ``batch_norm`` and ``train=True``, pass
    ``mutable=["batch_stats"]``.
    """

    config: str = "A"
    batch_norm: bool = False
    num_classes: int = 1000
    dropout_rate: float = 0.5
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.config not in CONFIGS:
            raise ValueError(
                f"VGG config: expected one of {sorted(CONFIGS)}, got {self.config!r}"
            )
        x = normalize(x, self.mean, self.std, self.dtype)
        idx = 0  # index in torchvision's `features` Sequential
        for v in CONFIGS[self.config]:
            if v == "M":
                x = max_pool(x, 2, 2)
                idx += 1
                continue
            x = nn.Conv(
                v,
                (3, 3),
                padding=1,
                dtype=self.dtype,
                kernel_init=kaiming_fan_out,
                name=f"features_{idx}",
            )(x)
            if self.batch_norm:
                x = BatchNorm(
                    use_running_average=not train,
                    dtype=self.dtype,
                    name=f"features_{idx + 1}",
                )(x)
            x = nn.relu(x)
            idx += 3 if self.batch_norm else 2
        x = flatten_channels_first(adaptive_avg_pool(x, (7, 7)))
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        x = dropout(nn.relu(nn.Dense(4096, dtype=self.dtype, name="classifier_0")(x)))
        x = dropout(nn.relu(nn.Dense(4096, dtype=self.dtype, name="classifier_3")(x)))
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier_6")(x)
        return x.astype(jnp.float32)
