"""The resumable chunked driver: a pure step run ``n`` times as a jitted ``lax.scan``.

:func:`run` calls ``step(state, data) -> (state, metrics)`` ``num_steps`` times. The
steps run in chunks of ``chunk_size`` (each chunk one call of a jitted ``lax.scan``,
compiled once per chunk length); between chunks the Python side updates a progress
bar, calls a hook that may stop the run, and saves the state with the per-step
metrics so far into an orbax :class:`~orbax.checkpoint.CheckpointManager`. A run
started again with the same arguments restores the newest intact checkpoint and
continues; the chunk boundaries are those of an uninterrupted run (multiples of
``chunk_size``), so the results are identical, also after ``kill -9``.

Each checkpoint holds, under the number of steps done:

* ``state``: ``{"state": state, "metrics": metrics [done, ...]}`` (host arrays);
* ``meta``: JSON: the format, ``num_steps``, ``chunk_size`` and the shapes and
  dtypes of the state and of one step's metrics (a checkpoint of another run is
  refused, not overwritten);
* ``checksums``: :func:`pixjax.checkpoints.array_checksums` of ``state``, verified
  on restore. An unreadable or mismatching checkpoint is moved aside to
  ``corrupt-<unit>-<N>`` (kept) and the previous one is tried.

Randomness belongs in the step: keep base keys in ``data`` and derive the key of a
step from a counter in ``state`` (``fold_in(key, state.step)``), so that a resumed
run draws the same numbers.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import shutil
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from pixjax import checkpoints, distributed, sharding
from pixjax.data.base import check_positive_int
from pixjax.types import PyTree

FORMAT = "pixjax.driver/1"

State = TypeVar("State")
Step = Callable[[State, PyTree], tuple[State, PyTree]]
# ``on_chunk(first_step, state, metrics)``: after each chunk, before it is saved.
OnChunk = Callable[[int, Any, PyTree], None]


@functools.lru_cache(maxsize=16)
def _chunk_fn(step: Step) -> Callable[..., Any]:
    """The jitted ``(state, data, length) -> (state, metrics [length, ...])`` of
    ``step``: ``length`` steps as one ``lax.scan`` (``length`` static; the state is
    donated)."""

    def chunk(state, data, length):
        return jax.lax.scan(lambda s, _: step(s, data), state, None, length=length)

    return jax.jit(chunk, static_argnums=2, donate_argnums=0)


@functools.lru_cache(maxsize=16)
def _step_fn(step: Step) -> Callable[..., Any]:
    """``step`` jitted alone (the state donated), for ``loop="python"``."""
    return jax.jit(step, donate_argnums=0)


def _python_chunk(step: Step) -> Callable[..., Any]:
    """``(state, data, length) -> (state, metrics [length, ...])`` as a host loop of
    the jitted ``step`` (the chunks, checkpoints and results of ``loop="scan"``)."""
    jitted = _step_fn(step)

    def chunk(state, data, length):
        parts = []
        for _ in range(length):
            state, metrics = jitted(state, data)
            parts.append(metrics)
        return state, jax.tree_util.tree_map(lambda *a: jnp.stack(a), *parts)

    def eval_shape(state, data, length):
        _, metrics = jax.eval_shape(step, state, data)
        stacked = lambda s: jax.ShapeDtypeStruct((length, *s.shape), s.dtype)  # noqa: E731
        return state, jax.tree_util.tree_map(stacked, metrics)

    chunk.eval_shape = eval_shape
    return chunk


LOOPS = ("scan", "python")


@jax.jit
def _copy(tree: PyTree) -> PyTree:
    return jax.tree_util.tree_map(jnp.copy, tree)


def _place(tree: PyTree) -> PyTree:
    """``tree`` on the devices: as is in a single process; in a job of several
    processes, every leaf not already spread over the job is replicated over the
    job's mesh (a leaf on one local device cannot meet the job's arrays in a jitted
    call)."""
    if jax.process_count() == 1:
        return jax.device_put(tree)
    mesh = sharding.data_mesh()

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return x
        return sharding.replicate(mesh, x)

    return jax.tree_util.tree_map(one, tree)


def _like(restored: PyTree, state: PyTree) -> PyTree:
    """A restored state placed as the run's initial ``state`` (:func:`_place`) was:
    in a job of several processes the restored arrays are host or local values, the
    run's are spread over the job's mesh."""
    if jax.process_count() == 1:
        return restored
    return jax.tree_util.tree_map(
        lambda new, old: jax.device_put(sharding.to_host(new), old.sharding),
        restored,
        state,
    )


def _signature(tree: PyTree) -> dict[str, str]:
    """``{path: "dtype[shape]"}`` of the leaves of ``tree`` (arrays or shape structs)."""
    return {
        jax.tree_util.keystr(path): f"{np.dtype(leaf.dtype).name}{list(leaf.shape)}"
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _differences(expected: dict[str, str], found: dict[str, str]) -> list[str]:
    keys = sorted(set(expected) | set(found))
    return [
        f"{k}: {found.get(k, 'absent')} (this run: {expected.get(k, 'absent')})"
        for k in keys
        if expected.get(k) != found.get(k)
    ]


def _fingerprint(tree: PyTree) -> str:
    """``sha256:<hex>`` of every array of ``tree`` (paths, dtypes, shapes and bytes;
    integer arrays and PRNG keys included): the identity of a run's ``data``."""
    h = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        if jnp.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        arr = np.ascontiguousarray(jax.device_get(leaf))
        h.update(f"{jax.tree_util.keystr(path)}{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return "sha256:" + h.hexdigest()


def _stack_metrics(parts: list[PyTree]) -> PyTree:
    return jax.tree_util.tree_map(lambda *a: np.concatenate(a, axis=0), *parts)


def require_finite(first_step: int, state: Any, metrics: PyTree) -> None:
    """An ``on_chunk`` hook: stops the run when a metric or a floating-point array of
    the state is NaN or infinite.

    Raises:
      ValueError: naming the first non-finite metric and its (1-based) step, or the
        non-finite state arrays; the chunk is not saved.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(metrics):
        arr = np.asarray(leaf)
        if not np.issubdtype(arr.dtype, np.floating):
            continue
        bad = ~np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = arr[i].ravel()[~np.isfinite(arr[i].ravel())][0]
            raise ValueError(
                f"driver: metric {jax.tree_util.keystr(path) or 'metrics'} became "
                f"{value} at step {first_step + i + 1}; stopped without saving this "
                "chunk"
            )
    bad = checkpoints.nonfinite_leaves(state)
    if bad:
        raise ValueError(
            f"driver: non-finite state {bad} after step "
            f"{first_step + int(jax.tree_util.tree_leaves(metrics)[0].shape[0])}; "
            "stopped without saving this chunk"
        )


class _Store:
    """The orbax CheckpointManager of one run and what a checkpoint must match."""

    def __init__(
        self,
        directory,
        meta: dict[str, Any],
        abstract,
        metric_shapes,
        *,
        max_to_keep: int,
        unit: str,
        desc: str,
        chunk_unit: str | None,
    ):
        self.directory = pathlib.Path(directory).absolute()
        self.meta = meta
        self.abstract = abstract
        self.metric_shapes = metric_shapes
        self.desc, self.chunk_unit = desc, chunk_unit
        self.unit = chunk_unit or unit  # what checkpoint numbers count
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def _refuse(self, step: int, found: Any) -> None:
        """Raises ``ValueError`` when checkpoint ``step`` was written by another run."""
        where = f"checkpoint_dir: {str(self.directory / str(step))!r}"
        if not isinstance(found, dict) or found.get("format") != FORMAT:
            raise ValueError(
                f"{where} was not written by this version of pixjax.driver "
                f"({FORMAT}); use a new checkpoint_dir"
            )
        if found.get("data") != self.meta["data"]:
            raise ValueError(
                f"{where} belongs to a run with other data (the checksums of its "
                "data arrays differ); resuming must keep the data: use a new "
                "checkpoint_dir or the same data"
            )
        for name in ("num_steps", "chunk_size", "chunk_unit"):
            if found.get(name) != self.meta[name]:
                raise ValueError(
                    f"{where} belongs to a run of {name}={found.get(name)}, this run "
                    f"has {name}={self.meta[name]} (resuming must keep num_steps and "
                    "chunk_size, so that the chunks are those of an uninterrupted "
                    "run); use a new checkpoint_dir or the same settings"
                )
        for name in ("state", "metrics"):
            diff = _differences(self.meta[name], found.get(name) or {})
            if diff:
                raise ValueError(
                    f"{where} holds a {name} of other shapes: "
                    + "; ".join(diff[:4])
                    + ("; ..." if len(diff) > 4 else "")
                    + "; use a new checkpoint_dir"
                )

    def _restore(self, step: int) -> tuple[Any, PyTree]:
        """``(state, metrics)`` of checkpoint ``step``; ``ValueError`` if corrupt;
        the refusal of :meth:`_refuse` (a ``_Refused``) if of another run."""
        if not (self.directory / str(step) / "meta").is_dir():  # older formats
            meta = None
        else:
            try:
                meta = self.manager.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
                )["meta"]
            except Exception as e:  # noqa: BLE001 - any orbax / tensorstore error
                raise ValueError(
                    f"unreadable: {type(e).__name__}: {str(e)[:200]}"
                ) from e
        try:
            self._refuse(step, meta)
        except ValueError as e:
            raise _Refused(str(e)) from None
        target = {
            "state": self.abstract,
            "metrics": jax.tree_util.tree_map(
                lambda s: jax.ShapeDtypeStruct((self.done(step), *s.shape), s.dtype),
                self.metric_shapes,
            ),
        }
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target),
                    checksums=ocp.args.JsonRestore(),
                ),
            )
        except Exception as e:  # noqa: BLE001 - any orbax / tensorstore read error
            raise ValueError(f"unreadable: {type(e).__name__}: {str(e)[:200]}") from e
        tree = restored["state"]
        bad = checkpoints.checksum_mismatches(restored["checksums"], tree)
        if bad:
            raise ValueError(f"arrays {bad[:3]} differ from their checksums")
        metrics = jax.tree_util.tree_map(np.asarray, tree["metrics"])
        return tree["state"], metrics

    def restore_latest(self) -> tuple[int, Any, PyTree] | None:
        """``(done, state, metrics)`` of the newest intact checkpoint, or ``None``.

        Raises:
          ValueError: the newest readable checkpoint belongs to another run.
        """
        # In a job, every process lists the same checkpoints (none moved meanwhile).
        distributed.barrier("driver-restore")
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                state, metrics = self._restore(step)
            except _Refused as e:
                raise ValueError(str(e)) from None
            except ValueError as e:
                src = self.directory / str(step)
                dst = src.with_name(f"corrupt-{self.unit}-{step}")
                if distributed.is_primary():  # the one writer of a job
                    print(
                        f"{self.desc}: the checkpoint of {self.unit} {step} is "
                        f"corrupt ({e}); moved to {dst} and trying the previous one",
                        file=sys.stderr,
                    )
                    if dst.exists():
                        shutil.rmtree(dst)
                    src.rename(dst)
                distributed.barrier("driver-corrupt-moved")
                self.manager.reload()
                continue
            return self.done(step), state, metrics
        return None

    def number(self, done: int) -> int:
        """The checkpoint number after ``done`` steps: steps, or chunks begun when
        checkpoints count chunks."""
        if self.chunk_unit is None:
            return done
        return -(-done // self.meta["chunk_size"])

    def done(self, number: int) -> int:
        """The steps done at checkpoint ``number`` (inverse of :meth:`number`)."""
        if self.chunk_unit is None:
            return number
        return min(number * self.meta["chunk_size"], self.meta["num_steps"])

    def save(self, done: int, state: Any, metrics: PyTree) -> None:
        tree = {"state": sharding.to_host(state), "metrics": metrics}
        self.manager.save(
            self.number(done),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree),
                meta=ocp.args.JsonSave(self.meta),
                checksums=ocp.args.JsonSave(checkpoints.array_checksums(tree)),
            ),
        )

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class _Refused(Exception):
    """A checkpoint of another run (not corrupt: it is neither moved nor used)."""


def run(
    step: Step,
    state: State,
    data: PyTree,
    *,
    num_steps: int,
    chunk_size: int,
    checkpoint_dir: str | os.PathLike | None = None,
    on_chunk: OnChunk | None = None,
    max_to_keep: int = 2,
    desc: str = "run",
    unit: str = "step",
    progress: bool = True,
    loop: str = "scan",
    chunk_unit: str | None = None,
) -> tuple[State, PyTree]:
    """Runs ``state, metrics = step(state, data)`` ``num_steps`` times, resumably.

    Args:
      step: a pure, jit-able ``step(state, data) -> (state, metrics)``; the new state
        has the structure, shapes and dtypes of the old one; ``metrics`` is a pytree
        of arrays of fixed shapes (e.g. scalars). Reuse the same function object to
        reuse its compilation.
      state: the initial state, a pytree of arrays that orbax can save (no typed
        PRNG keys: keep keys in ``data`` or as ``jax.random.key_data``). It is
        copied, not consumed.
      data: a pytree of arrays passed to every step unchanged (placed on the device
        once; an argument of the compiled chunk, not a constant baked into it).
      num_steps: a positive integer, the steps of the whole run.
      chunk_size: a positive integer, the steps per compiled call; a checkpoint is
        saved (and ``on_chunk`` called) after steps ``chunk_size, 2 chunk_size, ...``
        and ``num_steps``.
      checkpoint_dir: the orbax CheckpointManager directory of this run (created if
        absent), or ``None`` for no checkpoints. Holding checkpoints of this run, it
        resumes from the newest intact one.
      on_chunk: ``on_chunk(first_step, state, metrics)`` after each chunk, before it
        is saved: ``first_step`` is the 0-based index of the chunk's first step,
        ``state`` the state after the chunk, ``metrics`` the chunk's metrics (host
        numpy, stacked ``[steps in the chunk, ...]``). Raise ``ValueError`` to stop
        the run without saving the chunk (e.g. :func:`require_finite`).
      max_to_keep: checkpoints kept (the newest ones).
      desc: names the run in the progress bar and in messages.
      unit: what one step is, in the progress bar, in messages and in the names of
        corrupt checkpoints (``corrupt-<unit>-<N>``).
      progress: show a tqdm progress bar (stderr) over the steps.
      loop: ``"scan"`` (a chunk is one compiled ``lax.scan``) or ``"python"`` (a
        chunk is a host loop of the jitted ``step``: same chunks, checkpoints and
        results up to float rounding; faster where XLA compiles the step worse inside
        a loop, e.g. convolution gradients on the CPU, jax#12868).

      chunk_unit: what one chunk is (e.g. ``"epoch"`` when a step is a batch and a
        chunk an epoch): checkpoints are then numbered, resume messages and corrupt
        checkpoints named, in chunks (``corrupt-epoch-3``) instead of steps.

    Returns:
      ``(state, metrics)``: the state after ``num_steps`` steps and the metrics of
      every step (restored ones included) as host numpy arrays stacked
      ``[num_steps, ...]``; identical to an uninterrupted run's, and to calling
      ``step`` ``num_steps`` times in a Python loop up to XLA's compilation of the
      scan.

    Raises:
      ValueError: ``num_steps`` / ``chunk_size`` not positive integers; a checkpoint
        in ``checkpoint_dir`` written by a run with another ``num_steps``,
        ``chunk_size``, state or metrics (refused, nothing is written); ``loop`` not
        one of :data:`LOOPS`; or whatever
        ``on_chunk`` raises (the chunk is not saved; earlier ones are kept).
    """
    check_positive_int("num_steps", num_steps)
    check_positive_int("chunk_size", chunk_size)
    check_positive_int("max_to_keep", max_to_keep)
    if loop not in LOOPS:
        raise ValueError(f"loop: expected one of {list(LOOPS)}, got {loop!r}")
    data = _place(data)
    # A copy of the caller's state: the chunks donate (reuse) their input buffers.
    state = _copy(state if jax.process_count() == 1 else _place(state))
    chunk = _chunk_fn(step) if loop == "scan" else _python_chunk(step)
    done = 0
    parts: list[PyTree] = []
    store = None
    if checkpoint_dir is not None:
        where = pathlib.Path(checkpoint_dir)
        if where.exists() and not where.is_dir():
            raise ValueError(
                f"checkpoint_dir: {str(where)!r} exists and is not a directory"
            )
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
        # (traced as the first chunk will be: the trace is reused by that call)
        first = min(chunk_size, num_steps)
        metric_shapes = jax.tree_util.tree_map(
            lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype),
            chunk.eval_shape(state, data, first)[1],
        )
        meta = {
            "format": FORMAT,
            "num_steps": int(num_steps),
            "chunk_size": int(chunk_size),
            "chunk_unit": chunk_unit,
            "data": _fingerprint(data),
            "state": _signature(abstract),
            "metrics": _signature(metric_shapes),
        }
        store = _Store(
            checkpoint_dir,
            meta,
            abstract,
            metric_shapes,
            max_to_keep=max_to_keep,
            unit=unit,
            desc=desc,
            chunk_unit=chunk_unit,
        )
    try:
        if store is not None:
            restored = store.restore_latest()
            if restored is not None:
                done, restored_state, metrics = restored
                state = _like(restored_state, state)
                parts.append(metrics)
                print(
                    f"{desc}: resuming after {store.unit} {store.number(done)} of "
                    f"{store.number(num_steps)}"
                )
        from tqdm.auto import tqdm

        with tqdm(
            total=num_steps,
            initial=done,
            desc=desc,
            unit=unit,
            leave=False,
            disable=not progress,
        ) as bar:
            while done < num_steps:
                length = min(chunk_size, num_steps - done)
                state, metrics = chunk(state, data, length)
                metrics = sharding.to_host(metrics)
                if on_chunk is not None:
                    on_chunk(done, state, metrics)
                parts.append(metrics)
                done += length
                if store is not None:
                    store.save(done, state, _stack_metrics(parts))
                bar.update(length)
    finally:
        if store is not None:
            store.close()
    return state, _stack_metrics(parts)
