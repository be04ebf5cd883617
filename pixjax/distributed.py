"""Several processes, several hosts: one pixjax job over JAX's multi-controller runtime.

A *job* is one process per host (or per accelerator group), all running the same
command. :func:`initialize` starts ``jax.distributed`` (the coordinator is process 0);
from then on ``jax.devices()`` lists every process's devices, so the one ``"batch"``
mesh of :mod:`pixjax.sharding` spans the whole job and every sharded computation of
pixjax (the sweep, the searches, the attacks, training) runs over all of them. Each
process feeds its own rows of every batch (``jax.make_array_from_process_local_data``)
and the results come back to every process (:func:`pixjax.sharding.to_host`), so
every process computes the same numbers as a single-process run; only process 0
writes files (:func:`on_primary`), orbax checkpoints are written with orbax's
multi-process support, and the workdir lock is held by process 0 for the whole job.

Where the job's shape comes from, in this order:

* explicit values (``pixjax run ... --coordinator HOST:PORT --num-processes N
  --process-id I``), else the environment ``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``;
* ``auto=True`` (``--distributed``): what ``jax.distributed.initialize()`` detects
  (SLURM, Cloud TPU pod slices, Open MPI, Kubernetes).

Failures are errors within a stated time, never hangs: an unreachable coordinator or
a job whose processes never all connect stops after ``timeout_s``; a process that dies
during the job makes the others' next collective fail at once (gloo / NCCL connection
errors) or, at the latest, the coordination service's heartbeat timeout
(``heartbeat_timeout_s``) stops them. Rerunning the same command on every process
resumes from the last checkpoint.

On a CPU the collectives go through gloo
(``jax_cpu_collectives_implementation="gloo"``), so a job of several local processes
runs on one machine (tests, and trying a cluster command before submitting it).
Why a mesh and ``NamedSharding`` rather than ``pmap``: the same jitted function and the
same sharding annotations run on one device, eight, or many hosts (``pmap`` needs
per-device axes and a different program per layout), and XLA inserts the collectives.
"""

from __future__ import annotations

import atexit
import dataclasses
import errno
import json
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_HEARTBEAT_S = 60
MAX_TIMEOUT_S = 86400  # a day: longer waits are mistakes, and overflow JAX's timers
# The exit status of a process whose job stopped because another process died.
EXIT_JOB_STOPPED = 1

T = TypeVar("T")


class JobError(RuntimeError):
    """The job cannot form or cannot go on (a process died, a collective failed)."""


@dataclasses.dataclass(frozen=True)
class Job:
    """The shape of a multi-process job, as given (before it is formed).

    Attributes:
      coordinator: ``"host:port"`` of process 0's coordination service, or ``None``
        (``auto`` detection).
      num_processes: processes in the job (``>= 1``), or ``None`` (``auto``).
      process_id: this process, ``0 .. num_processes - 1``, or ``None`` (``auto``).
      auto: let ``jax.distributed.initialize()`` detect the cluster (SLURM, Cloud
        TPU, Open MPI, Kubernetes) for the values left ``None``.
      timeout_s: seconds within which the job must form (every process connected),
        else :class:`JobError`.
      heartbeat_timeout_s: seconds after which a silent process is declared dead and
        the others stop.
    """

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    auto: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_S


def _int_value(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    text = str(value).strip()
    if isinstance(value, bool) or not text.isascii():
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None


def job_from(
    coordinator: str | None = None,
    num_processes: int | str | None = None,
    process_id: int | str | None = None,
    *,
    auto: bool = False,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    heartbeat_timeout_s: int = DEFAULT_HEARTBEAT_S,
    environ: Mapping[str, str] | None = None,
) -> Job | None:
    """The :class:`Job` asked for by flags and the environment, checked, or ``None``
    for a single-process run (nothing given).

    Args:
      coordinator, num_processes, process_id: explicit values (e.g. CLI flags); each
        ``None`` falls back to ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``,
        ``JAX_PROCESS_ID``.
      auto: cluster detection by ``jax.distributed.initialize()`` for what is unset.
      timeout_s: positive seconds for the job to form.
      heartbeat_timeout_s: positive whole seconds.
      environ: the environment (default ``os.environ``).

    Raises:
      ValueError: naming the flag: a partial explicit job (a coordinator without a
        process count, ...), a process count below 1, a process id outside
        ``0 .. num_processes - 1``, an address not ``host:port`` with a port in
        1..65535, or a non-positive timeout.
    """
    env = os.environ if environ is None else environ
    coordinator = coordinator or env.get(ENV_COORDINATOR) or None
    n = _int_value("--num-processes", num_processes)
    if n is None:
        n = _int_value(ENV_NUM_PROCESSES, env.get(ENV_NUM_PROCESSES))
    pid = _int_value("--process-id", process_id)
    if pid is None:
        pid = _int_value(ENV_PROCESS_ID, env.get(ENV_PROCESS_ID))
    if isinstance(timeout_s, bool) or not (
        isinstance(timeout_s, int | float) and 0 < timeout_s <= MAX_TIMEOUT_S
    ):
        raise ValueError(
            f"--timeout: expected seconds in (0, {MAX_TIMEOUT_S}], got {timeout_s!r}"
        )
    hb = _int_value("--heartbeat-timeout", heartbeat_timeout_s)
    if hb is None or not 1 <= hb <= MAX_TIMEOUT_S:
        raise ValueError(
            f"--heartbeat-timeout: expected whole seconds in 1..{MAX_TIMEOUT_S}, got "
            f"{heartbeat_timeout_s!r}"
        )
    given = {
        "--coordinator": coordinator,
        "--num-processes": n,
        "--process-id": pid,
    }
    if not auto and all(v is None for v in given.values()):
        return None
    if not auto:
        missing = [k for k, v in given.items() if v is None]
        if missing:
            raise ValueError(
                f"{', '.join(missing)}: required for a multi-process job (or pass "
                "--distributed to detect SLURM / Cloud TPU / Open MPI); got only "
                + ", ".join(f"{k} {v}" for k, v in given.items() if v is not None)
            )
    if n is not None and n < 1:
        raise ValueError(f"--num-processes: expected an integer >= 1, got {n}")
    if pid is not None and (pid < 0 or (n is not None and pid >= n)):
        upper = f"{n - 1}" if n is not None else "num_processes - 1"
        raise ValueError(f"--process-id: expected 0..{upper}, got {pid}")
    if coordinator is not None:
        _split_address(coordinator)
    return Job(coordinator, n, pid, bool(auto), float(timeout_s), hb)


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = str(address).rpartition(":")
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    ok = (
        sep
        and bare
        and re.fullmatch(r"[A-Za-z0-9._:-]+", bare)
        and (":" not in bare or host.startswith("["))  # IPv6 in brackets
        and port.isascii()
        and port.isdigit()
        and 1 <= int(port) <= 65535
    )
    if not ok:
        raise ValueError(
            f"--coordinator: expected HOST:PORT with a port in 1..65535, got {address!r}"
        )
    return host.strip("[]"), int(port)


def _wait_reachable(host: str, port: int, deadline: float) -> None:
    """Polls a TCP connection to the coordinator until ``deadline``."""
    last = ""
    while True:
        try:
            with socket.create_connection((host, port), timeout=2.0):
                return
        except OSError as e:
            last = e.strerror or type(e).__name__
        if time.monotonic() >= deadline:
            raise JobError(
                f"--coordinator: {host}:{port} was not reachable within the timeout "
                f"({last}); start process 0 of the job there, or check the address"
            )
        time.sleep(0.25)


def _check_port_free(host: str, port: int) -> None:
    """Process 0 binds the coordinator port: it must be free."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            why = f"--coordinator: process 0 cannot listen on {host}:{port}"
            if e.errno == errno.EADDRINUSE:
                raise JobError(
                    f"{why} ({e.strerror}); another process 0 (or another program) "
                    "holds it: a job has exactly one process 0, and each job needs a "
                    "free port"
                ) from None
            raise JobError(
                f"{why} ({e.strerror or e}); process 0 runs the coordinator, so the "
                "address must name the host process 0 runs on"
            ) from None


_STATE: dict[str, Any] = {"job": None, "calls": 0}


def initialize(job: Job) -> None:
    """Forms the job: ``jax.distributed.initialize`` with checks and a deadline.

    Call it before any other jax call of the process (the CLI does it for
    ``pixjax run ... --coordinator ...``). On a CPU it selects gloo collectives.

    Raises:
      JobError: the coordinator unreachable, its port taken, the job not formed
        within ``job.timeout_s`` (this exits the process with one line on stderr:
        JAX's own connect cannot be interrupted), or processes started with
        different process counts (every process raises it). A second process 0 is
        refused by its port; a repeated non-zero id, or one beyond process 0's
        count, is refused inside JAX (which aborts those processes) and the others
        end at the timeout.
    """
    import jax

    if _STATE["job"] is not None or _in_job():
        return
    deadline = time.monotonic() + job.timeout_s
    if job.coordinator is not None and job.process_id is not None:
        host, port = _split_address(job.coordinator)
        if job.process_id == 0:
            _check_port_free(host, port)
        else:
            _wait_reachable(host, port, deadline)
    # The CPU backend's collectives (harmless where the devices are GPUs or TPUs).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")

    who = f"process {job.process_id}" if job.process_id is not None else "a process"

    def too_late() -> None:
        sys.stdout.flush()
        print(
            f"pixjax: error: {who} of the job: the job did not form within "
            f"{job.timeout_s:g} s (coordinator {job.coordinator or 'auto-detected'}, "
            f"{job.num_processes or '?'} processes): start every process with the "
            "same --coordinator and --num-processes and distinct --process-id, or "
            "raise --timeout",
            file=sys.stderr,
            flush=True,
        )
        os._exit(2)

    watchdog = threading.Timer(max(deadline - time.monotonic(), 0.1), too_late)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=job.coordinator,
            num_processes=job.num_processes,
            process_id=job.process_id,
            # JAX's own limit after ours: our watchdog speaks first, in one line.
            initialization_timeout=int(job.timeout_s) + 30,
            heartbeat_timeout_seconds=int(job.heartbeat_timeout_s),
            **({} if job.auto else {"cluster_detection_method": "deactivate"}),
        )
    finally:
        watchdog.cancel()
    _STATE["job"] = job
    _check_consistent(job, deadline)
    if jax.process_count() > 1:
        _watch()
        host = _split_address(job.coordinator)[0] if job.coordinator else None
        _liveness(host)


def _client() -> Any:
    """The coordination-service client of the job (key-value store, barriers)."""
    from jax._src import distributed

    client = distributed.global_state.client
    if client is None:
        raise JobError("pixjax.distributed: no job (call initialize first)")
    return client


def _check_consistent(job: Job, deadline: float) -> None:
    """Every process compares the process count it was started with to the others'
    and to the job the coordinator formed (raises the same :class:`JobError` on every
    process)."""
    import jax

    record = {
        "num_processes": job.num_processes,
        "process_id": job.process_id,
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    records = _exchange("pixjax/job", record, max(deadline - time.monotonic(), 5.0))
    counts = {r["num_processes"] for r in records if r["num_processes"] is not None}
    if len(counts) > 1 or (counts and counts != {jax.process_count()}):
        raise JobError(
            "--num-processes: the processes of this job were started with different "
            "process counts ("
            + ", ".join(
                f"process {i}: {r['num_processes']}" for i, r in enumerate(records)
            )
            + f"; the coordinator formed a job of {jax.process_count()}); start "
            "every process with the same --num-processes"
        )


def _exchange(prefix: str, record: dict[str, Any], timeout_s: float) -> list[dict]:
    """Every process's ``record`` (JSON values), in process order, through the job's
    key-value store; returns once every process has read them all (so that none
    leaves over them while another still reads)."""
    import jax

    client = _client()
    ms = int(timeout_s * 1000)
    text = json.dumps(record, sort_keys=True, default=str)
    client.key_value_set(f"{prefix}/{jax.process_index()}", text)
    records = [
        json.loads(client.blocking_key_value_get(f"{prefix}/{i}", ms))
        for i in range(jax.process_count())
    ]
    client.wait_at_barrier(f"{prefix}/read", ms)
    return records


def _next_key(kind: str, name: str) -> str:
    """A fresh key of the job's store for the next collective step: every process
    makes the same calls in the same order, so the numbers agree."""
    _STATE["calls"] += 1
    return f"pixjax/{kind}/{_STATE['calls']}/{name}"


def _in_job() -> bool:
    """Whether ``jax.distributed`` runs in this process (started by
    :func:`initialize` or by the user's own ``jax.distributed.initialize()``); never
    imports jax."""
    if "jax" not in sys.modules:
        return False
    from jax._src import distributed

    return distributed.global_state.client is not None


def is_multiprocess() -> bool:
    """Whether this process is part of a job of several processes."""
    return process_count() > 1


def process_index() -> int:
    """This process's index in the job (``0`` without a job)."""
    if not _in_job():
        return 0
    import jax

    return jax.process_index()


def process_count() -> int:
    """The processes of the job (``1`` without a job)."""
    if not _in_job():
        return 1
    import jax

    return jax.process_count()


def is_primary() -> bool:
    """Process 0 (the only one that writes files); ``True`` in a single process."""
    return process_index() == 0


def describe() -> str:
    """``"process I of N"`` (for messages and lock files)."""
    return f"process {process_index()} of {process_count()}"


def on_primary(name: str, fn: Callable[[], T], timeout_s: float = 3600.0) -> T | None:
    """Runs ``fn`` on process 0 only and makes its outcome the job's: when ``fn``
    raises (``ValueError`` / ``OSError``), every process raises the same error.

    In a single process this is ``fn()``. Every process must call it, in the same
    order (the calls are numbered). Returns ``fn()``'s value on process 0, ``None``
    elsewhere.

    Raises:
      what ``fn`` raised, on process 0; on the others the same message as a
      ``ValueError`` (for ``ValueError`` s), an ``OSError`` (for ``OSError`` s) or a
      :class:`JobError` (anything else).
    """
    if not is_multiprocess():
        return fn()
    key = _next_key("primary", name)
    client = _client()
    if is_primary():
        try:
            value = fn()
        except Exception as e:  # the others must not wait for an outcome in vain
            client.key_value_set(
                key, json.dumps({"error": type(e).__name__, "message": str(e)})
            )
            raise
        client.key_value_set(key, json.dumps({"error": None}))
        return value
    outcome = json.loads(client.blocking_key_value_get(key, int(timeout_s * 1000)))
    if outcome["error"] is None:
        return None
    kind, message = outcome["error"], outcome["message"]
    if kind in ("OSError", "FileNotFoundError", "PermissionError"):
        raise OSError(message)
    if kind in ("ValueError", "ConfigError"):
        raise ValueError(message)
    raise JobError(f"process 0 failed ({kind}: {message})")


def barrier(name: str, timeout_s: float = 3600.0) -> None:
    """Waits until every process of the job reaches ``barrier(name)`` (no-op in a
    single process)."""
    if is_multiprocess():
        _client().wait_at_barrier(_next_key("barrier", name), int(timeout_s * 1000))


def stopped_message(error: BaseException) -> str:
    """The one line a process prints when its job cannot go on."""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return (
        f"{describe()}: the job stopped: {type(error).__name__}: {first[:300]} "
        "(another process of the job died or was killed?); rerun the same command on "
        "every process to resume from the last checkpoint"
    )


# Set when a process leaves the job with an error: {"process", "code", "line"}.
_STOP_KEY = "pixjax/stop"
# Held by whoever prints this process's last line and exits (the main thread leaving,
# or the watcher relaying another process's stop): one line, one exit.
_EXIT = threading.Lock()


def _exit_now(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    if is_primary() and is_multiprocess():
        # process 0 hosts the coordination service: let the others leave first, so
        # that theirs is a clear line, not the loss of the service
        time.sleep(1.0)
    os._exit(code)


def _watch() -> None:
    """A daemon thread: when another process leaves the job with an error, print its
    line here too and leave with its exit status (instead of waiting for the next
    collective or the heartbeat timeout)."""
    client = _client()
    me = describe()

    def run() -> None:
        while True:
            # short waits: the thread is never long inside a runtime call, which
            # the interpreter's exit would abort
            try:
                raw = client.blocking_key_value_get(_STOP_KEY, 1000)
            except Exception as e:  # noqa: BLE001 - a timeout, or the service gone
                if _STATE.get("leaving"):
                    return
                if "DEADLINE_EXCEEDED" in str(e):
                    continue
                raw = json.dumps(
                    {
                        "process": 0,
                        "code": EXIT_JOB_STOPPED,
                        "line": f"lost the coordination service ({str(e)[:120]})",
                    }
                )
            if _STATE.get("leaving"):  # the job ended well: woken to return
                return
            stop = json.loads(raw)
            who, line = f"process {stop['process']}", stop["line"]
            if not line.startswith(f"{who} of "):  # the line names its process
                line = f"{who}: {line}"
            with _EXIT:
                print(f"pixjax: error: {me}: the job stopped: {line}", file=sys.stderr)
                _exit_now(int(stop["code"]))

    thread = threading.Thread(target=run, name="pixjax-job-watch", daemon=True)
    thread.start()
    _STATE["watcher"] = thread
    # A script's normal exit (without finish) shuts the runtime down: not a stop.
    # (Registered after jax's own exit handler, so it runs before it.)
    atexit.register(_stop_watching)


def _stop_watching() -> None:
    """Ends the watcher (within its one-second wait) before the runtime shuts down."""
    _STATE["leaving"] = True
    watcher = _STATE.get("watcher")
    if watcher is not None and watcher is not threading.current_thread():
        watcher.join(timeout=5.0)


_LIVENESS_KEY = "pixjax/liveness"


def _stop_everyone(process: int, code: int, line: str) -> None:
    """Tells every process of the job to stop (their watchers print ``line``)."""
    try:
        _client().key_value_set(
            _STOP_KEY, json.dumps({"process": process, "code": code, "line": line})
        )
    except Exception:  # noqa: BLE001 - someone told them first, or the job is gone
        pass


def _liveness(host: str | None) -> None:
    """A TCP connection from every process to process 0, held for the whole job: the
    kernel closes it the moment a process dies (``kill -9`` included), so the others
    stop at once with a clear line instead of at the heartbeat timeout. Best effort:
    where the connection cannot be made (a firewall), JAX's heartbeats still stop
    the job."""
    import jax

    client = _client()
    me = jax.process_index()

    def hold(conn: socket.socket, who: int) -> None:
        try:
            while conn.recv(64):
                pass
        except OSError:
            pass
        if _STATE.get("leaving"):
            return
        if me == 0:
            _stop_everyone(
                who,
                EXIT_JOB_STOPPED,
                "died (its connection closed without leaving the job); rerun the "
                "same command on every process to resume from the last checkpoint",
            )
        else:
            with _EXIT:
                print(
                    f"pixjax: error: {describe()}: the job stopped: process 0 died "
                    "(the coordinator; its connection closed); rerun the same command "
                    "on every process to resume from the last checkpoint",
                    file=sys.stderr,
                )
                _exit_now(EXIT_JOB_STOPPED)

    def spawn(target, *args) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    ms = 60_000
    if me == 0:
        server = socket.create_server(("", 0))
        address = f"{host or socket.gethostname()}:{server.getsockname()[1]}"
        client.key_value_set(_LIVENESS_KEY, address)

        def accept() -> None:
            while True:
                try:
                    conn, _ = server.accept()
                    who = int(conn.recv(16).decode() or "-1")
                except (OSError, ValueError):
                    return
                spawn(hold, conn, who)

        spawn(accept)
        _STATE["liveness"] = server  # kept open for the life of the process
    else:
        peer_host, _, port = client.blocking_key_value_get(
            _LIVENESS_KEY, ms
        ).rpartition(":")
        try:
            conn = socket.create_connection((peer_host, int(port)), timeout=10.0)
            conn.settimeout(None)
            conn.sendall(str(me).encode().ljust(16))
        except OSError:
            return
        _STATE["liveness"] = conn  # kept open for the life of the process
        spawn(hold, conn, 0)


def finish(code: int, line: str | None = None) -> int:
    """Leaves a job (the CLI's last step in every process).

    In a single process this prints ``line`` (if any) to stderr and returns ``code``.
    In a job: on success, a final barrier, then the normal exit (JAX shuts the
    runtime down); on failure, ``line`` is printed as ``pixjax: error: ...``, the
    others are told (they print it too and stop at once, with the same exit status)
    and the process exits immediately with ``code`` (waiting for a shutdown barrier
    that a failed process never reaches would only add a crash).
    """
    if not is_multiprocess():
        if line is not None:
            print(f"pixjax: error: {line}", file=sys.stderr)
        return code
    if code == 0:
        try:
            _STATE["leaving"] = True
            barrier("finish", timeout_s=600.0)
            _stop_watching()
            return 0
        except Exception as e:  # noqa: BLE001 - any runtime error: the job is gone
            code, line = EXIT_JOB_STOPPED, stopped_message(e)
    if not _EXIT.acquire(blocking=False):  # already leaving (e.g. a signal in finish)
        return code
    # (never released: this process ends here)
    _STATE["leaving"] = True
    if line is not None:
        print(f"pixjax: error: {line}", file=sys.stderr)
    _stop_everyone(process_index(), code, line or "failed")
    _exit_now(code)
    return code  # not reached


def agree(name: str, record: dict[str, Any], timeout_s: float = 600.0) -> None:
    """Every process of the job must have been started with the same ``record`` (e.g.
    the experiment, its config and the workdir): a job whose processes compute
    different things would give wrong numbers without an error.

    Raises:
      ValueError: on every process, naming the processes and the keys that differ
        from process 0's, with both values.
    """
    if not is_multiprocess():
        return
    records = _exchange(_next_key("agree", name), record, timeout_s)
    first = _flat(records[0])
    diffs = []
    for i, rec in enumerate(records[1:], start=1):
        other = _flat(rec)
        for key in sorted(set(first) | set(other)):
            if first.get(key) != other.get(key):
                diffs.append(
                    f"process {i} has {key}={other.get(key)!r}, process 0 "
                    f"{first.get(key)!r}"
                )
    if diffs:
        raise ValueError(
            f"{name}: the processes of the job were started differently ("
            + "; ".join(diffs[:4])
            + ("; ..." if len(diffs) > 4 else "")
            + "); start every process with the same command"
        )


def _flat(record: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(record, dict):
        out: dict[str, Any] = {}
        for k, v in record.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): record}


__all__ = [
    "agree",
    "DEFAULT_HEARTBEAT_S",
    "DEFAULT_TIMEOUT_S",
    "Job",
    "JobError",
    "barrier",
    "describe",
    "finish",
    "initialize",
    "is_multiprocess",
    "is_primary",
    "job_from",
    "on_primary",
    "process_count",
    "process_index",
]
