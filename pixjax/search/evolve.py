"""One MAP-Elites generation, generic over the genome encoding (Nguyen, Yosinski &
Clune, CVPR 2015; Mouret & Clune 2015).

An :class:`Encoding` says how one genome is drawn, varied and rendered; the direct
encoding (:mod:`pixjax.search.direct`) and the CPPN (:mod:`pixjax.search.cppn`) are
two. A generation, as the original sferes2 code: draw ``pop_size / 2`` parent pairs
uniformly from the filled cells, turn each pair into two children (``vary``), render all
children in one vmapped call, score them in one batched call of the target and offer
them to the archive (:func:`pixjax.search.map_elites.add`). The step is pure, run by
:func:`pixjax.driver.run` (chunks of generations, progress bar, orbax checkpoints,
resume).

Fitness is a function ``probs_fn(images [P, H, W, C] float32 in [0, 1]) -> [P, C]`` (a
softmax): :func:`pixjax.search.targets.target_probs` builds one for any registered model
or an ensemble.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax import driver
from pixjax.data.base import check_positive_int
from pixjax.keys import purpose_keys
from pixjax.search.map_elites import (
    UPDATE_RULES,
    Archive,
    add,
    empty_archive,
    select_parents,
)
from pixjax.types import PRNGKey

Genome = Any  # a pytree of arrays (one genome); a population has a leading axis [P]
ProbsFn = Callable[[jax.Array], jax.Array]


class Encoding(NamedTuple):
    """How genomes are drawn, varied and turned into images. Per genome; batched with
    ``vmap`` by the generation.

    Attributes:
      name: ``"direct"``, ``"cppn"``, ...
      image_shape: ``(H, W, C)`` of the rendered images.
      init: ``init(key) -> genome``: one random genome (generation 0).
      vary: ``vary(key, a, b, generation) -> (child_a, child_b)``: crossover and
        mutation of one parent pair; ``generation`` is an int32 scalar (for schedules).
      render: ``render(genome) -> image`` float32 ``[H, W, C]`` in ``[0, 1]``.
    """

    name: str
    image_shape: tuple[int, int, int]
    init: Callable[[PRNGKey], Genome]
    vary: Callable[[PRNGKey, Genome, Genome, jax.Array], tuple[Genome, Genome]]
    render: Callable[[Genome], jax.Array]


class SearchState(NamedTuple):
    """The evolving state: the archive and the generations done (int32 scalar)."""

    archive: Archive
    generation: jax.Array


def check_population(pop_size: Any, rule: Any) -> None:
    """Raises ``ValueError`` naming ``pop_size`` (an even integer >= 2: children come in
    pairs) or ``rule`` (one of :data:`UPDATE_RULES`)."""
    if isinstance(pop_size, bool) or not isinstance(pop_size, int):
        raise ValueError(
            f"pop_size: expected an even positive integer, got {pop_size!r}"
        )
    if pop_size < 2 or pop_size % 2:
        raise ValueError(
            f"pop_size: expected an even positive integer (children come in pairs), "
            f"got {pop_size}"
        )
    if rule not in UPDATE_RULES:
        raise ValueError(f"rule: expected one of {list(UPDATE_RULES)}, got {rule!r}")


def _take(tree: Genome, idx: jax.Array) -> Genome:
    return jax.tree_util.tree_map(lambda a: jnp.take(a, idx, axis=0), tree)


def _concat(a: Genome, b: Genome) -> Genome:
    return jax.tree_util.tree_map(lambda x, y: jnp.concatenate([x, y]), a, b)


def _scorer(encoding: Encoding, probs_fn: ProbsFn, sharding: Any) -> Callable:
    """``genomes [P, ...] -> probs [P, C]``: render and score the population. With a
    ``NamedSharding`` the rendering and the target run under ``shard_map``, each device
    on its block of the population; the variation stays replicated, so the genomes
    are bit-identical to a 1-device run's (only the probabilities may differ by the
    float rounding of a smaller per-device batch)."""

    def score(genomes):
        return probs_fn(render_population(encoding, genomes))

    if sharding is None:
        return score
    sharded = jax.shard_map(
        score,
        mesh=sharding.mesh,
        in_specs=sharding.spec,
        out_specs=sharding.spec,
        check_vma=False,  # per-example code; loops inside (the CPPN) need not track it
    )
    whole = jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())

    def replicated_then_sharded(genomes):
        # pin the genomes (and so their variation) to full, replicated arrays: left
        # free, XLA would split the variation too, and its transcendental functions
        # round differently on other shapes
        genomes = jax.tree_util.tree_map(
            lambda a: jax.lax.with_sharding_constraint(a, whole), genomes
        )
        return sharded(genomes)

    return replicated_then_sharded


def render_population(encoding: Encoding, genomes: Genome) -> jax.Array:
    """``genomes`` (leading axis ``[P]``) -> float32 images ``[P, H, W, C]``."""
    return jax.vmap(encoding.render)(genomes)


def init_state(
    key: PRNGKey,
    encoding: Encoding,
    probs_fn: ProbsFn,
    *,
    pop_size: int,
    num_cells: int,
    rule: str = "original",
    sharding: Any = None,
) -> SearchState:
    """The archive after scoring ``pop_size`` random genomes (generation 0).

    Args:
      key: PRNG key of the run's initial population.
      encoding: the genome :class:`Encoding`.
      probs_fn: the target, ``images [P, H, W, C] -> probs [P, num_cells]``.
      pop_size: even integer >= 2.
      num_cells: cells of the archive (the target's classes).
      rule: ``"original"`` or ``"argmax"`` (:func:`pixjax.search.map_elites.add`).
      sharding: optional ``NamedSharding`` splitting the population's leading axis over
        devices (:func:`pixjax.sharding.batch_sharding`); ``pop_size`` must then be a
        multiple of the device count.

    Raises:
      ValueError: a bad ``pop_size``, ``rule`` or ``num_cells``.
    """
    check_population(pop_size, rule)
    empty_archive(jnp.zeros(()), num_cells)  # checks num_cells
    first = _initial_fn(encoding, probs_fn, pop_size, num_cells, rule, sharding)
    return SearchState(first(key), jnp.int32(0))


# One compiled function per (encoding, target, sizes): independent runs of a study
# reuse the compilation (the functions are hashable; the caches hold a few).
@functools.lru_cache(maxsize=16)
def _initial_fn(encoding, probs_fn, pop_size, num_cells, rule, sharding):
    @jax.jit
    def first(key):
        genomes = jax.vmap(encoding.init)(jax.random.split(key, pop_size))
        archive = empty_archive(encoding.init(key), num_cells)
        probs = _scorer(encoding, probs_fn, sharding)(genomes)
        return add(archive, genomes, probs, rule)

    return first


def make_generation(
    encoding: Encoding,
    probs_fn: ProbsFn,
    *,
    pop_size: int,
    rule: str = "original",
    sharding: Any = None,
) -> Callable[[SearchState, PRNGKey], tuple[SearchState, dict[str, jax.Array]]]:
    """The pure ``step(state, key) -> (state, metrics)`` of one generation, for
    :func:`pixjax.driver.run` (``data`` is the run's base key; generation ``g`` uses
    ``fold_in(key, g)``, split by purpose: ``"parents"``, ``"vary"``).

    Returns:
      ``step``; its ``metrics`` are ``{"fitness": float32 [C]}``, the archive's
      fitness (the elite's class probability; ``-inf`` while a cell is empty) after the
      generation.

    Raises:
      ValueError: a bad ``pop_size`` or ``rule`` (:func:`check_population`).
    """
    check_population(pop_size, rule)
    return _generation_fn(encoding, probs_fn, pop_size, rule, sharding)


@functools.lru_cache(maxsize=16)
def _generation_fn(encoding, probs_fn, pop_size, rule, sharding):
    pairs = pop_size // 2
    score = _scorer(encoding, probs_fn, sharding)

    def step(state: SearchState, key: PRNGKey):
        keys = purpose_keys(
            jax.random.fold_in(key, state.generation), "parents", "vary"
        )
        archive = state.archive
        idx = select_parents(keys["parents"], archive, pairs)
        a = _take(archive.genomes, idx[:, 0])
        b = _take(archive.genomes, idx[:, 1])
        c1, c2 = jax.vmap(encoding.vary, in_axes=(0, 0, 0, None))(
            jax.random.split(keys["vary"], pairs), a, b, state.generation
        )
        children = _concat(c1, c2)
        probs = score(children)
        archive = add(archive, children, probs, rule)
        return SearchState(archive, state.generation + 1), {"fitness": archive.fitness}

    return step


class SearchRun(NamedTuple):
    """A finished (or resumed and finished) search.

    Attributes:
      state: the final :class:`SearchState` (the archive of elites).
      fitness: float32 numpy ``[generations + 1, C]``: the archive's fitness after the
        initial population (row 0) and after every generation; ``-inf`` for an empty
        cell.
    """

    state: SearchState
    fitness: np.ndarray


def search(
    key: PRNGKey,
    encoding: Encoding,
    probs_fn: ProbsFn,
    *,
    pop_size: int,
    num_cells: int,
    generations: int,
    rule: str = "original",
    chunk_size: int = 50,
    checkpoint_dir: str | os.PathLike | None = None,
    on_chunk: Callable[[int, SearchState, dict], None] | None = None,
    on_start: Callable[[SearchState], None] | None = None,
    sharding: Any = None,
    loop: str = "scan",
    desc: str = "search",
    progress: bool = False,
) -> SearchRun:
    """A whole MAP-Elites run: the initial population, then ``generations``
    generations in chunks of ``chunk_size`` by :func:`pixjax.driver.run` (an orbax
    checkpoint of the archive after every chunk in ``checkpoint_dir``; a killed run
    resumes from the newest intact one and ends identical to an uninterrupted run).

    ``key`` is split by purpose: ``"init"`` (the initial population) and
    ``"generations"`` (generation ``g`` folds ``g`` into it). ``on_chunk(first,
    state, metrics)`` is called after every computed chunk (not for restored ones),
    ``on_start(state)`` once the initial population is scored.

    Raises:
      ValueError: a bad ``pop_size``, ``rule``, ``num_cells``, ``generations`` or
        ``chunk_size``; a ``checkpoint_dir`` of another run (:func:`pixjax.driver.run`:
        another key, number of generations or chunk size, genome shapes, or an
        initial population scored differently: another target, population size or
        rule). Variation settings that leave the initial population alone (e.g. the
        mutation rate) are not recorded: keep them for a resume.
    """
    check_positive_int("generations", generations)
    keys = purpose_keys(key, "init", "generations")
    state = init_state(
        keys["init"],
        encoding,
        probs_fn,
        pop_size=pop_size,
        num_cells=num_cells,
        rule=rule,
        sharding=sharding,
    )
    if on_start is not None:
        on_start(jax.block_until_ready(state))
    step = make_generation(
        encoding, probs_fn, pop_size=pop_size, rule=rule, sharding=sharding
    )
    # The run's identity travels in the driver's data, whose fingerprint a checkpoint
    # must match: the key, and what the initial population scored (another target,
    # population size, encoding or image size scores it differently) and the rule.
    data = {
        "key": keys["generations"],
        "initial_fitness": state.archive.fitness,
        "settings": jnp.asarray([pop_size, UPDATE_RULES.index(rule)], jnp.int32),
    }
    final, metrics = driver.run(
        _keyed(step),
        state,
        data,
        num_steps=generations,
        chunk_size=chunk_size,
        checkpoint_dir=checkpoint_dir,
        on_chunk=on_chunk,
        desc=desc,
        unit="generation",
        progress=progress,
        loop=loop,
    )
    fitness = np.concatenate(
        [np.asarray(state.archive.fitness)[None], np.asarray(metrics["fitness"])]
    ).astype(np.float32)
    return SearchRun(final, fitness)


@functools.lru_cache(maxsize=16)
def _keyed(step: Callable) -> Callable:
    """``step(state, key)`` as a driver step over :func:`search`'s data dict (one
    object per step: the driver compiles it once)."""
    return lambda state, data: step(state, data["key"])


def first_reaching(fitness: np.ndarray, threshold: float) -> np.ndarray:
    """int64 ``[C]``: for each cell the first row of ``fitness`` ``[G + 1, C]`` (a
    generation; 0 = the initial population) at which it is ``>= threshold``; -1 if
    never."""
    f = np.asarray(fitness)
    hit = f >= threshold
    return np.where(hit.any(axis=0), np.argmax(hit, axis=0), -1)


__all__ = [
    "Encoding",
    "SearchRun",
    "first_reaching",
    "search",
    "Genome",
    "ProbsFn",
    "SearchState",
    "check_population",
    "init_state",
    "make_generation",
    "render_population",
]
