"""One padded batched predictor.

:func:`map_batches` runs a function over a dataset in fixed-size batches: every call
sees the same batch shape (the last batch is zero-padded and the padded rows dropped
from the outputs), so a jitted function compiles once per batch shape, however many
images there are. Optionally the batches are split over the devices of a mesh
(:mod:`pixjax.sharding`). :func:`predict` (labels and softmax confidences) and
:func:`accuracy` are built on it, with one compiled forward pass per model function.
"""

from __future__ import annotations

import collections
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from pixjax import sharding
from pixjax.data.base import (
    check_float_images,
    check_labels,
    check_positive_int,
    to_float,
)
from pixjax.types import PyTree

# Batches dispatched before the oldest result is pulled to the host, so the device
# does not wait for the host between batches.
_IN_FLIGHT = 2


def _pad_rows(a: np.ndarray, size: int) -> np.ndarray:
    """``a`` with zero rows appended along axis 0 up to ``size`` rows."""
    if a.shape[0] == size:
        return a
    pad = np.zeros((size - a.shape[0], *a.shape[1:]), a.dtype)
    return np.concatenate([a, pad])


def map_batches(
    fn: Callable[..., PyTree],
    batched: Sequence[PyTree],
    *,
    batch_size: int,
    broadcast: Sequence[Any] = (),
    out_axes: PyTree = 0,
    mesh: Mesh | None = None,
) -> PyTree:
    """``fn(*broadcast, *batch)`` over fixed-size batches of ``batched``, joined.

    The batch shape is ``min(batch_size, N)`` rounded up to a multiple of the mesh
    size; the last, short batch is padded with zeros and its padded rows are cut
    from the outputs, so a jitted ``fn`` is traced and compiled once per batch
    shape (pass a jitted ``fn``, and the same one across calls, for that). The
    outputs of one batch are pulled to the host while the next ones run.

    Args:
      fn: ``fn(*broadcast, *batch) -> outputs`` (a pytree of arrays), where ``batch``
        holds one batch of each entry of ``batched``. Padded rows (zeros) must not
        affect the other rows (no batch-wide statistics).
      batched: a sequence of pytrees of arrays sharing the leading axis ``N`` (host
        arrays are best: they are sliced on the host).
      batch_size: a positive integer, the largest batch ``fn`` sees.
      broadcast: arguments passed unchanged to every call (e.g. model variables);
        replicated over the mesh when one is given.
      out_axes: the batch axis of each output: an int for all, or a pytree prefix
        of the outputs (e.g. ``(0, 1)``: the second output is ``[K, B, ...]``).
      mesh: a 1-D ``"batch"`` mesh (:func:`pixjax.sharding.data_mesh`) to split each
        batch over its devices; ``None`` runs on the default device.

    Returns:
      The outputs of ``fn`` as host numpy arrays, batches concatenated along
      ``out_axes`` (``N`` long there). For ``N == 0`` the outputs are empty arrays
      of the right shape and dtype (from ``jax.eval_shape``; ``fn`` is not run).

    Raises:
      ValueError: ``batch_size`` is not a positive integer, ``batched`` is empty, or
        its arrays disagree on ``N``.
    """
    check_positive_int("batch_size", batch_size)
    leaves = jax.tree_util.tree_leaves(list(batched))
    if not leaves:
        raise ValueError("batched: expected at least one array to split, got none")
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"batched: expected arrays sharing their leading axis, got shapes "
            f"{sorted({np.shape(a) for a in leaves})}"
        )
    n = sizes.pop()
    n_dev = 1 if mesh is None else mesh.devices.size
    batch = sharding.round_up(min(batch_size, max(n, 1)), n_dev)
    broadcast = tuple(broadcast)
    if mesh is not None:
        broadcast = sharding.replicate(mesh, broadcast)

    def put(block: PyTree) -> PyTree:
        if mesh is None:
            return block
        flat, tree = jax.tree_util.tree_flatten(block)
        return jax.tree_util.tree_unflatten(tree, sharding.shard_batch(mesh, *flat))

    def cut(out: PyTree, count: int) -> PyTree:
        return jax.tree_util.tree_map(
            lambda ax, sub: jax.tree_util.tree_map(
                lambda a: np.take(sharding.to_host(a), np.arange(count), axis=ax), sub
            ),
            out_axes,
            out,
        )

    if n == 0:
        block = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct((batch, *np.shape(a)[1:]), a.dtype),
            list(batched),
        )
        shapes = jax.eval_shape(fn, *broadcast, *block)
        empty = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
        return cut(empty, 0)

    parts: list[PyTree] = []
    pending: collections.deque = collections.deque()
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        block = jax.tree_util.tree_map(
            lambda a, start=start, stop=stop: _pad_rows(
                np.asarray(a[start:stop]), batch
            ),
            list(batched),
        )
        pending.append((fn(*broadcast, *put(block)), stop - start))
        while len(pending) > _IN_FLIGHT:
            parts.append(cut(*pending.popleft()))
    while pending:
        parts.append(cut(*pending.popleft()))
    return jax.tree_util.tree_map(
        lambda ax, *subs: jax.tree_util.tree_map(
            lambda *arrays: np.concatenate(arrays, axis=ax), *subs
        ),
        out_axes,
        *parts,
    )


def classify(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The prediction of pixjax everywhere (predictor, sweeps, attack evaluation):
    ``(labels [...], confidence [...])`` of ``logits [..., K]``: the int32 argmax of
    the logits and the float32 softmax probability of the largest logit."""
    return (
        jnp.argmax(logits, -1).astype(jnp.int32),
        jnp.max(jax.nn.softmax(logits, -1), -1),
    )


@functools.lru_cache(maxsize=32)
def forward(apply_fn: Callable[..., jax.Array]) -> Callable[..., Any]:
    """The jitted ``(variables, images [B, H, W, C]) -> (labels [B], confidence [B])``
    of ``apply_fn`` (uint8 or float images, :func:`classify`): one per model
    function, compiled once per batch shape and dtype; :func:`predict` and the sweep
    engine share it."""

    @jax.jit
    def fwd(variables, images):
        return classify(apply_fn(variables, to_float(images)))

    return fwd


@functools.lru_cache(maxsize=32)
def forward_probs(apply_fn: Callable[..., jax.Array]) -> Callable[..., Any]:
    """:func:`forward` with the whole softmax: the jitted ``(variables, images [B, H,
    W, C]) -> (labels [B], confidence [B], probabilities [B, K] float32)``, for callers
    that need the probability of a class other than the predicted one (e.g.
    :func:`pixjax.check_pipeline`'s top-1 probability shift)."""

    @jax.jit
    def fwd(variables, images):
        logits = apply_fn(variables, to_float(images))
        return (*classify(logits), jax.nn.softmax(logits, -1))

    return fwd


def _check_images(images: Any) -> np.ndarray | jax.Array:
    shape = np.shape(images)
    if len(shape) != 4:
        raise ValueError(
            f"images: expected a 4-D array [N, H, W, C] (channels last), got shape "
            f"{shape}"
        )
    dtype = getattr(images, "dtype", None)
    if dtype is None:
        images = np.asarray(images)
        dtype = images.dtype
    if dtype == np.uint8:
        return images
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"images: expected uint8 values 0..255 or floating values in [0, 1], got "
            f"dtype {dtype}"
        )
    if shape[0]:
        check_float_images(images)
    return images


def predict(
    apply_fn: Callable[..., jax.Array],
    variables: PyTree,
    images: np.ndarray | jax.Array,
    batch_size: int = 1000,
    *,
    mesh: Mesh | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted classes and softmax confidences of a classifier, in padded batches.

    Compiled once per ``apply_fn`` (a cache keyed on the function, e.g.
    ``module.apply``) and batch shape; the last, short batch is padded, not
    recompiled (:func:`map_batches`). uint8 images are scaled by
    :func:`pixjax.data.to_float`, so uint8 images and the same images divided by 255
    give the same predictions.

    Args:
      apply_fn: ``apply_fn(variables, x [B, H, W, C] float32 in [0, 1]) -> logits
        [B, num_classes]``, evaluated in inference mode.
      variables: its variables.
      images: ``[N, H, W, C]``, uint8 ``0..255`` or floating in ``[0, 1]``.
      batch_size: images per call (a positive integer).
      mesh: optional 1-D ``"batch"`` mesh to split each batch over its devices.

    Returns:
      ``(labels, confidence)``: ``[N]`` int32 argmax of the logits, and ``[N]``
      float32 softmax probability of that class, in ``(0, 1]``.

    Raises:
      ValueError: ``images`` not 4-D, of another dtype, or float values outside
        ``[0, 1]`` or non-finite; ``batch_size`` not a positive integer.
    """
    images = _check_images(images)
    check_positive_int("batch_size", batch_size)
    return tuple(
        map_batches(
            forward(apply_fn),
            [images],
            batch_size=batch_size,
            broadcast=(variables,),
            mesh=mesh,
        )
    )


def accuracy(
    apply_fn: Callable[..., jax.Array],
    variables: PyTree,
    images: np.ndarray | jax.Array,
    labels: np.ndarray,
    batch_size: int = 1000,
    *,
    mesh: Mesh | None = None,
) -> float:
    """Top-1 accuracy of a classifier: the share of :func:`predict`'s labels equal
    to ``labels``.

    Args:
      apply_fn, variables, images, batch_size, mesh: as for :func:`predict`.
      labels: ``[N]`` integer classes.

    Returns:
      A float in ``[0, 1]``.

    Raises:
      ValueError: as :func:`predict`; ``labels`` not integer or not of shape
        ``(N,)``; ``N == 0``.
    """
    images = _check_images(images)
    check_labels(labels, num_images=np.shape(images)[0])
    if np.shape(images)[0] == 0:
        raise ValueError("images: expected at least one image, got 0")
    pred, _ = predict(apply_fn, variables, images, batch_size, mesh=mesh)
    return float(np.mean(pred == np.asarray(labels)))
