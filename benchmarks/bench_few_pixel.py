"""Few-pixel (one-pixel) attack: pixjax vs ART ``PixelAttack`` and torchattacks
``OnePixel``, in one run, on the same model, the same images and the same budget.

Model: the shipped LeNet-5 (``checkpoints/lenet5-mnist``) in Flax for pixjax and its
torch twin with the same weights (``lenet5_to_torch``) for the libraries. Images: the
first ``--images`` images of the bundled MNIST test split that the model classifies
correctly (every library attacks every image it is given; pixjax skips the others,
as the paper counts success). One pixel (k = 1), untargeted.

The same differential evolution and budget everywhere: scipy-style best/1/bin as both
libraries run it (their bundled copies of scipy's ``differential_evolution``): the
mutation factor dithered in U(0.5, 1) per generation, recombination 1 (no crossover),
``max(1, 400 // D) * D = 399`` candidates (D = 3 genes: row, column, value), and
``--iterations`` generations after the initial population, stopping early once the
image is fooled; at most ``399 * (iterations + 1)`` candidates scored per image.
pixjax runs ``preset_settings("art", ...)`` with ``iterations`` replaced.

(a) pixjax ``few_pixel_attack`` in batches of ``--batch`` images (default 30 on a
    CPU, all of them on a GPU; the attack rounds it up to a multiple of devices x
    images per call), each device mapping over its images ``--images-per-call`` at a
    time (default ``few_pixel.default_images_per_call()``: 1 on a CPU, 32 on an
    accelerator), so that every model call scores images_per_call x population
    candidates of a generation, and an image mapped alone stops as soon as it is
    fooled. Evaluations: the sum of ``outputs.queries`` (population x (generations +
    1) per attacked image; the one clean forward pass per image is not counted).
    Timed: the first call (compilation included) and the median of ``--repeats``
    further calls, spread over the run (one before each library, the rest after
    them).
(b) the bare jitted forward pass + softmax of the same model on a fixed float32
    batch of (a)'s per-call size (images_per_call x population; 399 rows on a CPU):
    evaluations / s, the reference of (a) (the target's "same batch"); (b') the same
    from uint8 images converted inside the jit (what the attack's forward pass does:
    XLA fuses the conversion into the first layer, which then reads a quarter of the
    bytes); (b'') for reference only, (b') at the whole batch (batch x population
    rows, what one call scored when the attack ran the whole batch under ``vmap``;
    left out when it equals (b')). Timed in the same rounds as (a) (one attack call,
    then one sample of >= 1 s of each forward pass, per round), medians.
(c) torchattacks ``OnePixel(model, pixels=1, steps=iterations, popsize=399,
    inf_batch=399)``, images NCHW float in [0, 1]; one run (minutes).
(d) ART ``PixelAttack(PyTorchClassifier(clip_values=(0, 1)), th=1, es=1,
    max_iter=iterations)`` (``th`` is the number of pixels; ``th=None`` would
    binary-search it); one run (minutes). Both libraries get torch's faster intra-op
    thread count for their per-generation forward pass (1 or all cores, timed just
    before: on a busy 2-core machine 2 OpenMP threads can be several times slower).

The libraries' evaluations are counted exactly: a forward hook on the torch model adds
up the rows of every batch it sees during the attack, which includes their success
check of the best candidate after every generation (and ART's final check). Success
is then decided by one forward pass of the returned images (not counted). pixjax's
success is its own flag, re-checked after a PNG round trip (``recheck``).

Evaluations / s = evaluations / wall seconds. Targets: pixjax >= 10x both libraries and
>= 0.8x the bare forward pass at the same batch ((b), the attack's per-call batch);
success rates each inside the other's 95% Wilson
interval. Runs unchanged on a GPU (JAX on its default device; torch and both
libraries on CUDA).

Run: ``python benchmarks/bench_few_pixel.py`` (``--quick``: a smoke check, < 1 min,
that writes nothing; ``--no-write``: leave RESULTS.md alone). Needs the ``torch``
extra, ``pip install --no-deps torchattacks`` and ``pip install
adversarial-robustness-toolbox`` (a library that cannot be imported is skipped and
said so).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import os
import platform
import statistics
import sys
import time
import traceback
import warnings

# On a GPU, leave room for torch next to JAX (JAX takes 75% of the memory otherwise).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks._common import publish, timeit  # noqa: E402
from pixjax import data, sharding  # noqa: E402
from pixjax.attacks.few_pixel import (  # noqa: E402
    adversarial_images,
    changed_pixels,
    default_images_per_call,
    few_pixel_attack,
    pixel_space,
    preset_settings,
    recheck,
)
from pixjax.data.base import to_float  # noqa: E402
from pixjax.evaluation import wilson_interval  # noqa: E402
from pixjax.search import target_probs  # noqa: E402

SECTION = "Few-pixel attack (one pixel, differential evolution)"
SHAPE = (28, 28, 1)
PIXELS = 1
TARGET_LIB = 10.0
TARGET_FWD = 0.8
PAUSE_S = 0.5  # idle time before each timed run: the last framework's threads settle


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def skip_reason(exc: BaseException) -> str:
    line = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return line if len(line) < 200 else line[:200] + "..."


def load_avg() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


# ----------------------------------------------------------------------------- pixjax


class PixjaxTimer:
    """pixjax's attack and the bare forward passes at its per-call batch
    (``per_call x pop_size`` rows; and, for reference, at ``whole x pop_size`` rows,
    ``whole`` the attack's batch of images, when that differs).

    Construction makes the first (compiling) call of the attack and compiles the
    forward passes; each :meth:`round` then times one attack call and one sample of
    >= 1 s of each forward pass. The rounds are spread over the run (one before each
    library, the rest after them), so that a machine whose load changes mid-run
    (this one is shared) weighs on pixjax's medians as on the libraries' runs.
    """

    def __init__(self, probs, images, labels, settings, batch, per_call, whole):
        self.out = None
        self._call = functools.partial(
            few_pixel_attack,
            jax.random.key(0),
            probs,
            images,
            labels,
            pixels=PIXELS,
            settings=settings,
            batch_size=batch,
            images_per_call=per_call,
        )
        t = time.perf_counter()
        self._attack()
        self.first = time.perf_counter() - t
        pop = settings.pop_size
        self.rows = {"float32": per_call * pop, "uint8": per_call * pop}
        if whole != per_call:
            self.rows["uint8 whole"] = whole * pop
        fwd32 = jax.jit(probs)
        fwd8 = jax.jit(lambda u: probs(to_float(u)))
        # (b) float32 images in, as `probs` takes them; (b') uint8 images in,
        # converted inside the jit as the attack does (XLA fuses the conversion into
        # LeNet-5's first layer, which then reads a quarter of the bytes); (b'') (b')
        # at the whole batch, for reference
        fwds = {}
        for name, rows in self.rows.items():
            x = jax.random.uniform(jax.random.key(1), (rows, *SHAPE), jnp.float32)
            fwds[name] = (
                (fwd32, x)
                if name == "float32"
                else (fwd8, jnp.round(x * 255).astype(jnp.uint8))
            )
        self._samplers = {}
        for name, (fn, arg) in fwds.items():
            jax.block_until_ready(fn(arg))
            t = time.perf_counter()
            jax.block_until_ready(fn(arg))
            inner = max(1, round(1.0 / max(time.perf_counter() - t, 1e-6)))

            def sample(fn=fn, arg=arg, inner=inner):
                for _ in range(inner):
                    jax.block_until_ready(fn(arg))

            self._samplers[name] = (sample, inner)
        self.t_attack: list[float] = []
        self.t_fwd: dict[str, list[float]] = {name: [] for name in self._samplers}

    def _attack(self):
        self.out = self._call()  # host numpy: blocks until done

    def round(self) -> None:
        time.sleep(PAUSE_S)
        self.t_attack.append(timeit(self._attack, 1, warmup=0))
        for name, (sample, _) in self._samplers.items():
            time.sleep(PAUSE_S)
            self.t_fwd[name].append(timeit(sample, 1, warmup=0))

    def seconds(self) -> float:
        """Median seconds of one compiled attack call."""
        return statistics.median(self.t_attack)

    def forward_rates(self) -> dict[str, float]:
        """Evaluations / s of (b) ``"float32"``, (b') ``"uint8"`` and (b'')
        ``"uint8 whole"`` (if timed) (medians)."""
        return {
            name: self.rows[name] * inner / statistics.median(self.t_fwd[name])
            for name, (_, inner) in self._samplers.items()
        }


# ----------------------------------------------------------------------------- torch


class RowCounter:
    """Adds up the rows of every batch the hooked module evaluates while ``on``."""

    def __init__(self, module):
        self.rows = 0
        self.on = False
        module.register_forward_hook(self._hook)

    def _hook(self, _module, inputs, _output):
        if self.on:
            self.rows += int(inputs[0].shape[0])


def best_threads(torch, tm, rows, rounds=3):
    """Sets torch's intra-op threads to the faster of 1 and all cores for a forward
    pass of ``rows`` images (the libraries' per-generation call), timed in
    ``rounds`` interleaved rounds. On a busy machine PyTorch's OpenMP team of 2 on 2
    cores can be several times slower than 1 thread (a descheduled thread stalls
    the others); the libraries get whichever is faster now. Returns (evaluations / s
    of that forward pass, a note)."""
    dev = next(tm.parameters()).device
    x = torch.rand(rows, *SHAPE[::-1], device=dev)
    counts = sorted({1, os.cpu_count() or 1})
    times: dict[int, list[float]] = {c: [] for c in counts}

    def forward():
        with torch.inference_mode():
            tm(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(rounds):
        for c in counts:
            torch.set_num_threads(c)
            times[c].append(timeit(forward, 5, warmup=1))
    med = {c: statistics.median(v) for c, v in times.items()}
    best = min(med, key=med.get)
    torch.set_num_threads(best)
    return rows / med[
        best
    ], f"{best} thread{'s' if best > 1 else ''} (forward of {rows} images: " + (
        ", ".join(
            f"{c} thread{'s' if c > 1 else ''} {1e3 * t:.1f} ms" for c, t in med.items()
        )
        + ")"
    )


def library_result(torch, tm, x, labels, adv, seconds, rows):
    """Success per image (one uncounted forward pass of the returned images), pixels
    changed per image and whether the set values are 8-bit levels."""
    adv = np.asarray(adv, np.float32)
    dev = next(tm.parameters()).device
    with torch.inference_mode():
        pred = tm(torch.from_numpy(adv).to(dev)).argmax(1).cpu().numpy()
    diff = np.abs(adv - x) > 0.5 / 255  # ART's 0..255 round trip moves values 1 ulp
    changed = diff.any(axis=1).sum(axis=(1, 2))
    levels = adv[diff] * 255
    eight_bit = bool(np.all(np.abs(levels - np.round(levels)) < 1e-3))
    return {
        "success": pred != labels,
        "rows": rows,
        "seconds": seconds,
        "changed_max": int(changed.max()) if len(changed) else 0,
        "eight_bit": eight_bit,
        "values": levels,
    }


def run_torchattacks(torch, tm, counter, x, labels, settings):
    import torchattacks

    dev = next(tm.parameters()).device
    atk = torchattacks.OnePixel(
        tm,
        pixels=PIXELS,
        steps=settings.iterations,
        popsize=settings.pop_size,  # the total: it divides by len(bounds)
        inf_batch=settings.pop_size,  # one forward pass per generation
    )
    xt = torch.from_numpy(x).to(dev)
    yt = torch.from_numpy(labels.astype(np.int64)).to(dev)
    np.random.seed(0)  # noqa: NPY002 (its DE draws from the global generator)
    counter.rows, counter.on = 0, True
    t = time.perf_counter()
    adv = atk(xt, yt)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    counter.on = False
    res = library_result(torch, tm, x, labels, adv.cpu().numpy(), seconds, counter.rows)
    res["version"] = f"torchattacks {version('torchattacks')}"
    return res


def run_art(torch, tm, counter, x, labels, settings):
    from art.attacks.evasion import PixelAttack
    from art.estimators.classification import PyTorchClassifier

    gpu = next(tm.parameters()).device.type == "cuda"
    clf = PyTorchClassifier(
        model=tm,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=SHAPE[::-1],
        nb_classes=10,
        clip_values=(0.0, 1.0),  # != 255: ART rescales to 0..255 levels and back
        device_type="gpu" if gpu else "cpu",
    )
    attack = PixelAttack(
        clf, th=PIXELS, es=1, max_iter=settings.iterations, verbose=False
    )
    np.random.seed(0)  # noqa: NPY002 (its DE draws from the global generator)
    counter.rows, counter.on = 0, True
    t = time.perf_counter()
    adv = attack.generate(x, labels)
    seconds = time.perf_counter() - t
    counter.on = False
    res = library_result(torch, tm, x, labels, adv, seconds, counter.rows)
    res["version"] = f"ART {version('adversarial-robustness-toolbox')}"
    return res


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke check, writes nothing")
    ap.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    ap.add_argument("--images", type=int, help="images attacked (default 150; quick 8)")
    ap.add_argument(
        "--iterations", type=int, help="generations after the first (default 15)"
    )
    ap.add_argument(
        "--batch", type=int, help="pixjax images per batch (CPU 30, GPU all)"
    )
    ap.add_argument(
        "--images-per-call",
        type=int,
        help="pixjax images per model call (default "
        "few_pixel.default_images_per_call(): CPU 1, accelerator 32)",
    )
    ap.add_argument(
        "--repeats", type=int, default=3, help="timed pixjax / forward runs (median)"
    )
    args = ap.parse_args()
    quick = args.quick
    write = not (quick or args.no_write)
    n = args.images or (8 if quick else 150)
    iters = args.iterations or (5 if quick else 15)
    repeats = 1 if quick else max(1, args.repeats)
    on_cpu = jax.default_backend() == "cpu"
    batch = min(args.batch or (30 if on_cpu else n), n)
    per_call = (
        default_images_per_call()
        if args.images_per_call is None
        else args.images_per_call
    )
    if per_call < 1:
        raise SystemExit(f"--images-per-call: expected >= 1, got {per_call}")
    # the attack's batch: rounded up to a multiple of devices x images per call
    whole = sharding.round_up(batch, len(jax.devices()) * per_call)
    t_start = time.perf_counter()

    def stamp(what: str) -> None:
        print(f"[{time.perf_counter() - t_start:5.0f} s] {what}", flush=True)

    from pixjax.experiments.common import load_checkpoint

    module, variables, _ = load_checkpoint("lenet5", "lenet5-mnist", SHAPE)
    probs = target_probs(functools.partial(module.apply, variables))
    ds = data.load("mnist-sample", "test")
    all_labels = np.asarray(ds.labels, np.int32)
    pred = np.concatenate(
        [
            np.asarray(jnp.argmax(probs(to_float(ds.images[i : i + 500])), -1))
            for i in range(0, len(ds.images), 500)
        ]
    )
    correct = np.flatnonzero(pred == all_labels)
    if len(correct) < n:
        raise SystemExit(f"only {len(correct)} correctly classified images, need {n}")
    idx = correct[:n]
    images, labels = ds.images[idx], all_labels[idx]
    x_nchw = np.ascontiguousarray(to_float(images).transpose(0, 3, 1, 2))

    space = pixel_space(SHAPE, PIXELS)
    settings = preset_settings("art", space)._replace(iterations=iters)
    pop = settings.pop_size
    budget = pop * (iters + 1)
    load_before = load_avg()

    stamp(
        f"pixjax: {n} images, population {pop}, {iters} iterations, batch {whole}, "
        f"{per_call} image(s) per model call; bare forward at {per_call} x {pop} rows"
        + (f" (and {whole} x {pop} for reference)" if whole != per_call else "")
    )
    timer = PixjaxTimer(probs, images, labels, settings, batch, per_call, whole)
    out, first_s = timer.out, timer.first
    confirmed, _ = recheck(probs, images, out, labels)
    pix_changed = int(changed_pixels(images, adversarial_images(images, out)).max())

    skipped: list[str] = []
    libs: dict[str, dict] = {}
    torch_fwd = None
    notes = [
        f"jax {jax.__version__} on {jax.devices()[0].platform}",
        f"scipy {version('scipy')}",
    ]
    try:
        import torch

        from pixjax.models.torch_reference import lenet5_to_torch
    except ImportError as e:
        torch = None
        skipped.append(f"torchattacks and ART: {skip_reason(e)}")
    if torch is not None:
        torch.set_num_threads(os.cpu_count() or 1)
        tdev = "cuda" if torch.cuda.is_available() else "cpu"
        tm = lenet5_to_torch(variables).eval()
        with torch.inference_mode():
            twin = tm(torch.from_numpy(x_nchw)).numpy()
        ref = np.asarray(module.apply(variables, to_float(images)))
        diff = float(np.abs(twin - ref).max())
        assert diff < 1e-3, f"torch twin differs from the Flax model: {diff}"
        tm = tm.to(tdev)
        stamp("torch threads for the libraries")
        torch_fwd, thread_note = best_threads(torch, tm, settings.pop_size)
        notes.append(
            f"torch {torch.__version__} on {tdev}, {thread_note}; max |logit diff| "
            f"Flax vs torch twin {diff:.1e}"
        )
        counter = RowCounter(tm)
        for name, fn in (("torchattacks", run_torchattacks), ("ART", run_art)):
            if len(timer.t_attack) < repeats - 1:
                stamp("pixjax round")
                timer.round()
            stamp(f"{name} ...")
            time.sleep(PAUSE_S)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    libs[name] = fn(torch, tm, counter, x_nchw, labels, settings)
            except Exception as e:  # a library that cannot be used is skipped
                counter.on = False
                skipped.append(f"{name}: {skip_reason(e)}")
                print(f"SKIPPED {name}: {skipped[-1]}", flush=True)
                continue
            notes.append(libs[name]["version"])
    while len(timer.t_attack) < repeats:
        stamp("pixjax round")
        timer.round()
    pix_s, fwd_rate = timer.seconds(), timer.forward_rates()
    load_after = load_avg()
    stamp("report")

    # ------------------------------------------------------------------ the report
    attacked = np.asarray(out.attacked, bool)
    pix_rows = int(np.asarray(out.queries).sum())
    pix_rate = pix_rows / pix_s
    entries = [
        (
            "(a) pixjax `few_pixel_attack` (compiled; median of "
            f"{repeats} call{'s' if repeats > 1 else ''})",
            "pixjax",
            int(attacked.sum()),
            np.asarray(out.success)[attacked],
            pix_rows,
            np.asarray(out.queries)[attacked],
            pix_s,
        ),
        (
            "(a') pixjax, first call (compilation included)",
            "pixjax first",
            int(attacked.sum()),
            np.asarray(out.success)[attacked],
            pix_rows,
            np.asarray(out.queries)[attacked],
            first_s,
        ),
    ]
    lib_labels = {
        "torchattacks": "(c) torchattacks `OnePixel`",
        "ART": "(d) ART `PixelAttack` (es=1, th=1) + `PyTorchClassifier`",
    }
    for name, r in libs.items():
        entries.append(
            (lib_labels[name], name, n, r["success"], r["rows"], None, r["seconds"])
        )

    table = [
        "| implementation | images | fooled | success rate [95% Wilson] | "
        "evaluations | median eval. / image | wall s | evaluations / s | "
        "pixjax / this |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    rates: dict[str, float] = {}
    cis: dict[str, tuple[float, float, float]] = {}
    for label, key, imgs, succ, rows, per_img, sec in entries:
        k = int(np.sum(succ))
        lo, hi = wilson_interval(k, imgs)
        cis[key] = (k / imgs, lo, hi)
        rates[key] = rows / sec
        med = f"{np.median(per_img):,.0f}" if per_img is not None else "n/a"
        table.append(
            f"| {label} | {imgs} | {k} | {100 * k / imgs:.1f}% [{100 * lo:.1f}, "
            f"{100 * hi:.1f}] | {rows:,} | {med} | {sec:.2f} | {rates[key]:,.0f} | "
            f"{pix_rate / rates[key]:.2f}x |"
        )
    per_img = "image" if per_call == 1 else "images"
    for tag, kind, what in (
        (
            "(b)",
            "float32",
            f"{per_call} {per_img} x {pop}: the attack's per-call batch; float32 "
            "images in",
        ),
        (
            "(b')",
            "uint8",
            f"{per_call} {per_img} x {pop}: the attack's per-call batch; uint8 images "
            "in, `to_float` inside the jit as the attack",
        ),
        (
            "(b'') for reference only:",
            "uint8 whole",
            f"{whole} x {pop}: the whole batch of images in one call, no longer "
            "what the attack runs; uint8 images in",
        ),
    ):
        if kind not in fwd_rate:
            continue
        r = fwd_rate[kind]
        table.append(
            f"| {tag} bare jitted forward + softmax, batch {timer.rows[kind]:,} "
            f"({what}) |  |  |  |  |  |  | {r:,.0f} | {pix_rate / r:.2f}x |"
        )

    if torch_fwd is not None:
        table.append(
            f"| (e) bare PyTorch forward (logits), batch {pop} (the "
            "libraries' per-generation call; threads as they ran) |  |  |  |  |  |  | "
            f"{torch_fwd:,.0f} | {pix_rate / torch_fwd:.2f}x |"
        )

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = []
    for name in libs:
        r = pix_rate / rates[name]
        lines.append(
            f"- pixjax / {name}: **{r:.1f}x** evaluations / s (target >= "
            f"{TARGET_LIB:.0f}x: {verdict(r >= TARGET_LIB)}); with pixjax's "
            f"compilation counted (first call) {rates['pixjax first'] / rates[name]:.1f}x"
        )
    if libs:
        best_fwd = max(fwd_rate["float32"], fwd_rate["uint8"])
        lines.append(
            "- about the ceiling on this device: pixjax runs at about the rate of its "
            "bare forward pass at its per-call batch (b) / (b') (above), so pixjax / "
            "library is bounded by about max((b), (b')) / library = "
            + ", ".join(f"{best_fwd / rates[name]:.1f}x ({name})" for name in libs)
            + "; each library already runs at "
            + ", ".join(f"{rates[name] / torch_fwd:.2f}x ({name})" for name in libs)
            + " of its own bare forward pass (e)"
        )
    missed = [name for name in libs if pix_rate / rates[name] < TARGET_LIB]
    if missed and torch_fwd is not None:
        lines.append(
            f"- the >= {TARGET_LIB:.0f}x target is missed on this device: pixjax would "
            f"need a forward pass >= {TARGET_LIB:.0f}x the libraries' rate, but here "
            f"its bare forward pass (b') runs at {fwd_rate['uint8'] / torch_fwd:.1f}x "
            "PyTorch's (e) and the libraries lose only "
            + ", ".join(f"{1 - rates[name] / torch_fwd:.0%} ({name})" for name in libs)
            + " of (e) to their Python loops, while pixjax's attack runs at about "
            "its own forward pass's rate (next line)"
        )
    fr = pix_rate / fwd_rate["float32"]
    fr8 = pix_rate / fwd_rate["uint8"]
    whole_note = (
        f"; for reference, against (b') at the whole batch ({whole * pop:,} rows, "
        f"b''): {pix_rate / fwd_rate['uint8 whole']:.2f}x"
        if "uint8 whole" in fwd_rate
        else ""
    )
    lines.append(
        f"- pixjax / bare forward at the same batch ({per_call} {per_img} x {pop} = "
        f"{per_call * pop:,} rows, the attack's per-call batch, (b)): "
        f"**{fr:.2f}x** (target >= {TARGET_FWD}: {verdict(fr >= TARGET_FWD)}); "
        f"against the forward pass from uint8 images (b'), the work the attack's "
        f"forward pass does: {fr8:.2f}x ({verdict(fr8 >= TARGET_FWD)}){whole_note}"
    )
    if per_call == 1:
        rows_note = (
            "exact: one image per model call, a fooled image stops at once, no row "
            "is computed and discarded (besides one uncounted clean forward pass per "
            "image)"
        )
    else:
        rows_note = (
            f"a lower bound: {per_call} images share each model call and a group "
            "runs until its last image stops, so the rows of its finished (and "
            "padding) images are still computed but not counted"
        )
    lines.append(
        f"- the rows pixjax scored: {pix_rows:,} (the sum of `queries`; "
        f"{pix_rate:,.0f} / s), {rows_note}"
    )
    p, plo, phi = cis["pixjax"]
    for name in libs:
        q, qlo, qhi = cis[name]
        ok = (qlo <= p <= qhi) and (plo <= q <= phi)
        lines.append(
            f"- success rate, pixjax {100 * p:.1f}% vs {name} {100 * q:.1f}%: "
            f"{'each inside the other' if ok else 'NOT each inside the other'}'s 95% "
            f"interval (target: {verdict(ok)})"
        )
    lines.append(
        f"- pixjax: {int(confirmed.sum())} of {int(np.sum(out.success))} successes "
        f"confirmed after a PNG round trip (`recheck`); pixels changed per returned "
        f"image <= {pix_changed}; values 8-bit (uint8 images by construction)"
    )
    for name, r in libs.items():
        vals = r["values"]
        if len(vals):
            kind = "8-bit levels" if r["eight_bit"] else "NOT 8-bit levels (floats)"
            what = (
                f"set values are {kind} (x 255: {vals.min():.2f} .. {vals.max():.2f})"
            )
        else:
            what = "no pixel changed (an image it does not fool is returned unchanged)"
        lines.append(
            f"- {name}: pixels changed per returned image <= {r['changed_max']}; {what}"
        )
    quirks = [
        'torchattacks draws its initial population uniformly (`init="random"`), ART '
        "and pixjax by Latin hypercube",
        "torchattacks keeps the value gene as a float in [0, 1] (the adversarial "
        "image is not an 8-bit image); ART casts genes to `int` (values 0..254, 255 "
        "only when a gene is exactly 255.0; rows / columns in [0, 28] wrap modulo 28); "
        "pixjax decodes `floor` of [0, 256) and [0, 28)",
        "both libraries test only the generation's best candidate for success (one "
        "extra model row per generation, counted above); pixjax counts an image "
        "fooled when any scored candidate is adversarial, so it can stop a "
        "generation earlier on the same search",
        "ART's `PyTorchClassifier.predict` scores a generation in batches of 128 (its "
        "default, not settable through `PixelAttack`); torchattacks ran with "
        f"`inf_batch={pop}` (one forward pass per generation); both perturb the "
        "candidates in a Python loop and attack one image at a time",
        "the libraries ran once each; pixjax's rows are medians of calls spread over "
        "the run (one before each library, the rest after them)",
    ]
    lines.append("- differences: " + "; ".join(quirks))
    if skipped:
        lines.append("- skipped: " + "; ".join(skipped))

    cmd = "python benchmarks/bench_few_pixel.py" + "".join(
        f" {a}" for a in sys.argv[1:]
    )
    total = time.perf_counter() - t_start
    cpu_note = (
        f" on {os.cpu_count()} cores (possibly shared with other processes; the "
        f"script alone keeps about {os.cpu_count()} busy)"
        if jax.default_backend() == "cpu"
        else ""
    )
    body = "\n".join(
        [
            f"{datetime.date.today()}, `{cmd}`; LeNet-5 (shipped checkpoint "
            "`lenet5-mnist`; torch twin with the same weights for the libraries); the "
            f"first {n} bundled MNIST test images the model classifies correctly; "
            f"one pixel, untargeted; best/1/bin DE, F dithered in U(0.5, 1), CR 1, "
            f"population {pop}, {iters} iterations after the initial population "
            f"(budget <= {budget:,} evaluations per image, early stop when fooled); "
            "evaluations / s = model rows scored / wall seconds (the libraries' rows "
            "counted by a forward hook, their per-generation success check "
            "included). Host: "
            f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}; "
            + "; ".join(notes)
            + f". Load average (1 min) {load_before:.1f} before, {load_after:.1f} "
            f"after{cpu_note}. Whole run {total:.0f} s.",
            "",
            *table,
            "",
            *lines,
        ]
    )
    if quick:
        body = "(--quick smoke check: tiny sizes, numbers meaningless)\n\n" + body
    publish(SECTION, body, write)


if __name__ == "__main__":
    main()
