"""The MAP-Elites archive of the fooling-images search: one cell per class.

Nguyen, Yosinski & Clune (CVPR 2015) keep, for every class ``c``, the image (genome) the
target network gives the highest probability of ``c`` (its *elite*; the cell's fitness
is that probability). Two update rules:

* ``"original"`` (what the original sferes2 code does): a child replaces *every* cell
  whose class probability it beats, so one image may hold several cells;
* ``"argmax"`` (textbook MAP-Elites, Mouret & Clune 2015): a child competes only for the
  cell of its predicted class.

When several children of one batch beat a cell, the best of them takes it (ties: the
first), which is what inserting them one after another gives. The archive is an
immutable pytree updated by masked scatter (anchor: QDax's ``MapElitesRepertoire.add``);
parents are drawn uniformly from the filled cells, ``pop / 2`` pairs per generation.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from pixjax.types import PRNGKey

UPDATE_RULES = ("original", "argmax")


class Archive(NamedTuple):
    """One elite per cell (class).

    Attributes:
      genomes: a pytree whose leaves have a leading axis ``[C, ...]``: the elites
        (meaningless where the cell is empty).
      fitness: float32 ``[C]``, the elite's probability of the cell's class; ``-inf``
        for an empty cell.
    """

    genomes: Any
    fitness: jax.Array

    @property
    def filled(self) -> jax.Array:
        """bool ``[C]``: the cells that hold an elite."""
        return jnp.isfinite(self.fitness)


def empty_archive(genome: Any, num_cells: int) -> Archive:
    """An archive of ``num_cells`` empty cells for genomes shaped like ``genome`` (one
    genome, a pytree of arrays).

    Raises:
      ValueError: ``num_cells`` not a positive integer.
    """
    if isinstance(num_cells, bool) or not isinstance(num_cells, int) or num_cells < 1:
        raise ValueError(f"num_cells: expected a positive integer, got {num_cells!r}")
    genomes = jax.tree_util.tree_map(
        lambda g: jnp.zeros((num_cells, *jnp.shape(g)), jnp.asarray(g).dtype), genome
    )
    return Archive(genomes, jnp.full((num_cells,), -jnp.inf, jnp.float32))


def add(archive: Archive, genomes: Any, probs: jax.Array, rule: str) -> Archive:
    """The archive after offering it a batch of children.

    Args:
      archive: the current :class:`Archive` with ``C`` cells.
      genomes: the children, a pytree with leading axis ``[P, ...]`` matching the
        archive's genomes.
      probs: float ``[P, C]``, each child's class probabilities (softmax).
      rule: ``"original"`` or ``"argmax"`` (module docstring). Static.

    Returns:
      The new archive (the input is not changed).

    Raises:
      ValueError: an unknown ``rule``; ``probs`` not ``[P, C]``.
    """
    if rule not in UPDATE_RULES:
        raise ValueError(f"rule: expected one of {list(UPDATE_RULES)}, got {rule!r}")
    num_cells = archive.fitness.shape[0]
    if probs.ndim != 2 or probs.shape[1] != num_cells:
        raise ValueError(
            f"probs: expected shape [P, {num_cells}] (one probability per cell), got "
            f"{tuple(probs.shape)}"
        )
    scores = probs.astype(jnp.float32)
    if rule == "argmax":
        own = jax.nn.one_hot(jnp.argmax(probs, axis=1), num_cells, dtype=bool)
        scores = jnp.where(own, scores, -jnp.inf)
    best = jnp.argmax(scores, axis=0)  # [C]: the best child per cell (first on ties)
    best_score = jnp.max(scores, axis=0)
    improve = best_score > archive.fitness

    def place(old, new):
        taken = jnp.take(new, best, axis=0)
        mask = improve.reshape((-1,) + (1,) * (old.ndim - 1))
        return jnp.where(mask, taken, old)

    return Archive(
        jax.tree_util.tree_map(place, archive.genomes, genomes),
        jnp.where(improve, best_score, archive.fitness),
    )


def select_parents(key: PRNGKey, archive: Archive, num_pairs: int) -> jax.Array:
    """``[num_pairs, 2]`` int32 cell indices drawn uniformly (with replacement) from
    the filled cells. The archive must hold at least one elite (cells drawn from an
    empty archive are meaningless); ``num_pairs`` is static."""
    weights = archive.filled.astype(jnp.float32)
    return jax.random.choice(
        key,
        archive.fitness.shape[0],
        (num_pairs, 2),
        replace=True,
        p=weights / jnp.maximum(weights.sum(), 1.0),
    ).astype(jnp.int32)


__all__ = ["Archive", "UPDATE_RULES", "add", "empty_archive", "select_parents"]
