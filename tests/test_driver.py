"""The resumable chunked driver (pixjax.driver.run) on a toy random walk: chunked ==
one-shot == a Python loop, kill -9 then resume == uninterrupted, a corrupt checkpoint
moved aside, a checkpoint of another run refused, a non-finite metric stopping the run
before its chunk is saved, and the data passed as an argument (no retrace)."""

import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixjax import driver

HERE = os.path.dirname(os.path.abspath(__file__))
TRACES = {"walk": 0}


def walk(state, data):
    """One step of a Gaussian random walk; step ``i`` draws with ``fold_in(key, i)``;
    the walk becomes infinite at step ``blowup`` (0-based)."""
    TRACES["walk"] += 1
    i, x = state["i"], state["x"]
    x = x + data["scale"] * jax.random.normal(
        jax.random.fold_in(data["key"], i), x.shape
    )
    x = jnp.where(i == data["blowup"], jnp.inf, x)
    return {"i": i + 1, "x": x}, {"norm": jnp.linalg.norm(x), "i": i}


def start():
    return {"i": jnp.zeros((), jnp.int32), "x": jnp.zeros(3, jnp.float32)}


def toy_data(scale=1.0, blowup=-1):
    return {"key": jax.random.key(3), "scale": jnp.float32(scale), "blowup": blowup}


def _assert_equal(a, b):
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _loop(n, data):
    step = jax.jit(walk)
    state, metrics = start(), []
    for _ in range(n):
        state, m = step(state, data)
        metrics.append(m)
    return state, jax.tree_util.tree_map(lambda *a: np.stack(a), *metrics)


def _steps(directory):
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def test_chunked_equals_one_shot_equals_python_loop(tmp_path):
    data = toy_data()
    expected = _loop(10, data)
    one_shot = driver.run(walk, start(), data, num_steps=10, chunk_size=10)
    chunked = driver.run(
        walk,
        start(),
        data,
        num_steps=10,
        chunk_size=3,
        checkpoint_dir=tmp_path / "ck",
        progress=False,
    )
    _assert_equal(one_shot, expected)
    _assert_equal(chunked, expected)
    assert chunked[1]["norm"].shape == (10,) and chunked[1]["i"].tolist() == list(
        range(10)
    )
    assert _steps(tmp_path / "ck") == [9, 10]  # after 3, 6, 9, 10; two kept
    # a finished run: restored, not recomputed, the same results
    again = driver.run(
        walk, start(), data, num_steps=10, chunk_size=3, checkpoint_dir=tmp_path / "ck"
    )
    _assert_equal(again, expected)


def test_data_is_an_argument_not_a_constant():
    driver.run(walk, start(), toy_data(1.0), num_steps=4, chunk_size=4, progress=False)
    traces = TRACES["walk"]
    state, _ = driver.run(
        walk, start(), toy_data(2.0), num_steps=4, chunk_size=4, progress=False
    )
    assert TRACES["walk"] == traces  # new data values, same compiled chunk
    _assert_equal(state, _loop(4, toy_data(2.0))[0])


def test_initial_state_is_not_consumed():
    state = start()
    driver.run(walk, state, toy_data(), num_steps=3, chunk_size=2, progress=False)
    assert int(state["i"]) == 0 and not np.asarray(state["x"]).any()


CHILD = """
import sys, time
sys.path.insert(0, {here!r})
from test_driver import driver, start, toy_data, walk
driver.run(walk, start(), toy_data(), num_steps={n}, chunk_size=2,
           checkpoint_dir={ck!r}, on_chunk=lambda *a: time.sleep(0.15), progress=False)
print("finished")
"""


def test_resume_after_kill_equals_uninterrupted(tmp_path, capsys):
    n, ck = 40, tmp_path / "ck"
    child = CHILD.format(here=HERE, n=n, ck=str(ck))
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", child],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            if any(s >= 8 for s in _steps(ck)):
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_at = max(_steps(ck))
    assert 8 <= killed_at < n and killed_at % 2 == 0

    capsys.readouterr()
    resumed = driver.run(
        walk,
        start(),
        toy_data(),
        num_steps=n,
        chunk_size=2,
        checkpoint_dir=ck,
        desc="walk",
        progress=False,
    )
    assert f"walk: resuming after step {killed_at} of {n}" in capsys.readouterr().out
    _assert_equal(resumed, _loop(n, toy_data()))


def _flip_bytes(directory, n=64):
    files = [p for p in directory.rglob("*") if p.is_file()]
    big = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(big.read_bytes())
    for i in np.random.default_rng(0).choice(len(raw) - 16, n, replace=False) + 8:
        raw[i] ^= 0xFF
    big.write_bytes(bytes(raw))


def test_corrupt_checkpoint_is_moved_aside(tmp_path, capsys):
    ck, data = tmp_path / "ck", toy_data()
    args = dict(num_steps=6, chunk_size=2, checkpoint_dir=ck, progress=False)
    driver.run(walk, start(), data, **args)
    assert _steps(ck) == [4, 6]
    _flip_bytes(ck / "6" / "state")
    capsys.readouterr()
    resumed = driver.run(walk, start(), data, **args, desc="walk")
    out = capsys.readouterr()
    assert "walk: the checkpoint of step 6 is corrupt" in out.err
    assert "walk: resuming after step 4 of 6" in out.out
    assert (ck / "corrupt-step-6").is_dir()  # kept, not deleted
    assert _steps(ck) == [4, 6]
    _assert_equal(resumed, _loop(6, data))


def test_checkpoint_of_another_run_is_refused(tmp_path):
    ck, data = tmp_path / "ck", toy_data()
    driver.run(
        walk,
        start(),
        data,
        num_steps=6,
        chunk_size=2,
        checkpoint_dir=ck,
        progress=False,
    )
    before = sorted(p.name for p in ck.iterdir())
    with pytest.raises(ValueError, match="chunk_size=2, this run has chunk_size=3"):
        driver.run(walk, start(), data, num_steps=6, chunk_size=3, checkpoint_dir=ck)
    with pytest.raises(ValueError, match="num_steps=6, this run has num_steps=8"):
        driver.run(walk, start(), data, num_steps=8, chunk_size=2, checkpoint_dir=ck)
    other = {"i": jnp.zeros((), jnp.int32), "x": jnp.zeros(4, jnp.float32)}
    with pytest.raises(ValueError, match=r"state of other shapes: \['x'\]"):
        driver.run(walk, other, data, num_steps=6, chunk_size=2, checkpoint_dir=ck)
    with pytest.raises(ValueError, match="belongs to a run with other data"):
        driver.run(
            walk,
            start(),
            toy_data(scale=2.0),
            num_steps=6,
            chunk_size=2,
            checkpoint_dir=ck,
        )
    assert sorted(p.name for p in ck.iterdir()) == before  # nothing moved or written
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="checkpoint_dir: .* is not a directory"):
        driver.run(
            walk,
            start(),
            data,
            num_steps=6,
            chunk_size=2,
            checkpoint_dir=tmp_path / "file",
        )
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="chunk_size: expected a positive integer"):
            driver.run(walk, start(), data, num_steps=6, chunk_size=bad)


def test_non_finite_metric_stops_before_saving(tmp_path):
    ck = tmp_path / "ck"
    with pytest.raises(ValueError, match=r"metric \['norm'\] became inf at step 5;"):
        driver.run(
            walk,
            start(),
            toy_data(blowup=4),
            num_steps=8,
            chunk_size=2,
            checkpoint_dir=ck,
            on_chunk=driver.require_finite,
            progress=False,
        )
    assert _steps(ck) == [2, 4]  # the chunk of steps 5-6 was not saved
