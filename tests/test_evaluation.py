"""Sweep engine: Pixel-index worked example, batch-size / device-count independence,
equality with a plain loop for every registered perturbation and for precomputed
variants, no recompilation. (Hand-computed summaries: test_summary.py.)"""

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
    run_variants,
    summarize_outputs,
    sweep,
)
from pixjax.perturb import (
    PERTURBATIONS,
    PixelConfig,
    get_perturbation,
    params_at,
    pixel_change,
    stack_configs,
)


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
        change.make_params(GRID),
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
    change = pixel_change((12, 12, 3), 16)
    sweeper = make_sweeper(apply_fn, change)
    outs = [
        run_sweep(
            sweeper,
            w,
            images,
            change.make_params(GRID),
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
    change = pixel_change((28, 28, 1), 16)
    sweeper = make_sweeper(apply_fn, change)
    params = change.make_params(GRID)
    run_sweep(
        sweeper, w, images, params, jax.random.key(0), batch_size=32, progress=False
    )
    before = sweeper.step._cache_size()
    clean_before = sweeper.clean._cache_size()  # shared with predict: other shapes too
    other = [
        PixelConfig(2),
        PixelConfig(3, 10, True),
        PixelConfig(16, region=5),
        PixelConfig(7),
    ]
    run_sweep(
        sweeper,
        w,
        images,
        change.make_params(other),
        jax.random.key(1),
        batch_size=32,
        progress=False,
    )
    assert sweeper.step._cache_size() == before == 1
    assert sweeper.clean._cache_size() == clean_before


GENERIC_CASES = {
    "shift": ({}, [{"max_shift": 2}, {"dy": 1}, {"dx": -1, "max_shift": 1}]),
    "gaussian_noise": ({"quantize": True}, [{"sigma": 0.1}, {"sigma": 0.4}]),
    "pixel_change": ({"max_num": 16}, GRID),
}


def test_generic_cases_cover_every_perturbation():
    assert set(GENERIC_CASES) == set(PERTURBATIONS)


@pytest.mark.parametrize("name", list(GENERIC_CASES))
def test_generic_sweep_matches_plain_loop(name):
    """Any registered perturbation: row s * K + k of run_sweep equals the model on
    change_batch(key, seed, k) images, for uneven batches and chunks."""
    shape = (12, 12, 3)
    apply_fn, w = _linear_model(jax.random.key(0), shape)
    images = np.random.default_rng(2).integers(0, 256, (21, *shape), dtype=np.uint8)
    static, configs = GENERIC_CASES[name]
    pert = get_perturbation(name, shape, **static)
    params = pert.make_params(configs)
    key, seeds = jax.random.key(4), (0, 3)
    out = run_sweep(
        make_sweeper(apply_fn, pert),
        w,
        images,
        params,
        key,
        seeds=seeds,
        batch_size=8,
        config_chunk=2,
        progress=False,
    )
    x = jnp.asarray(images, jnp.float32) / 255
    one_config = jax.jit(
        lambda seed, k, p: jax.nn.softmax(
            apply_fn(w, change_batch(pert, key, seed, k, jnp.arange(21), x, p)), -1
        )
    )
    for s_i, seed in enumerate(seeds):
        for k in range(len(configs)):
            probs = one_config(seed, k, params_at(params, k))
            row = s_i * len(configs) + k
            np.testing.assert_array_equal(out.pred[row], np.argmax(probs, -1))
            np.testing.assert_allclose(
                out.confidence[row], np.max(probs, -1), rtol=1e-5
            )
    rows = summarize_outputs(out, np.zeros(21, int), 10, seeds)
    assert [r["seed"] for r in rows] == [s for s in seeds for _ in configs]
    assert rows[1]["correct"] == int(np.sum(out.pred[1] == 0))


def test_variants_match_direct_model_call(mnist_test, lenet):
    module, variables, _ = lenet
    images = mnist_test.images[:19]
    rng = np.random.default_rng(0)
    noise = rng.integers(-40, 41, (3, *images.shape))
    variants = np.clip(images[None].astype(int) + noise, 0, 255).astype(np.uint8)
    sweeper = make_sweeper(module.apply)
    out = run_variants(
        sweeper,
        variables,
        images,
        variants,
        batch_size=8,
        config_chunk=2,
        progress=False,
    )
    assert out.pred.shape == out.confidence.shape == (3, 19)
    assert out.clean_pred.shape == (19,)
    logits = module.apply(variables, jnp.asarray(images, jnp.float32) / 255)
    np.testing.assert_array_equal(out.clean_pred, np.argmax(logits, -1))
    for k in range(3):
        x = jnp.asarray(variants[k], jnp.float32) / 255
        probs = jax.nn.softmax(module.apply(variables, x), -1)
        np.testing.assert_array_equal(out.pred[k], np.argmax(probs, -1))
        np.testing.assert_allclose(out.confidence[k], np.max(probs, -1), rtol=1e-5)
    # one compile for every batch and chunk, also on a second call with other values
    clean_before = sweeper.clean._cache_size()  # shared with predict: other shapes
    run_variants(
        sweeper,
        variables,
        images,
        variants[::-1],
        batch_size=8,
        config_chunk=2,
        progress=False,
    )
    assert sweeper.variants_step._cache_size() == 1
    assert sweeper.clean._cache_size() == clean_before


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
    one = stack_configs([PixelConfig(1)], (28, 28, 1))
    with pytest.raises(ValueError, match="max_num=4"):
        big = stack_configs([PixelConfig(8)], (28, 28, 1))
        run_sweep(sweeper, variables, imgs, big, k, progress=False)
    with pytest.raises(ValueError, match="images: expected shape"):
        run_sweep(
            sweeper,
            variables,
            np.zeros((2, 32, 32, 1), np.uint8),
            one,
            k,
            progress=False,
        )
    with pytest.raises(ValueError, match="params: expected a stacked PixelParams"):
        run_sweep(sweeper, variables, imgs, [PixelConfig(1)], k, progress=False)
    with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
        run_sweep(sweeper, variables, imgs, one, k, batch_size=0, progress=False)
    with pytest.raises(ValueError, match="seeds: expected at least one"):
        run_sweep(sweeper, variables, imgs, one, k, seeds=(), progress=False)
    for bad in ([-1], [2**33], [0.5], [True], 3, "01"):
        with pytest.raises(ValueError, match="seeds: expected"):
            run_sweep(sweeper, variables, imgs, one, k, seeds=bad, progress=False)
    for bad in (0, np.uint32([0, 1]), jax.random.split(k, 2)):
        with pytest.raises(ValueError, match="key: expected one PRNG key"):
            run_sweep(sweeper, variables, imgs, one, bad, progress=False)
    bare = make_sweeper(module.apply)
    with pytest.raises(ValueError, match="sweeper: built without a perturbation"):
        run_sweep(bare, variables, imgs, one, k, progress=False)
    with pytest.raises(ValueError, match="perturbation: expected a pixjax.perturb"):
        make_sweeper(module.apply, "pixel_change")
    variants = np.zeros((2, *imgs.shape), np.uint8)
    with pytest.raises(ValueError, match=r"variants_u8: expected shape \[K, N"):
        run_variants(bare, variables, imgs, variants[:, :4], progress=False)
    with pytest.raises(ValueError, match="variants_u8: expected dtype uint8"):
        run_variants(bare, variables, imgs, variants.astype(np.float32))
    with pytest.raises(ValueError, match="config_chunk: expected a positive"):
        run_variants(bare, variables, imgs, variants, config_chunk=0)


MULTI_DEVICE = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=" + sys.argv[1]
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax, numpy as np
    from pixjax import checkpoints, data
    from pixjax.evaluation import make_sweeper, run_sweep, run_variants
    from pixjax.perturb import PixelConfig, pixel_change
    assert len(jax.devices()) == int(sys.argv[1]), jax.devices()
    module, variables, _ = checkpoints.load_model(sys.argv[2])
    ds = data.load("mnist-sample", "test", limit=100)
    grid = [PixelConfig(n) for n in (1, 8, 64)] + [PixelConfig(16, 70, True)]
    change = pixel_change((28, 28, 1), 64)
    sweeper = make_sweeper(module.apply, change)
    out = run_sweep(sweeper, variables, ds.images, change.make_params(grid),
                    jax.random.key(7), seeds=(0, 1), batch_size=24, progress=False)
    variants = np.stack([255 - ds.images, ds.images // 2])
    vo = run_variants(sweeper, variables, ds.images, variants, batch_size=24,
                      config_chunk=1, progress=False)
    np.savez(sys.argv[3], clean=out.clean_pred, pred=out.pred, conf=out.confidence,
             var_pred=vo.pred, var_conf=vo.confidence, var_clean=vo.clean_pred)
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
    for name in ("", "var_"):
        np.testing.assert_array_equal(one[name + "pred"], eight[name + "pred"])
        np.testing.assert_allclose(one[name + "conf"], eight[name + "conf"], rtol=1e-5)
    np.testing.assert_array_equal(one["var_clean"], one["clean"])
