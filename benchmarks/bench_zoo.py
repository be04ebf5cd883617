"""CNN zoo forward pass: pixjax's torchvision ports vs torchvision, same weights.

ResNet-18 and ResNet-50 are built by torchvision (``weights=None`` after
``torch.manual_seed(0)``) and converted with ``pixjax.models.convert``, so both
frameworks run the identical network; before any timing, the logits of the two agree
within 1e-3 relative to the largest |logit| and top-1 is identical wherever the top-1
margin exceeds twice the observed difference (float32, on the CPU). Images: bundled
MNIST test digits, upsampled 8x (nearest) to 224x224 and repeated to RGB.

Measures, after a warm-up each, the median of ``--repeats`` interleaved rounds (every
contender once per round, ``bench_sweep.interleaved_medians``), so a busy machine slows
them alike and the ratios stay meaningful:

(a) forward images / s at 224x224, batch ``--batch``: pixjax ``jax.jit`` of
    ``module.apply(variables, x)`` (inference: running BatchNorm statistics, nothing
    updated) vs torchvision ``model.eval()`` under ``torch.inference_mode()``; both
    take images in [0, 1] and normalise them inside the timed call. On a GPU the
    ResNet-50 rows come in float32 and bfloat16 (pixjax ``dtype=jnp.bfloat16``, torch
    ``autocast``), torch in channels-last memory, and both report achieved TFLOP/s;
(b) the pixel-change sweep (``make_sweeper`` + ``run_sweep``) with ResNet-18 over
    Exp 1 (Num 1, 2, .., 64, values 0..255) repeated twice on a CPU (14
    configurations, 16 images) and 11 times on a GPU (77 configurations, 1024 images
    in steps of 256), images x configurations / s, vs the bare jitted forward pass at
    the sweep's per-call batch.

FLOP convention: 2 x the multiply-accumulates of the convolutions and the fc layer,
counted with forward hooks on the torchvision model (ResNet-50 at 224x224: 4.09 G MAC =
8.18 GFLOP per image); BatchNorm, ReLU, pooling and additions are not counted.

Run: ``python benchmarks/bench_zoo.py`` (``--quick``: ResNet-18 only, batch 4, a
smoke check that writes nothing; ``--no-write``: leave RESULTS.md alone). Needs the
``torch`` extra (torch and torchvision).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import types
from collections.abc import Callable

# On a GPU, leave room for torch next to JAX (JAX takes 75% of the memory otherwise).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks._common import device_name, publish  # noqa: E402
from benchmarks.bench_sweep import (  # noqa: E402
    EXP1_NUMS,
    interleaved_medians,
    per_call_work,
    sweep_runner,
)
from pixjax import data, models, sharding  # noqa: E402
from pixjax.models import convert  # noqa: E402
from pixjax.perturb import PixelConfig  # noqa: E402

SECTION = "CNN zoo forward pass"
SIZE = 224
SHAPE = (SIZE, SIZE, 3)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SWEEP_ARCH = "resnet18"
# Exp 1 repeated: twice on a CPU (14 configurations), 11 times on a GPU (77, as
# bench_sweep). The sweep classifies every clean image once too, so its ceiling
# against the bare forward pass is K / (K + 1): 0.93x for 14 configurations, 0.99x
# for 77.
SWEEP_REPEATS = {"cpu": 2, "gpu": 11}
TARGET_SWEEP = 0.9


def import_torch():
    """torch and torchvision, or a clear exit."""
    try:
        import torch

        if "torchvision" not in sys.modules:  # a CUDA build's C ops: skip their metas
            sys.modules["torchvision._meta_registrations"] = types.ModuleType(
                "torchvision._meta_registrations"
            )
        import torchvision
    except ImportError as e:
        raise SystemExit(
            f'bench_zoo needs torch and torchvision ({e}); pip install -e ".[torch]"'
        ) from e
    return torch, torchvision


def load_images(n: int) -> np.ndarray:
    """``n`` bundled MNIST test digits as uint8 ``[n, 224, 224, 3]`` (8x nearest
    upsampling of the 28x28 digits, grey repeated to RGB)."""
    digits = data.load("mnist-sample", "test").images
    digits = np.resize(digits, (n, *digits.shape[1:]))
    x = np.repeat(np.repeat(digits, SIZE // 28, axis=1), SIZE // 28, axis=2)
    return np.repeat(x, 3, axis=3)


def torchvision_model(torch, torchvision, arch: str):
    torch.manual_seed(0)
    return getattr(torchvision.models, arch)(weights=None).eval()


def count_macs(torch, tm) -> int:
    """Multiply-accumulates of the convolutions and linear layers for one 224x224
    image (forward hooks on the CPU model)."""
    macs = []

    def hook(m, inp, out):
        if isinstance(m, torch.nn.Conv2d):
            k = (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            macs.append(out.numel() * k)
        else:
            macs.append(out.numel() * m.in_features)

    layers = (torch.nn.Conv2d, torch.nn.Linear)
    handles = [
        m.register_forward_hook(hook) for m in tm.modules() if isinstance(m, layers)
    ]
    try:
        with torch.inference_mode():
            tm(torch.zeros(1, 3, SIZE, SIZE))
    finally:
        for h in handles:
            h.remove()
    return int(sum(macs))


def to_torch_input(torch, x: np.ndarray):
    """``[N, H, W, C]`` float32 in [0, 1] -> NCHW tensor (still in [0, 1])."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def check_parity(torch, tm, module, variables, x: np.ndarray) -> str:
    """Asserts that the converted Flax model computes torchvision's logits (CPU,
    float32) and returns a one-line summary."""
    cpu = jax.devices("cpu")[0]
    got = np.asarray(
        jax.jit(module.apply)(jax.device_put(variables, cpu), jax.device_put(x, cpu))
    )
    with torch.inference_mode():
        want = tm(to_torch_input(torch, (x - MEAN) / STD)).numpy()
    err = float(np.max(np.abs(got - want)))
    scale = float(np.max(np.abs(want)))
    assert err <= 1e-3 * scale, (
        f"pixjax and torchvision logits differ: max |diff| {err:.3g}, "
        f"max |logit| {scale:.3g}"
    )
    top = np.sort(want, axis=1)
    decided = top[:, -1] - top[:, -2] > 2 * err  # ties float32 cannot break
    same = got.argmax(1) == want.argmax(1)
    assert np.all(same[decided]), (
        f"top-1 differs on images {np.flatnonzero(decided & ~same).tolist()}"
    )
    return (
        f"max |logit diff| {err:.1e} (max |logit| {scale:.3g}), top-1 identical on "
        f"{int(same.sum())}/{len(x)} ({int(decided.sum())} with a margin > 2x diff)"
    )


def jax_forward(module, variables, x) -> Callable[[], object]:
    fwd = jax.jit(module.apply)
    return lambda: jax.block_until_ready(fwd(variables, x))


def torch_forward(torch, tm, x, sync, autocast_dtype=None) -> Callable[[], object]:
    mean = torch.from_numpy(MEAN).view(1, 3, 1, 1).to(x.device)
    std = torch.from_numpy(STD).view(1, 3, 1, 1).to(x.device)

    def run():
        cast = (
            torch.autocast(x.device.type, dtype=autocast_dtype)
            if autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), cast:
            tm((x - mean) / std)
        sync()

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (median)")
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke check: ResNet-18 only, batch 4, writes nothing",
    )
    ap.add_argument("--no-write", action="store_true", help="leave RESULTS.md alone")
    ap.add_argument("--batch", type=int, help="forward batch (CPU 16, GPU 256)")
    ap.add_argument(
        "--sweep-images", type=int, help="images in the sweep (CPU 16, GPU 1024)"
    )
    ap.add_argument(
        "--sweep-batch", type=int, help="images per sweep step (CPU 16, GPU 256)"
    )
    ap.add_argument(
        "--work",
        type=int,
        help="changed images per compiled sweep call (default: images x 7 configs)",
    )
    args = ap.parse_args()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    on_gpu = jax.default_backend() == "gpu"
    repeats = 2 if args.quick else max(1, args.repeats)
    write = not (args.quick or args.no_write)
    batch = 4 if args.quick else (args.batch or (256 if on_gpu else 16))
    n_sweep = 4 if args.quick else (args.sweep_images or (1024 if on_gpu else 16))
    sweep_batch = min(n_sweep, args.sweep_batch or (256 if on_gpu else 16))
    sweep_repeats = SWEEP_REPEATS["gpu" if on_gpu else "cpu"]
    archs = ("resnet18",) if args.quick else ("resnet18", "resnet50")

    torch, torchvision = import_torch()
    tdev = "cuda" if on_gpu and torch.cuda.is_available() else "cpu"
    if on_gpu and tdev == "cpu":
        print("WARNING: JAX has a GPU but torch has no CUDA: torch rows run on the CPU")
    if tdev == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    sync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)
    mesh = sharding.data_mesh()

    # ------------------------------------------------------- (a) forward passes
    x_host = load_images(batch).astype(np.float32) / 255.0
    x_jax = jax.device_put(x_host)
    x_torch = to_torch_input(torch, x_host).to(tdev)
    if tdev == "cuda":  # cuDNN's fast layout, for float32 (TF32) and bfloat16 alike
        x_torch = x_torch.contiguous(memory_format=torch.channels_last)
    fns: dict[str, Callable[[], object]] = {}
    cases: list[tuple[str, str, int]] = []  # (arch, dtype name, MACs per image)
    parity: dict[str, str] = {}
    all_vars = {}
    mac_count: dict[str, int] = {}
    for arch in archs:
        tm = torchvision_model(torch, torchvision, arch)
        macs = mac_count[arch] = count_macs(torch, tm)
        variables = convert.torchvision_to_flax(arch, tm.state_dict())
        all_vars[arch] = variables
        module = models.get_model(arch)
        parity[arch] = check_parity(torch, tm, module, variables, x_host[:16])
        print(f"{arch}: {macs / 1e9:.2f} G MAC / image; {parity[arch]}", flush=True)
        if tdev == "cuda":
            tm = tm.to(tdev, memory_format=torch.channels_last)
        dtypes = (
            ("float32", "bfloat16") if on_gpu and arch == "resnet50" else ("float32",)
        )
        for dt in dtypes:
            mod = (
                module
                if dt == "float32"
                else models.get_model(arch, dtype=jnp.bfloat16)
            )
            cast = None if dt == "float32" else torch.bfloat16
            fns[f"pixjax {arch} {dt}"] = jax_forward(mod, variables, x_jax)
            fns[f"torch {arch} {dt}"] = torch_forward(torch, tm, x_torch, sync, cast)
            cases.append((arch, dt, macs))

    for name, fn in fns.items():  # also the warm-up: every timed model is finite
        if name.startswith("pixjax"):
            out = np.asarray(fn(), np.float32)
            assert np.isfinite(out).all(), f"{name}: non-finite logits"

    # ---------------------------------------------- (b) sweep vs bare forward
    images_u8 = load_images(n_sweep)
    grid = [PixelConfig(n) for _ in range(sweep_repeats) for n in EXP1_NUMS]
    k = len(grid)
    work = args.work or sweep_batch * len(EXP1_NUMS)
    b_call, chunk = per_call_work(n_sweep, k, sweep_batch, work, mesh.devices.size)
    fwd_batch = b_call * chunk
    sweep_module = models.get_model(SWEEP_ARCH)
    sweep_vars = all_vars[SWEEP_ARCH]
    sweep, sweep_out = sweep_runner(
        sweep_module.apply, sweep_vars, images_u8, grid, b_call, max(1, work // b_call)
    )

    xs_host = np.resize(images_u8, (fwd_batch, *SHAPE)).astype(np.float32) / 255.0
    (xs,) = sharding.shard_batch(mesh, xs_host)
    fns["sweep"] = sweep
    fns["sweep bare forward"] = jax_forward(
        sweep_module, sharding.replicate(mesh, sweep_vars), xs
    )
    # One sweep step's worth of images compiles the same shapes as all of them.
    warmups = {"sweep": lambda: sweep(images_u8[:b_call])}
    print(
        f"sweep: {n_sweep} images x {k} configs, {b_call} images x {chunk} configs "
        f"= {fwd_batch} per call",
        flush=True,
    )

    if load_start > 0.5 * (os.cpu_count() or 1):
        print(
            f"WARNING: load average {load_start:.1f} at the start: other processes "
            "compete for the CPU"
        )
    print(f"timing {len(fns)} contenders x {repeats} rounds on {device_name()} ...")
    t = interleaved_medians(fns, repeats, warmups, min_time=0.3 if args.quick else 1.0)
    load_end = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")

    # ---------------------------------------------------------------- report
    table = [
        "| model | dtype | framework | batch | images / s | TFLOP/s | pixjax / torch |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    ratios = []
    for arch, dt, macs in cases:
        rate = {fw: batch / t[f"{fw} {arch} {dt}"] for fw in ("pixjax", "torch")}
        ratio = rate["pixjax"] / rate["torch"]
        for fw in ("pixjax", "torch"):
            tflops = 2 * macs * rate[fw] / 1e12
            shown = f"{ratio:.2f}x" if fw == "pixjax" else ""
            table.append(
                f"| {arch} | {dt} | {fw} | {batch} | {rate[fw]:,.1f} | {tflops:.3f} "
                f"| {shown} |"
            )
        ratios.append(
            f"- {arch} {dt} forward, pixjax / torchvision: **{ratio:.2f}x** "
            f"({rate['pixjax']:,.1f} vs {rate['torch']:,.1f} images / s)"
        )
    sweep_rate = n_sweep * k / t["sweep"]
    bare_rate = fwd_batch / t["sweep bare forward"]
    sweep_ratio = sweep_rate / bare_rate
    ceiling = k / (k + 1)  # the sweep also runs one clean forward pass per image
    table += [
        f"| {SWEEP_ARCH} sweep, {k} configs | float32 | pixjax `run_sweep` | "
        f"{b_call} x {chunk} | {sweep_rate:,.1f} img x cfg | | |",
        f"| {SWEEP_ARCH} bare forward | float32 | pixjax | {fwd_batch} | "
        f"{bare_rate:,.1f} | | |",
    ]
    met = "met" if sweep_ratio >= TARGET_SWEEP else "missed"
    ratios.append(
        f"- {SWEEP_ARCH} pixel-change sweep / bare forward at the same per-call batch "
        f"{fwd_batch}: **{sweep_ratio:.2f}x** (target >= {TARGET_SWEEP}: {met}; the "
        f"sweep also classifies each clean image once, so {ceiling:.2f}x is its "
        "ceiling with this grid)"
    )
    out = sweep_out["out"]
    flip = float(np.mean(out.pred != out.clean_pred[None]))

    import flax

    versions = (
        f"jax {jax.__version__}, flax {flax.__version__}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, numpy {np.__version__}"
    )
    if tdev == "cuda":
        where = (
            f"torch on cuda ({torch.cuda.get_device_name(0)}, channels-last; float32 "
            "with cuDNN's default TF32 convolutions, as JAX's default precision; "
            "bfloat16 by autocast)"
        )
    else:
        where = f"torch on cpu, {torch.get_num_threads()} threads (NCHW)"
    jdev = jax.devices()[0]
    cmd = "python benchmarks/bench_zoo.py" + "".join(f" {a}" for a in sys.argv[1:])
    body = "\n".join(
        [
            f"{datetime.date.today()}, `{cmd.strip()}`; torchvision "
            f"{', '.join(archs)} with `weights=None` after `torch.manual_seed(0)`, "
            "converted with `pixjax.models.convert.torchvision_to_flax` (the same "
            f"weights on both sides); {batch} bundled MNIST test digits upsampled to "
            f"224x224x3; median of {repeats} interleaved rounds after a warm-up. JAX "
            f"on {jdev.platform} x {len(jax.devices())}; {where}; host "
            f"{os.cpu_count()} CPUs ({platform.machine()}); Python "
            f"{platform.python_version()}, {versions}. TFLOP/s counts 2 FLOP per "
            "multiply-accumulate of the convolutions and the fc layer ("
            + ", ".join(f"{a} {m / 1e9:.2f} G MAC" for a, m in mac_count.items())
            + " per image); normalisation is inside "
            "the timed call on both sides. 1-min load average at start / end "
            f"{load_start:.1f} / {load_end:.1f} on {os.cpu_count()} cores (the "
            "script alone keeps them all busy; more means other processes shared "
            "the CPU).",
            "",
            *table,
            "",
            *ratios,
            *(
                f"- parity {a} (CPU, float32, {min(batch, 16)} images): {p}"
                for a, p in parity.items()
            ),
            f"- sweep: {n_sweep} images x {k} configurations (Exp 1 x "
            f"{sweep_repeats}: Num {', '.join(map(str, EXP1_NUMS))}, values "
            f"0..255); flip rate {flip:.4f}",
        ]
    )
    publish(SECTION, body, write)


if __name__ == "__main__":
    main()
