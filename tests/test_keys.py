"""Keys split by purpose: no two seeds or purposes share a subkey."""

import jax
import numpy as np
import pytest

from pixjax.keys import purpose_key, purpose_keys

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
