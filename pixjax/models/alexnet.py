"""AlexNet (Krizhevsky et al. 2012) as torchvision defines it, as a Flax Linen module.

torchvision's variant ("One weird trick", Krizhevsky 2014): no local response
normalisation, 64-192-384-256-256 channels, adaptive average pooling to 6x6 and a
4096-4096 classifier with dropout before each of the first two linear layers.
61,100,840 parameters for 1000 classes. Conventions (normalisation inside, NHWC, names
that map onto torchvision's ``state_dict``) are described in :mod:`pixjax.models.resnet`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixjax.models.resnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    adaptive_avg_pool,
    max_pool,
    normalize,
)


def flatten_channels_first(x: jax.Array) -> jax.Array:
    """``[N, H, W, C] -> [N, C * H * W]`` in PyTorch's (NCHW) order, so that the weights
    of a torchvision ``Linear`` after ``torch.flatten`` apply unchanged."""
    return jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)


class AlexNet(nn.Module):
    """torchvision's AlexNet.

    Attributes:
      num_classes: number of logits.
      dropout_rate: dropout probability in the classifier (active only when
        ``train=True``; needs a ``'dropout'`` rng).
      mean, std: ImageNet normalisation applied inside the model.
      dtype: compute dtype; parameters and logits stay float32.

    ``__call__(x, train=False)``: ``x`` ``[N, H, W, 3]`` in ``[0, 1]`` (at least 63x63),
    logits ``[N, num_classes]`` float32.
    """

    num_classes: int = 1000
    dropout_rate: float = 0.5
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD
    dtype: Any = None

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = normalize(x, self.mean, self.std, self.dtype)
        # (torch index, channels, kernel, stride, padding, max-pool after)
        convs = (
            (0, 64, 11, 4, 2, True),
            (3, 192, 5, 1, 2, True),
            (6, 384, 3, 1, 1, False),
            (8, 256, 3, 1, 1, False),
            (10, 256, 3, 1, 1, True),
        )
        for idx, ch, k, s, p, pool in convs:
            x = nn.Conv(
                ch, (k, k), (s, s), padding=p, dtype=self.dtype, name=f"features_{idx}"
            )(x)
            x = nn.relu(x)
            if pool:
                x = max_pool(x, 3, 2)
        x = flatten_channels_first(adaptive_avg_pool(x, (6, 6)))
        dropout = nn.Dropout(self.dropout_rate, deterministic=not train)
        x = nn.relu(nn.Dense(4096, dtype=self.dtype, name="classifier_1")(dropout(x)))
        x = nn.relu(nn.Dense(4096, dtype=self.dtype, name="classifier_4")(dropout(x)))
        x = nn.Dense(self.num_classes, dtype=self.dtype, name="classifier_6")(x)
        return x.astype(jnp.float32)
