"""Model registry: a literal dict of Linen module factories and :func:`get_model`.

Every model takes ``[N, H, W, C]`` float32 images in ``[0, 1]`` (normalisation lives
inside the model) and returns logits ``[N, num_classes]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixjax.models.lenet import LeNet5

MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
}

# Input shapes the models were designed for (H, W, C); used for initialisation when no
# data is at hand and for error messages. Any size the architecture accepts works.
DEFAULT_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "lenet5": (28, 28, 1),
}


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Builds the registered model ``name`` with keyword overrides.

    Raises:
      ValueError: for an unknown name; the message lists the registered models.
    """
    if name not in MODELS:
        raise ValueError(f"model: unknown {name!r}; expected one of {sorted(MODELS)}")
    return MODELS[name](**kwargs)


def init_variables(
    model: nn.Module, key: jax.Array, input_shape: tuple[int, int, int]
) -> Any:
    """Initialises ``model`` for images of ``input_shape`` ``(H, W, C)``."""
    return jax.jit(model.init)(key, jnp.zeros((1, *input_shape), jnp.float32))


def logits_fn(model: nn.Module, variables: Any) -> Callable[[jax.Array], jax.Array]:
    """``images [N, H, W, C] in [0, 1] -> logits``: the function attacks take."""
    return functools.partial(model.apply, variables)


def count_params(variables: Any) -> int:
    return sum(
        int(x.size) for x in jax.tree_util.tree_leaves(variables.get("params", {}))
    )
