"""Checkpoints and the training loop: round trip and clear mismatch errors, the shipped
LeNet-5, epoch batches, the train step, and `pixjax run train` resumed after SIGKILL
ending with exactly the parameters of an uninterrupted run."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from pixjax.experiments import cli, common
from pixjax.experiments import train as train_exp
from pixjax.experiments.configs import train as train_configs

from pixjax import checkpoints, data, models
from pixjax.evaluation import accuracy
from pixjax.training import (
    FitData,
    FitState,
    create_state,
    epoch_batches,
    fit_order,
    make_fit_step,
    make_train_step,
)


def _assert_trees_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and np.array_equal(x, y)


def _lenet(num_classes, shape, seed=0):
    """LeNet-5 variables, initialised under jit (one compile, not one per op)."""
    module = models.get_model("lenet5", num_classes=num_classes)
    init = jax.jit(models.init_variables, static_argnums=(0, 2))
    return init(module, jax.random.key(seed), shape)


# --- checkpoints ----------------------------------------------------------------------


def test_save_load_round_trip(tmp_path):
    variables = _lenet(4, (16, 16, 2), seed=7)
    meta = {
        "arch": "lenet5",
        "model_kwargs": {"num_classes": 4},
        "input_shape": [16, 16, 2],
        "class_names": ["a", "b", "c", "d"],
        "nested": {"x": [1, 2.5, None], "ok": True},
    }
    out = checkpoints.save_model(tmp_path / "m", variables, meta)
    assert (out / "metadata.json").is_file() and (out / "variables").is_dir()
    module, restored, meta2 = checkpoints.load_model(tmp_path / "m", arch="lenet5")
    _assert_trees_equal(variables, restored)
    checksums = meta2.pop("checksums")  # recorded by save_model, verified on load
    assert meta2 == meta and set(checksums) == {
        jax.tree_util.keystr(p)
        for p, _ in jax.tree_util.tree_leaves_with_path(variables)
    }
    assert module.num_classes == 4


def test_load_with_wrong_arch_names_both(tmp_path):
    meta = {"arch": "lenet5", "model_kwargs": {}, "input_shape": [28, 28, 1]}
    checkpoints.save_model(tmp_path / "m", _lenet(10, (28, 28, 1)), meta)
    with pytest.raises(ValueError) as err:
        checkpoints.load_model(tmp_path / "m", arch="resnet18")
    assert "'lenet5'" in str(err.value) and "'resnet18'" in str(err.value)


def test_directory_without_metadata(tmp_path):
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        checkpoints.load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a pixjax model directory"):
        checkpoints.load_model(tmp_path / "does-not-exist")


def test_arrays_that_do_not_match_the_metadata(tmp_path):
    # metadata claims 10 classes, the arrays are of a 5-class LeNet-5
    meta = {
        "arch": "lenet5",
        "model_kwargs": {"num_classes": 10},
        "input_shape": [28, 28, 1],
    }
    checkpoints.save_model(tmp_path / "m", _lenet(5, (28, 28, 1)), meta)
    with pytest.raises(ValueError) as err:
        checkpoints.load_model(tmp_path / "m")
    msg = str(err.value)
    assert "do not match a 'lenet5' model" in msg
    assert "fc3" in msg and "(84, 10)" in msg and "(84, 5)" in msg

    # metadata claims 28x28x1 inputs, the arrays are of a 32x32x3 model
    checkpoints.save_model(tmp_path / "rgb", _lenet(10, (32, 32, 3)), meta)
    with pytest.raises(ValueError, match="conv1"):
        checkpoints.load_model(tmp_path / "rgb")


def test_shipped_checkpoint_accuracy():
    root = os.path.join(os.path.dirname(os.path.dirname(__file__)), "checkpoints")
    module, variables, meta = checkpoints.load_model(
        os.path.join(root, "lenet5-mnist"), arch="lenet5"
    )
    test = data.load("mnist-sample", "test")
    acc = accuracy(module.apply, variables, test.images, test.labels)
    assert acc >= 0.97
    assert tuple(meta["input_shape"]) == test.image_shape == (28, 28, 1)
    assert meta["test_accuracy"] == pytest.approx(acc, abs=1e-6)


# --- epoch batches and the train step ---------------------------------------------------


def test_epoch_batches():
    key = jax.random.key(0)
    a = epoch_batches(key, 100, 7)
    np.testing.assert_array_equal(a, epoch_batches(key, 100, 7))
    assert a.shape == (14, 7)  # 100 // 7 steps, the last 2 indices dropped
    assert len(np.unique(a)) == a.size and a.min() >= 0 and a.max() < 100
    assert not np.array_equal(a, epoch_batches(jax.random.key(1), 100, 7))
    # one batch of everything: a permutation
    np.testing.assert_array_equal(np.sort(epoch_batches(key, 9, 9)[0]), np.arange(9))
    assert epoch_batches(key, 9, 1).shape == (9, 1)
    for bad in (0, -3, 101):
        with pytest.raises(ValueError, match="batch_size: expected 1..100"):
            epoch_batches(key, 100, bad)


@pytest.fixture(scope="module")
def tiny_batch():
    test = data.load("mnist-sample", "test")
    return test.images[:32], test.labels[:32].astype(np.int32)


def test_train_step_reduces_loss_and_is_deterministic(tiny_batch):
    images, labels = tiny_batch
    module = models.get_model("lenet5")
    init = jax.jit(models.init_variables, static_argnums=(0, 2))
    step = make_train_step()  # one compiled step for all runs below

    def train(seed, steps=12):
        key = jax.random.key(seed)
        params = init(module, key, (28, 28, 1))["params"]
        state = create_state(module, key, (28, 28, 1), optax.adam(2e-3), params)
        losses = []
        for t in range(steps):
            state, metrics = step(state, images, labels, jax.random.fold_in(key, t))
            losses.append(float(metrics["loss"]))
        return state, losses

    s1, l1 = train(0)
    assert all(np.isfinite(l1)) and l1[-1] < 0.5 * l1[0]
    assert int(s1.step) == 12
    s2, l2 = train(0)
    assert l1 == l2
    _assert_trees_equal(s1.params, s2.params)
    s3, _ = train(1)
    assert not np.array_equal(s1.params["fc3"]["kernel"], s3.params["fc3"]["kernel"])
    with pytest.raises(ValueError, match="paired"):
        make_train_step(None, paired=True)


@pytest.mark.parametrize("loop", ["scan", "python"])
def test_fit_step_is_the_loop_of_train_steps(tiny_batch, loop):
    """The driver's training step (one batch per step, one epoch per chunk; a scan or
    a host loop) visits the batches of epoch_batches and draws the augmentation keys
    of a plain per-batch loop; equal up to float rounding."""
    from pixjax import driver
    from pixjax.perturb.shifts import random_shift

    images, labels = tiny_batch
    module = models.get_model("lenet5")
    augment = lambda k, x: random_shift(k, x, 2)  # noqa: E731
    order_key, aug_key = jax.random.split(jax.random.key(5))

    def fresh():
        return create_state(module, jax.random.key(0), (28, 28, 1), optax.adam(2e-3))

    state, losses = fresh(), []
    step = make_train_step(augment)
    for epoch in range(2):
        for idx in epoch_batches(jax.random.fold_in(order_key, epoch), 32, 8):
            key = jax.random.fold_in(aug_key, int(state.step))
            state, m = step(state, images[idx], labels[idx], key)
            losses.append(float(m["loss"]))

    data = FitData(images, labels, fit_order(order_key, 2, 32, 8), aug_key)
    final, m = driver.run(
        make_fit_step(augment),
        FitState(fresh(), jnp.zeros((), jnp.int32)),
        data,
        num_steps=8,
        chunk_size=4,
        loop=loop,
        progress=False,
    )
    assert int(final.batch) == 8 and int(final.train.step) == int(state.step) == 8
    np.testing.assert_allclose(m["loss"], losses, rtol=1e-5)
    leaves = jax.tree.leaves(final.train.params)
    for x, y in zip(jax.tree.leaves(state.params), leaves, strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="batch_size: expected 1..32"):
        fit_order(order_key, 2, 32, 33)


# --- `pixjax run train`: resume after SIGKILL -------------------------------------------

EPOCHS = 6
SMALL = [f"epochs={EPOCHS}", "limit=256", "batch_size=32"]


def _pixjax():
    exe = shutil.which("pixjax", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "pixjax.experiments.cli"]


def _args(workdir, *extra):
    return [
        "run",
        "train",
        "--workdir",
        str(workdir),
        "--preset",
        "smoke",
        *SMALL,
        *extra,
    ]


def _finished_steps(workdir):
    """Epoch checkpoints orbax has committed (renamed from their temporary name)."""
    d = workdir / "checkpoints"
    if not d.is_dir():
        return []
    return sorted(int(p.name) for p in d.iterdir() if p.is_dir() and p.name.isdigit())


def test_resume_after_kill_matches_uninterrupted(tmp_path, capsys):
    # A persistent compilation cache shared by the three runs: A compiles, B and the
    # resumed B load the same executables (a few seconds instead of ~12 each).
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    a, b = tmp_path / "a", tmp_path / "b"
    run = dict(cwd=tmp_path, env=env, text=True)
    done_a = subprocess.run(
        [*_pixjax(), *_args(a)], capture_output=True, timeout=240, **run
    )
    assert done_a.returncode == 0, done_a.stderr[-3000:]
    assert "resuming" not in done_a.stdout and _finished_steps(a)[-1] == EPOCHS

    # B: the same command, killed once the checkpoint of epoch 2 is committed.
    proc_b = subprocess.Popen(
        [*_pixjax(), *_args(b)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **run,
    )
    try:
        deadline = time.monotonic() + 240
        while proc_b.poll() is None and time.monotonic() < deadline:
            if any(s >= 2 for s in _finished_steps(b)):
                break
            time.sleep(0.01)
        assert proc_b.poll() is None, "B ended before epoch 2 was checkpointed"
        os.kill(proc_b.pid, signal.SIGKILL)
        assert proc_b.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc_b.poll() is None:
            proc_b.kill()
            proc_b.wait()
    killed_at = max(_finished_steps(b))
    assert 2 <= killed_at < EPOCHS and not (b / "model").exists()

    resumed = subprocess.run(
        [*_pixjax(), *_args(b)], capture_output=True, timeout=240, **run
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"train: resuming after epoch {killed_at} of {EPOCHS}" in resumed.stdout

    _, va, ma = checkpoints.load_model(a / "model", arch="lenet5")
    _, vb, mb = checkpoints.load_model(b / "model", arch="lenet5")
    _assert_trees_equal(va, vb)
    assert ma["test_accuracy"] == mb["test_accuracy"]
    assert ma["config"] == mb["config"] and ma["config"]["epochs"] == EPOCHS
    # the loss history survives the kill: equal to the uninterrupted run's
    history = json.loads((b / "results.json").read_text())["history"]
    history_a = json.loads((a / "results.json").read_text())["history"]
    assert history == history_a and [h["epoch"] for h in history] == list(
        range(1, EPOCHS + 1)
    )
    # a rerun of the finished run keeps it too
    again = subprocess.run(
        [*_pixjax(), *_args(b)], capture_output=True, timeout=240, **run
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((b / "results.json").read_text())["history"] == history_a

    # The finished workdir with another configuration: refused before any write.
    config_before = (b / "config.json").read_text()
    other = common.apply_overrides(
        train_configs.get_config("smoke"), [*SMALL, "learning_rate=0.5"]
    )
    with pytest.raises(common.ConfigError, match="workdir: .*another configuration"):
        common.run_experiment("train", train_exp, other, b)
    assert cli.main(_args(b, "learning_rate=0.5")) == 2
    err = capsys.readouterr().err
    assert "workdir:" in err and str(b) in err and "use a new workdir" in err
    assert (b / "config.json").read_text() == config_before
