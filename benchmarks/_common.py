"""Timing and RESULTS.md helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import pathlib
import platform
import re
import statistics
import time
from collections.abc import Callable

RESULTS = pathlib.Path(__file__).with_name("RESULTS.md")


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` runs after ``warmup`` runs
    (``fn`` must block until its work is done)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def device_name() -> str:
    import jax

    d = jax.devices()[0]
    if d.platform == "cpu":
        return f"CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"
    return f"{d.device_kind} ({d.platform.upper()}, {len(jax.devices())} device(s))"


def write_section(section: str, device: str, body: str) -> None:
    """Replaces ``### {device}`` under ``## {section}`` in RESULTS.md (creating both)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    sec_re = re.compile(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", re.S | re.M)
    m = sec_re.search(text)
    sec_body = m.group(1) if m else "\n"
    dev_re = re.compile(rf"^### {re.escape(device)}\n.*?(?=^### |\Z)", re.S | re.M)
    block = f"### {device}\n\n{body.strip()}\n\n"
    sec_body = (
        dev_re.sub(lambda _: block, sec_body)
        if dev_re.search(sec_body)
        else (sec_body.rstrip("\n") + "\n\n" + block)
    )
    new = f"## {section}\n{sec_body}"
    text = sec_re.sub(lambda _: new, text) if m else text.rstrip("\n") + "\n\n" + new
    RESULTS.write_text(text.rstrip("\n") + "\n")


def publish(section: str, body: str, write: bool) -> None:
    """Prints ``body`` under this device's heading and, if ``write``, stores it in
    RESULTS.md (:func:`write_section`)."""
    dev = device_name()
    print(f"\n### {dev}\n\n{body}")
    if write:
        write_section(section, dev, body)
        print(f"\nwrote section '{section}' / '{dev}' of benchmarks/RESULTS.md")
