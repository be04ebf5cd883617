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

Bulk draws (a random number per gene of a population) take :func:`random_words` and
:func:`unit_floats`: the same Threefry cipher at about half the cost of
``jax.random.bits`` per word on the CPU.
"""

from __future__ import annotations

import math
import zlib

import jax
import jax.extend
import jax.numpy as jnp

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


def random_words(key: PRNGKey, shape: tuple[int, ...]) -> jax.Array:
    """Uniform random uint32 words of ``shape`` for bulk draws (one per gene of a
    population): JAX's Threefry-2x32 hash (``jax.extend.random.threefry_2x32``) of the
    counters ``0 .. n-1`` under a 64-bit cipher key drawn from ``key``, both output
    words of every block used.

    ``jax.random.bits`` hashes the same way but, with shape-partitionable counters
    (JAX's default), it spends a whole block on every word: on the 2-core CPU the
    random words of one MAP-Elites generation take about 2.3x longer there
    (``benchmarks/RESULTS.md``), and they are about half of its variation.
    Deterministic: the same key gives the same words on every device count, and under
    ``vmap`` each key gives what it gives alone (tests/test_keys.py); the cipher key
    is drawn as ``jax.random.bits`` draws, so the words also depend on JAX's
    ``jax_threefry_partitionable`` setting (on by default). XLA's own
    ``RngBitGenerator`` is faster still but not usable per key: under ``vmap`` its
    rows differ from what each key gives alone.

    Args:
      key: one PRNG key (consumed whole: use one key per purpose): typed
        (``jax.random.key``) or a raw uint32 key (``jax.random.PRNGKey``).
      shape: static output shape.

    Returns:
      uint32 ``shape``.

    Raises:
      ValueError: ``shape`` holds ``2**32 - 1`` words or more (uint32 counters).
    """
    n = math.prod(shape)
    if n >= 2**32 - 1:
        raise ValueError(f"shape: expected fewer than 2**32 - 1 words, got {shape}")
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)  # a raw key, as jax.random takes it
    # the cipher key from the key's own purpose "random_words", so it is no other
    # draw's first words even if the key were (wrongly) used again
    cipher = jax.random.bits(purpose_key(key, "random_words"), (2,), jnp.uint32)
    words = jax.extend.random.threefry_2x32(cipher, jax.lax.iota(jnp.uint32, n))
    return words.reshape(shape)


def unit_floats(words: jax.Array) -> jax.Array:
    """float32 in ``[0, 1)`` from the top 23 bits of uint32 ``words`` (the construction
    of ``jax.random.uniform``: a mantissa under exponent 0, minus 1)."""
    mantissa = jax.lax.shift_right_logical(words, jnp.uint32(9))
    one = jax.lax.bitcast_convert_type(mantissa | jnp.uint32(0x3F800000), jnp.float32)
    return one - 1.0


__all__ = ["purpose_key", "purpose_keys", "random_words", "unit_floats"]
