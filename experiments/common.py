"""Shared plumbing of the experiments: config overrides, run directories, metadata.

This is the only code (with the experiment mains) that reads flags or touches files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import shlex
import sys
import time
import types
import typing
from typing import Any

from pixjax.checkpoints import _json_default, write_json_atomic

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHIPPED_CHECKPOINTS = REPO_ROOT / "checkpoints"
DEFAULT_CHECKPOINT = "lenet5-mnist"


# The command line of the current run, set by the `pixjax` entry point.
COMMAND: list[str] = []


class ConfigError(ValueError):
    """A bad configuration value (raised before any work or file write)."""


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
    directory under ``checkpoints/``; anything else is a path."""
    if not value:
        return None
    shipped = SHIPPED_CHECKPOINTS / value
    if "/" not in value and shipped.is_dir():
        return shipped
    return pathlib.Path(value).expanduser()


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


def prepare_workdir(workdir: str | os.PathLike) -> pathlib.Path:
    path = pathlib.Path(workdir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"workdir: {str(path)!r} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_metadata(config: Any, **extra: Any) -> dict[str, Any]:
    import jax

    argv = list(COMMAND) if COMMAND else list(sys.argv)
    if argv and os.path.basename(argv[0]) == "pixjax":
        argv[0] = "pixjax"
    return {
        "command": " ".join(shlex.quote(a) for a in argv),
        "config": dataclasses.asdict(config),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "pixjax": __import__("pixjax").__version__,
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
        **extra,
    }


def write_text_atomic(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)


def to_jsonable(obj: Any) -> Any:
    """A JSON round trip (numpy scalars / arrays and paths become plain values)."""
    return json.loads(json.dumps(obj, default=_default))


def _default(o: Any) -> Any:
    if isinstance(o, pathlib.Path):
        return str(o)
    return _json_default(o)


__all__ = [
    "ConfigError",
    "DEFAULT_CHECKPOINT",
    "REPO_ROOT",
    "apply_overrides",
    "prepare_workdir",
    "resolve_checkpoint",
    "run_metadata",
    "save_figure_atomic",
    "to_jsonable",
    "write_csv_atomic",
    "write_json_atomic",
    "write_text_atomic",
]
