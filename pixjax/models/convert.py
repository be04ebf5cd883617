"""torchvision weights -> pixjax Flax variables.

The torchvision ports (``alexnet``, ``vgg*``, ``resnet*``, ``densenet*``,
``squeezenet*``) name their submodules after torchvision's ``state_dict`` with ``_`` for
``.``, so the mapping is by name:

* conv ``<m>.weight`` (O, I, H, W) -> ``params/<m>/kernel`` (H, W, I, O);
* linear ``<m>.weight`` (out, in) -> ``params/<m>/kernel`` (in, out);
* ``<m>.bias`` -> ``params/<m>/bias``;
* BatchNorm ``<m>.weight`` / ``<m>.bias`` -> ``params/<m>/scale`` / ``bias``, and
  ``<m>.running_mean`` / ``<m>.running_var`` -> ``batch_stats/<m>/mean`` / ``var``;
* ``<m>.num_batches_tracked`` is ignored.

Every key is checked against ``jax.eval_shape`` of the model's ``init`` before any array
is copied; a mismatch is a ``ValueError`` naming the missing, unexpected and mis-shaped
keys in torchvision's naming. Old DenseNet checkpoints (``denselayer1.norm.1.weight``)
and ``module.``-prefixed (``DataParallel``) state dicts are accepted.

Only :func:`load_torchvision_file` and :func:`convert_file` need ``torch``; the output of
:func:`convert_file` is a pixjax model directory that loads without it::

    convert_file("resnet50", "resnet50-11ad3fa6.pth", "checkpoints/resnet50")
    module, variables, meta = pixjax.checkpoints.load_model("checkpoints/resnet50")
"""

from __future__ import annotations

import os
import pathlib
import pickle
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pixjax import models

# Registered models that are ports of torchvision classifiers.
TORCHVISION_ARCHS: tuple[str, ...] = (
    "alexnet",
    *("vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn"),
    *("vgg19", "vgg19_bn", "resnet18", "resnet34", "resnet50", "resnet101"),
    *("resnet152", "densenet121", "densenet161", "densenet169", "densenet201"),
    *("squeezenet1_0", "squeezenet1_1"),
)

# The final layer of each family: its weight's first dimension is num_classes.
_CLASSIFIER_KEYS = {
    "alexnet": "classifier.6.weight",
    "vgg": "classifier.6.weight",
    "resnet": "fc.weight",
    "densenet": "classifier.weight",
    "squeezenet": "classifier.1.weight",
}

_LEAF_NAMES = {
    ("params", "kernel"): "weight",
    ("params", "scale"): "weight",
    ("params", "bias"): "bias",
    ("batch_stats", "mean"): "running_mean",
    ("batch_stats", "var"): "running_var",
}

_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)

# Keys under which training scripts commonly nest the state dict in a checkpoint.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")


def check_arch(arch: str) -> None:
    """Raises ``ValueError`` unless ``arch`` is a registered torchvision port."""
    if arch not in models.MODELS:
        models.get_model(arch)  # raises, listing every registered model
    if arch not in TORCHVISION_ARCHS:
        raise ValueError(
            f"model: {arch!r} is not a torchvision port; expected one of "
            f"{list(TORCHVISION_ARCHS)}"
        )


def _family(arch: str) -> str:
    return next(f for f in _CLASSIFIER_KEYS if arch.startswith(f))


def _torch_name(collection: str, path: Sequence[str]) -> str:
    *modules, leaf = path
    return ".".join(
        [*(m.replace("_", ".") for m in modules), _LEAF_NAMES[collection, leaf]]
    )


def _to_torch_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    if len(shape) == 4:  # HWIO -> OIHW
        return (shape[3], shape[2], shape[0], shape[1])
    if len(shape) == 2:  # (in, out) -> (out, in)
        return (shape[1], shape[0])
    return shape


def _from_torch(value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:
        return np.transpose(value, (2, 3, 1, 0))
    if value.ndim == 2:
        return value.T
    return value


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor (any float dtype, any device)
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def _normalise_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    keys = list(state_dict)
    strip = bool(keys) and all(k.startswith("module.") for k in keys)
    out = {}
    for key, value in state_dict.items():
        if strip:
            key = key[len("module.") :]
        legacy = _DENSENET_LEGACY.match(key)
        if legacy:
            key = legacy.group(1) + legacy.group(2)
        if key.endswith("num_batches_tracked"):
            continue
        out[key] = value
    return out


def _abstract_variables(arch: str, num_classes: int) -> Any:
    module = models.get_model(arch, num_classes=num_classes)
    shape = models.DEFAULT_INPUT_SHAPES[arch]
    return jax.eval_shape(
        lambda: models.init_variables(module, jax.random.key(0), shape)
    )


def _leaf_names(path: Sequence[Any]) -> tuple[str, list[str]]:
    names = [str(getattr(k, "key", k)) for k in path]
    return names[0], names[1:]


def _torch_shapes(abstract: Any) -> dict[str, tuple[int, ...]]:
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
        out[_torch_name(*_leaf_names(path))] = _to_torch_shape(tuple(leaf.shape))
    return out


def expected_shapes(arch: str, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """torchvision ``state_dict`` names and shapes (torch layout) of a pixjax port.

    Buffers that carry no weights (``num_batches_tracked``) are not listed.
    """
    check_arch(arch)
    return _torch_shapes(_abstract_variables(arch, num_classes))


def _mismatches(
    expected: Mapping[str, tuple[int, ...]], found: Mapping[str, Any], limit: int = 20
) -> list[str]:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shaped = sorted(
        k
        for k in set(expected) & set(found)
        if tuple(getattr(found[k], "shape", ())) != expected[k]
    )

    def listed(keys):
        more = f" ... ({len(keys)} in all)" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    out = []
    if missing:
        out.append(f"missing keys: {listed(missing)}")
    if unexpected:
        out.append(f"unexpected keys: {listed(unexpected)}")
    if shaped:
        out.append(
            "mis-shaped keys: "
            + listed(
                [
                    f"{k} (expected {expected[k]}, found "
                    f"{tuple(getattr(found[k], 'shape', ()))})"
                    for k in shaped
                ]
            )
        )
    return out


def torchvision_to_flax(
    arch: str, state_dict: Mapping[str, Any], *, num_classes: int | None = None
) -> dict[str, Any]:
    """Converts a torchvision ``state_dict`` into variables of ``models.get_model(arch)``.

    Args:
      arch: a registered torchvision port, e.g. ``"resnet50"``.
      state_dict: name -> ``torch.Tensor`` or array, as ``module.state_dict()`` or
        ``torch.load(path, weights_only=True)`` returns it.
      num_classes: classes of the model; by default read from the final layer's weight.

    Returns:
      ``{"params": ..., "batch_stats": ...}`` (``batch_stats`` only for models with
      BatchNorm), float32 ``jax.Array`` leaves, for ``module.apply(variables, images)``
      with ``module = models.get_model(arch, num_classes=num_classes)``.

    Raises:
      ValueError: unknown architecture, or keys / shapes that do not match it (the
        message lists missing, unexpected and mis-shaped keys in torchvision naming).
    """
    check_arch(arch)
    if not isinstance(state_dict, Mapping):
        raise ValueError(
            f"state_dict: expected a mapping name -> tensor, got "
            f"{type(state_dict).__name__}"
        )
    sd = _normalise_keys(state_dict)
    if num_classes is None:
        head = sd.get(_CLASSIFIER_KEYS[_family(arch)])
        num_classes = int(head.shape[0]) if hasattr(head, "shape") else 1000
    abstract = _abstract_variables(arch, num_classes)
    problems = _mismatches(_torch_shapes(abstract), sd)
    if problems:
        raise ValueError(
            f"state_dict does not match torchvision {arch!r} with {num_classes} "
            "classes: " + "; ".join(problems)
        )

    def fill(path, leaf):
        del leaf  # shapes were checked above
        return jnp.asarray(_from_torch(_as_numpy(sd[_torch_name(*_leaf_names(path))])))

    return jax.tree_util.tree_map_with_path(fill, abstract)


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a ``.pth`` state dict with ``torch.load(weights_only=True)`` (no pickled code).

    Accepts a plain state dict or a checkpoint dict that nests one under
    ``"state_dict"``, ``"model_state_dict"`` or ``"model"``.

    Raises:
      FileNotFoundError: no such file.
      ValueError: the file is not a state dict (a pickled full model, a tensor, a list,
        ...) or not a torch file at all.
      ImportError: torch is not installed.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights: no such file {str(path)!r}")
    try:
        import torch
    except ImportError as e:  # pragma: no cover - torch is a test dependency
        raise ImportError(
            "reading .pth files needs torch: pip install 'pixjax[torch]'"
        ) from e
    hint = (
        "expected a state dict saved with torch.save(model.state_dict(), path), "
        "e.g. a torchvision .pth file"
    )
    try:
        obj = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"weights: {str(path)!r} is not a plain state dict; torch.load("
            "weights_only=True) refused it (a pickled full model, other Python "
            f"objects, or not a torch file); {hint}. torch said: "
            f"{str(e).splitlines()[0]}"
        ) from e
    except (RuntimeError, EOFError, OSError) as e:
        raise ValueError(
            f"weights: {str(path)!r} is not a readable torch file (truncated or "
            f"empty?): {str(e).splitlines()[0] if str(e) else type(e).__name__}; "
            f"{hint}"
        ) from e
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"weights: {str(path)!r} holds a {type(obj).__name__}"
            + (" (empty)" if isinstance(obj, Mapping) else "")
            + f", not a state dict; {hint}"
        )
    bad = [
        k for k, v in obj.items() if not isinstance(k, str) or not hasattr(v, "shape")
    ]
    if bad:
        raise ValueError(
            f"weights: {str(path)!r} is a dict but not a state dict (entries that are "
            f"not tensors: {bad[:5]}); {hint}"
        )
    return dict(obj)


def load_torchvision_file(
    arch: str, path: str | os.PathLike, *, num_classes: int | None = None
) -> dict[str, Any]:
    """Reads a torchvision ``.pth`` state dict and converts it (see
    :func:`torchvision_to_flax`). Loading uses ``weights_only=True``."""
    check_arch(arch)
    return torchvision_to_flax(arch, read_state_dict(path), num_classes=num_classes)


def convert_file(
    arch: str,
    weights_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    input_shape: Sequence[int] | None = None,
) -> pathlib.Path:
    """Converts a torchvision ``.pth`` into a pixjax model directory.

    The directory (``pixjax.checkpoints.save_model``) records ``arch``,
    ``model_kwargs`` (``num_classes``), ``input_shape`` (the size the weights were
    trained on; default the architecture's ``[224, 224, 3]``), the source file and, if
    given, ``class_names``; ``pixjax.checkpoints.load_model`` reads it back without
    torch. Experiments accept any input size the architecture takes with these
    weights (:func:`pixjax.models.check_input`), the recorded one is the default.

    Returns:
      The absolute path of ``out_dir``.

    Raises:
      ValueError: bad arguments, a file that is not a state dict of ``arch``, or an
        ``input_shape`` the weights cannot take.
    """
    from pixjax import checkpoints  # checkpoints imports models: import late

    if pathlib.Path(out_dir).exists() and not pathlib.Path(out_dir).is_dir():
        raise ValueError(f"out_dir: {str(out_dir)!r} exists and is not a directory")
    variables = load_torchvision_file(arch, weights_path, num_classes=num_classes)
    shape = tuple(input_shape or models.DEFAULT_INPUT_SHAPES[arch])
    n = _num_classes(arch, variables)
    if input_shape is not None:
        module = models.get_model(arch, num_classes=n)
        models.check_input(module, variables, shape)
    if class_names is not None and len(class_names) != n:
        raise ValueError(
            f"class_names: {len(class_names)} names for a model with {n} classes"
        )
    metadata: dict[str, Any] = {
        "arch": arch,
        "model_kwargs": {"num_classes": n},
        "input_shape": list(shape),
        "source": str(pathlib.Path(weights_path).absolute()),
        "converted_from": "torchvision",
    }
    if class_names is not None:
        metadata["class_names"] = [str(c) for c in class_names]
    return checkpoints.save_model(out_dir, variables, metadata)


def _num_classes(arch: str, variables: Mapping[str, Any]) -> int:
    *modules, _ = _CLASSIFIER_KEYS[_family(arch)].split(".")
    name = "_".join(modules)
    return int(variables["params"][name]["kernel"].shape[-1])
