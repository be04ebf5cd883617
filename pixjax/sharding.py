"""Device placement: the only module that knows about devices and meshes.

Batches are split along a single mesh axis, ``"batch"``, over all visible devices;
parameters and sweep configurations are replicated. On a CPU, simulate devices with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` set before importing jax.
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


def shard_batch(mesh: Mesh, *arrays: np.ndarray) -> tuple[jax.Array, ...]:
    """Places host arrays on the mesh, split along their leading (batch) axis.

    The leading dimension must be a multiple of the mesh size (pad first).
    """
    sharding = batch_sharding(mesh)
    return tuple(jax.device_put(a, sharding) for a in arrays)


def replicate(mesh: Mesh, tree: Any) -> Any:
    """Places a pytree on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))
