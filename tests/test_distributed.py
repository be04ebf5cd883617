"""Jobs of several processes (``jax.distributed`` over loopback, gloo collectives).

Each job test starts 2 processes x 2 simulated CPU devices with the ``pixjax`` CLI and
checks that every number of the run equals a single-process run of the same
configuration (computed here, on this process's devices), that a killed process stops
the others quickly with one clear line, that the restarted job resumes, and that bad
job settings are refused before any work.
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest
from pixjax.experiments import cli, common

from pixjax import distributed

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Small runs of the four experiments the issue names (the main sweep, a fooling
# search, a few-pixel attack, a fine-tune).
RUNS = {
    "pixel-change": [
        "limit=16",
        "nums=1,8",
        "magnitudes=40",
        "regions=28,14",
        "seeds=0,1",
        "batch_size=8",
        "examples=1",
    ],
    "fooling": [
        "studies=direct",
        "runs=1",
        "pop_size=8",
        "chunk_size=2",
        "generations=4",
        "examples=2",
    ],
    "few-pixel-attack": [
        "limit=6",
        "pixels=1",
        "pop_size=20",
        "iterations=6",
        "random_seeds=0",
        "batch_size=2",
        "examples=1",
    ],
    "augment-finetune": [
        "train_images=40",
        "nums=4",
        "epochs=1",
        "batch_size=20",
        "eval_nums=1",
        "eval_limit=24",
        "batch_size_eval=12",
        "baselines=",
    ],
}

# What may differ between two runs of the same configuration: clocks, the command
# line, the devices, and what a resumed run recomputed.
VOLATILE = ("metadata", "time", "resumed", "queries_computed")


def _volatile(key: str) -> bool:
    return key in VOLATILE or "second" in key or key.endswith("_s")


def _numbers(doc):
    """``doc`` without its metadata and timings: every count, rate and result."""
    if isinstance(doc, dict):
        return {k: _numbers(v) for k, v in doc.items() if not _volatile(k)}
    if isinstance(doc, list):
        return [_numbers(v) for v in doc]
    return doc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int = 2) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in (
        distributed.ENV_COORDINATOR,
        distributed.ENV_NUM_PROCESSES,
        distributed.ENV_PROCESS_ID,
    ):
        env.pop(name, None)
    return env


def _start(args, process_id, num_processes, port, *, extra=(), cwd=None):
    cmd = [
        sys.executable,
        "-m",
        "pixjax.experiments.cli",
        *args,
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        str(num_processes),
        "--process-id",
        str(process_id),
        "--heartbeat-timeout",
        "10",
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        env=_env(),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _job(args, n=2, timeout=150, extra=()):
    port = _free_port()
    procs = [_start(args, i, n, port, extra=extra) for i in range(n)]
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        out.append((p.returncode, stdout, stderr))
    return out


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("pixjax: error")]


def _refused(procs, *messages, code=2):
    """Every process exits with ``code`` and one error line holding ``messages``."""
    for p in procs:
        _, stderr = p.communicate(timeout=90)
        assert p.returncode == code, stderr[-2000:]
        (line,) = _errors(stderr)
        for message in messages:
            assert message in line


def _single(name, overrides, workdir):
    """The single-process run, here (this process's devices)."""
    module, configs = cli.get_experiment(name)
    config = common.apply_overrides(
        configs.get_config("smoke"), [*overrides, "progress=false"]
    )
    return common.run_experiment(name, module, config, workdir)


# (the few-pixel attack's job is compared by the kill-and-resume test below)
@pytest.mark.parametrize("name", ["pixel-change", "fooling", "augment-finetune"])
def test_job_numbers_equal_single_process(name, tmp_path):
    overrides = RUNS[name]
    args = ["run", name, "--workdir", str(tmp_path / "job"), "--preset", "smoke"]
    results = _job([*args, *overrides, "progress=false"])
    for i, (rc, _, stderr) in enumerate(results):
        assert rc == 0, f"process {i}: {stderr[-2000:]}"
    job = json.loads((tmp_path / "job" / common.RESULTS_FILE).read_text())
    assert len(job["metadata"]["devices"]) == 4  # one mesh over both processes
    # process 0 alone printed the summary and wrote the files
    assert "wrote" in results[0][1] and "wrote" not in results[1][1]
    single = _single(name, overrides, tmp_path / "single")
    assert _numbers(job) == _numbers(single)


def test_killed_process_stops_the_job_and_the_rerun_resumes(tmp_path):
    name = "few-pixel-attack"
    overrides = [*RUNS[name], "limit=16", "chunk_size=1", "progress=false"]
    workdir = tmp_path / "job"
    args = ["run", name, "--workdir", str(workdir), "--preset", "smoke", *overrides]
    port = _free_port()
    procs = [_start(args, i, 2, port) for i in range(2)]
    # Kill process 1 once two checkpoints of the attack are written (of 3 or more).
    ckpts = workdir / "attack" / "k1"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (
        ckpts.is_dir() and sum(p.name.isdigit() for p in ckpts.iterdir()) >= 2
    ):
        assert procs[0].poll() is None, procs[0].communicate()[1][-2000:]
        time.sleep(0.1)
    procs[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = procs[0].communicate(timeout=60)
    stopped_after = time.monotonic() - killed
    procs[1].communicate()
    assert procs[0].returncode == distributed.EXIT_JOB_STOPPED, stderr[-2000:]
    assert stopped_after < 8  # before the heartbeat timeout of 10 s
    (line,) = _errors(stderr)
    assert "process 0 of 2: the job stopped" in line and "rerun" in line
    assert not (workdir / common.RESULTS_FILE).exists()
    # and the newest checkpoint is damaged: process 0 alone moves it aside, and the
    # job resumes from the one before
    newest = max(int(p.name) for p in ckpts.iterdir() if p.name.isdigit())
    for f in (ckpts / str(newest) / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 64:
            f.write_bytes(b"\0" * f.stat().st_size)

    rerun = _job(args)
    for rc, _, err in rerun:
        assert rc == 0, err[-2000:]
    assert f"resuming after batch {newest - 1} of " in rerun[0][1]
    assert f"checkpoint of batch {newest} is corrupt" in rerun[0][2]
    assert "corrupt" not in rerun[1][2]
    assert (ckpts / f"corrupt-batch-{newest}").is_dir()
    job = json.loads((workdir / common.RESULTS_FILE).read_text())
    single = _single(name, overrides[:-1], tmp_path / "single")
    assert _numbers(job) == _numbers(single)


def _attack_job_underway(workdir):
    """A 2-process few-pixel job, one second after process 0 claimed ``workdir``."""
    name = "few-pixel-attack"
    args = ["run", name, "--workdir", str(workdir), "--preset", "smoke", *RUNS[name]]
    port = _free_port()
    procs = [_start(args, i, 2, port) for i in range(2)]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (workdir / "config.json").exists():
        assert all(p.poll() is None for p in procs)
        time.sleep(0.1)
    time.sleep(1.0)
    return procs


def test_killed_coordinator_stops_the_others_at_once(tmp_path):
    procs = _attack_job_underway(tmp_path / "job")
    procs[0].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = procs[1].communicate(timeout=60)
    procs[0].communicate()
    assert time.monotonic() - killed < 8  # before the heartbeat timeout of 10 s
    # pixjax's line, or JAX's own abort when its runtime notices first
    ours = "process 1 of 2: the job stopped: process 0" in stderr
    theirs = "JAX distributed service detected fatal errors" in stderr
    assert (ours and procs[1].returncode == 1) or (
        theirs and procs[1].returncode in (-6, 134)
    ), stderr[-2000:]


def test_batch_that_does_not_split_over_the_processes(tmp_path):
    workdir = tmp_path / "job"
    results = _job(
        ["run", "pixel-change", "--workdir", str(workdir), "--preset", "smoke"]
        + ["batch_size=7"],
        timeout=90,
    )
    for rc, _, stderr in results:
        assert rc == 2
        (line,) = _errors(stderr)
        assert "batch_size: 7 does not split over the 2 processes" in line
    assert not workdir.exists()


def test_processes_started_with_different_settings_are_refused(tmp_path):
    # process 1 asks for another split: without the check the job would mix them
    port = _free_port()
    args = ["run", "pixel-change", "--workdir", str(tmp_path / "w"), "--preset"]
    procs = [
        _start([*args, "smoke"], 0, 2, port),
        _start([*args, "smoke", "split=train"], 1, 2, port),
    ]
    _refused(
        procs,
        "run: the processes of the job were started differently",
        "process 1 has config.split='train', process 0 'test'",
    )
    assert not (tmp_path / "w").exists()


def test_interrupted_process_stops_the_job_at_once(tmp_path):
    procs = _attack_job_underway(tmp_path / "job")
    procs[1].send_signal(signal.SIGINT)
    start = time.monotonic()
    outs = [p.communicate(timeout=60)[1] for p in procs]
    assert time.monotonic() - start < 20  # not the heartbeat timeout, nor a hang
    assert [p.returncode for p in procs] == [130, 130], outs
    for stderr in outs:
        (line,) = _errors(stderr)
        assert "process 1 of 2: SIGINT" in line


def test_different_process_counts_are_refused(tmp_path):
    port = _free_port()
    args = ["run", "pixel-change", "--workdir", str(tmp_path / "w")]
    procs = [
        _start(args, 0, 2, port, extra=("--timeout", "30")),
        _start(args, 1, 3, port, extra=("--timeout", "30")),
    ]
    _refused(procs, "different process counts", "process 0: 2, process 1: 3")
    assert not (tmp_path / "w").exists()


def test_unreachable_coordinator_fails_within_the_timeout(tmp_path):
    port = _free_port()  # nobody listens there
    start = time.monotonic()
    p = _start(
        ["run", "pixel-change", "--workdir", str(tmp_path / "w")],
        1,
        2,
        port,
        extra=("--timeout", "3"),
    )
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 2
    assert time.monotonic() - start < 30
    (line,) = _errors(stderr)
    assert f"127.0.0.1:{port} was not reachable within the timeout" in line
    assert not (tmp_path / "w").exists()


def test_job_that_never_forms_fails_within_the_timeout(tmp_path):
    # process 0 alone: process 1 never comes
    start = time.monotonic()
    p = _start(
        ["run", "pixel-change", "--workdir", str(tmp_path / "w")],
        0,
        2,
        _free_port(),
        extra=("--timeout", "3"),
    )
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 2
    assert time.monotonic() - start < 30
    (line,) = _errors(stderr)
    assert "the job did not form within 3 s" in line
    assert not (tmp_path / "w").exists()


def test_second_process_zero_is_refused(tmp_path):
    port = _free_port()
    args = ["run", "pixel-change", "--workdir", str(tmp_path / "w")]
    first = _start(args, 0, 2, port, extra=("--timeout", "20"))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the first one listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        second = _start(args, 0, 2, port, extra=("--timeout", "20"))
        _, stderr = second.communicate(timeout=60)
        assert second.returncode == 2
        (line,) = _errors(stderr)
        assert "process 0 cannot listen on 127.0.0.1" in line
        assert "exactly one process 0" in line
    finally:
        first.kill()
        first.communicate()


@pytest.mark.parametrize(
    "flags, env, message",
    [
        (["--num-processes", "2", "--process-id", "2"], {}, "--process-id: expected"),
        (["--num-processes", "0", "--process-id", "0"], {}, "expected an integer >= 1"),
        (["--num-processes", "two", "--process-id", "0"], {}, "expected an integer"),
        (["--num-processes", "2"], {}, "--process-id: required"),
        ([], {"JAX_NUM_PROCESSES": "2"}, "--coordinator, --process-id: required"),
        (
            ["--process-id", "-1"],
            {"JAX_NUM_PROCESSES": "2", "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"},
            "--process-id: expected 0..1, got -1",
        ),
        (["--timeout", "0"], {"JAX_NUM_PROCESSES": "2"}, "--timeout: expected"),
        (["--timeout", "inf"], {"JAX_NUM_PROCESSES": "2"}, "(0, 86400]"),
        (["--heartbeat-timeout", "99999999"], {"JAX_NUM_PROCESSES": "2"}, "1..86400"),
    ],
)
def test_bad_job_flags_exit_2_before_any_work(flags, env, message, tmp_path, capsys):
    argv = ["run", "pixel-change", "--workdir", str(tmp_path / "w"), *flags]
    if not env:
        argv += ["--coordinator", "127.0.0.1:1"]
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert cli.main(argv) == 2
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (line,) = _errors(capsys.readouterr().err)
    assert message in line
    assert not (tmp_path / "w").exists()


def test_job_from_reads_flags_then_environment():
    env = {
        "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
        "JAX_NUM_PROCESSES": "4",
        "JAX_PROCESS_ID": "3",
    }
    job = distributed.job_from(environ=env)
    assert (job.coordinator, job.num_processes, job.process_id) == (
        "10.0.0.1:1234",
        4,
        3,
    )
    job = distributed.job_from("h:99", 8, 0, environ=env)
    assert (job.coordinator, job.num_processes, job.process_id) == ("h:99", 8, 0)
    assert distributed.job_from(environ={}) is None
    auto = distributed.job_from(auto=True, environ={})
    assert auto.auto and auto.num_processes is None
    for bad in ("nohost", "h:0", "h:70000", ":80", "h:x", "http://h:80", "::1:80"):
        with pytest.raises(ValueError, match="--coordinator: expected HOST:PORT"):
            distributed.job_from(bad, 2, 0, environ={})


SHARDING_SCRIPT = """
import sys
import numpy as np
from pixjax import distributed
distributed.initialize(distributed.job_from(sys.argv[1], 2, int(sys.argv[2])))
import jax
from jax.sharding import Mesh
from pixjax import sharding
batch = np.arange(8 * 3, dtype=np.int32).reshape(8, 3)
grouped = sharding.data_mesh()
devices = sorted(jax.devices(), key=lambda d: (d.id % 2048, d.process_index))
interleaved = Mesh(np.asarray(devices), (sharding.BATCH_AXIS,))
for mesh, contiguous in ((grouped, True), (interleaved, False)):
    assert (sharding.local_rows(mesh, 8) is not None) == contiguous
    (x,) = sharding.shard_batch(mesh, batch)
    mine = sorted(int(s.index[0].start) for s in x.addressable_shards)
    assert {s.device.process_index for s in x.addressable_shards} == {
        jax.process_index()
    }
    np.testing.assert_array_equal(sharding.to_host(x), batch)
    np.testing.assert_array_equal(sharding.to_host(jax.jit(lambda a: a * 2)(x)), 2 * batch)
    print("ok", contiguous, mine, flush=True)
"""


def test_batches_split_by_process_on_grouped_and_interleaved_meshes():
    port = _free_port()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SHARDING_SCRIPT, f"127.0.0.1:{port}", str(i)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=90) for p in procs]
    for p, (_, stderr) in zip(procs, outs, strict=True):
        assert p.returncode == 0, stderr[-2000:]
        assert "pixjax: error" not in stderr  # a script's normal exit is quiet
    # process 0 holds rows 0..3 of the grouped mesh; rows 0-1 and 4-5 interleaved
    assert "ok True [0, 2]" in outs[0][0] and "ok True [4, 6]" in outs[1][0]
    assert "ok False [0, 4]" in outs[0][0] and "ok False [2, 6]" in outs[1][0]
