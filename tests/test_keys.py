"""Keys split by purpose: no two seeds or purposes share a subkey."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from pixjax.keys import purpose_key, purpose_keys, random_words, unit_floats

PURPOSES = ("init", "order", "augment", "evaluation", "grid_search", "fit")


def _data(key):
    return tuple(np.asarray(jax.random.key_data(key)).ravel().tolist())


def test_two_seeds_share_no_subkey():
    seen = {}
    for seed in range(50):
        root = jax.random.key(seed)
        for name, k in purpose_keys(root, *PURPOSES).items():
            d = _data(k)
            assert d not in seen, f"seed {seed} {name} == {seen[d]}"
            seen[d] = (seed, name)
        # nor with any root key (key(seed + 1) as a second purpose was the old fault)
        seen_roots = _data(root)
        assert seen_roots not in seen
    assert len(seen) == 50 * len(PURPOSES)


def test_purpose_key_depends_only_on_root_and_name():
    root = jax.random.key(3)
    a = purpose_keys(root, "init", "order")
    b = purpose_keys(root, "order", "augment", "init")
    assert _data(a["init"]) == _data(b["init"]) == _data(purpose_key(root, "init"))
    assert _data(a["order"]) == _data(b["order"])
    # the same as a direct fold_in of a fixed number (no hidden state)
    assert _data(a["init"]) != _data(a["order"])


@pytest.mark.parametrize(
    "args, match",
    [
        ((), "at least one"),
        (("a", "a"), "distinct"),
        (("",), "non-empty"),
        ((3,), "name"),
    ],
)
def test_bad_purposes(args, match):
    with pytest.raises(ValueError, match=match):
        purpose_keys(jax.random.key(0), *args)


def test_bad_root_key():
    for bad in (0, np.uint32([0, 1]), jax.random.split(jax.random.key(0), 2)):
        with pytest.raises(ValueError, match="key: expected one typed PRNG key"):
            purpose_keys(bad, "init")
    with pytest.raises(ValueError, match="purposes: expected non-empty names"):
        purpose_keys(jax.random.key(0), ["a", "b"])


def test_random_words_are_threefry_counters_under_a_drawn_key():
    # independent of pixjax: the cipher key is 64 bits drawn from the key's purpose
    # "random_words", the words
    # are JAX's Threefry-2x32 of the counters 0..n-1 (both output halves used),
    # which is what jax.random.bits gives with non-partitionable counters
    key = jax.random.key(7)
    words = np.asarray(random_words(key, (3, 5, 7)))
    assert words.shape == (3, 5, 7) and words.dtype == np.uint32
    cipher = jax.random.bits(purpose_key(key, "random_words"), (2,), jnp.uint32)
    with jax.threefry_partitionable(False):
        expected = jax.random.bits(jax.random.wrap_key_data(cipher), (105,))
    np.testing.assert_array_equal(words.ravel(), np.asarray(expected))


def test_random_words_vmap_equals_one_key_at_a_time_and_are_uniform():
    keys = jax.random.split(jax.random.key(0), 64)
    batched = np.asarray(jax.jit(jax.vmap(lambda k: random_words(k, (784,))))(keys))
    for i in (0, 1, 63):
        np.testing.assert_array_equal(batched[i], random_words(keys[i], (784,)))
    assert len({bytes(row) for row in batched}) == 64
    u = np.asarray(unit_floats(jnp.asarray(batched))).ravel()
    assert u.dtype == np.float32 and u.min() >= 0.0 and u.max() < 1.0
    assert scipy.stats.kstest(u, "uniform").pvalue > 1e-3
    # every bit is a fair coin (SBX takes its coin from the top bit)
    bits = (batched.ravel()[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    assert np.all(np.abs(bits.mean(axis=0) - 0.5) < 0.01)  # 50,176 words: sd 0.0022


def test_unit_floats_hand_values():
    w = jnp.asarray([0, 1 << 9, 0xFFFFFFFF, 1 << 31], jnp.uint32)
    np.testing.assert_array_equal(
        np.asarray(unit_floats(w)), np.float32([0.0, 2.0**-23, 1 - 2.0**-23, 0.5])
    )


def test_random_words_take_raw_keys_too():
    typed = jax.random.key(3)
    raw = jax.random.PRNGKey(3)
    np.testing.assert_array_equal(random_words(raw, (9,)), random_words(typed, (9,)))
    batched = jax.vmap(lambda k: random_words(k, (4,)))(jax.random.split(raw, 3))
    assert batched.shape == (3, 4)
