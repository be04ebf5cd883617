"""Variation operators on real-valued genomes in ``[0, 1]``: polynomial mutation and
simulated binary crossover (SBX), as the fooling-images code uses them.

Nguyen, Yosinski & Clune (CVPR 2015) evolve direct-encoded images with sferes2's
``EvoFloat`` genome (``sferes/gen/evo_float.hpp``): every gene mutates with probability
``rate`` by Deb's polynomial mutation (eta 15) and is clipped to ``[0, 1]``; a pair of
parents is crossed by SBX (eta 10, Deb's bounded form with ``yl = 0``, ``yu = 1``) with
probability ``probability`` (0.5), otherwise the children are the parents in random
order. References: K. Deb, *Multi-Objective Optimization Using Evolutionary
Algorithms* (2001), SBX p. 113, polynomial mutation p. 124.

Each function works on one genome (or one pair) ``[D]`` and is batched with ``vmap``;
the key comes first and is split inside by purpose.

One deliberate difference from sferes2: where the two parents hold the same gene value
(``|y1 - y2| <= eps``), sferes2 leaves that gene of the children as it was constructed;
here both children keep the parents' common value (Deb's intent).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pixjax.keys import random_words, unit_floats
from pixjax.types import PRNGKey


def _power(base: jax.Array, exponent: float | jax.Array) -> jax.Array:
    """``base ** exponent`` for ``base >= 0`` as ``exp2(exponent * log2(base))``: XLA's
    CPU ``pow`` is a scalar library call ~3x slower than the two vectorised
    functions (``benchmarks/bench_fooling.py``); ``0 ** p`` is 0 for ``p > 0``."""
    return jnp.exp2(exponent * jnp.log2(base))


def polynomial_delta(u: jax.Array, eta: float | jax.Array) -> jax.Array:
    """Deb's polynomial-mutation step for uniform draws ``u`` in ``[0, 1)``:
    ``(2u)^(1/(eta+1)) - 1`` for ``u < 0.5``, else ``1 - (2(1-u))^(1/(eta+1))``;
    values in ``(-1, 1)``, of order ``1 / eta``."""
    low = u < 0.5
    t = _power(jnp.where(low, 2.0 * u, 2.0 * (1.0 - u)), 1.0 / (eta + 1.0))
    return jnp.where(low, t - 1.0, 1.0 - t)


def polynomial_mutation(
    key: PRNGKey,
    genome: jax.Array,
    *,
    rate: float | jax.Array,
    eta: float | jax.Array,
) -> jax.Array:
    """Mutates each gene with probability ``rate`` by a polynomial step, clipped.

    One uniform draw ``w`` per gene (23 bits of one random word,
    :func:`pixjax.keys.random_words`) decides both: the gene mutates when
    ``w < rate`` and its step uses ``u = w / rate``, uniform in ``[0, 1)`` given that
    it mutates (the same distribution as two independent draws, at half the random
    numbers).

    Args:
      key: PRNG key (one per genome).
      genome: float ``[D]`` (any shape) in ``[0, 1]``.
      rate: per-gene mutation probability in ``[0, 1]`` (0.1 in the original).
      eta: distribution index ``> 0`` (15 in the original); larger is smaller steps.

    Returns:
      The mutated genome, same shape and dtype, in ``[0, 1]``.
    """
    w = unit_floats(random_words(key, genome.shape))
    mutate = w < rate
    u = jnp.minimum(w / jnp.maximum(rate, jnp.finfo(jnp.float32).tiny), 1.0)
    delta = polynomial_delta(u, eta)
    new = jnp.clip(genome + delta.astype(genome.dtype), 0.0, 1.0)
    return jnp.where(mutate, new, genome)


def sbx_children(
    u: jax.Array, y1: jax.Array, y2: jax.Array, eta: float | jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Deb's bounded SBX on ``[0, 1]`` for ``y1 <= y2`` and draws ``u`` in ``[0, 1)``:
    the two children (lower, upper), clipped to ``[0, 1]``; where ``y2 - y1`` is not
    above float32 epsilon both are ``y1``.

    Written with one division per child (``1 / beta`` as ``gap / (gap + 2 d)``; the
    branch ``u <= 1 / alpha`` as ``u alpha <= 1``; ``(1 / (2 - u alpha))^e`` as
    ``exp2(-e log2(2 (1 - u) + u beta^-(eta+1)))``, which does not cancel for ``u``
    near 1): Deb's formulas within 1e-6 of float64
    (tests/test_search_operators.py, ``u`` up to ``1 - 2^-23`` and gaps down to
    1e-6)."""
    e = 1.0 / (eta + 1.0)
    gap = y2 - y1
    crossed = gap > jnp.finfo(jnp.float32).eps
    safe = jnp.where(crossed, gap, 1.0)

    whole = isinstance(eta, (int, float)) and float(eta + 1.0).is_integer()

    def betaq(distance):
        # beta = 1 + 2 distance / gap >= 1, distance to the bound on this side
        inv_beta = safe / (safe + 2.0 * distance)
        inv = (
            jax.lax.integer_pow(inv_beta, int(eta + 1.0))  # eta 10: a few products
            if whole
            else _power(inv_beta, eta + 1.0)
        )
        ua = u * (2.0 - inv)  # u * alpha, in [0, 2)
        inside = ua <= 1.0
        # 2 - u alpha as 2 (1 - u) + u inv: no cancellation for u near 1
        rest = 2.0 * (1.0 - u) + u * inv
        lg = jnp.log2(jnp.where(inside, ua, rest))
        return jnp.exp2(e * jnp.where(inside, lg, -lg))

    mid = y1 + y2
    lower = 0.5 * (mid - betaq(y1) * safe)
    upper = 0.5 * (mid + betaq(1.0 - y2) * safe)
    lower = jnp.where(crossed, jnp.clip(lower, 0.0, 1.0), y1)
    upper = jnp.where(crossed, jnp.clip(upper, 0.0, 1.0), y1)
    return lower, upper


def sbx_crossover(
    key: PRNGKey,
    parent_a: jax.Array,
    parent_b: jax.Array,
    *,
    eta: float | jax.Array,
    probability: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Two children of two parents (sferes2's ``EvoFloat::cross``).

    With probability ``probability`` the pair is crossed gene by gene by SBX (each
    gene's two children assigned to the two offspring by a coin flip); otherwise the
    children are copies of the parents, in random order. One random word per gene
    (:func:`pixjax.keys.random_words`) gives both the coin (its top bit) and SBX's
    ``u`` (the next 23 bits, uniform in ``[0, 1)`` and independent of the coin).

    Args:
      key: PRNG key (one per pair).
      parent_a, parent_b: float genomes of one shape, values in ``[0, 1]``.
      eta: SBX distribution index ``> 0`` (10 in the original).
      probability: crossover probability in ``[0, 1]`` (0.5 in the original).

    Returns:
      ``(child_a, child_b)``, same shape and dtype, in ``[0, 1]``.
    """
    gene_key, pair_key = jax.random.split(key)
    y1 = jnp.minimum(parent_a, parent_b)
    y2 = jnp.maximum(parent_a, parent_b)
    r = random_words(gene_key, y1.shape)
    coin = r < jnp.uint32(1 << 31)  # the top bit
    u = unit_floats(jax.lax.shift_left(r, jnp.uint32(1)))  # the next 23 bits
    lo, hi = sbx_children(u, y1, y2, eta)
    crossed_a, crossed_b = jnp.where(coin, lo, hi), jnp.where(coin, hi, lo)
    cross_u, swap_u = jax.random.uniform(pair_key, (2,))
    swap = swap_u < 0.5
    copy_a = jnp.where(swap, parent_b, parent_a)
    copy_b = jnp.where(swap, parent_a, parent_b)
    cross = cross_u < probability
    child_a = jnp.where(cross, crossed_a, copy_a).astype(parent_a.dtype)
    child_b = jnp.where(cross, crossed_b, copy_b).astype(parent_a.dtype)
    return child_a, child_b


__all__ = [
    "polynomial_delta",
    "polynomial_mutation",
    "sbx_children",
    "sbx_crossover",
]
