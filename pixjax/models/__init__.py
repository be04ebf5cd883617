"""Model registry: a literal dict of Linen module factories and :func:`get_model`.

Every model takes ``[N, H, W, C]`` float32 images in ``[0, 1]`` (normalisation lives
inside the model) and returns logits ``[N, num_classes]``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from pixjax.models.alexnet import AlexNet
from pixjax.models.densenet import DenseNet
from pixjax.models.lenet import LeNet5
from pixjax.models.rbm import RBMClassifier
from pixjax.models.resnet import ResNet
from pixjax.models.squeezenet import SqueezeNet
from pixjax.models.vgg import VGG

# torchvision ports (ImageNet layout, 1000 classes by default); load torchvision weights
# with pixjax.models.convert.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet5": LeNet5,
    "rbm_lr": RBMClassifier,  # Bernoulli RBM -> logistic regression (pixjax.models.rbm)
    "alexnet": AlexNet,
    "vgg11": functools.partial(VGG, config="A"),
    "vgg11_bn": functools.partial(VGG, config="A", batch_norm=True),
    "vgg13": functools.partial(VGG, config="B"),
    "vgg13_bn": functools.partial(VGG, config="B", batch_norm=True),
    "vgg16": functools.partial(VGG, config="D"),
    "vgg16_bn": functools.partial(VGG, config="D", batch_norm=True),
    "vgg19": functools.partial(VGG, config="E"),
    "vgg19_bn": functools.partial(VGG, config="E", batch_norm=True),
    "resnet18": functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic"),
    "resnet34": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic"),
    "resnet50": functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck"),
    "resnet101": functools.partial(
        ResNet, stage_sizes=(3, 4, 23, 3), block="bottleneck"
    ),
    "resnet152": functools.partial(
        ResNet, stage_sizes=(3, 8, 36, 3), block="bottleneck"
    ),
    "densenet121": functools.partial(
        DenseNet, growth_rate=32, block_config=(6, 12, 24, 16)
    ),
    "densenet161": functools.partial(
        DenseNet, growth_rate=48, block_config=(6, 12, 36, 24), num_init_features=96
    ),
    "densenet169": functools.partial(
        DenseNet, growth_rate=32, block_config=(6, 12, 32, 32)
    ),
    "densenet201": functools.partial(
        DenseNet, growth_rate=32, block_config=(6, 12, 48, 32)
    ),
    "squeezenet1_0": functools.partial(SqueezeNet, version="1_0"),
    "squeezenet1_1": functools.partial(SqueezeNet, version="1_1"),
}

# Input shapes the models were designed for (H, W, C); used for initialisation when no
# data is at hand and for error messages. Any size the architecture accepts works.
DEFAULT_INPUT_SHAPES: dict[str, tuple[int, int, int]] = {
    "lenet5": (28, 28, 1),
    "rbm_lr": (28, 28, 1),
    **{name: (224, 224, 3) for name in MODELS if name not in ("lenet5", "rbm_lr")},
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
    """Initialises ``model`` for images of ``input_shape`` ``(H, W, C)`` (one compiled
    initialiser per module and shape, reused: models trained side by side init once)."""
    return _jit_init(model)(key, jnp.zeros((1, *input_shape), jnp.float32))


@functools.lru_cache(maxsize=64)
def _jit_init(model: nn.Module) -> Callable[..., Any]:
    # Linen modules are frozen dataclasses: equal configurations hash alike.
    return jax.jit(model.init)


def check_input(model: nn.Module, variables: Any, input_shape: Sequence[int]) -> None:
    """Raises a clear ``ValueError`` if images of ``input_shape`` ``(H, W, C)`` cannot go
    through ``model`` with ``variables`` (wrong channel count, a size the architecture
    or its dense layers do not take). Shape-only: costs a trace, no computation.
    """
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ValueError(
            f"input_shape: expected (H, W, C) positive integers, got {input_shape!r}"
        )
    name = type(model).__name__
    kernels = [
        leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(
            variables.get("params", {})
        )
        if getattr(leaf, "ndim", 0) == 4 and "kernel" in jax.tree_util.keystr(path)
    ]
    channels = {int(k.shape[2]) for k in kernels}
    if kernels and shape[2] not in channels:
        # The stem is the only convolution whose input channels can equal the image's.
        raise ValueError(
            f"images: {name} with these weights takes {sorted(channels)[0]}-channel "
            f"images, got shape (H, W, C) = {shape}"
        )
    try:
        jax.eval_shape(
            model.apply, variables, jax.ShapeDtypeStruct((1, *shape), jnp.float32)
        )
    except Exception as e:  # noqa: BLE001 - any shape failure, re-raised with context
        raise ValueError(
            f"images: shape (H, W, C) = {shape} does not fit {name} with these "
            f"weights ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e


def logits_fn(
    model: nn.Module, variables: Any, input_shape: Sequence[int] | None = None
) -> Callable[[jax.Array], jax.Array]:
    """``images [N, H, W, C] in [0, 1] -> logits``: the function attacks take.

    With ``input_shape`` ``(H, W, C)`` the shape is checked first
    (:func:`check_input`), so a mismatch fails here with a clear message.
    """
    if input_shape is not None:
        check_input(model, variables, input_shape)
    return functools.partial(model.apply, variables)


def num_logits(
    apply_fn: Callable[..., jax.Array], variables: Any, input_shape: Sequence[int]
) -> int:
    """The number of classes (logits) ``apply_fn(variables, images)`` returns for
    images of ``input_shape`` ``(H, W, C)``: shape-only, no computation."""
    out = jax.eval_shape(
        apply_fn, variables, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    )
    return int(out.shape[-1])


def count_params(variables: Any) -> int:
    return sum(
        int(x.size) for x in jax.tree_util.tree_leaves(variables.get("params", {}))
    )
