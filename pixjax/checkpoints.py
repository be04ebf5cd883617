"""Model checkpoints: orbax for the arrays, a JSON file for what they are.

A *model directory* holds::

    metadata.json   architecture, model kwargs, input shape, classes, data, seed,
                    command, accuracy, ...
    variables/      the Flax variables, an orbax (StandardCheckpointer) checkpoint

:func:`save_model` writes one (metadata atomically, last); :func:`load_model` rebuilds
the registered model from the metadata and restores onto ``jax.eval_shape`` targets, so
a checkpoint of another architecture or shape fails with a clear message.
Resumable runs (training epochs, searches) keep one
:class:`orbax.checkpoint.CheckpointManager` per run directory, through
:func:`pixjax.driver.run`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from pixjax import models, sharding

METADATA = "metadata.json"
VARIABLES = "variables"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(
    path: str | os.PathLike, write: Callable[[Any], None], binary: bool = False
) -> None:
    """Writes ``path`` through ``write(file)`` into a temporary file beside it, then
    renames it into place: readers see the old file or the new one, never a part.
    The file gets the mode a plain ``open`` would (``0666`` less the umask), not
    ``mkstemp``'s ``0600``. In a job of several processes only process 0 writes
    (:func:`pixjax.distributed.is_primary`); the others do nothing."""
    from pixjax import distributed

    if not distributed.is_primary():
        return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def strict_json(obj: Any) -> Any:
    """``obj`` with numpy values made plain and non-finite floats made ``None``, so
    that it is strict JSON (``NaN`` / ``Infinity`` are not JSON: they are written as
    ``null``)."""
    if isinstance(obj, dict):
        return {str(k): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict_json(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as strict JSON (non-finite numbers as ``null``) to ``path``
    atomically (:func:`atomic_write`)."""
    text = json.dumps(
        strict_json(obj), indent=2, default=_json_default, allow_nan=False
    )
    atomic_write(path, lambda f: f.write(text + "\n"))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


CHECKSUMS = "checksums"


def array_checksums(tree: Any) -> dict[str, str]:
    """``{path: "sha256:<hex>"}`` of every floating-point array of ``tree`` (dtype and
    shape included), computed on the host: what a model directory records and
    :func:`load_model` verifies. Integer leaves (step counters) are left out: their
    container type may change in a save / restore round trip."""
    out = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = np.ascontiguousarray(jax.device_get(leaf))
        if not np.issubdtype(arr.dtype, np.floating):
            continue
        h = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
        out[jax.tree_util.keystr(path)] = "sha256:" + h.hexdigest()
    return out


def checksum_mismatches(expected: dict[str, str], tree: Any) -> list[str]:
    """The paths whose arrays in ``tree`` differ from ``expected`` checksums."""
    found = array_checksums(tree)
    return sorted(
        k for k in set(expected) | set(found) if expected.get(k) != found.get(k)
    )


def nonfinite_leaves(tree: Any, limit: int = 5) -> list[str]:
    """Paths of the floating-point arrays of ``tree`` that hold NaN or infinity (at
    most ``limit``); empty when every value is finite."""
    bad = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        arr = np.asarray(jax.device_get(leaf)) if hasattr(leaf, "dtype") else None
        if arr is None or not np.issubdtype(arr.dtype, np.floating):
            continue
        if not np.isfinite(arr).all():
            bad.append(jax.tree_util.keystr(path))
            if len(bad) >= limit:
                break
    return bad


def save_model(
    directory: str | os.PathLike, variables: Any, metadata: dict[str, Any]
) -> pathlib.Path:
    """Saves ``variables`` and ``metadata`` as a model directory.

    ``metadata`` must hold ``arch`` (a registered model name) and ``input_shape``;
    ``model_kwargs`` (e.g. ``num_classes``) is used to rebuild the module.

    Raises:
      ValueError: a required metadata field is missing, or a parameter is not finite.
    """
    for field in ("arch", "input_shape"):
        if field not in metadata:
            raise ValueError(f"metadata: missing required field {field!r}")
    bad = nonfinite_leaves(variables)
    if bad:
        raise ValueError(
            f"variables: non-finite values in {bad}; a model with NaN or infinite "
            "parameters is not saved"
        )
    directory = pathlib.Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / VARIABLES
    host = sharding.to_host(variables)
    ckptr = ocp.StandardCheckpointer()
    ckptr.save(target, host, force=True)
    ckptr.wait_until_finished()
    write_json_atomic(
        directory / METADATA, {**metadata, CHECKSUMS: array_checksums(host)}
    )
    return directory


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
    """The model directory's ``metadata.json``, checked.

    Raises:
      FileNotFoundError: not a model directory.
      ValueError: naming the file: not JSON, not an object, or without a valid
        ``arch`` / ``input_shape``.
    """
    directory = pathlib.Path(directory)
    meta = directory / METADATA
    if not meta.is_file():
        raise FileNotFoundError(
            f"checkpoint: {str(directory)!r} is not a pixjax model directory "
            f"(expected {METADATA} and {VARIABLES}/ inside it)"
        )
    try:
        obj = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ValueError(
            f"checkpoint: {str(meta)!r} is not valid JSON ({e}); the model directory "
            "is damaged"
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(
            f"checkpoint: {str(meta)!r} holds {type(obj).__name__}, expected an object "
            "with 'arch' and 'input_shape'"
        )
    for key in ("arch", "input_shape"):
        if key not in obj:
            raise ValueError(
                f"checkpoint: {str(meta)!r} lacks {key!r} (expected 'arch', a model "
                "name, and 'input_shape', [H, W, C])"
            )
    shape = obj["input_shape"]
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(d, int) and d > 0 for d in shape)
    ):
        raise ValueError(
            f"checkpoint: {str(meta)!r} has input_shape {shape!r}, expected [H, W, C] "
            "positive integers"
        )
    if not isinstance(obj.get("model_kwargs", {}), dict):
        raise ValueError(
            f"checkpoint: {str(meta)!r} has model_kwargs that are not an object"
        )
    sums = obj.get(CHECKSUMS, {})
    if not (isinstance(sums, dict) and all(isinstance(v, str) for v in sums.values())):
        raise ValueError(
            f"checkpoint: {str(meta)!r} has {CHECKSUMS!r} that are not an object of "
            "strings"
        )
    return obj


def load_model(
    directory: str | os.PathLike, arch: str | None = None
) -> tuple[Any, Any, dict[str, Any]]:
    """Loads a model directory.

    Args:
      directory: written by :func:`save_model`.
      arch: if given, the architecture the caller expects; a different one is an error.

    Returns:
      ``(module, variables, metadata)``.

    Raises:
      FileNotFoundError: the directory or its files are missing.
      ValueError: architecture or shapes do not match, ``metadata.json`` is not valid,
        the arrays cannot be read, differ from their recorded checksums (a corrupt
        file) or are not finite.
    """
    directory = pathlib.Path(directory).absolute()
    meta = read_metadata(directory)
    ckpt_arch = meta.get("arch")
    if arch is not None and ckpt_arch != arch:
        raise ValueError(
            f"checkpoint: {str(directory)!r} holds a {ckpt_arch!r} model, but model="
            f"{arch!r} was requested; pass a checkpoint of {arch!r} or model={ckpt_arch!r}"
        )
    shape = tuple(meta["input_shape"])
    try:
        module = models.get_model(ckpt_arch, **meta.get("model_kwargs", {}))
        abstract = jax.eval_shape(
            lambda: models.init_variables(module, jax.random.key(0), shape)
        )
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"checkpoint: {str(directory / METADATA)!r} does not describe a model "
            f"(arch {ckpt_arch!r}, model_kwargs {meta.get('model_kwargs', {})}, "
            f"input_shape {list(shape)}): {str(e).splitlines()[0][:200]}"
        ) from None
    if not (directory / VARIABLES).exists():
        raise FileNotFoundError(
            f"checkpoint: missing {VARIABLES}/ in {str(directory)!r}"
        )
    ckptr = ocp.StandardCheckpointer()
    saved = ckptr.metadata(directory / VARIABLES)
    saved = getattr(saved, "item_metadata", saved)
    saved = getattr(saved, "tree", saved)
    problems = tree_mismatches(abstract, saved)
    if problems:
        raise ValueError(
            f"checkpoint: the arrays in {str(directory)!r} do not match a {ckpt_arch!r} "
            f"model with {meta.get('model_kwargs', {})} for input {shape}: "
            + "; ".join(problems)
        )
    try:
        variables = ckptr.restore(directory / VARIABLES, abstract)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"checkpoint: the arrays in {str(directory)!r} do not match a {ckpt_arch!r} "
            f"model with {meta.get('model_kwargs', {})} for input {shape}: {e}"
        ) from e
    except Exception as e:  # noqa: BLE001 - tensorstore / orbax read errors
        raise ValueError(
            f"checkpoint: cannot read the arrays in {str(directory / VARIABLES)!r} "
            f"(a corrupt file?): {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        ) from e
    if CHECKSUMS in meta:
        bad = checksum_mismatches(meta[CHECKSUMS], variables)
        if bad:
            raise ValueError(
                f"checkpoint: the arrays {bad[:5]} in {str(directory / VARIABLES)!r} "
                f"do not match the checksums in {METADATA} (a corrupt file)"
            )
    bad = nonfinite_leaves(variables)
    if bad:
        raise ValueError(
            f"checkpoint: {str(directory / VARIABLES)!r} holds non-finite values in "
            f"{bad} (a corrupt or diverged model)"
        )
    return module, variables, meta


def _flat_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        "/".join(str(getattr(k, "key", getattr(k, "name", k))) for k in path): tuple(
            getattr(leaf, "shape", ())
        )
        for path, leaf in flat
    }


def tree_mismatches(expected: Any, found: Any, limit: int = 12) -> list[str]:
    """Differences between two pytrees of arrays (or shape structs), by path.

    Returns:
      Human-readable lines: ``missing`` keys (expected, not found), ``unexpected`` keys
      (found, not expected) and ``mis-shaped`` keys; empty when they match.
    """
    e, f = _flat_shapes(expected), _flat_shapes(found)
    missing = sorted(set(e) - set(f))
    unexpected = sorted(set(f) - set(e))
    shaped = sorted(k for k in set(e) & set(f) if e[k] != f[k])
    out = []
    if missing:
        out.append(
            f"missing keys {missing[:limit]}" + (" ..." if len(missing) > limit else "")
        )
    if unexpected:
        out.append(
            f"unexpected keys {unexpected[:limit]}"
            + (" ..." if len(unexpected) > limit else "")
        )
    if shaped:
        out.append(
            "mis-shaped keys "
            + ", ".join(f"{k}: expected {e[k]}, found {f[k]}" for k in shaped[:limit])
        )
    return out
