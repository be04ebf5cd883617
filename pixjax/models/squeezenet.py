"""SqueezeNet (Iandola et al. 2016, "SqueezeNet: AlexNet-level accuracy with 50x fewer
parameters") 1.0 and 1.1 as torchvision defines them, as Flax Linen modules.

Fire modules squeeze with a 1x1 convolution then expand with parallel 1x1 and 3x3
convolutions whose outputs are concatenated. Max pools use PyTorch's ``ceil_mode=True``
(:func:`pixjax.models.resnet.max_pool`). The classifier is dropout, a 1x1 convolution to
``num_classes`` channels, ReLU and global average pooling, so logits are >= 0.
SqueezeNet 1.0 has 1,248,424 parameters, 1.1 has 1,235,496. Conventions are described
in :mod:`pixjax.models.resnet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixjax.models.resnet import IMAGENET_MEAN, IMAGENET_STD, max_pool, normalize

# torchvision: Kaiming-uniform (ReLU gain) for the features, N(0, 0.01) for the final
# convolution; biases zero.
_kaiming_uniform = nn.initializers.variance_scaling(2.0, "fan_in", "uniform")

# (squeeze, expand1x1, expand3x3) channels of each Fire module keyed by its index in
# torchvision's `features` Sequential; "M" marks a ceil-mode 3x3/2 max pool.
_LAYOUTS: dict[str, tuple[Any, ...]] = {
    "1_0": (
        *("M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M"),
        *((32, 128, 128), (48, 192, 192), (48, 192, 192), (64, 256, 256), "M"),
        (64, 256, 256),
    ),
    "1_1": (
        *("M", (16, 64, 64), (16, 64, 64), "M", (32, 128, 128), (32, 128, 128), "M"),
        *((48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)),
    ),
}


class Fire(nn.Module):
    """Squeeze (1x1) then expand (1x1 and 3x3, concatenated), all with ReLU."""

    squeeze: int
    expand1x1: int
    expand3x3: int
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        def conv(ch, k, name):
            return nn.Conv(
                ch,
                (k, k),
                padding=k // 2,
                dtype=self.dtype,
                kernel_init=_kaiming_uniform,
                name=name,
            )

        x = nn.relu(conv(self.squeeze, 1, "squeeze")(x))
        a = nn.relu(conv(self.expand1x1, 1, "expand1x1")(x))
        b = nn.relu(conv(self.expand3x3, 3, "expand3x3")(x))
        return jnp.concatenate([a, b], axis=-1)


class SqueezeNet(nn.Module):
    """torchvision's SqueezeNet.

    Attributes:
      version: ``"1_0"`` or ``"1_1"`` (1.1: 3x3 stem with 64 channels, earlier pools,
        ~2.4x less computation).
      num_classes: number of logits.
      dropout_rate: dropout before the final convolution (only when ``train=True``;
        needs a ``'dropout'`` rng).
      mean, std: ImageNet normalisation applied inside the model.
      dtype: compute dtype; parameters and logits stay float32.

    ``__call__(x, train=False)``: ``x`` ``[N, H, W, 3]`` in ``[0, 1]`` (at least 35x35
    for 1.0, 31x31 for 1.1 with ceil-mode pooling; larger is safer),
    logits ``[N, num_classes]`` float32 (non-negative: ReLU before the pooling).
    """

    version: str = "1_0"
    num_classes: int = 1000
    dropout_rate: float = 0.5
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        if self.version not in _LAYOUTS:
            raise ValueError(
                f"SqueezeNet version: expected one of {sorted(_LAYOUTS)}, "
                f"got {self.version!r}"
            )
        x = normalize(x, self.mean, self.std, self.dtype)
        stem, k = (96, 7) if self.version == "1_0" else (64, 3)
        x = nn.Conv(
            stem,
            (k, k),
            (2, 2),
            padding=0,
            dtype=self.dtype,
            kernel_init=_kaiming_uniform,
            name="features_0",
        )(x)
        x = nn.relu(x)
        for idx, layer in enumerate(_LAYOUTS[self.version], start=2):
            if layer == "M":
                x = max_pool(x, 3, 2, ceil_mode=True)
            else:
                x = Fire(*layer, dtype=self.dtype, name=f"features_{idx}")(x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.Conv(
            self.num_classes,
            (1, 1),
            padding=0,
            dtype=self.dtype,
            kernel_init=nn.initializers.normal(0.01),
            name="classifier_1",
        )(x)
        x = jnp.mean(nn.relu(x), axis=(1, 2))
        return x.astype(jnp.float32)
