"""Checkpoints and training: round trip, mismatches, the shipped model, determinism,
and resume after kill -9 giving the parameters of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

from pixjax import checkpoints, models
from pixjax.training import create_state, epoch_batches, evaluate, make_train_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _leaves_equal(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(la, lb, strict=True)
    )


def test_round_trip(tmp_path):
    module = models.get_model("lenet5", num_classes=7)
    v = models.init_variables(module, jax.random.key(3), (20, 20, 3))
    meta = {
        "arch": "lenet5",
        "model_kwargs": {"num_classes": 7},
        "input_shape": [20, 20, 3],
        "note": "x",
    }
    checkpoints.save_model(tmp_path / "m", v, meta)
    m2, v2, meta2 = checkpoints.load_model(tmp_path / "m")
    assert _leaves_equal(v, v2)
    assert meta2 == meta and m2.num_classes == 7


def test_mismatches_are_clear(tmp_path):
    module = models.get_model("lenet5", num_classes=5)
    v = models.init_variables(module, jax.random.key(0), (28, 28, 1))
    meta = {
        "arch": "lenet5",
        "model_kwargs": {"num_classes": 10},
        "input_shape": [28, 28, 1],
    }
    checkpoints.save_model(tmp_path / "bad", v, meta)
    with pytest.raises(ValueError, match="do not match a 'lenet5' model"):
        checkpoints.load_model(tmp_path / "bad")
    with pytest.raises(ValueError, match="holds a 'lenet5' model, but model='vgg'"):
        checkpoints.load_model(tmp_path / "bad", arch="vgg")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a pixjax model directory"):
        checkpoints.load_model(tmp_path / "empty")
    with pytest.raises(ValueError, match="missing required field 'arch'"):
        checkpoints.save_model(tmp_path / "x", v, {"input_shape": [28, 28, 1]})


def test_shipped_checkpoint_accuracy(lenet, mnist_test):
    module, variables, meta = lenet
    acc = evaluate(module.apply, variables, mnist_test.images, mnist_test.labels)
    assert acc >= 0.97
    assert meta["test_accuracy"] == pytest.approx(acc, abs=1e-6)
    assert models.count_params(variables) == 61706


def test_epoch_batches():
    a = epoch_batches(jax.random.key(0), 103, 10)
    b = epoch_batches(jax.random.key(0), 103, 10)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (10, 10) and len(np.unique(a)) == 100 and a.max() < 103
    assert not np.array_equal(a, epoch_batches(jax.random.key(1), 103, 10))
    with pytest.raises(ValueError, match="batch_size: expected 1..103"):
        epoch_batches(jax.random.key(0), 103, 0)


def test_train_step_learns_and_is_deterministic(mnist_test):
    module = models.get_model("lenet5")
    imgs, labels = mnist_test.images[::40][:32], mnist_test.labels[::40][:32]

    def run():
        state = create_state(module, jax.random.key(0), (28, 28, 1), optax.adam(1e-3))
        step = make_train_step(lambda k, x: x + 0.0 * jax.random.uniform(k))
        losses = []
        for t in range(15):
            state, m = step(state, imgs, labels, jax.random.key(t))
            losses.append(float(m["loss"]))
        return state, losses

    s1, l1 = run()
    s2, l2 = run()
    assert l1[-1] < l1[0] * 0.5
    assert l1 == l2 and _leaves_equal(s1.params, s2.params)


def _train_cmd(workdir, *extra):
    return [
        sys.executable,
        "-m",
        "experiments.cli",
        "run",
        "train",
        "--workdir",
        str(workdir),
        "--preset",
        "smoke",
        "epochs=6",
        "limit=512",
        "batch_size=16",
        *extra,
    ]


def _finished_steps(workdir):
    d = workdir / "checkpoints"
    return (
        sorted(int(p.name) for p in d.iterdir() if p.name.isdigit())
        if d.exists()
        else []
    )


def test_resume_after_kill_matches_uninterrupted(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    a, b = tmp_path / "a", tmp_path / "b"
    subprocess.run(
        _train_cmd(a), cwd=ROOT, env=env, check=True, capture_output=True, timeout=300
    )
    proc = subprocess.Popen(
        _train_cmd(b),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and not _finished_steps(b) and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _finished_steps(b)
    assert killed_at and max(killed_at) < 6
    done = subprocess.run(
        _train_cmd(b),
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "resuming from epoch" in done.stdout
    _, va, _ = checkpoints.load_model(a / "model")
    _, vb, _ = checkpoints.load_model(b / "model")
    assert _leaves_equal(va, vb)
    ra = json.loads((a / "results.json").read_text())
    rb = json.loads((b / "results.json").read_text())
    assert ra["test_accuracy"] == rb["test_accuracy"]
    # the same workdir with another configuration is refused before any work
    other = subprocess.run(
        _train_cmd(b, "learning_rate=0.5"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other.returncode == 2 and "workdir" in other.stderr
