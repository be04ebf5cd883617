"""Distinct-position draw of a pixel change: Floyd's loop vs its loop-free form.

A pixel change draws ``max_num`` distinct positions with Floyd's algorithm in one of
two forms that give the same positions, bit for bit (checked here on the timed
batches, and the two sweeps of (d) on their predictions): a ``lax.fori_loop`` of
``max_num`` sequential steps (``pixels._floyd_loop``, what the CPU runs) and a
loop-free form (``pixels._floyd_picks``, what GPUs and TPUs run). Measured in one
run, side by side, each jitted, the median of ``--repeats`` interleaved rounds after a
warm-up (``interleaved_medians`` of ``bench_sweep.py``):

(a) the loop and (b) the loop-free form, vmapped over a batch of ``--batch``
    keys (default 1000) for ``max_num`` in 1, 8, 64 on a 28x28x1 image, ``num =
    max_num``: ms per batch;
(c) the bare LeNet-5 forward pass on the same number of MNIST test images (shipped
    checkpoint ``checkpoints/lenet5-mnist``): ms per batch;
(d) the pixel-change sweep (``make_sweeper`` + ``run_sweep``, Exp 1 grid Num 1..64)
    with the loop and the loop-free form against the bare forward pass at the
    sweep's per-call batch: images x configurations / s (skip with ``--no-sweep``);
(e) the crossover of the loop-free form between comparing every pair of draws and a
    sort (``_SORT_FROM``), each forced, next to the loop, for ``max_num`` in
    128, 256, 512 (skip with ``--no-crossover``).

Run: ``python benchmarks/bench_draw.py`` (``--quick``: a smoke check, fewer repeats,
no (d) or (e), writes nothing). It prints a markdown table and replaces its section of
RESULTS.md (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks._common import publish  # noqa: E402
from benchmarks.bench_sweep import (  # noqa: E402
    EXP1_NUMS,
    interleaved_medians,
    load_weights,
    per_call_work,
    sweep_runner,
)
from pixjax import data  # noqa: E402
from pixjax.perturb import PixelConfig  # noqa: E402
from pixjax.perturb import pixels as pixels_mod  # noqa: E402

SECTION = "Distinct-position draw"
SHAPE = (28, 28, 1)
MAX_NUMS = (1, 8, 64)
CROSSOVER_NUMS = (128, 256, 512)


LOOP = pixels_mod._floyd_loop  # Floyd's sequential loop: what the CPU runs
LOOP_FREE = pixels_mod._floyd_picks  # the loop-free form: what GPUs and TPUs run


@contextlib.contextmanager
def drawing_with(picks):
    """Within this block, pixel changes built and traced draw with ``picks``."""
    current = pixels_mod._picks
    pixels_mod._picks = picks
    try:
        yield
    finally:
        pixels_mod._picks = current


def forced_picks(sort_from: int):
    """The loop-free picks with ``_SORT_FROM`` set to ``sort_from`` while tracing
    (``0``: always sort; huge: always compare every pair)."""

    def picks(draws, base):
        saved = pixels_mod._SORT_FROM
        pixels_mod._SORT_FROM = sort_from
        try:
            return pixels_mod._floyd_picks(draws, base)
        finally:
            pixels_mod._SORT_FROM = saved

    return picks


def batched_draw(picks_fn, max_num: int):
    """Jitted draw over a batch of keys: ``g(keys, num, region) -> [B, max_num]``."""

    def f(key, num, region):
        return pixels_mod.distinct_positions(
            key, num, region, image_shape=SHAPE, max_num=max_num
        )

    g = jax.jit(jax.vmap(f, in_axes=(0, None, None)))

    def traced_with_picks(keys, num, region):
        with drawing_with(picks_fn):  # the first call traces, with these picks
            return g(keys, num, region)

    return traced_with_picks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds (median)")
    ap.add_argument("--batch", type=int, default=1000, help="keys / images per batch")
    ap.add_argument("--quick", action="store_true", help="smoke check: 2 rounds")
    ap.add_argument("--no-sweep", action="store_true", help="skip (d)")
    ap.add_argument("--no-crossover", action="store_true", help="skip (e)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    repeats = 2 if args.quick else args.repeats
    min_time = 0.1 if args.quick else 1.0
    run_sweep = not (args.quick or args.no_sweep)
    crossover = not (args.quick or args.no_crossover)
    b = args.batch

    ds = data.load("mnist-sample", "test")
    module, variables, model_note = load_weights(ds.image_shape)
    keys = jax.random.split(jax.random.key(0), b)
    region = jnp.asarray(SHAPE[:2], jnp.int32)

    fns: dict[str, Callable[[], object]] = {}
    same: dict[int, bool] = {}
    for m in MAX_NUMS:
        num = jnp.int32(m)
        old = batched_draw(LOOP, m)
        new = batched_draw(LOOP_FREE, m)
        same[m] = bool(np.array_equal(old(keys, num, region), new(keys, num, region)))
        fns[f"old{m}"] = lambda g=old, n=num: jax.block_until_ready(g(keys, n, region))
        fns[f"new{m}"] = lambda g=new, n=num: jax.block_until_ready(g(keys, n, region))

    if crossover:
        for m in CROSSOVER_NUMS:
            num = jnp.int32(m)
            expected = batched_draw(LOOP, m)(keys, num, region)
            for name, picks in (
                ("old", LOOP),
                ("cmp", forced_picks(1 << 30)),
                ("sort", forced_picks(0)),
            ):
                g = batched_draw(picks, m)
                same[m] = same.get(m, True) and bool(
                    np.array_equal(g(keys, num, region), expected)
                )
                fns[f"x{name}{m}"] = lambda g=g, n=num: jax.block_until_ready(
                    g(keys, n, region)
                )

    fwd = jax.jit(module.apply)
    x = jnp.asarray(np.resize(ds.images, (b, *SHAPE)), jnp.float32) / 255.0
    fns["fwd"] = lambda: jax.block_until_ready(fwd(variables, x))
    warmups: dict[str, Callable[[], object]] = {}

    if run_sweep:
        on_cpu = jax.devices()[0].platform == "cpu"
        images = ds.images
        grid = [PixelConfig(n) for n in EXP1_NUMS]
        n_img, k = len(images), len(grid)
        batch = 512 if on_cpu else n_img
        work = 16384 if on_cpu else n_img * k
        b_call, chunk = per_call_work(n_img, k, batch, work, len(jax.devices()))
        runners = {}
        for name, picks in (("sweep_old", LOOP), ("sweep_new", LOOP_FREE)):
            with drawing_with(picks):
                run, out = sweep_runner(
                    module.apply, variables, images, grid, batch, max(1, work // b_call)
                )

            def timed(imgs=images, run=run, picks=picks):
                with drawing_with(picks):  # traced at the warm-up, with these picks
                    run(imgs)

            runners[name] = out
            fns[name] = timed
            warmups[name] = lambda timed=timed: timed(images[:b_call])
        out_old, out_new = runners["sweep_old"], runners["sweep_new"]
        x_call = (
            jnp.asarray(np.resize(images, (b_call * chunk, *SHAPE)), jnp.float32)
            / 255.0
        )
        fns["fwd_call"] = lambda: jax.block_until_ready(fwd(variables, x_call))

    load_before = os.getloadavg()[0]
    t = interleaved_medians(fns, repeats, warmups, min_time=min_time)
    load_after = os.getloadavg()[0]

    ms = {name: 1e3 * s for name, s in t.items()}
    table = [
        f"| max_num | (a) loop (CPU default), ms / {b} keys | (b) loop-free "
        f"(GPU/TPU default), ms "
        f"| (a) / (b) | (a) / (c) forward | (b) / (c) forward | same positions |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for m in MAX_NUMS:
        o, n = ms[f"old{m}"], ms[f"new{m}"]
        table.append(
            f"| {m} | {o:.3f} | {n:.3f} | {o / n:.1f}x | {o / ms['fwd']:.2f} "
            f"| {n / ms['fwd']:.3f} | {'yes' if same[m] else '**NO**'} |"
        )
    table.append(
        f"\n(c) bare LeNet-5 forward pass, batch {b}: {ms['fwd']:.3f} ms per batch."
    )
    if crossover:
        table += [
            "",
            f"| (e) max_num | loop, ms / {b} keys | compare every pair, ms "
            f"| sort, ms | used (_SORT_FROM = {pixels_mod._SORT_FROM}) "
            "| same positions |",
            "|---:|---:|---:|---:|---|---|",
        ]
        for m in CROSSOVER_NUMS:
            used = "sort" if m >= pixels_mod._SORT_FROM else "compare"
            table.append(
                f"| {m} | {ms[f'xold{m}']:.2f} | {ms[f'xcmp{m}']:.2f} "
                f"| {ms[f'xsort{m}']:.2f} | {used} "
                f"| {'yes' if same[m] else '**NO**'} |"
            )
    if run_sweep:
        fwd_rate = b_call * chunk / t["fwd_call"]
        same_sweep = bool(np.array_equal(out_old["out"].pred, out_new["out"].pred))
        rate_old = n_img * k / t["sweep_old"]
        rate_new = n_img * k / t["sweep_new"]
        table += [
            "",
            f"| (d) Exp 1 sweep, {n_img} images x {k} configs (Num 1..64), step "
            f"{b_call} x {chunk} | img x cfg / s | / bare forward |",
            "|---|---:|---:|",
            f"| sweep, loop | {rate_old:,.0f} | {rate_old / fwd_rate:.2f} |",
            f"| sweep, loop-free | {rate_new:,.0f} | {rate_new / fwd_rate:.2f} |",
            f"| bare forward, batch {b_call * chunk} | {fwd_rate:,.0f} | 1.00 |",
            "",
            "The two sweeps' predictions are "
            + ("identical." if same_sweep else "**DIFFERENT**."),
        ]
        same[-1] = same_sweep

    cmd = "python benchmarks/bench_draw.py" + "".join(f" {a}" for a in sys.argv[1:])
    jdev = jax.devices()[0]
    kind = "" if jdev.device_kind == jdev.platform else f" {jdev.device_kind}"
    body = "\n".join(
        [
            f"{datetime.date.today()}, `{cmd}`; {model_note}; {SHAPE[0]}x{SHAPE[1]}x"
            f"{SHAPE[2]} images, num = max_num, whole image; median of {repeats} "
            f"interleaved rounds after a warm-up. JAX {jax.__version__} on "
            f"{jdev.platform}{kind}; host {os.cpu_count()} CPUs "
            f"({platform.machine()}), Python {platform.python_version()}. Load "
            f"average (1 min): {load_before:.1f} before, {load_after:.1f} after.",
            "",
            *table,
        ]
    )
    publish(SECTION, body, not (args.quick or args.no_write))
    if not all(same.values()):
        raise SystemExit("the loop-free draw differs from the loop")


if __name__ == "__main__":
    main()
