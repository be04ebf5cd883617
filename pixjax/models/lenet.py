"""LeNet-5 (LeCun et al. 1998) as a Flax Linen module.

Modern variant, as used in most robustness studies: ReLU activations and 2x2 max
pooling instead of tanh and trainable sub-sampling; the first convolution pads by 2 so
that 28x28 MNIST digits see the 32x32 receptive field of the original.
Layer shapes (28x28x1 input): conv 6@5x5 -> 28x28x6 -> pool 14x14x6 -> conv 16@5x5
-> 10x10x16 -> pool 5x5x16 -> dense 120 -> dense 84 -> dense ``num_classes``.
61,706 parameters for 10 classes and one channel.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from pixjax.models.layers import ConvReluPool, max_pool_2x2


class LeNet5(nn.Module):
    """LeNet-5.

    Attributes:
      num_classes: number of output logits.
      mean, std: per-channel normalisation applied inside the model, so that the
        model takes images in ``[0, 1]`` (attacks and perturbations work in pixel space).
    """

    num_classes: int = 10
    mean: Sequence[float] = (0.1307,)
    std: Sequence[float] = (0.3081,)

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        """Args: x ``[N, H, W, C]`` float in ``[0, 1]``. Returns logits ``[N, classes]``."""
        del train  # no dropout / batch norm: same function in training and inference
        mean = jnp.asarray(self.mean, x.dtype)
        std = jnp.asarray(self.std, x.dtype)
        x = (x - mean) / std
        # conv 5x5 -> ReLU -> 2x2 max pool, fused on the CPU (pixjax.models.layers)
        x = ConvReluPool(6, (5, 5), padding=2, name="conv1")(x)
        x = nn.Conv(16, (5, 5), padding="VALID", name="conv2")(x)
        x = max_pool_2x2(nn.relu(x))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(120, name="fc1")(x))
        x = nn.relu(nn.Dense(84, name="fc2")(x))
        return nn.Dense(self.num_classes, name="fc3")(x)
