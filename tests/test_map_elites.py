"""The MAP-Elites archive: both update rules on a hand-worked batch, immutability,
parent selection from filled cells only."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixjax.search.map_elites import add, empty_archive, select_parents

# 4 children x 3 cells; child i's genome is [i, i]
PROBS = jnp.asarray(
    [
        [0.70, 0.20, 0.10],  # child 0: predicted class 0
        [0.05, 0.90, 0.05],  # child 1: class 1
        [0.10, 0.15, 0.75],  # child 2: class 2
        [0.60, 0.35, 0.05],  # child 3: class 0, but the best for cell 1 after child 1
    ]
)
GENOMES = {"pixels": jnp.asarray([[i, i] for i in range(4)], jnp.float32)}


def test_original_rule_hand_worked():
    a = add(empty_archive({"pixels": jnp.zeros(2)}, 3), GENOMES, PROBS, "original")
    # every cell goes to the child with the highest probability of its class
    np.testing.assert_allclose(a.fitness, [0.70, 0.90, 0.75])
    np.testing.assert_array_equal(a.genomes["pixels"][:, 0], [0, 1, 2])
    # a second batch: one image that beats cells 0 and 2 takes both
    child = {"pixels": jnp.asarray([[9.0, 9.0]])}
    b = add(a, child, jnp.asarray([[0.80, 0.05, 0.80]]), "original")
    np.testing.assert_allclose(b.fitness, [0.80, 0.90, 0.80])
    np.testing.assert_array_equal(b.genomes["pixels"][:, 0], [9, 1, 9])
    np.testing.assert_allclose(a.fitness, [0.70, 0.90, 0.75])  # a is unchanged


def test_argmax_rule_hand_worked():
    empty = empty_archive({"pixels": jnp.zeros(2)}, 3)
    a = add(empty, GENOMES, PROBS, "argmax")
    np.testing.assert_allclose(a.fitness, [0.70, 0.90, 0.75])
    child = {"pixels": jnp.asarray([[9.0, 9.0]])}
    # predicted class 0 (0.80 vs 0.79): it competes for cell 0 only
    b = add(a, child, jnp.asarray([[0.80, 0.01, 0.79]]), "argmax")
    np.testing.assert_allclose(b.fitness, [0.80, 0.90, 0.75])
    np.testing.assert_array_equal(b.genomes["pixels"][:, 0], [9, 1, 2])
    # an empty cell is filled only by a child predicted as its class
    c = add(empty, child, jnp.asarray([[0.5, 0.3, 0.2]]), "argmax")
    np.testing.assert_array_equal(c.filled, [True, False, False])


def test_ties_go_to_the_first_child_and_equal_fitness_does_not_replace():
    a = empty_archive(jnp.zeros(2), 2)
    probs = jnp.asarray([[0.6, 0.4], [0.6, 0.4]])
    a = add(a, GENOMES["pixels"][:2], probs, "original")
    np.testing.assert_array_equal(a.genomes[:, 0], [0, 0])
    b = add(a, jnp.asarray([[7.0, 7.0]]), jnp.asarray([[0.6, 0.4]]), "original")
    np.testing.assert_array_equal(b.genomes[:, 0], [0, 0])  # not strictly better


def test_add_compiles_once_and_checks_arguments():
    a = empty_archive({"pixels": jnp.zeros(2)}, 3)
    f = jax.jit(add, static_argnums=3)
    f(a, GENOMES, PROBS, "original")
    f(a, GENOMES, PROBS * 0.5, "original")
    assert f._cache_size() == 1
    with pytest.raises(ValueError, match="rule: expected one of"):
        add(a, GENOMES, PROBS, "best")
    with pytest.raises(ValueError, match=r"probs: expected shape \[P, 3\]"):
        add(a, GENOMES, PROBS[:, :2], "original")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="num_cells: expected a positive"):
            empty_archive({"pixels": jnp.zeros(2)}, bad)


def test_parents_are_drawn_uniformly_from_filled_cells():
    a = empty_archive(jnp.zeros(2), 5)
    a = a._replace(fitness=jnp.asarray([0.5, -jnp.inf, 0.9, -jnp.inf, 0.1]))
    pairs = np.asarray(select_parents(jax.random.key(0), a, 30_000))
    assert pairs.shape == (30_000, 2) and pairs.dtype == np.int32
    counts = np.bincount(pairs.ravel(), minlength=5) / pairs.size
    assert counts[1] == counts[3] == 0
    np.testing.assert_allclose(counts[[0, 2, 4]], 1 / 3, atol=0.01)
    again = np.asarray(select_parents(jax.random.key(0), a, 30_000))
    np.testing.assert_array_equal(pairs, again)
