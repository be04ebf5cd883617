"""Direct-encoding MAP-Elites generations (Nguyen, Yosinski & Clune, CVPR 2015).

A genome is the image itself: one gene per pixel and channel, in ``[0, 1]``. One
generation, as the original sferes2 code: draw ``pop / 2`` parent pairs uniformly from
the filled cells, cross each pair (SBX with probability ``cross_probability``, else
copies), mutate both children (polynomial, per-gene ``mutation_rate``), score all
children in one batched call of the target network and offer them to the archive
(:func:`pixjax.search.map_elites.add`). The whole generation is one pure function, run
by :func:`pixjax.driver.run` (a ``lax.scan`` over generations in chunks, checkpointed).

Mutation-rate schedules: ``"code"`` (constant, what the original code does) and
``"paper"`` (halved every 1000 generations, as the paper describes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pixjax.search.map_elites import (
    UPDATE_RULES,
    Archive,
    add,
    empty_archive,
    select_parents,
)
from pixjax.search.operators import polynomial_mutation, sbx_crossover
from pixjax.types import PRNGKey

SCHEDULES = ("code", "paper")


class SearchState(NamedTuple):
    """The evolving state: the archive and the generations done (int32 scalar)."""

    archive: Archive
    generation: jax.Array


class DirectSettings(NamedTuple):
    """Static settings of a direct-encoding search (closed over by the step)."""

    pop_size: int = 200
    mutation_rate: float = 0.1
    eta_mutation: float = 15.0
    eta_crossover: float = 10.0
    cross_probability: float = 0.5
    rule: str = "original"
    schedule: str = "code"


def check_settings(settings: DirectSettings) -> None:
    """Raises ``ValueError`` naming the first bad setting and the accepted values."""
    s = settings
    if isinstance(s.pop_size, bool) or not isinstance(s.pop_size, int):
        raise ValueError(
            f"pop_size: expected an even positive integer, got {s.pop_size!r}"
        )
    if s.pop_size < 2 or s.pop_size % 2:
        raise ValueError(
            f"pop_size: expected an even positive integer (children come in pairs), "
            f"got {s.pop_size}"
        )
    for name in ("mutation_rate", "cross_probability"):
        v = getattr(s, name)
        if not 0.0 <= float(v) <= 1.0:
            raise ValueError(f"{name}: expected a probability in [0, 1], got {v}")
    for name in ("eta_mutation", "eta_crossover"):
        v = getattr(s, name)
        if not float(v) > 0.0:
            raise ValueError(f"{name}: expected a positive number, got {v}")
    if s.rule not in UPDATE_RULES:
        raise ValueError(f"rule: expected one of {list(UPDATE_RULES)}, got {s.rule!r}")
    if s.schedule not in SCHEDULES:
        raise ValueError(
            f"schedule: expected one of {list(SCHEDULES)}, got {s.schedule!r}"
        )


def fitness_fn(logits_fn: Callable[[jax.Array], jax.Array]):
    """``genomes [P, H, W, C] -> probs [P, classes]``: the target's softmax."""
    return lambda images: jax.nn.softmax(logits_fn(images), axis=-1)


def init_state(
    key: PRNGKey,
    logits_fn: Callable[[jax.Array], jax.Array],
    image_shape: tuple[int, int, int],
    num_classes: int,
    settings: DirectSettings,
) -> SearchState:
    """The archive after scoring ``pop_size`` uniform random images (generation 0).

    Raises:
      ValueError: a bad setting (:func:`check_settings`).
    """
    check_settings(settings)
    genomes = jax.random.uniform(key, (settings.pop_size, *image_shape))
    archive = empty_archive(jnp.zeros(image_shape), num_classes)
    probs = fitness_fn(logits_fn)(genomes)
    return SearchState(add(archive, genomes, probs, settings.rule), jnp.int32(0))


def make_generation(
    logits_fn: Callable[[jax.Array], jax.Array], settings: DirectSettings
) -> Callable[[SearchState, PRNGKey], tuple[SearchState, dict[str, jax.Array]]]:
    """The pure ``step(state, key) -> (state, metrics)`` of one generation, for
    :func:`pixjax.driver.run` (``data`` is the run's base key; generation ``g`` uses
    ``fold_in(key, g)``, split by purpose). ``metrics``: ``{"fitness": [C]}``, the
    archive's fitness after the generation.

    Raises:
      ValueError: a bad setting (:func:`check_settings`).
    """
    check_settings(settings)
    s = settings
    pairs = s.pop_size // 2
    fitness = fitness_fn(logits_fn)

    def step(state: SearchState, key: PRNGKey):
        k = jax.random.fold_in(key, state.generation)
        parent_key, cross_key, mutate_key = jax.random.split(k, 3)
        archive = state.archive
        idx = select_parents(parent_key, archive, pairs)
        a = jnp.take(archive.genomes, idx[:, 0], axis=0)
        b = jnp.take(archive.genomes, idx[:, 1], axis=0)
        cross = jax.vmap(
            lambda kk, x, y: sbx_crossover(
                kk, x, y, eta=s.eta_crossover, probability=s.cross_probability
            )
        )
        c1, c2 = cross(jax.random.split(cross_key, pairs), a, b)
        children = jnp.concatenate([c1, c2])
        rate = s.mutation_rate
        if s.schedule == "paper":
            rate = rate * 0.5 ** (state.generation // 1000).astype(jnp.float32)
        mutate = jax.vmap(
            lambda kk, g: polynomial_mutation(kk, g, rate=rate, eta=s.eta_mutation)
        )
        children = mutate(jax.random.split(mutate_key, s.pop_size), children)
        archive = add(archive, children, fitness(children), s.rule)
        return SearchState(archive, state.generation + 1), {"fitness": archive.fitness}

    return step


__all__ = [
    "SCHEDULES",
    "DirectSettings",
    "SearchState",
    "check_settings",
    "fitness_fn",
    "init_state",
    "make_generation",
]
