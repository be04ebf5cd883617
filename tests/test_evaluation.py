"""Sweep engine and metrics: Pixel-index worked example, Wilson interval, exact counts,
batch-size / device-count independence, equality with a plain loop, no recompilation."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixjax.evaluation import (
    change_batch,
    make_sweeper,
    pixel_index,
    run_sweep,
    summarize,
    sweep,
    wilson_interval,
)
from pixjax.perturb import PixelConfig, pixel_change, stack_configs


def test_pixel_index_worked_example():
    # Zhang & Cai (2021), eqs. (8)-(12): 1000 of 10,000 images wrong, 64 pixels of
    # 224x224, values 0..255, positions in 200x200 -> 98.30.
    pi = pixel_index(0.10, 64, (224, 224), 1.0, (200, 200))
    # The paper rounds p to 0.1276% and a to 79.72% before dividing (98.306, printed
    # as 98.30).
    p, a = 64 / 224**2, 200**2 / 224**2
    assert round(p * 100, 4) == 0.1276 and round(a * 100, 2) == 79.72
    assert 0.10 / (round(p, 6) * round(a, 4)) == pytest.approx(98.30, abs=0.01)
    # Unrounded, the same formula gives 98.34 (0.05% above the paper's figure).
    assert round(pi, 2) == 98.34
    assert pi == pytest.approx(98.30, rel=1e-3)
    # halving the value range doubles Pi
    assert pixel_index(0.1, 64, (224, 224), 0.5, (200, 200)) == pytest.approx(2 * pi)
    with pytest.raises(ValueError, match="region_hw"):
        pixel_index(0.1, 4, (28, 28), 1.0, (29, 28))
    with pytest.raises(ValueError, match="w: expected"):
        pixel_index(1.5, 4, (28, 28))


def test_wilson_interval_hand_computed():
    # p = 0.1, n = 100, z = 1.96: centre 0.11480, half-width 0.05957 (by hand).
    lo, hi = wilson_interval(10, 100)
    assert lo == pytest.approx(0.05523, abs=5e-5)
    assert hi == pytest.approx(0.17437, abs=5e-5)
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.07135, abs=5e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes/total"):
        wilson_interval(5, 3)


def test_summarize_counts_by_hand():
    labels = np.array([0, 0, 1, 1, 2, 2])
    clean = np.array([0, 0, 1, 2, 2, 2])  # image 3 wrong before the change
    pred = np.array(
        [0, 1, 1, 0, 0, 2]
    )  # images 1 and 4 flip; image 3 changes but was wrong
    conf = np.array([0.9, 0.6, 0.8, 0.5, 0.7, 0.9])
    m = summarize(labels, clean, pred, conf, num_classes=3)
    assert m["clean_correct"] == 5 and m["flips"] == 2
    assert m["flip_rate"] == pytest.approx(2 / 5)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["changed_rate"] == pytest.approx(3 / 6)
    assert m["per_class_flips"] == [1, 0, 1]
    assert m["per_class_correct"] == [2, 1, 2]
    conf_matrix = np.array(m["flip_confusion"])
    assert conf_matrix[0, 1] == 1 and conf_matrix[2, 0] == 1 and conf_matrix.sum() == 2
    assert m["flipped_confidence"] == pytest.approx((0.6 + 0.7) / 2)


def _linear_model(key, shape, classes=10):
    w = jax.random.normal(key, (int(np.prod(shape)), classes))
    return (lambda v, x: (x.reshape(x.shape[0], -1) - 0.3) @ v), w


GRID = [
    PixelConfig(1),
    PixelConfig(4, magnitude=40, relative=True),
    PixelConfig(9, region=10),
    PixelConfig(16),
]


def test_sweep_matches_plain_loop(mnist_test, lenet):
    module, variables, _ = lenet
    images = mnist_test.images[:40]
    key = jax.random.key(3)
    change = pixel_change((28, 28, 1), 16)
    out = run_sweep(
        make_sweeper(module.apply, change),
        variables,
        images,
        GRID,
        key,
        seeds=(0, 5),
        batch_size=16,
        progress=False,
    )
    params = stack_configs(GRID, (28, 28, 1))
    x = jnp.asarray(images, jnp.float32) / 255
    np.testing.assert_array_equal(
        out.clean_pred, np.argmax(module.apply(variables, x), -1)
    )
    for s_i, seed in enumerate((0, 5)):
        for k in range(len(GRID)):
            p = jax.tree_util.tree_map(lambda a, k=k: a[k], params)
            changed = change_batch(change, key, seed, k, jnp.arange(40), x, p)
            probs = jax.nn.softmax(module.apply(variables, changed), -1)
            row = s_i * len(GRID) + k
            np.testing.assert_array_equal(out.pred[row], np.argmax(probs, -1))
            np.testing.assert_allclose(
                out.confidence[row], np.max(probs, -1), rtol=1e-5
            )
    # the images really were changed: Num = 16 -> at most 16 pixels, and some
    changed = change_batch(
        change,
        key,
        0,
        3,
        jnp.arange(40),
        x,
        jax.tree_util.tree_map(lambda a: a[3], params),
    )
    n_diff = np.asarray(changed != x).reshape(40, -1).sum(1)
    assert n_diff.max() <= 16 and n_diff.mean() > 8


def test_sweep_independent_of_batch_size_and_chunking():
    apply_fn, w = _linear_model(jax.random.key(0), (12, 12, 3))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (37, 12, 12, 3), dtype=np.uint8)
    sweeper = make_sweeper(apply_fn, pixel_change((12, 12, 3), 16))
    outs = [
        run_sweep(
            sweeper,
            w,
            images,
            GRID,
            jax.random.key(1),
            seeds=(0, 1),
            batch_size=b,
            config_chunk=c,
            progress=False,
        )
        for b, c in [(37, None), (8, 3), (5, 1)]
    ]
    for o in outs[1:]:
        np.testing.assert_array_equal(o.pred, outs[0].pred)
        np.testing.assert_array_equal(o.clean_pred, outs[0].clean_pred)
        np.testing.assert_allclose(o.confidence, outs[0].confidence, rtol=1e-6)


def test_no_recompilation_on_second_call():
    apply_fn, w = _linear_model(jax.random.key(0), (28, 28, 1))
    images = np.random.default_rng(1).integers(0, 256, (64, 28, 28, 1), dtype=np.uint8)
    sweeper = make_sweeper(apply_fn, pixel_change((28, 28, 1), 16))
    run_sweep(
        sweeper, w, images, GRID, jax.random.key(0), batch_size=32, progress=False
    )
    before = sweeper.step._cache_size()
    other = [
        PixelConfig(2),
        PixelConfig(3, 10, True),
        PixelConfig(16, region=5),
        PixelConfig(7),
    ]
    run_sweep(
        sweeper, w, images, other, jax.random.key(1), batch_size=32, progress=False
    )
    assert sweeper.step._cache_size() == before == 1
    assert sweeper.clean._cache_size() == 1


def test_sweep_front_door_rows_and_pixel_index(mnist_test, lenet):
    module, variables, _ = lenet
    rows = sweep(
        module.apply,
        variables,
        mnist_test.images[:50],
        mnist_test.labels[:50],
        [PixelConfig(8), PixelConfig(64)],
        jax.random.key(0),
        seeds=(0, 1),
        progress=False,
    )
    assert len(rows) == 4
    assert [r["seed"] for r in rows] == [0, 0, 1, 1]
    for r in rows:
        assert 0 <= r["flip_rate"] <= 1
        w = r["flip_rate"]
        expect = pixel_index(w, r["config"]["num"], (28, 28)) if w == w else None
        if expect is not None:
            assert r["pixel_index"] == pytest.approx(expect)


def test_sweep_bad_input(mnist_test, lenet):
    module, variables, _ = lenet
    imgs, labels = mnist_test.images[:8], mnist_test.labels[:8]
    k = jax.random.key(0)
    with pytest.raises(ValueError, match="labels: expected shape"):
        sweep(module.apply, variables, imgs, labels[:5], [PixelConfig(1)], k)
    with pytest.raises(ValueError, match="images: expected dtype uint8"):
        sweep(
            module.apply,
            variables,
            imgs.astype(np.float32),
            labels,
            [PixelConfig(1)],
            k,
        )
    with pytest.raises(ValueError, match=r"images: expected a 4-D array"):
        sweep(module.apply, variables, imgs[:, :, :, 0], labels, [PixelConfig(1)], k)
    with pytest.raises(ValueError, match="num: expected 1..784"):
        sweep(module.apply, variables, imgs, labels, [PixelConfig(1000)], k)
    with pytest.raises(ValueError, match="configs: expected at least one"):
        sweep(module.apply, variables, imgs, labels, [], k)
    sweeper = make_sweeper(module.apply, pixel_change((28, 28, 1), 4))
    with pytest.raises(ValueError, match="max_num=4"):
        run_sweep(sweeper, variables, imgs, [PixelConfig(8)], k, progress=False)
    with pytest.raises(ValueError, match="images: expected shape"):
        run_sweep(
            sweeper,
            variables,
            np.zeros((2, 32, 32, 1), np.uint8),
            [PixelConfig(1)],
            k,
            progress=False,
        )


MULTI_DEVICE = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[1]
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, numpy as np
    from pixjax import checkpoints, data
    from pixjax.evaluation import make_sweeper, run_sweep
    from pixjax.perturb import PixelConfig, pixel_change
    assert len(jax.devices()) == int(sys.argv[1]), jax.devices()
    module, variables, _ = checkpoints.load_model(sys.argv[2])
    ds = data.load("mnist-sample", "test", limit=100)
    grid = [PixelConfig(n) for n in (1, 8, 64)] + [PixelConfig(16, 70, True)]
    sweeper = make_sweeper(module.apply, pixel_change((28, 28, 1), 64))
    out = run_sweep(sweeper, variables, ds.images, grid, jax.random.key(7),
                    seeds=(0, 1), batch_size=24, progress=False)
    np.savez(sys.argv[3], clean=out.clean_pred, pred=out.pred, conf=out.confidence)
    """
)


def test_one_and_eight_devices_give_identical_numbers(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(MULTI_DEVICE)
    ckpt = os.path.join(
        os.path.dirname(os.path.dirname(__file__)), "checkpoints", "lenet5-mnist"
    )
    results = []
    for n in (1, 8):
        out = tmp_path / f"out{n}.npz"
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        subprocess.run(
            [sys.executable, str(script), str(n), ckpt, str(out)],
            check=True,
            env=env,
            timeout=300,
        )
        results.append(np.load(out))
    one, eight = results
    np.testing.assert_array_equal(one["clean"], eight["clean"])
    np.testing.assert_array_equal(one["pred"], eight["pred"])
    np.testing.assert_allclose(one["conf"], eight["conf"], rtol=1e-5)
