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

from pixjax.types import PRNGKey


def polynomial_delta(u: jax.Array, eta: float | jax.Array) -> jax.Array:
    """Deb's polynomial-mutation step for uniform draws ``u`` in ``[0, 1)``:
    ``(2u)^(1/(eta+1)) - 1`` for ``u < 0.5``, else ``1 - (2(1-u))^(1/(eta+1))``;
    values in ``(-1, 1)``, of order ``1 / eta``."""
    p = 1.0 / (eta + 1.0)
    return jnp.where(
        u < 0.5, jnp.power(2.0 * u, p) - 1.0, 1.0 - jnp.power(2.0 * (1.0 - u), p)
    )


def polynomial_mutation(
    key: PRNGKey,
    genome: jax.Array,
    *,
    rate: float | jax.Array,
    eta: float | jax.Array,
) -> jax.Array:
    """Mutates each gene with probability ``rate`` by a polynomial step, clipped.

    Args:
      key: PRNG key (one per genome).
      genome: float ``[D]`` (any shape) in ``[0, 1]``.
      rate: per-gene mutation probability in ``[0, 1]`` (0.1 in the original).
      eta: distribution index ``> 0`` (15 in the original); larger is smaller steps.

    Returns:
      The mutated genome, same shape and dtype, in ``[0, 1]``.
    """
    which_key, step_key = jax.random.split(key)
    mutate = jax.random.uniform(which_key, genome.shape) < rate
    delta = polynomial_delta(jax.random.uniform(step_key, genome.shape), eta)
    new = jnp.clip(genome + delta.astype(genome.dtype), 0.0, 1.0)
    return jnp.where(mutate, new, genome)


def sbx_children(
    u: jax.Array, y1: jax.Array, y2: jax.Array, eta: float | jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Deb's bounded SBX on ``[0, 1]`` for ``y1 <= y2`` and draws ``u`` in ``[0, 1)``:
    the two children (lower, upper), clipped to ``[0, 1]``; where ``y2 - y1`` is not
    above float32 epsilon both are ``y1``."""
    e = 1.0 / (eta + 1.0)
    gap = y2 - y1
    safe = jnp.where(gap > jnp.finfo(jnp.float32).eps, gap, 1.0)

    def betaq(beta):
        alpha = 2.0 - jnp.power(beta, -(eta + 1.0))
        return jnp.where(
            u <= 1.0 / alpha,
            jnp.power(u * alpha, e),
            jnp.power(1.0 / (2.0 - u * alpha), e),
        )

    lower = 0.5 * ((y1 + y2) - betaq(1.0 + 2.0 * y1 / safe) * safe)
    upper = 0.5 * ((y1 + y2) + betaq(1.0 + 2.0 * (1.0 - y2) / safe) * safe)
    crossed = gap > jnp.finfo(jnp.float32).eps
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
    children are copies of the parents, in random order.

    Args:
      key: PRNG key (one per pair).
      parent_a, parent_b: float genomes of one shape, values in ``[0, 1]``.
      eta: SBX distribution index ``> 0`` (10 in the original).
      probability: crossover probability in ``[0, 1]`` (0.5 in the original).

    Returns:
      ``(child_a, child_b)``, same shape and dtype, in ``[0, 1]``.
    """
    cross_key, u_key, coin_key, swap_key = jax.random.split(key, 4)
    y1 = jnp.minimum(parent_a, parent_b)
    y2 = jnp.maximum(parent_a, parent_b)
    lo, hi = sbx_children(jax.random.uniform(u_key, y1.shape), y1, y2, eta)
    coin = jax.random.bernoulli(coin_key, 0.5, y1.shape)
    crossed_a, crossed_b = jnp.where(coin, lo, hi), jnp.where(coin, hi, lo)
    swap = jax.random.bernoulli(swap_key, 0.5)
    copy_a = jnp.where(swap, parent_b, parent_a)
    copy_b = jnp.where(swap, parent_a, parent_b)
    cross = jax.random.uniform(cross_key) < probability
    child_a = jnp.where(cross, crossed_a, copy_a).astype(parent_a.dtype)
    child_b = jnp.where(cross, crossed_b, copy_b).astype(parent_a.dtype)
    return child_a, child_b


__all__ = [
    "polynomial_delta",
    "polynomial_mutation",
    "sbx_children",
    "sbx_crossover",
]
