"""FGSM throughput: pixjax vs PyTorch and the attack libraries, in one run, on the same
weights (the shipped LeNet-5 checkpoint and its torch twin) and the same images.

Measures images / s (median of --repeats runs after a warm-up, compilation excluded):

1. FGSM at one eps (0.1, L-inf): adversarial images + predictions on them.
   (a) pixjax ``jax.jit`` of ``fgsm`` + forward; (b) plain PyTorch autograd;
   (c) torchattacks ``FGSM``; (d) ART ``FastGradientMethod`` + ``PyTorchClassifier``;
   (e) Foolbox ``LinfFastGradientAttack`` (adversarial images + success flags).
2. A 16-eps sweep (``linspace(0, 0.3, 16)``) with robust accuracy per eps.
   (a) pixjax ``fgsm_sweep`` (jitted; one gradient, 16 forwards per batch);
   (b) torchattacks, one attack per eps; (c) ART, ``set_params(eps=...)`` per eps;
   (d) plain PyTorch with the gradient computed once and 16 forwards (the smartest
   torch version); (e) Foolbox with the eps list (it loops over it internally).
3. The bare forward pass and the bare loss gradient of both frameworks, same batch.

pixjax's robust accuracies must equal plain PyTorch's within 0.5 percentage points per
eps (sign ties of near-zero gradients may differ). Every library that cannot be
imported or run is skipped with the reason printed.

Run: ``python benchmarks/bench_fgsm.py`` (``--quick`` for a smoke check, ``--no-write``
to leave RESULTS.md alone). Needs the ``torch`` extra; the libraries install with
``pip install --no-deps torchattacks && pip install adversarial-robustness-toolbox``
(``--no-deps``: torchattacks declares torchvision, which would pull a new torch build;
3.5.1 imports fine without it) and optionally ``pip install foolbox``.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import sys
import traceback

# On a GPU, leave room for torch next to JAX (JAX takes 75% of the memory otherwise).
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._common import device_name, timeit, write_section  # noqa: E402
from pixjax import checkpoints, data  # noqa: E402
from pixjax.attacks import fgsm, fgsm_sweep  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPS_ONE = 0.1
EPS_SWEEP = np.linspace(0.0, 0.3, 16).astype(np.float32)
ONE = "FGSM, eps 0.1 (adv. images + predictions)"
SWEEP = f"FGSM sweep, {len(EPS_SWEEP)} eps (robust accuracy per eps)"
BARE = "bare passes"


def timed(fn, repeats):
    """``(median seconds, last result)`` of ``fn()`` (which must block until done)."""
    out = {}
    t = timeit(lambda: out.__setitem__("r", fn()), repeats)
    return t, out["r"]


def skip_reason(exc: BaseException) -> str:
    line = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return line if len(line) < 200 else line[:200] + "..."


# --------------------------------------------------------------------------- pixjax


def pixjax_runners(module, variables, images, labels, batch):
    """Closures timing pixjax on device-resident batches (images float in [0, 1])."""
    xs = [jnp.asarray(images[s : s + batch]) for s in range(0, len(images), batch)]
    ys = [jnp.asarray(labels[s : s + batch]) for s in range(0, len(labels), batch)]
    eps_sweep = jnp.asarray(EPS_SWEEP)

    @jax.jit
    def one_step(variables, x, y, eps):
        logits_fn = functools.partial(module.apply, variables)
        adv = fgsm(logits_fn, x, y, eps)
        return adv, jnp.argmax(logits_fn(adv), -1)

    @jax.jit
    def sweep_step(variables, x, y, eps):
        res = fgsm_sweep(functools.partial(module.apply, variables), x, y, eps)
        return jnp.sum(res.pred == y, axis=1)  # [E] correct per eps

    fwd = jax.jit(module.apply)

    @jax.jit
    def grad_step(variables, x, y):
        def loss(x):
            logits = module.apply(variables, x)
            logp = jax.nn.log_softmax(logits)
            return -jnp.sum(jnp.take_along_axis(logp, y[:, None], 1))

        return jax.grad(loss)(x)

    def one():
        outs = [one_step(variables, x, y, EPS_ONE) for x, y in zip(xs, ys, strict=True)]
        jax.block_until_ready(outs)
        return np.concatenate([np.asarray(p) for _, p in outs])

    def sweep():
        counts = [sweep_step(variables, x, y, eps_sweep) for x, y in zip(xs, ys, strict=True)]
        return np.sum([np.asarray(c) for c in counts], axis=0)

    def forward():
        jax.block_until_ready([fwd(variables, x) for x in xs])

    def gradient():
        jax.block_until_ready([grad_step(variables, x, y) for x, y in zip(xs, ys, strict=True)])

    return one, sweep, forward, gradient


# --------------------------------------------------------------------------- torch


def torch_runners(torch, tm, tdev, images, labels, batch):
    """Plain PyTorch: one-eps FGSM, the gradient-once sweep, bare passes."""
    F = torch.nn.functional
    nchw = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    xs = [torch.from_numpy(nchw[s : s + batch]).to(tdev) for s in range(0, len(nchw), batch)]
    ys = [
        torch.from_numpy(labels[s : s + batch].astype(np.int64)).to(tdev)
        for s in range(0, len(labels), batch)
    ]
    sync = torch.cuda.synchronize if tdev == "cuda" else (lambda: None)

    def direction(x, y):
        x = x.clone().requires_grad_(True)
        loss = F.cross_entropy(tm(x), y, reduction="sum")  # as pixjax: summed
        (g,) = torch.autograd.grad(loss, x)
        return g.sign()

    def one():
        preds = []
        for x, y in zip(xs, ys, strict=True):
            adv = (x + EPS_ONE * direction(x, y)).clamp_(0.0, 1.0)
            with torch.inference_mode():
                preds.append(tm(adv).argmax(1))
        sync()
        return torch.cat(preds).cpu().numpy()

    eps_list = [float(e) for e in EPS_SWEEP]

    def sweep():
        correct = torch.zeros(len(eps_list), dtype=torch.int64, device=tdev)
        for x, y in zip(xs, ys, strict=True):
            d = direction(x, y)
            with torch.inference_mode():
                for i, e in enumerate(eps_list):
                    pred = tm((x + e * d).clamp_(0.0, 1.0)).argmax(1)
                    correct[i] += (pred == y).sum()
        return correct.cpu().numpy()

    def forward():
        with torch.inference_mode():
            for x in xs:
                tm(x)
        sync()

    def gradient():
        for x, y in zip(xs, ys, strict=True):
            x = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(tm(x), y, reduction="sum"), x)
        sync()

    return xs, ys, sync, one, sweep, forward, gradient


def torchattacks_runners(torch, tm, xs, ys, sync):
    import torchattacks  # 3.5.1 does not import torchvision at import time

    atk = torchattacks.FGSM(tm, eps=EPS_ONE)

    def one():
        atk.eps = EPS_ONE
        preds = []
        for x, y in zip(xs, ys, strict=True):
            adv = atk(x, y)
            with torch.inference_mode():
                preds.append(tm(adv).argmax(1))
        sync()
        return torch.cat(preds).cpu().numpy()

    def sweep():
        correct = []
        for e in EPS_SWEEP:
            atk.eps = float(e)
            c = 0
            for x, y in zip(xs, ys, strict=True):
                adv = atk(x, y)
                with torch.inference_mode():
                    c += (tm(adv).argmax(1) == y).sum()
            correct.append(c)
        return torch.stack(correct).cpu().numpy()

    return one, sweep, f"torchattacks {torchattacks.__version__}"


def art_runners(torch, tm, tdev, images, labels, batch, num_classes):
    import art
    from art.attacks.evasion import FastGradientMethod
    from art.estimators.classification import PyTorchClassifier

    x_np = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    y_onehot = np.eye(num_classes, dtype=np.float32)[labels]
    clf = PyTorchClassifier(
        model=tm,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=x_np.shape[1:],
        nb_classes=num_classes,
        clip_values=(0.0, 1.0),
        device_type="gpu" if tdev == "cuda" else "cpu",
    )
    # eps_step only matters for minimal=True; it must be a positive float.
    attack = FastGradientMethod(
        clf, norm=np.inf, eps=EPS_ONE, eps_step=EPS_ONE, batch_size=batch
    )

    def one():
        attack.set_params(eps=EPS_ONE)
        adv = attack.generate(x_np, y_onehot)
        return clf.predict(adv, batch_size=batch).argmax(1)

    def sweep():
        correct = []
        for e in EPS_SWEEP:
            attack.set_params(eps=float(e))
            adv = attack.generate(x_np, y_onehot)
            correct.append(np.sum(clf.predict(adv, batch_size=batch).argmax(1) == labels))
        return np.array(correct)

    return one, sweep, f"ART {art.__version__}"


def foolbox_runners(torch, tm, tdev, xs, ys):
    import foolbox as fb

    fmodel = fb.PyTorchModel(tm, bounds=(0.0, 1.0), device=tdev)
    attack = fb.attacks.LinfFastGradientAttack(random_start=False)
    eps_list = [float(e) for e in EPS_SWEEP]

    def one():
        # Foolbox returns success flags (from its own forward pass), not predictions:
        # robust = not success.
        robust = []
        for x, y in zip(xs, ys, strict=True):
            _, _, success = attack(fmodel, x, y, epsilons=EPS_ONE)
            robust.append(~success)
        return torch.cat(robust).cpu().numpy()

    def sweep():
        correct = torch.zeros(len(eps_list), dtype=torch.int64, device=tdev)
        for x, y in zip(xs, ys, strict=True):
            _, _, success = attack(fmodel, x, y, epsilons=eps_list)  # [E, b]
            correct += (~success).sum(1)
        return correct.cpu().numpy()

    return one, sweep, f"Foolbox {fb.__version__}"


# --------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1000 images, 1 repeat")
    ap.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    ap.add_argument("--batch", type=int, default=500, help="images per batch, all rows")
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    batch = args.batch

    module, variables, _ = checkpoints.load_model(
        os.path.join(ROOT, "checkpoints", "lenet5-mnist")
    )
    ds = data.load("mnist-sample", "test")
    n = 1000 if args.quick else len(ds.images)
    images = ds.images[:n].astype(np.float32) / 255.0
    labels = np.asarray(ds.labels[:n], np.int32)
    num_classes = int(module.num_classes)

    # rows: (task, implementation, seconds); correct: name -> [E] correct counts
    rows: list[tuple[str, str, float]] = []
    one_acc: dict[str, float] = {}
    correct: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    versions = [f"jax {jax.__version__}"]

    def note_skip(what: str, why: str) -> None:
        print(f"SKIPPED {what}: {why}", flush=True)
        skipped.append(f"{what}: {why}")

    print(f"pixjax on {device_name()} ...", flush=True)
    p_one, p_sweep, p_fwd, p_grad = pixjax_runners(
        module, variables, images, labels, batch
    )
    t, pred = timed(p_one, repeats)
    rows.append((ONE, "pixjax (`jax.jit` of `fgsm` + forward)", t))
    one_acc["pixjax"] = float(np.mean(pred == labels))
    t, c = timed(p_sweep, repeats)
    rows.append((SWEEP, "pixjax `fgsm_sweep` (jitted; 1 gradient + 16 forwards)", t))
    correct["pixjax"] = c
    rows.append((BARE, f"JAX forward (batch {batch})", timeit(p_fwd, repeats)))
    rows.append((BARE, f"JAX loss gradient (batch {batch})", timeit(p_grad, repeats)))

    try:
        import torch
    except ImportError as e:
        torch = None
        note_skip("all PyTorch rows and the parity check", skip_reason(e))

    if torch is not None:
        from pixjax.models.torch_reference import lenet5_to_torch

        torch.set_num_threads(os.cpu_count() or 1)
        tdev = "cuda" if torch.cuda.is_available() else "cpu"
        versions.append(f"torch {torch.__version__} on {tdev}")
        # Twin check on the CPU in float32 (no TF32 on either side).
        cpu_vars = jax.tree.map(np.asarray, variables)
        with jax.default_device(jax.devices("cpu")[0]):
            ref = np.asarray(module.apply(cpu_vars, images[:256]))
        with torch.inference_mode():
            twin = lenet5_to_torch(variables)(
                torch.from_numpy(np.ascontiguousarray(images[:256].transpose(0, 3, 1, 2)))
            ).numpy()
        diff = float(np.abs(twin - ref).max())
        assert diff < 1e-3, f"torch twin differs from the Flax model: {diff}"
        versions.append(f"max |logit diff| Flax vs torch twin {diff:.1e}")

        tm = lenet5_to_torch(variables).to(tdev)
        print(f"plain PyTorch on {tdev} ...", flush=True)
        xs, ys, sync, t_one, t_sweep, t_fwd, t_grad = torch_runners(
            torch, tm, tdev, images, labels, batch
        )
        t, pred = timed(t_one, repeats)
        rows.append((ONE, "plain PyTorch autograd", t))
        one_acc["plain PyTorch"] = float(np.mean(pred == labels))
        t, c = timed(t_sweep, repeats)
        rows.append((SWEEP, "plain PyTorch, gradient once + 16 forwards", t))
        correct["plain PyTorch"] = c
        rows.append((BARE, f"PyTorch forward (batch {batch})", timeit(t_fwd, repeats)))
        rows.append(
            (BARE, f"PyTorch loss gradient (batch {batch})", timeit(t_grad, repeats))
        )

        libs = [
            ("torchattacks", lambda: torchattacks_runners(torch, tm, xs, ys, sync)),
            (
                "ART",
                lambda: art_runners(torch, tm, tdev, images, labels, batch, num_classes),
            ),
            ("Foolbox", lambda: foolbox_runners(torch, tm, tdev, xs, ys)),
        ]
        for name, make in libs:
            print(f"{name} ...", flush=True)
            try:
                l_one, l_sweep, version = make()
                t1, out = timed(l_one, repeats)
                ts, c = timed(l_sweep, repeats)
            except Exception as e:  # a library that cannot run is skipped, not fatal
                note_skip(name, skip_reason(e))
                continue
            versions.append(version)
            how = {
                "torchattacks": "`torchattacks.FGSM`",
                "ART": "ART `FastGradientMethod` + `PyTorchClassifier`",
                "Foolbox": "Foolbox `LinfFastGradientAttack` (success flags)",
            }[name]
            rows.append((ONE, how, t1))
            # Foolbox's one-eps result is already "robust" (not success) per image.
            one_acc[name] = float(np.mean(out if name == "Foolbox" else out == labels))
            sweep_how = {
                "torchattacks": "torchattacks, one attack per eps",
                "ART": "ART, `set_params(eps=...)` per eps",
                "Foolbox": "Foolbox, eps list (loops over eps inside)",
            }[name]
            rows.append((SWEEP, sweep_how, ts))
            correct[name] = c

    # ---------------------------------------------------------------- checks
    acc = {k: 100.0 * np.asarray(v, np.float64) / n for k, v in correct.items()}
    parity = ""
    if "plain PyTorch" in acc:
        dev_pp = float(np.max(np.abs(acc["pixjax"] - acc["plain PyTorch"])))
        assert dev_pp <= 0.5, (
            f"pixjax robust accuracy differs from plain PyTorch by {dev_pp:.2f} pp: "
            f"{acc['pixjax']} vs {acc['plain PyTorch']}"
        )
        parity = (
            f"- robust accuracy, pixjax vs plain PyTorch: max |diff| over the "
            f"{len(EPS_SWEEP)} eps **{dev_pp:.2f} pp** (asserted <= 0.5)"
        )
        others = [
            f"{k} {np.max(np.abs(v - acc['plain PyTorch'])):.2f} pp"
            for k, v in acc.items()
            if k not in ("pixjax", "plain PyTorch")
        ]
        if others:
            parity += "; libraries vs plain PyTorch: " + ", ".join(others)

    # ---------------------------------------------------------------- report
    rate = {(task, impl): n / t for task, impl, t in rows}
    pix_one = n / next(t for task, impl, t in rows if task == ONE)
    pix_sweep = n / next(t for task, impl, t in rows if task == SWEEP)
    table = [
        "| task | implementation | images / s | pixjax / this |",
        "|---|---|---:|---:|",
    ]
    for task, impl, _ in rows:
        r = rate[(task, impl)]
        if task == BARE:
            ratio = ""
        else:
            ratio = f"{(pix_one if task == ONE else pix_sweep) / r:.2f}x"
        table.append(f"| {task} | {impl} | {r:,.0f} | {ratio} |")

    ratios = []
    lib_sweeps = [
        (impl, rate[(task, impl)])
        for task, impl, _ in rows
        if task == SWEEP and not impl.startswith(("pixjax", "plain"))
    ]
    if lib_sweeps:
        best_name, best = max(lib_sweeps, key=lambda p: p[1])
        ratios.append(
            f"- pixjax {len(EPS_SWEEP)}-eps sweep / fastest library ({best_name}): "
            f"**{pix_sweep / best:.2f}x** (target >= 2: "
            f"{'met' if pix_sweep / best >= 2 else 'missed'})"
        )
    t_rate = {impl: r for (task, impl), r in rate.items()}
    if "plain PyTorch autograd" in t_rate:
        tsw = t_rate["plain PyTorch, gradient once + 16 forwards"]
        ratios.append(
            f"- pixjax {len(EPS_SWEEP)}-eps sweep / plain PyTorch with the gradient "
            f"once: {pix_sweep / tsw:.2f}x (the same algorithm in both frameworks)"
        )
        one_ratio = pix_one / t_rate["plain PyTorch autograd"]
        ratios.append(
            f"- pixjax one-eps FGSM / plain PyTorch: **{one_ratio:.2f}x** (target >= "
            f"0.8: {'met' if one_ratio >= 0.8 else 'missed'})"
        )
        jf = t_rate[f"JAX forward (batch {batch})"]
        tf = t_rate[f"PyTorch forward (batch {batch})"]
        jg = t_rate[f"JAX loss gradient (batch {batch})"]
        tg = t_rate[f"PyTorch loss gradient (batch {batch})"]
        ratios.append(
            f"- bare passes, JAX / PyTorch: forward {jf / tf:.2f}x "
            f"({jf:,.0f} vs {tf:,.0f} img/s), loss gradient {jg / tg:.2f}x "
            f"({jg:,.0f} vs {tg:,.0f} img/s)"
        )
        if one_ratio < 0.8:
            ratios.append(
                "- the one-eps target is missed: one FGSM step is one gradient plus one "
                "forward pass, and here XLA's CPU convolutions are slower than "
                "PyTorch's (the bare passes above, same run), so pixjax cannot beat the "
                "passes it is made of; it wins where it batches work (the sweep)"
            )
    if parity:
        ratios.append(parity)
    ratios.append(
        "- robust accuracy at eps 0.1 (one-eps rows): "
        + ", ".join(f"{k} {100 * v:.2f}%" for k, v in one_acc.items())
    )

    names = list(acc)
    acc_table = [
        "| eps | " + " | ".join(names) + " |",
        "|---:|" + "---:|" * len(names),
    ]
    for i, e in enumerate(EPS_SWEEP):
        acc_table.append(
            f"| {e:.2f} | " + " | ".join(f"{acc[k][i]:.2f}" for k in names) + " |"
        )

    cmd = "python benchmarks/bench_fgsm.py" + (" --quick" if args.quick else "")
    body = "\n".join(
        [
            f"{datetime.date.today()}, `{cmd} --batch {batch} --repeats {repeats}`; "
            f"LeNet-5 (shipped checkpoint; torch twin with the same weights), {n} "
            f"bundled MNIST test images, batch {batch} everywhere; images / s = "
            f"images attacked (at every eps, for the sweep) per second, median of "
            f"{repeats} runs after a warm-up (compilation excluded); "
            + "; ".join(versions)
            + ".",
            "",
            *table,
            "",
            *ratios,
            *(["", "Skipped: " + "; ".join(skipped) + "."] if skipped else []),
            "",
            "Robust accuracy (%) per eps, sweep rows:",
            "",
            *acc_table,
        ]
    )
    dev = device_name()
    print(f"## {dev}\n{body}")
    if not args.no_write:
        write_section("FGSM", dev, body)


if __name__ == "__main__":
    main()
