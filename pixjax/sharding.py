"""Device placement: the only module that knows about devices and meshes.

Batches are split along a single mesh axis, ``"batch"``, over all visible devices;
parameters and sweep configurations are replicated. On a CPU, simulate devices with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before importing jax.

In a job of several processes (:mod:`pixjax.distributed`) "all visible devices" are
every process's: the mesh spans the job, :func:`shard_batch` puts only this process's
rows of a batch on its own devices (``jax.make_array_from_process_local_data``) and
:func:`to_host` brings a sharded result back to every process (an all-gather), so the
code above this module is the same for one device, eight, or many hosts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

BATCH_AXIS = "batch"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``"batch"`` over ``devices`` (default: all visible devices)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.asarray(devices), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading axis split over the mesh."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def round_up(n: int, multiple: int) -> int:
    return -(-int(n) // int(multiple)) * int(multiple)


def local_rows(mesh: Mesh, n: int) -> slice | None:
    """The rows of a batch of ``n`` (split over ``mesh``) that live on this process's
    devices: all of them in a single process; ``None`` where they are not one
    contiguous block (a mesh whose devices do not come grouped by process).

    Raises:
      ValueError: ``n`` is not a multiple of the mesh size (the batch does not split
        evenly over the processes' devices).
    """
    if n % mesh.size:
        raise ValueError(
            f"batch: {n} rows do not split over the {mesh.size} devices of the mesh "
            f"({jax.process_count()} process(es)); expected a multiple of {mesh.size}"
        )
    spans = batch_sharding(mesh).addressable_devices_indices_map((n,)).values()
    starts = [s[0].start or 0 for s in spans]
    stops = [n if s[0].stop is None else s[0].stop for s in spans]
    rows = slice(min(starts), max(stops))
    covered = sum(
        b - a for a, b in {(a, b) for a, b in zip(starts, stops, strict=True)}
    )
    return rows if covered == rows.stop - rows.start else None


def shard_batch(mesh: Mesh, *arrays: np.ndarray) -> tuple[jax.Array, ...]:
    """Places host arrays on the mesh, split along their leading (batch) axis.

    Every process passes the whole batch; each puts only its own rows
    (:func:`local_rows`) on its devices.

    Raises:
      ValueError: a leading dimension that is not a multiple of the mesh size (pad
        first).
    """
    sharding = batch_sharding(mesh)
    if jax.process_count() == 1:
        return tuple(jax.device_put(a, sharding) for a in arrays)
    out = []
    for a in arrays:
        a = np.asarray(a)
        rows = local_rows(mesh, a.shape[0])
        if rows is None:  # this process's rows are scattered: cut them shard by shard
            out.append(
                jax.make_array_from_callback(a.shape, sharding, lambda i, a=a: a[i])
            )
        else:
            out.append(
                jax.make_array_from_process_local_data(sharding, a[rows], a.shape)
            )
    return tuple(out)


def to_host(tree: Any) -> Any:
    """``tree`` with every array as a host numpy array; an array sharded over other
    processes' devices is gathered first (a collective: every process of the job must
    call this at the same point)."""

    def one(x):
        if (
            isinstance(x, jax.Array)
            and not x.is_fully_addressable
            and not x.is_fully_replicated
        ):
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree_util.tree_map(one, tree)


def replicate(mesh: Mesh, tree: Any) -> Any:
    """Places a pytree on every device of the mesh (in a job of several processes,
    from the host values every process holds)."""
    if jax.process_count() == 1:
        return jax.device_put(tree, replicated(mesh))

    def one(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(
            x.dtype, jax.dtypes.prng_key
        ):
            data = jax.device_put(to_host(jax.random.key_data(x)), replicated(mesh))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
        return jax.device_put(to_host(x), replicated(mesh))

    return jax.tree_util.tree_map(one, tree)
