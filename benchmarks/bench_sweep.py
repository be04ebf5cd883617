"""Pixel-change sweep throughput vs its anchors, in one run, same weights and images.

Measures, after one warm-up (compilation) each, the median of ``--repeats`` timed
runs; the runs of all contenders are interleaved round by round, so a busy machine
slows them alike and the ratios stay meaningful:

(a) the pixjax sweep (``make_sweeper`` + ``run_sweep``) over a grid of configurations
    on the bundled MNIST test split (2000 images): images x configurations / s;
(b) the bare jitted forward pass of the same model on a batch of the sweep's per-call
    size (batch x configuration chunk): images / s, the ceiling of (a);
(c) a straightforward numpy + PyTorch sweep: per configuration and batch, numpy draws
    the distinct positions and new values (vectorised), a PyTorch twin of the model
    with the same weights classifies: images x configurations / s;
(d) the bare PyTorch forward pass, at the same batch as (b) and at the batch of (c).

The default grid is Exp 1 (Num 1, 2, 4, 8, 16, 32, 64, values 0..255, anywhere)
repeated 11 times: 77 configurations, the size of the main job's grid; ``--grid main``
takes the main job's own (Exp 1-3) grid instead. On a GPU, ``--batch``/``--work``
default to one call per configuration chunk of the whole split.

Run: ``python benchmarks/bench_sweep.py`` (``--quick``: a smoke check that writes
nothing; ``--no-write``: leave RESULTS.md alone; ``--no-torch``: skip (c) and (d)).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

# On a GPU, leave room for torch next to JAX (JAX takes 75% of the memory otherwise).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks._common import publish  # noqa: E402
from pixjax import checkpoints, data, models, sharding  # noqa: E402
from pixjax.evaluation import make_sweeper, run_sweep  # noqa: E402
from pixjax.perturb import PixelConfig, pixel_change  # noqa: E402

SECTION = "Pixel-change sweep"
EXP1_NUMS = (1, 2, 4, 8, 16, 32, 64)


def interleaved_medians(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    warmups: dict[str, Callable[[], object]] | None = None,
    min_time: float = 1.0,
) -> dict[str, float]:
    """Median wall time of one ``fn()`` call (``fn`` must block until its work is
    done), for every function of ``fns``.

    Each function is warmed up once (by ``warmups[name]`` where given: a smaller run
    that compiles the same shapes), then ``repeats`` rounds run every function in
    turn, so that a machine that slows down mid-run slows all of them alike. Within a
    round, a function without a warm-up of its own (a short one) is called back to
    back until about ``min_time`` has passed; the round's time is the mean per call.
    """
    warmups = warmups or {}
    inner: dict[str, int] = {}
    for name, fn in fns.items():
        if name in warmups:
            warmups[name]()
            inner[name] = 1
            continue
        fn()
        t = time.perf_counter()
        fn()
        inner[name] = max(1, round(min_time / max(time.perf_counter() - t, 1e-6)))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            times[name].append((time.perf_counter() - t) / inner[name])
    return {name: statistics.median(ts) for name, ts in times.items()}


def make_grid(kind: str, image_shape, quick: bool) -> list[PixelConfig]:
    if kind == "main":
        from pixjax.experiments.configs.pixel_change import Config
        from pixjax.experiments.pixel_change import build_grid

        grid, _ = build_grid(Config(), image_shape)
        return grid[:14] if quick else grid
    return [PixelConfig(n) for _ in range(2 if quick else 11) for n in EXP1_NUMS]


def per_call_work(n: int, n_cfg: int, batch: int, work: int, n_dev: int):
    """(batch, configuration chunk) of one compiled sweep call, as run_sweep picks them."""
    b = sharding.round_up(min(batch, max(n, 1)), n_dev)
    chunk = max(1, min(n_cfg, work // b))
    n_chunks = -(-n_cfg // chunk)
    return b, -(-n_cfg // n_chunks)


def sweep_runner(apply_fn, variables, images, grid, batch_size: int, config_chunk: int):
    """The timed pixjax contender: ``sweep(imgs=images)`` runs ``run_sweep`` over
    ``grid`` (key 0, no progress bar) and leaves its outputs in ``out["out"]``.
    Returns ``(sweep, out)``."""
    shape = tuple(images.shape[1:])
    change = pixel_change(shape, max(c.num for c in grid))
    sweeper = make_sweeper(apply_fn, change)
    params = change.make_params(grid)  # stacked [K], validated once, outside the timing
    key = jax.random.key(0)
    out: dict = {}

    def sweep(imgs=images):
        out["out"] = run_sweep(
            sweeper,
            variables,
            imgs,
            params,
            key,
            batch_size=batch_size,
            config_chunk=config_chunk,
            progress=False,
        )

    return sweep, out


def numpy_torch_sweep(model, torch, device, images_u8, grid, batch, seed=0):
    """The anchor: per configuration and batch, numpy changes pixels (vectorised over
    the batch), torch predicts. Returns the number of flipped predictions per config."""
    rng = np.random.default_rng(seed)
    n, h, w, c = images_u8.shape

    def predict(xb_u8):
        t = torch.from_numpy(xb_u8).to(device).permute(0, 3, 1, 2).float() / 255.0
        probs = torch.softmax(model(t), dim=1)
        _, pred = probs.max(dim=1)  # the confidence comes along, as in the sweep
        return pred.cpu().numpy()

    flips = []
    with torch.inference_mode():
        clean = np.concatenate(
            [predict(images_u8[s : s + batch]) for s in range(0, n, batch)]
        )
        for cfg in grid:
            rh, rw = cfg.region_hw((h, w, c))
            top, left = (h - rh) // 2, (w - rw) // 2
            mag = int(cfg.magnitude)
            flipped = 0
            for s in range(0, n, batch):
                xb = images_u8[s : s + batch].copy()
                b = xb.shape[0]
                # num distinct positions: the num smallest of iid uniform keys per image
                keys = rng.random((b, rh * rw), dtype=np.float32)
                pos = np.argpartition(keys, cfg.num - 1, axis=1)[:, : cfg.num]
                ys, xs = top + pos // rw, left + pos % rw
                rows = np.arange(b)[:, None]
                if cfg.relative:  # original +- R, clipped
                    old = xb[rows, ys, xs].astype(np.int16)  # [b, num, c]
                    delta = rng.integers(-mag, mag + 1, old.shape, dtype=np.int16)
                    new = np.clip(old + delta, 0, 255)
                else:  # anywhere in 0..R
                    new = rng.integers(0, mag + 1, (b, cfg.num, c), dtype=np.int16)
                xb[rows, ys, xs] = new.astype(np.uint8)
                flipped += int(np.sum(predict(xb) != clean[s : s + b]))
            flips.append(flipped)
    return np.asarray(flips)


def load_weights(image_shape):
    path = os.path.join(ROOT, "checkpoints", "lenet5-mnist")
    try:
        module, variables, _ = checkpoints.load_model(path, arch="lenet5")
        return (
            module,
            variables,
            "LeNet-5, shipped checkpoint `checkpoints/lenet5-mnist`",
        )
    except FileNotFoundError:
        module = models.get_model("lenet5")
        variables = models.init_variables(module, jax.random.key(0), image_shape)
        print(f"NOTE: no checkpoint at {path}: using a randomly initialised LeNet-5")
        return module, variables, "LeNet-5, RANDOM init (no checkpoint found)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed runs (median)")
    ap.add_argument(
        "--quick", action="store_true", help="smoke check: small grid, writes nothing"
    )
    ap.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    ap.add_argument("--no-torch", action="store_true", help="skip (c) and (d)")
    ap.add_argument("--grid", choices=("exp1", "main"), default="exp1")
    ap.add_argument(
        "--batch", type=int, help="images per sweep step (CPU 512, GPU all)"
    )
    ap.add_argument(
        "--work",
        type=int,
        help="changed images per compiled call, batch x configs (CPU 16384, GPU all)",
    )
    ap.add_argument(
        "--torch-batch", type=int, default=2048, help="images per torch call in (c)"
    )
    args = ap.parse_args()
    repeats = 2 if args.quick else args.repeats
    write = not (args.quick or args.no_write)

    ds = data.load("mnist-sample", "test")
    images = ds.images[:256] if args.quick else ds.images
    shape = ds.image_shape
    module, variables, model_note = load_weights(shape)
    grid = make_grid(args.grid, shape, args.quick)
    n, k = len(images), len(grid)
    on_cpu = jax.devices()[0].platform == "cpu"
    batch = args.batch or (512 if on_cpu else n)
    work = args.work or (16384 if on_cpu else n * k)
    mesh = sharding.data_mesh()
    b_call, chunk = per_call_work(n, k, batch, work, mesh.devices.size)
    fwd_batch = b_call * chunk
    print(
        f"{n} images x {k} configs; sweep step {b_call} images x {chunk} configs "
        f"= {fwd_batch} per call; {model_note}",
        flush=True,
    )

    # (a) the pixjax sweep
    sweep, sweep_out = sweep_runner(
        module.apply, variables, images, grid, batch, max(1, work // b_call)
    )

    # (b) the bare JAX forward pass, on the sweep's per-call batch (sharded likewise)
    fwd = jax.jit(module.apply)
    vars_d = sharding.replicate(mesh, variables)
    x_host = np.resize(images, (fwd_batch, *shape)).astype(np.float32) / 255.0
    (xf,) = sharding.shard_batch(mesh, x_host)
    small = min(args.torch_batch, n)
    small = sharding.round_up(small, mesh.devices.size)
    (xf_small,) = sharding.shard_batch(mesh, x_host[:small])
    fns: dict[str, Callable[[], object]] = {
        "sweep": sweep,
        "jax_fwd": lambda: jax.block_until_ready(fwd(vars_d, xf)),
        "jax_fwd_small": lambda: jax.block_until_ready(fwd(vars_d, xf_small)),
    }
    # One step's worth of images compiles the same shapes as the whole split.
    warmups = {"sweep": lambda: sweep(images[:b_call])}

    # (c), (d) numpy + PyTorch
    torch_note, torch = "", None
    if args.no_torch:
        torch_note = "PyTorch skipped (--no-torch)"
    else:
        try:
            import torch

            from pixjax.models.torch_reference import lenet5_to_torch
        except ImportError as e:
            torch = None
            torch_note = f"PyTorch not importable ({e}): (c) and (d) skipped"
            print(f"NOTE: {torch_note}")
    if torch is not None:
        tdev = "cuda" if torch.cuda.is_available() else "cpu"
        torch.set_num_threads(os.cpu_count() or 1)
        tm_cpu = lenet5_to_torch(jax.device_get(variables))
        # Parity on the CPU in exact float32 (a GPU may use TF32 on either side).
        x_check = images[:256].astype(np.float32) / 255.0
        cpu = jax.devices("cpu")[0]
        ref = module.apply(jax.device_put(jax.device_get(variables), cpu), x_check)
        with torch.inference_mode():
            got = tm_cpu(torch.from_numpy(x_check.transpose(0, 3, 1, 2))).numpy()
        diff = float(np.max(np.abs(got - np.asarray(ref))))
        assert diff < 1e-4, f"the torch twin differs from the Flax model: {diff:.2e}"
        tm = copy.deepcopy(tm_cpu).to(tdev)
        sync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
        # NHWC memory seen as NCHW, as the anchor feeds torch: with one input channel
        # this makes torch pick its channels-last convolutions (~2x its NCHW speed on
        # a 2-core CPU).
        xt = torch.from_numpy(x_host).to(tdev).permute(0, 3, 1, 2)
        xt_small = xt[:small]
        anchor_out = {}

        def anchor(g=grid):
            anchor_out["flips"] = numpy_torch_sweep(
                tm, torch, tdev, images, g, args.torch_batch
            )
            sync()

        def tfwd(x):
            def run():
                with torch.inference_mode():
                    tm(x)
                sync()

            return run

        fns.update(anchor=anchor, torch_fwd=tfwd(xt), torch_fwd_small=tfwd(xt_small))
        warmups["anchor"] = lambda: anchor(grid[:2])
        where = (
            f"cuda, {torch.cuda.get_device_name(0)}"
            if tdev == "cuda"
            else f"cpu, {torch.get_num_threads()} threads"
        )
        torch_note = (
            f"torch {torch.__version__} on {where}; numpy {np.__version__} draws on "
            f"the CPU; torch twin vs Flax max |logit diff| {diff:.1e} (CPU, float32)"
        )

    load_before = os.getloadavg()[0]
    if load_before > 0.5 * (os.cpu_count() or 1):
        print(
            f"WARNING: load average {load_before:.1f} before the timed runs: other "
            "processes compete for the CPU (PyTorch's threads suffer most)"
        )
    t = interleaved_medians(fns, repeats, warmups)
    load_after = os.getloadavg()[0]

    # Sanity: both sweeps draw from the same distribution, so their flip rates agree.
    out = sweep_out["out"]
    jax_flip = float(np.mean(out.pred != out.clean_pred[None]))
    rate = {
        "sweep": n * k / t["sweep"],
        "jax_fwd": fwd_batch / t["jax_fwd"],
        "jax_fwd_small": small / t["jax_fwd_small"],
    }
    jdev = jax.devices()[0]
    kind = "" if jdev.device_kind == jdev.platform else f" {jdev.device_kind}"
    jwhere = f"{jdev.platform}{kind} x {len(jax.devices())}"
    rows = [
        (f"(a) pixjax sweep (JAX on {jdev.platform})", rate["sweep"], "img x cfg / s"),
        (f"(b) bare JAX forward, batch {fwd_batch}", rate["jax_fwd"], "img / s"),
        (f"(b') bare JAX forward, batch {small}", rate["jax_fwd_small"], "img / s"),
    ]
    checks = [f"flip rate over the grid: pixjax {jax_flip:.4f}"]
    if torch is not None:
        rate["anchor"] = n * k / t["anchor"]
        rate["torch_fwd"] = fwd_batch / t["torch_fwd"]
        rate["torch_fwd_small"] = small / t["torch_fwd_small"]
        anchor_flip = float(anchor_out["flips"].sum() / (n * k))
        checks[0] += f", numpy + PyTorch {anchor_flip:.4f}"
        rows += [
            (
                f"(c) numpy + PyTorch sweep (torch on {tdev}, batch {args.torch_batch})",
                rate["anchor"],
                "img x cfg / s",
            ),
            (
                f"(d) bare PyTorch forward (NHWC memory), batch {fwd_batch}",
                rate["torch_fwd"],
                "img / s",
            ),
            (
                f"(d') bare PyTorch forward (NHWC memory), batch {small}",
                rate["torch_fwd_small"],
                "img / s",
            ),
        ]

    ratios = [
        f"- sweep / bare JAX forward (same batch): **{rate['sweep'] / rate['jax_fwd']:.2f}x**"
        " (target >= 0.8)"
    ]
    if torch is not None:
        ratios += [
            f"- sweep / numpy + PyTorch sweep: **{rate['sweep'] / rate['anchor']:.2f}x**"
            " (target >= 1.0)",
            f"- PyTorch forward / JAX forward: {rate['torch_fwd'] / rate['jax_fwd']:.2f}x"
            f" at batch {fwd_batch}, "
            f"{rate['torch_fwd_small'] / rate['jax_fwd_small']:.2f}x at batch {small}"
            " (> 1 would mean the framework's forward pass, not the sweep, holds"
            " pixjax back; LeNet-5's first layer is fused on the CPU,"
            " pixjax/models/layers.py)",
            f"- numpy + PyTorch sweep / its bare forward (batch {small}): "
            f"{rate['anchor'] / rate['torch_fwd_small']:.2f}x",
        ]

    import flax

    versions = f"jax {jax.__version__}, flax {flax.__version__}, numpy {np.__version__}"
    cmd = "python benchmarks/bench_sweep.py" + "".join(f" {a}" for a in sys.argv[1:])
    grid_note = (
        "Exp 1 x 11 (Num 1..64, values 0..255)"
        if args.grid == "exp1"
        else "the main job's Exp 1-3 grid"
    )
    table = ["| what | rate | unit |", "|---|---:|---|"]
    table += [f"| {name} | {r:,.0f} | {unit} |" for name, r, unit in rows]
    body = "\n".join(
        [
            f"{datetime.date.today()}, `{cmd.strip()}`; {model_note}; {n} bundled "
            f"MNIST test images x {k} configurations ({grid_note}); sweep step "
            f"{b_call} images x {chunk} configurations; median of {repeats} "
            f"interleaved runs after a warm-up. JAX on {jwhere}; host "
            f"{os.cpu_count()} CPUs ({platform.machine()}); Python "
            f"{platform.python_version()}, {versions}"
            + (f"; {torch_note}" if torch_note else "")
            + f". Load average (1 min): {load_before:.1f} before the timed runs, "
            f"{load_after:.1f} after (on an idle machine, the run's own threads).",
            "",
            *table,
            "",
            *ratios,
            f"- check: {checks[0]} (same distribution, different random draws)",
        ]
    )
    publish(SECTION, body, write)


if __name__ == "__main__":
    main()
