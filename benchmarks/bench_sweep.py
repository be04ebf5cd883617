"""Pixel-change sweep throughput vs its anchors, in one run, on the same weights/images.

Measures (median of --repeats runs after a warm-up, compilation excluded):

(a) the pixjax sweep (``make_sweeper`` + ``run_sweep``) over the main job's grid
    (Exp 1-3, 70 configurations) on the bundled test split: images x configs / s;
(b) the bare jitted forward pass of the same model on a batch of the sweep's per-call
    size: images / s (the ceiling of (a));
(c) a straightforward numpy + PyTorch version of the same sweep (numpy draws the
    distinct positions and new values per batch, torch classifies; same weights);
(d) the bare PyTorch forward pass, same batch.

Run: ``python benchmarks/bench_sweep.py`` (``--quick`` for a smoke check,
``--no-write`` to leave RESULTS.md alone). Needs the ``torch`` extra for (c) and (d).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._common import device_name, timeit, write_section  # noqa: E402
from experiments.configs.pixel_change import Config  # noqa: E402
from experiments.pixel_change import build_grid  # noqa: E402
from pixjax import checkpoints, data  # noqa: E402
from pixjax.evaluation import make_sweeper, run_sweep  # noqa: E402
from pixjax.perturb import pixel_change  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def numpy_torch_sweep(model, torch, device, images_u8, grid, batch, seed=0):
    """The anchor: per configuration and batch, numpy changes pixels, torch predicts."""
    rng = np.random.default_rng(seed)
    n, h, w, c = images_u8.shape
    x_all = images_u8.astype(np.float32) / 255.0
    with torch.inference_mode():
        clean = []
        for s in range(0, n, batch):
            xb = torch.from_numpy(x_all[s : s + batch].transpose(0, 3, 1, 2)).to(device)
            clean.append(model(xb).argmax(1).cpu().numpy())
        clean = np.concatenate(clean)
        flips = []
        for cfg in grid:
            rh, rw = cfg.region_hw((h, w, c))
            top, left = (h - rh) // 2, (w - rw) // 2
            flipped = 0
            for s in range(0, n, batch):
                xb = images_u8[s : s + batch].astype(np.float32)
                b = xb.shape[0]
                # distinct positions: the num smallest of iid uniform keys per image
                keys = rng.random((b, rh * rw))
                pos = np.argpartition(keys, cfg.num - 1, axis=1)[:, : cfg.num]
                ys, xs = top + pos // rw, left + pos % rw
                rows = np.arange(b)[:, None]
                if cfg.relative:
                    old = xb[rows, ys, xs]  # [b, num, c]
                    delta = rng.integers(-cfg.magnitude, cfg.magnitude + 1, old.shape)
                    new = np.clip(old + delta, 0, 255)
                else:
                    new = rng.integers(0, int(cfg.magnitude) + 1, (b, cfg.num, c))
                xb[rows, ys, xs] = new
                t = torch.from_numpy((xb / 255.0).transpose(0, 3, 1, 2)).to(device)
                pred = model(t).argmax(1).cpu().numpy()
                flipped += int(np.sum(pred != clean[s : s + b]))
            flips.append(flipped)
    return flips


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="small grid, 2 repeats")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    ap.add_argument("--batch", type=int, default=512, help="images per sweep step")
    ap.add_argument(
        "--work", type=int, default=16384, help="images x configs per compiled call"
    )
    args = ap.parse_args()
    repeats = 2 if args.quick else args.repeats

    ckpt = os.path.join(ROOT, "checkpoints", "lenet5-mnist")
    module, variables, _ = checkpoints.load_model(ckpt)
    ds = data.load("mnist-sample", "test")
    grid, _ = build_grid(Config(), ds.image_shape)
    if args.quick:
        grid = grid[:8]
    images = ds.images
    n, k = len(images), len(grid)
    batch = args.batch
    sweeper = make_sweeper(module.apply, pixel_change(ds.image_shape, 64))
    key = jax.random.key(0)

    def sweep():
        run_sweep(
            sweeper,
            variables,
            images,
            grid,
            key,
            batch_size=batch,
            config_chunk=max(1, args.work // batch),
            progress=False,
        )

    t_sweep = timeit(sweep, repeats)
    sweep_rate = n * k / t_sweep

    # The sweep's per-call work: batch x config chunk images (see run_sweep).
    chunk = max(1, min(k, args.work // batch))
    chunk = -(-k // -(-k // chunk))
    fwd_batch = batch * chunk
    reps = -(-fwd_batch // n)
    xf = jnp.asarray(np.concatenate([images] * reps)[:fwd_batch], jnp.float32) / 255.0
    fwd = jax.jit(module.apply)
    t_fwd = timeit(lambda: fwd(variables, xf).block_until_ready(), repeats)
    fwd_rate = fwd_batch / t_fwd

    rows = [
        (
            "pixjax sweep (JAX, one compiled step per batch)",
            sweep_rate,
            "img x cfg / s",
        ),
        (f"bare JAX forward pass (batch {fwd_batch})", fwd_rate, "img / s"),
    ]
    torch_note = ""
    try:
        import torch

        from pixjax.models.torch_reference import lenet5_to_torch

        tdev = "cuda" if torch.cuda.is_available() else "cpu"
        torch.set_num_threads(os.cpu_count() or 1)
        tm = lenet5_to_torch(variables).to(tdev)
        x_check = images[:256].astype(np.float32) / 255.0
        with torch.inference_mode():
            ref = tm(torch.from_numpy(x_check.transpose(0, 3, 1, 2)).to(tdev))
        diff = np.abs(ref.cpu().numpy() - np.asarray(module.apply(variables, x_check)))
        assert diff.max() < 1e-3, (
            f"torch twin differs from the Flax model: {diff.max()}"
        )
        sync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
        t_np = timeit(
            lambda: (numpy_torch_sweep(tm, torch, tdev, images, grid, 2048), sync()),
            max(1, repeats // 2) if not args.quick else 1,
        )
        np_rate = n * k / t_np
        xt = torch.from_numpy(np.array(xf).transpose(0, 3, 1, 2)).to(tdev)

        def tfwd():
            with torch.inference_mode():
                tm(xt)
            sync()

        t_tfwd = timeit(tfwd, repeats)
        xt_small = xt[:2048]

        def tfwd_small():
            with torch.inference_mode():
                tm(xt_small)
            sync()

        t_tfwd_small = timeit(tfwd_small, repeats * 3)
        rows += [
            (
                f"numpy + PyTorch sweep (torch on {tdev}, batch 2048)",
                np_rate,
                "img x cfg / s",
            ),
            (
                f"bare PyTorch forward pass ({tdev}, batch {fwd_batch})",
                fwd_batch / t_tfwd,
                "img / s",
            ),
            (
                f"bare PyTorch forward pass ({tdev}, batch 2048)",
                2048 / t_tfwd_small,
                "img / s",
            ),
        ]
        torch_note = (
            f"torch {torch.__version__} on {tdev}; max |logit diff| {diff.max():.1e}"
        )
    except ImportError:
        torch_note = "torch not installed: (c) and (d) skipped"

    dev = device_name()
    table = ["| what | rate | unit |", "|---|---:|---|"]
    table += [f"| {name} | {rate:,.0f} | {unit} |" for name, rate, unit in rows]
    ratios = [
        f"- sweep / bare JAX forward: **{sweep_rate / fwd_rate:.2f}x** (target >= 0.8)"
    ]
    if len(rows) > 2:
        ratios.append(
            f"- sweep / numpy + PyTorch sweep: **{sweep_rate / rows[2][1]:.2f}x** "
            "(target >= 1)"
        )
        best_torch = max(rows[3][1], rows[4][1])
        ratios.append(
            f"- best bare PyTorch forward / bare JAX forward: {best_torch / fwd_rate:.2f}x"
            " (where this is > 1, XLA's CPU convolution is the limit: the sweep cannot"
            " beat the forward pass it is made of)"
        )
        ratios.append(
            f"- numpy + PyTorch sweep / best bare PyTorch forward: "
            f"{rows[2][1] / best_torch:.2f}x"
        )
    body = "\n".join(
        [
            f"{datetime.date.today()}, `python benchmarks/bench_sweep.py"
            f"{' --quick' if args.quick else ''} --batch {batch} --work {args.work}`; LeNet-5 (shipped checkpoint), "
            f"{n} bundled MNIST test images x {k} configurations (the main job's grid); "
            f"median of {repeats} runs after a warm-up; forward batch {fwd_batch}; "
            f"jax {jax.__version__}; {torch_note}.",
            "",
            *table,
            "",
            *ratios,
        ]
    )
    print(f"## {dev}\n{body}")
    if not args.no_write:
        write_section("Pixel-change sweep", dev, body)


if __name__ == "__main__":
    main()
