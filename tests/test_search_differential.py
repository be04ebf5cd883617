"""Differential evolution (pixjax.search.differential) against hand-computed operator
cases, brute-force and statistical checks written here (numpy / scipy.stats), and
whole runs of ``minimise`` on problems with a known answer."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from pixjax.search.differential import (
    DESettings,
    binomial_crossover,
    check_settings,
    crossover_mask,
    draw_others,
    init_population,
    make_trials,
    minimise,
    mutate,
    repair,
    select,
)

# a population [5, 2] whose mutants are easy to write out by hand
POP = np.array(
    [[0.0, 1.0], [2.0, 4.0], [-1.0, 3.0], [5.0, -2.0], [1.0, 1.0]], np.float32
)


# --- mutation ------------------------------------------------------------------------


def test_rand1_mutation_by_hand():
    others = jnp.array(
        [[1, 2, 3], [0, 4, 2], [3, 1, 0], [4, 0, 1], [2, 3, 0]], jnp.int32
    )
    got = np.asarray(mutate(jnp.asarray(POP), others, 0.5, "rand1"))
    # v_i = x[r1] + 0.5 (x[r2] - x[r3]), written out
    want = np.array(
        [
            [2 + 0.5 * (-1 - 5), 4 + 0.5 * (3 + 2)],  # x1 + .5 (x2 - x3)
            [0 + 0.5 * (1 + 1), 1 + 0.5 * (1 - 3)],  # x0 + .5 (x4 - x2)
            [5 + 0.5 * (2 - 0), -2 + 0.5 * (4 - 1)],  # x3 + .5 (x1 - x0)
            [1 + 0.5 * (0 - 2), 1 + 0.5 * (1 - 4)],  # x4 + .5 (x0 - x1)
            [-1 + 0.5 * (5 - 0), 3 + 0.5 * (-2 - 1)],  # x2 + .5 (x3 - x0)
        ]
    )
    np.testing.assert_array_equal(got, want)
    # F = 2 (the largest allowed) and an F given as a traced scalar
    got2 = np.asarray(jax.jit(mutate, static_argnums=3)(POP, others, 2.0, "rand1"))
    np.testing.assert_array_equal(got2[0], [2 + 2 * (-6), 4 + 2 * 5])


def test_best1_mutation_by_hand():
    others = jnp.array([[1, 2], [0, 4], [3, 1], [4, 0], [2, 3]], jnp.int32)
    got = np.asarray(mutate(jnp.asarray(POP), others, 0.75, "best1", best=4))
    best = POP[4]  # (1, 1)
    want = np.array(
        [
            best + 0.75 * (POP[1] - POP[2]),
            best + 0.75 * (POP[0] - POP[4]),
            best + 0.75 * (POP[3] - POP[1]),
            best + 0.75 * (POP[4] - POP[0]),
            best + 0.75 * (POP[2] - POP[3]),
        ]
    )
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got[0], [1 + 0.75 * 3, 1 + 0.75 * 1])
    with pytest.raises(ValueError, match="strategy: expected one of"):
        mutate(jnp.asarray(POP), others, 0.5, "rand2")


# --- crossover and selection ---------------------------------------------------------


def test_crossover_mask_by_hand():
    u = jnp.array([[0.1, 0.6, 0.3, 0.95], [0.9, 0.2, 0.8, 0.5]], jnp.float32)
    j_rand = jnp.array([2, 0], jnp.int32)
    got = np.asarray(crossover_mask(u, j_rand, 0.5))
    np.testing.assert_array_equal(
        got, [[True, False, True, False], [True, True, False, False]]
    )
    # u == CR is not < CR: only j_rand
    np.testing.assert_array_equal(
        np.asarray(crossover_mask(u, j_rand, 0.2)),
        [[True, False, True, False], [True, False, False, False]],
    )
    # CR = 1: every component from the mutant (u is in [0, 1))
    np.testing.assert_array_equal(np.asarray(crossover_mask(u, j_rand, 1.0)), True)
    # CR = 0: exactly the component j_rand
    np.testing.assert_array_equal(
        np.asarray(crossover_mask(u, j_rand, 0.0)),
        [[False, False, True, False], [True, False, False, False]],
    )
    zero_u = jnp.zeros((3, 5))
    np.testing.assert_array_equal(
        np.asarray(crossover_mask(zero_u, jnp.array([4, 1, 0]), 0.0)),
        np.eye(5, dtype=bool)[[4, 1, 0]],
    )


def test_binomial_crossover_rates():
    p, d = 2000, 10
    parents = jnp.zeros((p, d))
    mutants = jnp.ones((p, d))
    key = jax.random.key(0)
    np.testing.assert_array_equal(
        np.asarray(binomial_crossover(key, parents, mutants + 0.5, 1.0)), 1.5
    )
    none = np.asarray(binomial_crossover(key, parents, mutants, 0.0))
    np.testing.assert_array_equal(none.sum(1), 1)  # only j_rand
    # j_rand is uniform over the components
    counts = none.sum(0)
    assert stats.chisquare(counts).pvalue > 1e-3
    some = np.asarray(binomial_crossover(key, parents, mutants, 0.3))
    assert set(np.unique(some)) <= {0.0, 1.0}
    assert np.all(some.sum(1) >= 1)
    # P(mutant component) = CR + (1 - CR) / D = 0.37; 20,000 components: sd 0.0034
    assert abs(some.mean() - (0.3 + 0.7 / d)) < 0.015


def test_select_is_greedy_and_ties_replace():
    pop = jnp.array([[0.0], [1.0], [2.0], [3.0]])
    trials = jnp.array([[10.0], [11.0], [12.0], [13.0]])
    fit = jnp.array([1.0, 2.0, 3.0, jnp.inf])
    t_fit = jnp.array([0.5, 2.0, 3.5, 7.0])
    new_pop, new_fit, replaced = select(pop, fit, trials, t_fit)
    np.testing.assert_array_equal(np.asarray(replaced), [True, True, False, True])
    np.testing.assert_array_equal(np.asarray(new_pop)[:, 0], [10, 11, 2, 13])
    np.testing.assert_array_equal(np.asarray(new_fit), [0.5, 2.0, 3.0, 7.0])


# --- repair, others, initialisation --------------------------------------------------


def test_repair_redraws_only_out_of_bounds_components():
    lo = jnp.array([-1.0, 10.0, 0.0])
    hi = jnp.array([1.0, 12.0, 256.0])
    x = np.array(
        [
            [0.5, 11.0, 255.5],  # inside
            [-1.0, 10.0, 0.0],  # on lo: inside
            [1.0, 12.0, 256.0],  # on hi: outside (hi is excluded)
            [-3.0, 11.5, 300.0],
            [0.999, 9.0, -0.1],
        ],
        np.float32,
    )
    out = np.asarray(repair(jax.random.key(1), jnp.asarray(x), lo, hi))
    outside = (x < np.asarray(lo)) | (x >= np.asarray(hi))
    np.testing.assert_array_equal(out[~outside], x[~outside])
    assert np.all(out != x) == np.all(outside) and np.all(out[outside] != x[outside])
    assert np.all(out >= np.asarray(lo)) and np.all(out < np.asarray(hi))
    # the redrawn values are uniform in [lo, hi), also where x was exactly hi (not
    # moved just below it) or below lo
    lo_np, hi_np = np.asarray(lo), np.asarray(hi)
    groups = {
        "at hi": np.tile(hi_np, (2000, 1)),
        "below lo": np.tile(lo_np - 5, (2000, 1)),
        "far above": np.full((2000, 3), 1e4, np.float32),
    }
    stacked = jnp.asarray(np.concatenate(list(groups.values())))
    redrawn = np.asarray(repair(jax.random.key(5), stacked, lo, hi)).reshape(3, 2000, 3)
    for g, name in enumerate(groups):
        for j in range(3):
            vals = redrawn[g, :, j]
            span = float(hi_np[j] - lo_np[j])
            ks = stats.kstest(vals, "uniform", args=(float(lo_np[j]), span))
            assert ks.pvalue > 1e-3, (name, j, ks)
            assert vals.min() >= lo_np[j] and vals.max() < hi_np[j]


@pytest.mark.parametrize("pop_size, count", [(4, 3), (5, 3), (6, 2), (4, 1)])
def test_draw_others_distinct_and_uniform(pop_size, count):
    keys = jax.random.split(jax.random.key(3), 3000)
    draws = np.asarray(
        jax.jit(jax.vmap(lambda k: draw_others(k, pop_size, count)))(keys)
    )
    assert draws.shape == (3000, pop_size, count) and draws.dtype == np.int32
    assert draws.min() >= 0 and draws.max() < pop_size
    rows = np.arange(pop_size)[None, :, None]
    assert not np.any(draws == rows)
    for a, b in itertools.combinations(range(count), 2):
        assert not np.any(draws[..., a] == draws[..., b])
    # every ordered tuple of distinct others of row i is equally likely
    for i in range(pop_size):
        tuples = list(
            itertools.permutations([j for j in range(pop_size) if j != i], count)
        )
        index = {t: n for n, t in enumerate(tuples)}
        counts = np.bincount(
            [index[tuple(t)] for t in draws[:, i]], minlength=len(tuples)
        )
        assert counts.sum() == 3000
        if len(tuples) <= 100:  # >= 30 expected per cell
            assert stats.chisquare(counts).pvalue > 1e-4, (i, counts)
        # each position alone: uniform over the pop_size - 1 others
        for m in range(count):
            c = np.bincount(draws[:, i, m], minlength=pop_size)
            assert c[i] == 0
            assert stats.chisquare(np.delete(c, i)).pvalue > 1e-4, (i, m, c)


def test_draw_others_bad_count():
    for pop_size, count in [(4, 4), (3, 3), (10, 0), (2, 2)]:
        with pytest.raises(ValueError, match="count: expected"):
            draw_others(jax.random.key(0), pop_size, count)


def test_init_population_bounds_and_latin_hypercube():
    p = 40
    lo = np.array([0.0, -1.0, 3.0, 255.99997], np.float32)
    hi = np.array([float(p), 1.0, 259.0, 256.0], np.float32)
    for method in ("uniform", "latinhypercube"):
        for seed in range(3):
            pop = np.asarray(init_population(jax.random.key(seed), p, lo, hi, method))
            assert pop.shape == (p, 4) and pop.dtype == np.float32
            assert np.all(pop >= lo) and np.all(pop < hi), method
    for seed in range(5):
        pop = np.asarray(
            init_population(jax.random.key(seed), p, lo, hi, "latinhypercube")
        ).astype(np.float64)
        # dimension 0 spans [0, P): candidate i's stratum is floor(x)
        np.testing.assert_array_equal(np.sort(np.floor(pop[:, 0])), np.arange(p))
        for j in range(3):
            strata = np.floor((pop[:, j] - lo[j]) / (hi[j] - lo[j]) * p)
            np.testing.assert_array_equal(np.sort(strata), np.arange(p))
    # uniform draws: not one per stratum (with 40 draws a collision is almost sure)
    # and uniform in the box
    flat = np.concatenate(
        [
            np.asarray(init_population(jax.random.key(s), p, lo[:2], hi[:2]))
            for s in range(50)
        ]
    )
    assert stats.kstest(flat[:, 1], "uniform", args=(-1.0, 2.0)).pvalue > 1e-3
    assert len(np.unique(np.floor(flat[:p, 0]))) < p
    with pytest.raises(ValueError, match="init: expected one of"):
        init_population(jax.random.key(0), p, lo, hi, "sobol")


# --- one generation ------------------------------------------------------------------


def _is_mutant(x, v, F, candidates):
    """Whether ``v`` equals ``x[a] + F (x[b] - x[c])`` for one of ``candidates``."""
    return any(
        np.allclose(v, x[a] + F * (x[b] - x[c]), atol=1e-6) for a, b, c in candidates
    )


def test_make_trials_are_de_mutants():
    """Without crossover and repair, every trial is a rand/1 (best/1) mutant of three
    (two) distinct others, checked by brute force over all tuples."""
    p, d = 6, 3
    pop = np.asarray(jax.random.uniform(jax.random.key(4), (p, d)))
    fitness = jnp.array([3.0, 1.0, 4.0, 0.5, 9.0, 2.0])
    lo, hi = jnp.full(d, -10.0), jnp.full(d, 10.0)
    for seed in range(3):
        s = DESettings(p, 1, 0.7, None, 1.0, "rand1")
        trials = np.asarray(
            make_trials(jax.random.key(seed), jnp.asarray(pop), fitness, lo, hi, s)
        )
        for i in range(p):
            others = [j for j in range(p) if j != i]
            assert _is_mutant(pop, trials[i], 0.7, itertools.permutations(others, 3))
        s = s._replace(strategy="best1")
        trials = np.asarray(
            make_trials(jax.random.key(seed), jnp.asarray(pop), fitness, lo, hi, s)
        )
        for i in range(p):
            pairs = itertools.permutations([j for j in range(p) if j != i], 2)
            assert _is_mutant(pop, trials[i], 0.7, [(3, a, b) for a, b in pairs])
    # CR = 0: each trial differs from its parent in exactly one component
    s = DESettings(p, 1, 0.7, None, 0.0, "rand1")
    trials = np.asarray(
        make_trials(jax.random.key(9), jnp.asarray(pop), fitness, lo, hi, s)
    )
    np.testing.assert_array_equal((trials != pop).sum(1), 1)
    # narrow bounds: mutants leaving them are repaired into them
    lo, hi = jnp.zeros(d), jnp.full(d, 1.0)
    s = DESettings(p, 1, 2.0, None, 1.0, "rand1")
    for seed in range(5):
        trials = np.asarray(
            make_trials(jax.random.key(seed), jnp.asarray(pop), fitness, lo, hi, s)
        )
        assert np.all(trials >= 0.0) and np.all(trials < 1.0)


def test_dithered_F_lies_in_its_range():
    """best/1 with F ~ U(0.5, 1): solve each trial for F (one per generation)."""
    p, d = 8, 4
    pop = np.asarray(jax.random.uniform(jax.random.key(5), (p, d)))
    fitness = jnp.arange(p, dtype=jnp.float32)  # best: 0
    lo, hi = jnp.full(d, -10.0), jnp.full(d, 10.0)
    s = DESettings(p, 1, 0.5, 1.0, 1.0, "best1")
    fs = []
    for seed in range(20):
        trials = np.asarray(
            make_trials(jax.random.key(seed), jnp.asarray(pop), fitness, lo, hi, s)
        )
        found = set()
        for i in range(p):
            diff = trials[i] - pop[0]
            for a, b in itertools.permutations([j for j in range(p) if j != i], 2):
                step = pop[a] - pop[b]
                f = float(diff @ step / (step @ step))
                if f > 0 and np.allclose(diff, f * step, atol=1e-5):
                    found.add(round(f, 4))
                    break
        assert len(found) == 1, found  # one F for the whole generation
        fs.append(found.pop())
    assert all(0.5 <= f <= 1.0 for f in fs) and len(set(fs)) == 20


# --- settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, field",
    [
        (dict(pop_size=3), "pop_size"),
        (dict(pop_size=0), "pop_size"),
        (dict(pop_size=4.0), "pop_size"),
        (dict(pop_size=True), "pop_size"),
        (dict(iterations=0), "iterations"),
        (dict(iterations=-2), "iterations"),
        (dict(iterations=1.5), "iterations"),
        (dict(F=0), "F"),
        (dict(F=0.0), "F"),
        (dict(F=-1), "F"),
        (dict(F=2.5), "F"),
        (dict(F=True), "F"),
        (dict(F="0.5"), "F"),
        (dict(F=float("nan")), "F"),
        (dict(F=0.8, F_max=0.5), "F_max"),
        (dict(F_max=2.5), "F_max"),
        (dict(F_max=True), "F_max"),
        (dict(CR=-0.1), "CR"),
        (dict(CR=1.5), "CR"),
        (dict(CR=True), "CR"),
        (dict(CR=float("nan")), "CR"),
        (dict(strategy="best2"), "strategy"),
        (dict(strategy="rand/1"), "strategy"),
        (dict(init="sobol"), "init"),
        (dict(init="paper"), "init"),
    ],
)
def test_bad_settings_name_the_field(change, field):
    with pytest.raises(ValueError, match=rf"^{field}: expected"):
        check_settings(DESettings(**change))


def test_check_settings_accepts_limits_and_casts():
    s = check_settings(DESettings(4, 1, 2, 2, 0, "best1", "latinhypercube"))
    assert s == DESettings(4, 1, 2.0, 2.0, 0.0, "best1", "latinhypercube")
    assert isinstance(s.F, float) and isinstance(s.CR, float)
    assert isinstance(s.F_max, float)
    assert check_settings(DESettings(CR=1)).CR == 1.0
    assert check_settings(DESettings()) == DESettings(400, 100, 0.5, None, 1.0)
    with pytest.raises(ValueError, match="settings: expected a DESettings"):
        check_settings((400, 100, 0.5, None, 1.0, "rand1", "uniform"))


# --- whole runs ----------------------------------------------------------------------


def _sphere(centre, tol):
    def evaluate(pop):
        f = jnp.sum((pop - centre) ** 2, axis=1)
        return f, f < tol, {"double": 2 * f, "first": pop[:, 0]}

    return evaluate


def test_minimise_solves_a_sphere_and_stops_early():
    centre = jnp.array([1.0, -2.0, 0.5])
    lo, hi = jnp.full(3, -5.0), jnp.full(3, 5.0)
    s = check_settings(DESettings(20, 300, 0.5, None, 0.9, "rand1", "uniform"))
    calls = []  # per call of evaluate: (population size, any success, best success)

    def record(n, ok, best_ok):
        calls.append((int(n), bool(ok), float(best_ok)))

    def evaluate(pop):
        f, ok, aux = _sphere(centre, 1e-3)(pop)
        best_ok = jnp.min(jnp.where(ok, f, jnp.inf))
        jax.debug.callback(record, pop.shape[0], jnp.any(ok), best_ok, ordered=True)
        return f, ok, aux

    run = jax.jit(lambda k: minimise(k, evaluate, lo, hi, s))
    res = run(jax.random.key(0))
    jax.effects_barrier()
    x = np.asarray(res.x, np.float64)
    f = float(((x - np.array([1.0, -2.0, 0.5])) ** 2).sum())
    assert bool(res.success) and f < 1e-3
    assert float(res.fitness) == pytest.approx(f, rel=1e-4, abs=1e-7)
    assert float(res.aux["double"]) == pytest.approx(2 * f, rel=1e-4, abs=1e-7)
    assert float(res.aux["first"]) == float(res.x[0])
    g = int(res.generations)
    assert 0 < g < 300  # it needs some generations, far fewer than the budget
    assert int(res.evaluations) == 20 * (g + 1)
    assert np.all(x >= -5) and np.all(x < 5)
    # evaluate ran on the initial population and once per generation, all P at once,
    # and the run stopped at the first generation with a success, returning the
    # fittest successful trial of it
    assert len(calls) == g + 1 and {n for n, _, _ in calls} == {20}
    assert [ok for _, ok, _ in calls] == [False] * g + [True]
    assert float(res.fitness) == calls[-1][2]
    # same key: the same run; another key: another one
    again = run(jax.random.key(0))
    for a, b in zip(
        jax.tree_util.tree_leaves(res), jax.tree_util.tree_leaves(again), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    other = run(jax.random.key(1))
    assert not np.array_equal(np.asarray(other.x), np.asarray(res.x))
    assert bool(other.success)


def test_minimise_stops_at_once_when_the_initial_population_succeeds():
    """Success is easy (half the box): no generation runs, P evaluations, and the
    reported candidate is the fittest successful one of the given population."""
    init = np.array(
        [[-0.1, 0.0], [0.3, 0.2], [0.2, -0.1], [-3.0, 0.0], [0.25, 0.0]], np.float32
    )

    def evaluate(pop):
        f = jnp.sum(pop**2, axis=1)
        return f, pop[:, 0] > 0, pop[:, 1]

    s = check_settings(DESettings(5, 50, 0.5, None, 1.0))
    res = minimise(
        jax.random.key(0),
        evaluate,
        jnp.full(2, -4.0),
        jnp.full(2, 4.0),
        s,
        initial=jnp.asarray(init),
    )
    # successful: rows 1, 2, 4 with f = .13, .05, .0625; the unsuccessful row 0 has
    # the lowest fitness (.01) but is not reported
    assert bool(res.success) and int(res.generations) == 0
    assert int(res.evaluations) == 5
    np.testing.assert_array_equal(np.asarray(res.x), init[2])
    assert float(res.aux) == init[2, 1]
    assert float(res.fitness) == pytest.approx(0.05)


def test_minimise_without_success_spends_the_budget():
    """No success: all generations run, and the result is the lowest fitness of all
    the candidates scored (recorded here from inside the run)."""
    seen = []

    def record(f):
        seen.append(np.asarray(f, np.float64))

    def evaluate(pop):
        f = jnp.sum(pop**2, axis=1)
        jax.debug.callback(record, f, ordered=True)
        return f, jnp.zeros(pop.shape[0], bool), f

    lo, hi = jnp.full(2, -4.0), jnp.full(2, 4.0)
    init = np.asarray(
        jax.random.uniform(jax.random.key(1), (8, 2), minval=-4, maxval=4)
    )
    s = check_settings(DESettings(8, 7, 0.5, None, 0.5, "best1"))
    res = minimise(jax.random.key(2), evaluate, lo, hi, s, initial=jnp.asarray(init))
    jax.effects_barrier()
    assert not bool(res.success)
    assert int(res.generations) == 7 and int(res.evaluations) == 8 * 8
    assert len(seen) == 8 and all(f.shape == (8,) for f in seen)
    np.testing.assert_allclose(
        seen[0], (init.astype(np.float64) ** 2).sum(1), rtol=1e-6
    )
    x = np.asarray(res.x, np.float64)
    assert float(res.fitness) == pytest.approx((x**2).sum(), rel=1e-5)
    assert float(res.aux) == float(res.fitness)
    assert float(res.fitness) == min(float(f.min()) for f in seen)
    # and some generation improved on the initial population
    assert float(res.fitness) < float(seen[0].min())


def test_minimise_inactive_problem_costs_nothing():
    s = check_settings(DESettings(8, 20))
    lo, hi = jnp.full(2, -1.0), jnp.full(2, 1.0)
    run = jax.jit(
        lambda tol, active: minimise(
            jax.random.key(0), _sphere(jnp.zeros(2), tol), lo, hi, s, active=active
        )
    )
    # active, it succeeds at once (tol 10) or runs the 20 generations (tol -1)
    assert int(run(10.0, True).evaluations) == 8
    assert int(run(-1.0, True).evaluations) == 8 * 21
    for tol in (10.0, -1.0):
        res = run(tol, False)
        assert not bool(res.success)
        assert int(res.evaluations) == 0 and int(res.generations) == 0


def test_minimise_vmapped_equals_one_problem_at_a_time():
    """Problems that finish at different generations (and one inactive) give under
    vmap what each gives alone."""
    s = check_settings(DESettings(10, 60, 0.6, None, 0.9, "rand1", "uniform"))
    lo, hi = jnp.full(2, -3.0), jnp.full(2, 3.0)
    centres = jnp.array([[0.0, 0.0], [2.0, -1.0], [-2.5, 2.5], [1.0, 1.0]])
    tols = jnp.array([1e-1, 1e-3, 1e-4, 1e-2])
    active = jnp.array([True, True, True, False])
    keys = jax.random.split(jax.random.key(7), 4)

    def one(k, c, t, a):
        return minimise(k, _sphere(c, t), lo, hi, s, active=a)

    batched = jax.jit(jax.vmap(one))(keys, centres, tols, active)
    gens = np.asarray(batched.generations)
    assert gens[3] == 0 and len(set(gens[:3].tolist())) == 3
    assert np.asarray(batched.success).tolist() == [True, True, True, False]
    np.testing.assert_array_equal(
        np.asarray(batched.evaluations), 10 * (gens + 1) * [1, 1, 1, 0]
    )
    alone_fn = jax.jit(one)
    for i in range(4):
        alone = alone_fn(keys[i], centres[i], tols[i], active[i])
        for a, b in zip(
            jax.tree_util.tree_leaves(alone),
            jax.tree_util.tree_leaves(batched),
            strict=True,
        ):
            np.testing.assert_array_equal(np.asarray(b)[i], np.asarray(a))
        assert int(alone.generations) == gens[i]
