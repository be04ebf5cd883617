"""Differential evolution (Storn & Price, J. Global Optimization 1997), as the one-pixel
attack uses it (Su, Vargas & Sakurai, IEEE TEVC 2019).

A population is a float32 array ``[P, D]`` of candidates inside box bounds
``lo <= x < hi`` (``[D]`` each). One generation, per candidate ``i``:

* **mutation**: ``rand/1``: ``v = x[r1] + F (x[r2] - x[r3])`` (the paper), or
  ``best/1``: ``v = x[best] + F (x[r1] - x[r2])`` (scipy's default, used by the
  Hyperparticle and ART reimplementations), with ``r1, r2, r3`` distinct and different
  from ``i`` (:func:`draw_others`); ``F`` is a constant, or *dithered*: drawn from
  ``U(F, F_max)`` once per generation, as scipy's ``mutation=(0.5, 1)``;
* **repair**: a component of ``v`` outside its bounds is redrawn uniformly inside them
  (scipy's rule);
* **binomial crossover**: the trial takes ``v``'s component ``j`` where ``u_j < CR`` or
  ``j == j_rand`` and the parent's elsewhere; ``CR = 1`` takes all of ``v`` (no
  crossover, the paper's setting);
* **greedy selection**: the trial replaces its parent when its fitness is lower or
  equal (fitness is minimised).

All trials of a generation are made from the same population and scored together (what
scipy calls ``updating="deferred"``): one batched call of the fitness per generation.
:func:`minimise` runs generations until a candidate succeeds or the budget of
``iterations`` generations is spent, as one ``lax.while_loop``; written for one problem,
it is ``vmap``-ed over many (the attack runs one problem per image).

Randomness: every generation folds its number into the run's key and splits the result
by purpose (``"others"``, ``"F"``, ``"repair"``, ``"crossover"``), the initial population
uses the purpose ``"init"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.keys import purpose_keys
from pixjax.types import PRNGKey

STRATEGIES = ("rand1", "best1")
INITS = ("uniform", "latinhypercube")


class DESettings(NamedTuple):
    """Differential-evolution settings (hashable: they are static in compiled code).

    Attributes:
      pop_size: candidates ``P`` per problem, ``>= 4`` (rand/1 needs three others).
      iterations: generations after the initial population, ``>= 1``; at most
        ``pop_size * (iterations + 1)`` fitness evaluations per problem.
      F: mutation factor in ``(0, 2]``.
      F_max: ``None`` (constant ``F``) or the top of the dither range: each
        generation draws ``F ~ U(F, F_max)``; ``F <= F_max <= 2``.
      CR: binomial crossover probability in ``[0, 1]``; ``1`` disables crossover.
      strategy: ``"rand1"`` or ``"best1"``.
      init: ``"uniform"`` (independent uniform draws) or ``"latinhypercube"`` (each
        dimension's range cut into ``P`` equal strata, one candidate in each, as
        scipy).
    """

    pop_size: int = 400
    iterations: int = 100
    F: float = 0.5
    F_max: float | None = None
    CR: float = 1.0
    strategy: str = "rand1"
    init: str = "uniform"


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(
        x, bool | np.bool_
    )


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def check_settings(settings: DESettings) -> DESettings:
    """Returns ``settings`` with ``F``, ``F_max`` and ``CR`` as floats.

    Raises:
      ValueError: naming the field and the accepted values: ``pop_size`` not an
        integer ``>= 4``, ``iterations`` not a positive integer, ``F`` outside
        ``(0, 2]``, ``F_max`` outside ``[F, 2]``, ``CR`` outside ``[0, 1]``, an unknown
        ``strategy`` or ``init``.
    """
    if not isinstance(settings, DESettings):
        raise ValueError(f"settings: expected a DESettings, got {settings!r}")
    s = settings
    if not _is_int(s.pop_size) or s.pop_size < 4:
        raise ValueError(
            f"pop_size: expected an integer >= 4 (rand/1 mutation needs three other "
            f"candidates), got {s.pop_size!r}"
        )
    if not _is_int(s.iterations) or s.iterations < 1:
        raise ValueError(
            f"iterations: expected a positive integer, got {s.iterations!r}"
        )
    if not _is_number(s.F) or not 0.0 < s.F <= 2.0:
        raise ValueError(f"F: expected a mutation factor in (0, 2], got {s.F!r}")
    if s.F_max is not None and (not _is_number(s.F_max) or not s.F <= s.F_max <= 2.0):
        raise ValueError(
            f"F_max: expected None or a dither limit in [F, 2] = [{s.F}, 2], got "
            f"{s.F_max!r}"
        )
    if not _is_number(s.CR) or not 0.0 <= s.CR <= 1.0:
        raise ValueError(
            f"CR: expected a crossover probability in [0, 1], got {s.CR!r}"
        )
    if s.strategy not in STRATEGIES:
        raise ValueError(
            f"strategy: expected one of {list(STRATEGIES)}, got {s.strategy!r}"
        )
    if s.init not in INITS:
        raise ValueError(f"init: expected one of {list(INITS)}, got {s.init!r}")
    return s._replace(
        pop_size=int(s.pop_size),
        iterations=int(s.iterations),
        F=float(s.F),
        F_max=None if s.F_max is None else float(s.F_max),
        CR=float(s.CR),
    )


# --- operators (pure; one population [P, D]) ---------------------------------------


def init_population(
    key: PRNGKey, pop_size: int, lo: jax.Array, hi: jax.Array, method: str = "uniform"
) -> jax.Array:
    """float32 ``[pop_size, D]`` inside ``[lo, hi)``: independent uniform draws, or a
    Latin hypercube (scipy's ``init="latinhypercube"``: dimension ``j``'s range in
    ``pop_size`` equal strata, one uniform draw in each, strata shuffled per
    dimension)."""
    lo = jnp.asarray(lo, jnp.float32)
    hi = jnp.asarray(hi, jnp.float32)
    d = lo.shape[0]
    k_u, k_perm = jax.random.split(key)
    u = jax.random.uniform(k_u, (pop_size, d))
    if method == "latinhypercube":
        strata = jax.vmap(lambda k: jax.random.permutation(k, pop_size))(
            jax.random.split(k_perm, d)
        ).T  # [P, D]: candidate i lies in stratum strata[i, j] of dimension j
        u = (strata + u) / pop_size
    elif method != "uniform":
        raise ValueError(f"init: expected one of {list(INITS)}, got {method!r}")
    return _inside(lo + u * (hi - lo), lo, hi)


def _inside(x: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """``x`` with float rounding that reached ``hi`` moved just below it."""
    return jnp.where(x >= hi, jnp.nextafter(hi, lo), x)


def draw_others(key: PRNGKey, pop_size: int, count: int = 3) -> jax.Array:
    """int32 ``[pop_size, count]``: for each candidate ``i``, ``count`` (1..3) distinct
    indices drawn uniformly from the other ``pop_size - 1`` candidates (never ``i``).

    Without a permutation: the ``m``-th index is drawn from ``m`` fewer values and
    stepped over the ones already taken (in increasing order), then over ``i``.
    """
    if not 1 <= count <= 3 or count > pop_size - 1:
        raise ValueError(
            f"count: expected 1..{min(3, pop_size - 1)} for a population of {pop_size}, "
            f"got {count}"
        )
    n = pop_size - 1
    keys = jax.random.split(key, count)
    draws = [
        jax.random.randint(keys[m], (pop_size,), 0, n - m, jnp.int32)
        for m in range(count)
    ]
    taken: list[jax.Array] = []
    for r in draws:
        # step over the taken values in increasing order (each is < n)
        for t in sorted_values(taken):
            r = r + (r >= t)
        taken.append(r)
    i = jnp.arange(pop_size, dtype=jnp.int32)
    return jnp.stack([r + (r >= i) for r in taken], axis=1)


def sorted_values(values: list[jax.Array]) -> list[jax.Array]:
    """Elementwise ascending order of up to three equally shaped arrays."""
    if len(values) < 2:
        return list(values)
    if len(values) == 2:
        a, b = values
        return [jnp.minimum(a, b), jnp.maximum(a, b)]
    a, b, c = values
    lo = jnp.minimum(jnp.minimum(a, b), c)
    hi = jnp.maximum(jnp.maximum(a, b), c)
    return [lo, a + b + c - lo - hi, hi]


def mutate(
    population: jax.Array,
    others: jax.Array,
    F: jax.Array | float,
    strategy: str = "rand1",
    best: jax.Array | int = 0,
) -> jax.Array:
    """Mutant vectors ``[P, D]``: rand/1 ``x[r1] + F (x[r2] - x[r3])`` with
    ``others[:, :3]``, or best/1 ``x[best] + F (x[r1] - x[r2])`` with ``others[:, :2]``
    (``best``: the index of the lowest fitness)."""
    x = population
    if strategy == "rand1":
        return x[others[:, 0]] + F * (x[others[:, 1]] - x[others[:, 2]])
    if strategy == "best1":
        return x[best][None] + F * (x[others[:, 0]] - x[others[:, 1]])
    raise ValueError(f"strategy: expected one of {list(STRATEGIES)}, got {strategy!r}")


def repair(key: PRNGKey, x: jax.Array, lo: jax.Array, hi: jax.Array) -> jax.Array:
    """``x`` ``[P, D]`` with every component outside ``[lo, hi)`` redrawn uniformly
    inside (scipy's rule for mutants that leave the bounds)."""
    fresh = lo + jax.random.uniform(key, x.shape) * (hi - lo)
    out = (x < lo) | (x >= hi)
    return _inside(jnp.where(out, fresh, x), lo, hi)


def crossover_mask(u: jax.Array, j_rand: jax.Array, CR: float) -> jax.Array:
    """bool ``[P, D]``: where the trial takes the mutant's component: ``u < CR`` (``u``
    uniform ``[P, D]``) or the component ``j_rand [P]`` (at least one per trial)."""
    d = u.shape[-1]
    return (u < CR) | (jnp.arange(d)[None, :] == j_rand[:, None])


def binomial_crossover(
    key: PRNGKey, parents: jax.Array, mutants: jax.Array, CR: float
) -> jax.Array:
    """Trials ``[P, D]``: binomial crossover of each parent with its mutant
    (:func:`crossover_mask`); ``CR = 1`` returns the mutants."""
    if CR >= 1.0:
        return mutants
    k_u, k_j = jax.random.split(key)
    p, d = parents.shape
    mask = crossover_mask(
        jax.random.uniform(k_u, (p, d)), jax.random.randint(k_j, (p,), 0, d), CR
    )
    return jnp.where(mask, mutants, parents)


def select(
    population: jax.Array,
    fitness: jax.Array,
    trials: jax.Array,
    trial_fitness: jax.Array,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Greedy one-to-one selection: ``(population, fitness, replaced [P] bool)``; a
    trial replaces its parent when its fitness is lower or equal."""
    replaced = trial_fitness <= fitness
    return (
        jnp.where(replaced[:, None], trials, population),
        jnp.where(replaced, trial_fitness, fitness),
        replaced,
    )


def make_trials(
    key: PRNGKey,
    population: jax.Array,
    fitness: jax.Array,
    lo: jax.Array,
    hi: jax.Array,
    settings: DESettings,
) -> jax.Array:
    """One generation's trials ``[P, D]`` from ``population`` (mutation, repair,
    crossover); ``key`` is the generation's key, split by purpose."""
    keys = purpose_keys(key, "others", "F", "repair", "crossover")
    p = population.shape[0]
    count = 3 if settings.strategy == "rand1" else 2
    others = draw_others(keys["others"], p, count)
    f = settings.F
    if settings.F_max is not None and settings.F_max > settings.F:
        f = jax.random.uniform(keys["F"], (), minval=settings.F, maxval=settings.F_max)
    mutants = mutate(population, others, f, settings.strategy, jnp.argmin(fitness))
    mutants = repair(keys["repair"], mutants, lo, hi)
    return binomial_crossover(keys["crossover"], population, mutants, settings.CR)


# --- a whole run ---------------------------------------------------------------------

# ``evaluate(population [P, D]) -> (fitness [P] (minimised), success [P] bool, aux)``;
# ``aux`` is a pytree of per-candidate arrays ``[P, ...]`` kept for the returned one.
Evaluate = Callable[[jax.Array], tuple[jax.Array, jax.Array, Any]]


class DEResult(NamedTuple):
    """One problem's run.

    Attributes:
      x: float32 ``[D]``: the first successful candidate (the lowest fitness among
        the successful ones of the generation that found it), else the lowest fitness
        found.
      fitness: float32 ``[]`` of ``x``.
      aux: ``evaluate``'s per-candidate extras for ``x``.
      success: bool ``[]``: a candidate succeeded.
      generations: int32 ``[]``: generations run after the initial population.
      evaluations: int32 ``[]``: candidates scored, ``P * (generations + 1)``.
    """

    x: jax.Array
    fitness: jax.Array
    aux: Any
    success: jax.Array
    generations: jax.Array
    evaluations: jax.Array


def _pick(fitness, success, aux, x):
    """The candidate to report from a scored population: the fittest successful one
    if any succeeded, else the fittest."""
    masked = jnp.where(success, fitness, jnp.inf)
    i = jnp.where(jnp.any(success), jnp.argmin(masked), jnp.argmin(fitness))
    return x[i], fitness[i], jax.tree_util.tree_map(lambda a: a[i], aux), success[i]


def minimise(
    key: PRNGKey,
    evaluate: Evaluate,
    lo: jax.Array,
    hi: jax.Array,
    settings: DESettings,
    *,
    active: jax.Array | bool = True,
    initial: jax.Array | None = None,
) -> DEResult:
    """Differential evolution on one problem until a candidate succeeds (early stop)
    or ``settings.iterations`` generations are done. Pure and jit-able; ``vmap`` it
    over problems (the loop then runs while any problem is unfinished, the finished
    ones unchanged).

    Args:
      key: the problem's PRNG key (split into ``"init"`` and ``"generations"``;
        generation ``g`` uses ``fold_in(generations, g)``).
      evaluate: the fitness (see :data:`Evaluate`); called on the whole population at
        once.
      lo, hi: float32 ``[D]`` bounds (``lo < hi``).
      settings: checked :class:`DESettings` (:func:`check_settings`).
      active: ``False`` skips the problem (nothing evaluated; ``evaluations`` 0).
      initial: an initial population ``[P, D]`` inside the bounds drawn by the
        caller (then ``settings.init`` and the ``"init"`` key are not used).
    """
    keys = purpose_keys(key, "init", "generations")
    lo = jnp.asarray(lo, jnp.float32)
    hi = jnp.asarray(hi, jnp.float32)
    if initial is None:
        pop = init_population(keys["init"], settings.pop_size, lo, hi, settings.init)
    else:
        pop = jnp.asarray(initial, jnp.float32)
    fit, ok, aux = evaluate(pop)
    best = _pick(fit, ok, aux, pop)
    active = jnp.asarray(active)
    state = (jnp.int32(0), pop, fit, best, ~active | best[3])

    def cond(s):
        g, _, _, _, done = s
        return (~done) & (g < settings.iterations)

    def body(s):
        g, pop, fit, best, _ = s
        trials = make_trials(
            jax.random.fold_in(keys["generations"], g), pop, fit, lo, hi, settings
        )
        t_fit, t_ok, t_aux = evaluate(trials)
        found = jnp.any(t_ok)
        pop, fit, _ = select(pop, fit, trials, t_fit)
        # the successful trial, else the lowest fitness scored so far (selection is
        # greedy: the population's best is that one)
        cand = _pick(t_fit, t_ok, t_aux, trials)
        best = jax.tree_util.tree_map(
            lambda a, b: jnp.where(found, a, b), cand, _better(best, cand)
        )
        return g + 1, pop, fit, best, found

    g, pop, fit, best, _ = jax.lax.while_loop(cond, body, state)
    g = jnp.where(active, g, 0)
    return DEResult(
        x=best[0],
        fitness=best[1],
        aux=best[2],
        success=best[3] & active,
        generations=g,
        evaluations=jnp.where(active, settings.pop_size * (g + 1), 0).astype(jnp.int32),
    )


def _better(a, b):
    """The candidate tuple with the lower fitness (ties keep ``a``)."""
    take_b = b[1] < a[1]
    return jax.tree_util.tree_map(lambda x, y: jnp.where(take_b, y, x), a, b)


__all__ = [
    "DEResult",
    "DESettings",
    "INITS",
    "STRATEGIES",
    "binomial_crossover",
    "check_settings",
    "crossover_mask",
    "draw_others",
    "init_population",
    "make_trials",
    "minimise",
    "mutate",
    "repair",
    "select",
]
