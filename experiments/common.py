"""Shared plumbing of the experiments: config overrides, run directories, metadata.

This is the only code (with the experiment mains) that reads flags or touches files.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import math
import os
import pathlib
import platform
import shlex
import sys
import time
import types
import typing
from typing import Any

from pixjax.checkpoints import _json_default, atomic_write, write_json_atomic

# The shipped checkpoints: the repository's checkpoints/, installed as the package
# pixjax._checkpoints (found the same way in a checkout and in a wheel install).
SHIPPED_CHECKPOINTS = pathlib.Path(
    str(importlib.resources.files("pixjax._checkpoints"))
)
DEFAULT_CHECKPOINT = "lenet5-mnist"


class ConfigError(ValueError):
    """A bad configuration value (raised before any work or file write)."""


def require_finite(config: Any) -> None:
    """Every float (and every float in a tuple) of ``config`` must be finite: a NaN or
    infinite hyperparameter never reaches the work.

    Raises:
      ConfigError: naming the field.
    """
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(
                    f"{field.name}: expected a finite number, got {value!r}"
                )


def require_positive(config: Any, *names: str) -> None:
    """Each named field must be a positive number."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not value > 0:
            raise ConfigError(f"{name}: expected a positive number, got {value!r}")


def require_nonempty(config: Any, *names: str) -> None:
    """Each named tuple field must hold at least one value."""
    for name in names:
        if not getattr(config, name):
            raise ConfigError(f"{name}: expected at least one value, got none")


def require_nums(
    config: Any, name: str, image_shape, per_channel: bool = False
) -> None:
    """Each value of the tuple field ``name`` (a Num: pixels, or (pixel, channel)
    entries with ``per_channel``) must lie in ``1 .. H W (C)``; errors name the field
    the user set."""
    h, w, c = image_shape
    units = h * w * (c if per_channel else 1)
    values = getattr(config, name)
    if not values:
        raise ConfigError(f"{name}: expected at least one value, got none")
    for n in values:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= units:
            raise ConfigError(
                f"{name}: expected 1..{units} (the image has {h}x{w} pixels"
                + (f" x {c} channels" if per_channel else "")
                + f"), got {n!r}"
            )


def require_magnitudes(values) -> None:
    for r in values:
        if not 0 < r <= 255:
            raise ConfigError(f"magnitudes: expected values in (0, 255], got {r}")


def choose_preset(preset: str, presets: dict[str, Any]) -> Any:
    """``presets[preset]`` or a clear error listing the presets."""
    if preset not in presets:
        raise ValueError(f"preset: expected one of {sorted(presets)}, got {preset!r}")
    return presets[preset]


def resolve_checkpoint(value: str | None) -> pathlib.Path | None:
    """``None`` / ``""`` -> no checkpoint; a shipped name (``lenet5-mnist``) -> its
    directory among the shipped checkpoints; anything else is a path."""
    if not value:
        return None
    shipped = SHIPPED_CHECKPOINTS / value
    if "/" not in value and shipped.is_dir():
        return shipped
    return pathlib.Path(value).expanduser()


def shipped_checkpoints() -> list[str]:
    """The names of the shipped checkpoints (``lenet5-mnist``, ...)."""
    return sorted(
        p.name
        for p in SHIPPED_CHECKPOINTS.iterdir()
        if p.is_dir() and (p / "metadata.json").is_file()
    )


def load_checkpoint(
    model_name: str, checkpoint: str | None, image_shape: typing.Sequence[int]
) -> tuple[Any, Any, dict[str, Any]]:
    """The one checkpoint loader of the experiments: ``(module, variables, meta)``.

    Args:
      model_name: the architecture the config asks for (``config.model``); an unknown
        name is an error listing the registered models, a checkpoint of another
        architecture is refused (:func:`pixjax.checkpoints.load_model`).
      checkpoint: a shipped name (``lenet5-mnist``, see :func:`shipped_checkpoints`) or
        a model directory written by ``pixjax run train`` /
        :func:`pixjax.checkpoints.save_model`.
      image_shape: ``(H, W, C)`` of the images the run feeds the model; any size the
        architecture takes with these weights is accepted (the recorded input shape
        is a default: a converted ResNet records 224x224 and runs on 32x32).

    Raises:
      ConfigError: no checkpoint, or images the model cannot take.
      FileNotFoundError: no such checkpoint (the message lists the shipped ones).
      ValueError: unknown model, another architecture, a broken checkpoint.
    """
    from pixjax import checkpoints, models

    models.get_model(model_name)  # unknown name -> error listing the models
    path = resolve_checkpoint(checkpoint)
    if path is None:
        raise ConfigError(
            "checkpoint: required (a shipped name such as "
            f"{DEFAULT_CHECKPOINT!r} or a model directory written by `pixjax run "
            "train` / pixjax.checkpoints.save_model)"
        )
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint: {str(path)!r} does not exist; shipped checkpoints: "
            f"{shipped_checkpoints()}"
        )
    module, variables, meta = checkpoints.load_model(path, arch=model_name)
    if tuple(meta["input_shape"]) != tuple(image_shape):
        try:
            models.check_input(module, variables, tuple(image_shape))
        except ValueError as e:
            raise ConfigError(
                f"dataset: images of shape {tuple(image_shape)} do not fit checkpoint "
                f"{str(path)!r} (recorded input {tuple(meta['input_shape'])}): {e}"
            ) from None
    return module, variables, meta


def class_names(
    dataset_names: Any, meta: dict[str, Any], num_classes: int
) -> list[str]:
    """The names of a model's classes: the dataset's, else the checkpoint metadata's,
    else ``"0" .. "num_classes - 1"`` (also when the count does not match)."""
    names = [str(c) for c in (dataset_names or ())]
    names = names or [str(c) for c in meta.get("class_names", [])]
    if len(names) != num_classes:
        names = [str(c) for c in range(num_classes)]
    return names


def pack_uint8(images: Any) -> dict[str, Any]:
    """A uint8 array as a compact JSON value for ``results.json``: ``{"dtype":
    "uint8", "shape": [...], "base64": "..."}`` (the raw bytes, C order). Used for the
    few example images a figure is redrawn from (a nested list would be one line per
    value in the indented file: millions of lines for a few 224x224 photos).

    Raises:
      ValueError: not a uint8 array.
    """
    import base64

    import numpy as np

    a = np.asarray(images)
    if a.dtype != np.uint8:
        raise ValueError(f"images: expected dtype uint8, got {a.dtype}")
    return {
        "dtype": "uint8",
        "shape": list(a.shape),
        "base64": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii"),
    }


def float_to_uint8(images: Any) -> Any:
    """Images in ``[0, 1]`` (numpy or jax, any shape) as uint8 pixel levels
    ``round(255 x)`` on the host, e.g. perturbed images kept for a figure (exact for
    whole-level images such as quantised pixel changes)."""
    import numpy as np

    x = np.asarray(images, np.float64)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def unpack_uint8(packed: dict[str, Any]) -> Any:
    """The uint8 numpy array of :func:`pack_uint8`.

    Raises:
      ValueError: not such a value, or bytes that do not fill its shape.
    """
    import base64
    import binascii

    import numpy as np

    if not (
        isinstance(packed, dict)
        and packed.get("dtype") == "uint8"
        and isinstance(packed.get("shape"), list)
        and isinstance(packed.get("base64"), str)
    ):
        raise ValueError(
            "images: expected a packed uint8 array {'dtype': 'uint8', 'shape', "
            f"'base64'}}, got {type(packed).__name__}"
        )
    shape = tuple(int(d) for d in packed["shape"])
    try:
        raw = base64.b64decode(packed["base64"], validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError(f"images: invalid base64 ({e})") from None
    if len(raw) != math.prod(shape):
        raise ValueError(
            f"images: {len(raw)} bytes do not fill the shape {list(shape)}"
        )
    return np.frombuffer(raw, np.uint8).reshape(shape).copy()


def _parse_scalar(text: str, typ: Any, key: str) -> Any:
    if typ is bool:
        low = text.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true or false, got {text!r}")
    if typ is int:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {text!r}") from None
    if typ is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {text!r}") from None
    return text


def parse_value(text: str, typ: Any, key: str) -> Any:
    """Parses a command-line value for a dataclass field of type ``typ``.

    Tuples are comma separated (``nums=1,2,4``); ``none`` clears an optional field.
    """
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null", "") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(text, inner[0], key)
    if origin is tuple:
        elem = args[0] if args else str
        parts = [p for p in text.split(",") if p.strip()]
        return tuple(_parse_scalar(p.strip(), elem, key) for p in parts)
    return _parse_scalar(text, typ, key)


def apply_overrides(config: Any, overrides: list[str]) -> Any:
    """Returns ``config`` with ``key=value`` overrides applied (unknown keys: error)."""
    hints = typing.get_type_hints(type(config))
    names = [f.name for f in dataclasses.fields(config)]
    changes = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"override: expected KEY=VALUE, got {item!r}")
        if key not in names:
            raise ConfigError(
                f"override: unknown key {key!r}; expected one of {sorted(names)}"
            )
        changes[key] = parse_value(value, hints[key], key)
    return dataclasses.replace(config, **changes)


# Fields that change only how a run looks while it runs, not what it computes.
RUN_NEUTRAL_FIELDS = ("progress",)
CONFIG_FILE = "config.json"
LOCK_FILE = ".pixjax.lock"
# The workdir locks this process holds (workdir -> open fd, held until exit): the
# process's own OS resources, not experiment state.
_HELD_LOCKS: dict[pathlib.Path, int] = {}


def _lock_workdir(path: pathlib.Path, command: str) -> None:
    """Takes an exclusive ``flock`` on ``path/.pixjax.lock`` for the life of this
    process (the kernel drops it when the process dies, so a killed run never blocks
    a rerun).

    Raises:
      ConfigError: another process holds it (named by its pid and command).
    """
    import fcntl

    if path in _HELD_LOCKS:
        return
    lock = path / LOCK_FILE
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with os.fdopen(fd) as f:
            holder = f.read().strip() or "unknown"
        raise ConfigError(
            f"workdir: {str(path)!r} is in use by another pixjax run ({holder}); wait "
            "for it to finish or use another workdir"
        ) from None
    from pixjax import distributed

    job = (
        f" ({distributed.describe()} of a job)" if distributed.is_multiprocess() else ""
    )
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}{job}: {command}\n".encode())
    _HELD_LOCKS[path] = fd


def _refuse_foreign(path: pathlib.Path) -> None:
    """A directory with files but no run record is not pixjax's: never use it."""
    if (path / CONFIG_FILE).exists() or not path.is_dir():
        return
    others = sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE)
    if others:
        raise ConfigError(
            f"workdir: {str(path)!r} holds files that are not a pixjax run "
            f"({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}); use an "
            "empty or new directory"
        )


def _read_record(
    file: pathlib.Path, experiment: str, fields: set[str]
) -> dict[str, Any]:
    """The run record in ``config.json`` (``{"experiment", "config"}``; a bare config
    with exactly this experiment's ``fields`` is a record of an earlier version).

    Raises:
      ConfigError: it is not one.
    """
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        record, why = None, str(e)
    else:
        why = "not a pixjax run record"
    if isinstance(record, dict) and "experiment" not in record:
        # a bare config, as earlier versions wrote it: only with this config's fields
        record = {"experiment": experiment, "config": record}
        if set(record["config"]) != fields:
            record = None
    if not (isinstance(record, dict) and isinstance(record.get("config"), dict)):
        raise ConfigError(
            f"workdir: {str(file)!r} is unreadable ({why}); use another workdir or "
            "--overwrite"
        )
    return record


def _claim(path: pathlib.Path, experiment: str, config: Any, overwrite: bool) -> None:
    """Records ``experiment`` and ``config`` in ``config.json``; a rerun must match
    (``RUN_NEUTRAL_FIELDS`` aside) unless ``overwrite``, which first removes every file
    of the old run. A directory holding anything else is never used (nor emptied)."""
    cfg = to_jsonable(dataclasses.asdict(config))
    record = {"experiment": experiment, "config": cfg}
    file = path / CONFIG_FILE
    others = sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE)
    if not file.exists():
        _refuse_foreign(path)
        write_json_atomic(file, record)
        return
    if overwrite:
        try:
            raw = json.loads(file.read_text())
        except (OSError, ValueError):
            raw = None
        if not (
            isinstance(raw, dict)
            and isinstance(raw.get("experiment"), str)
            and isinstance(raw.get("config"), dict)
        ):
            raise ConfigError(
                f"workdir: {str(file)!r} is not a pixjax run record, and --overwrite "
                "deletes only pixjax runs; use a new directory"
            )
        import shutil

        for name in others:
            entry = path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        write_json_atomic(file, record)
        return
    previous = _read_record(file, experiment, set(cfg))
    old_cfg = previous["config"]
    diff = sorted(
        k
        for k in set(cfg) | set(old_cfg)
        if k not in RUN_NEUTRAL_FIELDS and cfg.get(k) != old_cfg.get(k)
    )
    if previous.get("experiment") != experiment or diff:
        what = (
            f"a {previous.get('experiment')!r} run"
            if previous.get("experiment") != experiment
            else "a run with another configuration (differs in: "
            + ", ".join(
                f"{k}: {old_cfg.get(k)!r} there, {cfg.get(k)!r} now" for k in diff
            )
            + ")"
        )
        raise ConfigError(
            f"workdir: {str(path)!r} holds {what}; rerun with the same settings to "
            "resume, use a new workdir, or pass --overwrite to delete it"
        )


def prepare_workdir(
    workdir: str | os.PathLike,
    config: Any = None,
    *,
    experiment: str | None = None,
    overwrite: bool = False,
    command: str | None = None,
) -> pathlib.Path:
    """Creates (or reopens) a run directory, before any long work.

    Checks that it is a writable directory, locks it for this process, and with
    ``config`` makes it the run's own (``command``, the command line, is shown to a
    second process that finds it locked): the first run records ``experiment`` and
    ``config`` in ``config.json``; a rerun must match it (it then resumes and replaces
    the outputs), a different one is refused; ``overwrite`` deletes the old run first.

    Raises:
      ConfigError: an empty path, a file, an unwritable place, a workdir in use by
        another process, or one holding another run.
    """
    if not str(workdir).strip():
        raise ConfigError("workdir: expected a directory path, got ''")
    path = pathlib.Path(workdir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"workdir: {str(path)!r} exists and is not a directory")
    if config is not None:
        _refuse_foreign(path)  # before the lock file is written into it
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ConfigError(
            f"workdir: {str(path)!r} is not a writable directory ({e.strerror or e})"
        ) from None
    _lock_workdir(path, command or format_command(None))
    if config is not None:
        _claim(path, experiment or type(config).__module__, config, overwrite)
    return path


def format_command(argv: list[str] | None) -> str:
    """The command line as a shell would read it (``sys.argv`` when ``argv`` is None)."""
    argv = list(sys.argv if argv is None else argv)
    if argv and os.path.basename(argv[0]) == "pixjax":
        argv[0] = "pixjax"
    return " ".join(shlex.quote(a) for a in argv)


def run_metadata(config: Any, *, command: str | None = None, **extra: Any) -> dict:
    """What a results file records about the run: the command (``command``, default
    ``sys.argv``), the config, versions, devices, time, and ``extra``."""
    import jax

    return {
        "command": command or format_command(None),
        "config": dataclasses.asdict(config),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "pixjax": __import__("pixjax").__version__,
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
        **extra,
    }


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text))


def write_csv_atomic(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    if not rows:
        write_text_atomic(path, "")
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def save_figure_atomic(fig: Any, path: pathlib.Path) -> None:
    fmt = path.suffix.lstrip(".") or "png"
    atomic_write(
        path,
        lambda f: fig.savefig(f, format=fmt, dpi=120, bbox_inches="tight"),
        binary=True,
    )


# --- results.json: the one file a report is rebuilt from -------------------------------

RESULTS_FILE = "results.json"
REPORT_FILE = "report.md"
# The structure of results.json; bump it whenever an experiment changes what it writes
# there, so that `pixjax report` refuses files it cannot read instead of misreading them.
RESULTS_FORMAT = 2


def results_document(experiment: str, results: dict[str, Any]) -> dict[str, Any]:
    """``results`` as written to ``results.json``: JSON values only (arrays as lists,
    non-finite numbers as ``None``), headed by ``experiment``, ``results_format`` and
    the pixjax version. Reports are rendered from this form, never from the in-memory
    one, so a run and `pixjax report` write the same ``report.md``."""
    from pixjax.checkpoints import strict_json

    head = {
        "experiment": experiment,
        "results_format": RESULTS_FORMAT,
        "pixjax_version": __import__("pixjax").__version__,
    }
    return strict_json(to_jsonable({**head, **results}))


def write_results(
    workdir: pathlib.Path, experiment: str, results: dict[str, Any]
) -> dict[str, Any]:
    """Writes ``results.json`` atomically; returns the document written."""
    doc = results_document(experiment, results)
    write_json_atomic(pathlib.Path(workdir) / RESULTS_FILE, doc)
    return doc


def read_results(
    workdir: str | os.PathLike, experiments: typing.Iterable[str]
) -> dict[str, Any]:
    """The checked ``results.json`` of a finished run in ``workdir``.

    Args:
      workdir: the run directory.
      experiments: the experiment names this pixjax can report.

    Raises:
      ConfigError: naming the file: no such directory or file, not JSON, not a results
        object, an unknown experiment, or a results format other than this version's.
    """
    path = pathlib.Path(workdir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"workdir: {str(path)!r} is not a directory")
    file = path / RESULTS_FILE
    if not file.is_file():
        raise ConfigError(
            f"workdir: {str(path)!r} has no {RESULTS_FILE} (a run writes it when it "
            "finishes; run `pixjax run EXPERIMENT --workdir ...` first)"
        )
    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"{RESULTS_FILE}: {str(file)!r} is unreadable ({e})"
        ) from None
    names = sorted(experiments)
    if not isinstance(doc, dict) or "experiment" not in doc:
        raise ConfigError(
            f"{RESULTS_FILE}: {str(file)!r} is not a pixjax results file (no "
            "'experiment' field)"
        )
    if doc["experiment"] not in names:
        raise ConfigError(
            f"{RESULTS_FILE}: {str(file)!r} was written by experiment "
            f"{doc['experiment']!r}; expected one of {names}"
        )
    if doc.get("results_format") != RESULTS_FORMAT:
        raise ConfigError(
            f"{RESULTS_FILE}: {str(file)!r} has results format "
            f"{doc.get('results_format')!r} (pixjax {doc.get('pixjax_version', '?')}); "
            f"this pixjax ({__import__('pixjax').__version__}) reads format "
            f"{RESULTS_FORMAT}: rerun the experiment with this version"
        )
    return doc


def render(workdir: pathlib.Path, module: Any, doc: dict[str, Any]) -> list[str]:
    """Writes an experiment's figures and ``report.md`` from its results document
    (``module.report(doc)`` and ``module.plots(dir, doc)``); returns the files.

    Everything is made first (the figures in a temporary folder inside ``workdir``)
    and moved into place only when all of it succeeded, so a results document without
    the structure its experiment writes changes nothing.

    Raises:
      ConfigError: the document lacks a field, or has one of another type, that the
        report or a figure needs (naming ``results.json`` and the error).
    """
    import shutil
    import tempfile

    workdir = pathlib.Path(workdir)
    scratch = pathlib.Path(tempfile.mkdtemp(prefix=".render-", dir=workdir))
    try:
        try:
            text = module.report(doc)
            files = list(module.plots(scratch, doc) or [])
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(
                f"{RESULTS_FILE}: {str(workdir / RESULTS_FILE)!r} does not have the "
                f"structure of a {doc.get('experiment')!r} result ({type(e).__name__}: "
                f"{str(e)[:120]}); rerun the experiment"
            ) from None
        for name in files:
            os.replace(scratch / name, workdir / name)
        write_text_atomic(workdir / REPORT_FILE, text)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return [REPORT_FILE, *files]


def run_experiment(
    name: str,
    module: Any,
    config: Any,
    workdir: str | os.PathLike,
    *,
    overwrite: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """compute -> write -> report, the shape of every experiment.

    ``module.validate(config)`` checks everything and loads what the run needs (before
    any file is written); the workdir is then claimed (:func:`prepare_workdir`);
    ``module.compute(config, setup, run_dir=workdir, command=command)`` returns the
    results structure (touching only the resumable state of a long run under
    ``run_dir``: checkpoints, stage caches, the trained model directories it resumes
    from); ``module.write(workdir, doc)`` writes the data files of the results
    document (``results.json`` is written here); :func:`render` writes the figures and
    the report from the document alone. Returns the document.

    In a job of several processes (:mod:`pixjax.distributed`) every process validates
    and computes (the sharded work spans the job); process 0 alone claims and locks
    the workdir (for the whole job: the others get its outcome, an error included)
    and writes the results, data files, figures and report.
    """
    from pixjax import distributed

    command = command or format_command(None)
    setup = module.validate(config)
    check_job_batches(config)
    distributed.agree(
        "run",
        {
            "experiment": name,
            "config": {
                k: v
                for k, v in to_jsonable(dataclasses.asdict(config)).items()
                if k not in RUN_NEUTRAL_FIELDS
            },
            "workdir": str(pathlib.Path(workdir).expanduser().absolute()),
            "overwrite": bool(overwrite),
        },
    )
    path = distributed.on_primary(
        "prepare_workdir",
        lambda: prepare_workdir(
            workdir, config, experiment=name, overwrite=overwrite, command=command
        ),
    )
    workdir = path or _shared_workdir(workdir)
    results = module.compute(config, setup, run_dir=workdir, command=command)
    doc = results_document(name, results)

    def finish() -> list[str]:
        write_json_atomic(workdir / RESULTS_FILE, doc)
        module.write(workdir, doc)
        return render(workdir, module, doc)

    files = distributed.on_primary("write_results", finish)
    if distributed.is_primary():
        for line in module.summary_lines(doc):
            print(line)
        print(f"wrote {workdir}: {RESULTS_FILE}, {', '.join(files)}")
    return doc


def check_job_batches(config: Any) -> None:
    """In a job of several processes, every ``*batch_size*`` field of ``config`` must
    split evenly over the processes (each feeds an equal share of every batch).

    Raises:
      ConfigError: naming the field, the process count and the accepted values.
    """
    from pixjax import distributed

    n = distributed.process_count()
    if n == 1:
        return
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if "batch_size" in field.name and isinstance(value, int):
            if value % n:
                raise ConfigError(
                    f"{field.name}: {value} does not split over the {n} processes of "
                    f"the job; expected a multiple of {n}"
                )


def _shared_workdir(workdir: str | os.PathLike) -> pathlib.Path:
    """The workdir as a process other than 0 sees it: the run process 0 claimed
    (it must be on a filesystem every process shares).

    Raises:
      ConfigError: this process does not see process 0's run record there.
    """
    from pixjax import distributed

    path = pathlib.Path(workdir).expanduser().absolute()
    if not (path / CONFIG_FILE).is_file():
        raise ConfigError(
            f"workdir: {str(path)!r} holds no run record as seen from "
            f"{distributed.describe()}; a job's workdir must be on a filesystem shared "
            "by every process (the same path on every host)"
        )
    return path


def to_jsonable(obj: Any) -> Any:
    """A JSON round trip (numpy scalars / arrays and paths become plain values;
    non-finite numbers stay floats here and become ``null`` when written)."""
    return json.loads(json.dumps(obj, default=_default))


def _default(o: Any) -> Any:
    if isinstance(o, pathlib.Path):
        return str(o)
    return _json_default(o)


__all__ = [
    "ConfigError",
    "class_names",
    "DEFAULT_CHECKPOINT",
    "apply_overrides",
    "float_to_uint8",
    "format_command",
    "load_checkpoint",
    "pack_uint8",
    "prepare_workdir",
    "read_results",
    "render",
    "resolve_checkpoint",
    "run_experiment",
    "run_metadata",
    "shipped_checkpoints",
    "save_figure_atomic",
    "to_jsonable",
    "unpack_uint8",
    "write_csv_atomic",
    "write_json_atomic",
    "write_results",
    "write_text_atomic",
]
