"""Direct-encoding MAP-Elites on the shipped LeNet-5: the generation is one pure step
the driver runs; same key -> same archive; the archive only improves; bad settings."""

import functools

import jax
import numpy as np
import pytest

from pixjax import driver
from pixjax.search import (
    DirectSettings,
    direct_encoding,
    init_state,
    make_generation,
    target_probs,
)


@pytest.fixture(scope="module")
def target(lenet):
    module, variables, _ = lenet
    return target_probs(functools.partial(module.apply, variables))


def test_generations_improve_the_archive_and_are_reproducible(target, tmp_path):
    enc = direct_encoding((28, 28, 1))
    state = init_state(jax.random.key(0), enc, target, pop_size=32, num_cells=10)
    step = make_generation(enc, target, pop_size=32)
    key = jax.random.key(1)
    final, m = driver.run(step, state, key, num_steps=40, chunk_size=20, progress=False)
    fit = np.asarray(m["fitness"])  # [40, 10]
    assert fit.shape == (40, 10)
    assert np.all(np.diff(np.where(np.isfinite(fit), fit, -1), axis=0) >= 0)
    assert (
        np.isfinite(fit[-1]).sum()
        >= np.isfinite(np.asarray(state.archive.fitness)).sum()
    )
    assert float(np.nanmax(fit[-1])) > float(np.max(np.asarray(state.archive.fitness)))
    # resumable and reproducible: two chunks with a checkpoint == one call
    again, m2 = driver.run(
        step,
        state,
        key,
        num_steps=40,
        chunk_size=20,
        checkpoint_dir=tmp_path / "ck",
        progress=False,
    )
    np.testing.assert_array_equal(m2["fitness"], m["fitness"])
    np.testing.assert_array_equal(again.archive.genomes, final.archive.genomes)
    assert (
        float(final.archive.genomes.min()) >= 0
        and float(final.archive.genomes.max()) <= 1
    )


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(mutation_rate=1.5), "mutation_rate: expected a probability"),
        (dict(cross_probability=-0.1), "cross_probability: expected a probability"),
        (dict(eta_mutation=0.0), "eta_mutation: expected a positive"),
        (dict(eta_crossover=float("inf")), "eta_crossover: expected a finite"),
        (dict(schedule="fast"), "schedule: expected one of"),
    ],
)
def test_bad_settings(change, match):
    with pytest.raises(ValueError, match=match):
        direct_encoding((28, 28, 1), DirectSettings(**change))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pop_size=0), "pop_size: expected an even positive"),
        (dict(pop_size=7), "pop_size: expected an even positive"),
        (dict(pop_size=True), "pop_size: expected an even positive"),
        (dict(pop_size=8, rule="best"), "rule: expected one of"),
    ],
)
def test_bad_population(target, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_generation(direct_encoding((28, 28, 1)), target, **kwargs)


@pytest.mark.parametrize("shape", [(28, 28), (0, 28, 1), (28, 28, 2), "28x28"])
def test_bad_image_shape(shape):
    with pytest.raises(ValueError, match="image_shape: expected"):
        direct_encoding(shape)


def test_a_checkpoint_of_another_search_is_refused(target, tmp_path):
    """search() resumes only its own run: another population size, rule or target
    with the same key and checkpoint folder is refused, not silently continued."""
    from pixjax.search import search

    enc = direct_encoding((28, 28, 1))
    kw = dict(num_cells=10, generations=4, chunk_size=2)
    ck = tmp_path / "ck"
    search(jax.random.key(0), enc, target, pop_size=8, checkpoint_dir=ck, **kw)
    uniform = lambda x: jax.numpy.full((x.shape[0], 10), 0.1)  # noqa: E731
    for change in (
        dict(pop_size=10),
        dict(pop_size=8, rule="argmax"),
        dict(pop_size=8, probs_fn=uniform),
    ):
        args = {"probs_fn": target, **change}
        with pytest.raises(ValueError, match="other data"):
            search(
                jax.random.key(0),
                enc,
                args.pop("probs_fn"),
                checkpoint_dir=ck,
                **kw,
                **args,
            )
    again = search(jax.random.key(0), enc, target, pop_size=8, checkpoint_dir=ck, **kw)
    assert again.fitness.shape == (5, 10)
