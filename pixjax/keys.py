"""Keys split by purpose.

An experiment derives every random stream (initialisation, data order, augmentation,
evaluation, ...) from one root key, one subkey per *named purpose*::

    keys = purpose_keys(jax.random.key(seed), "init", "order", "augment")
    variables = model.init(keys["init"], x)

The subkey of a purpose is ``fold_in(root, crc32(name))``: it depends only on the root key
and the name, so adding a purpose later does not change the others, and two seeds never
share a subkey (``key(seed)`` and ``key(seed + 1)`` as "init" and "train" keys would make
seed 1's initialisation key seed 0's training key). Style: evosax / big_vision (split
explicitly, name subkeys by purpose, never reuse one).
"""

from __future__ import annotations

import zlib

import jax

from pixjax.types import PRNGKey


def purpose_key(key: PRNGKey, purpose: str) -> PRNGKey:
    """The subkey of ``key`` for ``purpose`` (a non-empty name, e.g. ``"init"``).

    Raises:
      ValueError: ``purpose`` is not a non-empty string, or ``key`` not one typed
        PRNG key.
    """
    if not isinstance(purpose, str) or not purpose:
        raise ValueError(f"purpose: expected a non-empty name, got {purpose!r}")
    if not (
        isinstance(key, jax.Array)
        and jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key)
        and key.shape == ()
    ):
        raise ValueError(
            f"key: expected one typed PRNG key (jax.random.key(seed)), got {key!r}"
        )
    return jax.random.fold_in(key, zlib.crc32(purpose.encode()))


def purpose_keys(key: PRNGKey, *purposes: str) -> dict[str, PRNGKey]:
    """``{purpose: purpose_key(key, purpose)}`` for distinct names.

    Raises:
      ValueError: no names, a repeated name, or a name that is not a non-empty string.
    """
    if not purposes:
        raise ValueError("purposes: expected at least one name, got none")
    bad = [p for p in purposes if not isinstance(p, str) or not p]
    if bad:
        raise ValueError(f"purposes: expected non-empty names, got {bad!r}")
    if len(set(purposes)) != len(purposes):
        raise ValueError(f"purposes: expected distinct names, got {list(purposes)}")
    return {p: purpose_key(key, p) for p in purposes}


__all__ = ["purpose_key", "purpose_keys"]
