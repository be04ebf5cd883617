"""``pixjax run fgsm-recovery``: Exp 4 of Zhang & Cai (2021).

validate -> compute -> write -> plots -> report (see
:func:`pixjax.experiments.common.run_experiment`). Writes ``results.json`` (with the few
example images of the figure), ``results.csv``, ``report.md``, ``recovery.png`` (share
back to the correct class vs Num, per magnitude, with 95% Wilson intervals),
``fgsm_eps.png`` (FGSM success and robust accuracy vs eps) and ``examples.png`` (clean,
FGSM, FGSM + pixel changes, with predictions). ``pixjax report WORKDIR`` redraws the
figures and the report from ``results.json``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pixjax.experiments import common, reporting
from pixjax.experiments.adversarial import check_dataset_attack, eps_curve, fgsm_dataset
from pixjax.experiments.configs.fgsm_recovery import Config

from pixjax import data
from pixjax.attacks import check_args
from pixjax.evaluation import (
    change_batch,
    make_sweeper,
    run_sweep,
    seed_summary,
    summarize_outputs,
    wilson_interval,
)
from pixjax.evaluation.predict import predict
from pixjax.perturb import PixelConfig, params_at, pixel_change, stack_configs

DESCRIPTION = "Exp 4: FGSM examples, then random pixel changes: how many recover"
SPREAD = "sample sd (ddof=1)"


@dataclasses.dataclass(frozen=True)
class Setup:
    module: Any
    variables: Any
    meta: dict[str, Any]
    dataset: data.Dataset
    labels: np.ndarray  # int32 [N]: the dataset's, or the clean predictions
    grid: list[PixelConfig]
    series: dict[str, list[int]]  # series name -> grid indices


def build_grid(config: Config) -> tuple[list[PixelConfig], dict[str, list[int]]]:
    grid: list[PixelConfig] = []
    series: dict[str, list[int]] = {}
    for n in config.nums:
        series.setdefault("0..255", []).append(len(grid))
        grid.append(PixelConfig(n))
    for r in config.magnitudes:
        for n in config.nums:
            series.setdefault(f"+-{r:g}", []).append(len(grid))
            grid.append(PixelConfig(n, magnitude=r, relative=True))
    return grid, series


def validate(config: Config) -> Setup:
    """All checks and loading, before any work or file write."""
    common.require_finite(config)
    try:
        check_args(config.eps, config.norm, loss=config.loss)
        check_args(config.eps_curve or [0.0], config.norm, loss=config.loss)
    except ValueError as e:
        raise common.ConfigError(str(e)) from None
    common.require_nonempty(config, "nums", "seeds")
    common.require_magnitudes(config.magnitudes)
    common.require_positive(config, "batch_size")
    if config.examples < 0:
        raise common.ConfigError(f"examples: expected 0 or more, got {config.examples}")
    dataset = data.load(config.dataset, config.split, limit=config.limit)
    module, variables, meta = common.load_checkpoint(
        config.model, config.checkpoint, dataset.image_shape
    )
    common.require_nums(config, "nums", dataset.image_shape, config.per_channel)
    grid, series = build_grid(config)
    stack_configs(grid, dataset.image_shape, config.per_channel)
    labels = dataset.labels
    if labels is None or config.labels_from_model:
        # needed here: the attack's checks take the labels
        labels, _ = predict(module.apply, variables, dataset.images, config.batch_size)
    labels = labels.astype(np.int32)
    for eps in (config.eps, config.eps_curve or [0.0]):
        check_dataset_attack(
            module.apply,
            variables,
            dataset.images,
            labels,
            eps,
            norm=config.norm,
            loss=config.loss,
            batch_size=config.batch_size,
            one_eps=eps is config.eps,
        )
    return Setup(module, variables, meta, dataset, labels, grid, series)


def recovery_rows(out, labels, grid, series, seeds, num_classes):
    """Per config: recovered share = accuracy on the FGSM examples (mean, sample sd
    (ddof=1) over seeds, pooled Wilson CI: pixjax.evaluation.seed_summary), per class
    pooled over seeds."""
    k = len(grid)
    # per (seed, config) outcomes; classes up to the largest prediction for the tables
    rows = summarize_outputs(
        out, labels, max(num_classes, int(out.pred.max()) + 1), seeds
    )
    result = []
    for i, cfg in enumerate(grid):
        rs = rows[i::k]
        rec = seed_summary(
            [r["accuracy"] for r in rs],
            sum(r["correct"] for r in rs),
            sum(r["n"] for r in rs),
        )
        still = seed_summary([(r["n"] - r["correct"]) / r["n"] for r in rs])
        cls_n = np.sum([r["per_class_n"] for r in rs], axis=0)[:num_classes]
        cls_ok = np.sum([r["per_class_correct_after"] for r in rs], axis=0)
        per_class = [
            float(ok / t) if t else float("nan")
            for ok, t in zip(cls_ok[:num_classes], cls_n, strict=True)
        ]
        name = next(n for n, idx in series.items() if i in idx)
        result.append(
            {
                "series": name,
                "num": cfg.num,
                "magnitude": float(cfg.magnitude),
                "relative": cfg.relative,
                **rec.fields("recovered"),
                "still_adversarial_mean": still.mean,
                "per_class_recovered": per_class,
                "per_seed": [r["accuracy"] for r in rs],
            }
        )
    return result


# --- compute ---------------------------------------------------------------------------


def compute(
    config: Config, setup: Setup, *, run_dir: pathlib.Path, command: str
) -> dict[str, Any]:
    """FGSM on every image, the eps curve, then the pixel-change sweep over the
    successful adversarial examples; touches no files."""
    del run_dir
    t0 = time.perf_counter()
    module, variables, ds, labels = (
        setup.module,
        setup.variables,
        setup.dataset,
        setup.labels,
    )
    attack = dict(norm=config.norm, loss=config.loss, batch_size=config.batch_size)
    adv = fgsm_dataset(module.apply, variables, ds.images, labels, config.eps, **attack)
    correct = adv.clean_pred == labels
    success = correct & (adv.pred != labels)
    idx = np.flatnonzero(success)
    curve = (
        eps_curve(
            module.apply, variables, ds.images, labels, config.eps_curve, **attack
        )
        if config.eps_curve
        else None
    )
    num_classes = max(len(ds.class_names), int(labels.max()) + 1)
    rows: list[dict[str, Any]] = []
    examples = None
    if len(idx):
        # The only random stream (the changes) comes from key(config.key), each seed
        # folded in by the sweep engine; FGSM is deterministic.
        key = jax.random.key(config.key)
        change = pixel_change(
            ds.image_shape,
            max(c.num for c in setup.grid),
            per_channel=config.per_channel,
        )
        params = change.make_params(setup.grid)
        out = run_sweep(
            make_sweeper(module.apply, change),
            variables,
            adv.images[idx],
            params,
            key,
            seeds=config.seeds,
            batch_size=config.batch_size,
            progress=config.progress,
        )
        rows = recovery_rows(
            out, labels[idx], setup.grid, setup.series, config.seeds, num_classes
        )
        if config.examples:
            examples = _examples(setup, adv, idx, out, change, params, key, config)
    return {
        "metadata": common.run_metadata(
            config,
            command=command,
            model=setup.meta.get("arch"),
            dataset=ds.name,
            images=int(len(ds.images)),
            compute_seconds=time.perf_counter() - t0,
        ),
        "class_names": [str(c) for c in ds.class_names],
        "clean_accuracy": float(np.mean(correct)),
        "fgsm": {
            "eps": config.eps,
            "norm": config.norm,
            "loss": config.loss,
            "attacked": int(correct.sum()),
            # images whose input gradient was exactly zero: FGSM could not move them
            "zero_gradient": int(adv.zero_gradient.sum()),
            "zero_gradient_attacked": int((adv.zero_gradient & correct).sum()),
            "successful": int(success.sum()),
            "success_rate": float(success.sum() / max(1, correct.sum())),
            "success_ci": list(wilson_interval(int(success.sum()), int(correct.sum()))),
            "adversarial_confidence_note": "images quantised to 8 bits before scoring",
        },
        "eps_curve": curve,
        "recovery": rows,
        "examples": examples,
    }


def _examples(setup: Setup, adv, idx, out, change, params, key, config: Config):
    """The images of ``examples.png``: a few successful FGSM examples (evenly spaced),
    clean, adversarial, and changed by the largest Num with values 0..255 exactly as
    the sweep changed them (first seed), with the predictions; uint8, packed."""
    m = min(config.examples, len(idx))
    pick = np.arange(len(idx))[:: max(1, len(idx) // m)][:m]
    k_big = setup.series["0..255"][-1]
    adv_u8 = adv.images[idx[pick]]
    # sweep image i is adv.images[idx[i]]: the global index of the changes is i
    changed = change_batch(
        change,
        key,
        config.seeds[0],
        k_big,
        jnp.asarray(pick, jnp.int32),
        data.to_float(jnp.asarray(adv_u8)),
        params_at(params, k_big),
    )
    return {
        "index": idx[pick].tolist(),
        "seed": config.seeds[0],
        "labels": setup.labels[idx[pick]].tolist(),
        "clean_pred": adv.clean_pred[idx[pick]].tolist(),
        "original": common.pack_uint8(setup.dataset.images[idx[pick]]),
        "rows": [
            {
                "title": f"FGSM\neps {config.eps}",
                "images": common.pack_uint8(adv_u8),
                "pred": adv.pred[idx[pick]].tolist(),
            },
            {
                "title": "FGSM +\n" + setup.grid[k_big].label().replace(" ", "\n"),
                "config": k_big,
                "images": common.pack_uint8(common.float_to_uint8(changed)),
                "pred": out.pred[k_big][pick].tolist(),  # row k_big: the first seed
            },
        ],
    }


# --- write / plots / report (from the results document alone) -------------------------


def write(workdir: pathlib.Path, doc: dict[str, Any]) -> None:
    """``results.csv``: one row per configuration."""
    nan = lambda v: float("nan") if v is None else v
    common.write_csv_atomic(
        pathlib.Path(workdir) / "results.csv",
        [
            {
                k: nan(v)
                for k, v in r.items()
                if k not in ("per_class_recovered", "per_seed")
            }
            | {
                "recovered_ci_lo": r["recovered_ci"][0],
                "recovered_ci_hi": r["recovered_ci"][1],
            }
            for r in doc["recovery"]
        ],
    )


def plots(workdir: pathlib.Path, doc: dict[str, Any]) -> list[str]:
    """``recovery.png`` (with adversarial examples), ``fgsm_eps.png`` (with an eps
    curve) and ``examples.png`` (with examples)."""
    workdir = pathlib.Path(workdir)
    config = doc["metadata"]["config"]
    rows, curve = doc["recovery"], doc["eps_curve"]
    files = []
    plt = reporting._plt()
    if rows:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name in dict.fromkeys(r["series"] for r in rows):
            rs = [r for r in rows if r["series"] == name]
            x = [r["num"] for r in rs]
            y = np.array([r["recovered_mean"] for r in rs], float) * 100
            lo = np.array([r["recovered_ci"][0] for r in rs], float) * 100
            hi = np.array([r["recovered_ci"][1] for r in rs], float) * 100
            ax.errorbar(
                x, y, yerr=[y - lo, hi - y], marker="o", ms=4, capsize=3, label=name
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("changed pixels (Num)")
        ax.set_ylabel("FGSM examples back to the correct class (%)")
        ax.set_title(f"Exp 4: pixel changes on FGSM examples (eps {config['eps']})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        common.save_figure_atomic(fig, workdir / "recovery.png")
        plt.close(fig)
        files.append("recovery.png")
    if curve:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        ax.plot(
            curve["eps"],
            np.array(curve["success_rate"], float) * 100,
            "o-",
            label="attack success (among correct)",
        )
        ax.plot(
            curve["eps"],
            np.array(curve["robust_accuracy"], float) * 100,
            "s-",
            label="robust accuracy",
        )
        ax.set_xlabel(f"eps ({config['norm']}, [0, 1] pixel space)")
        ax.set_ylabel("%")
        ax.set_title("FGSM vs eps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        common.save_figure_atomic(fig, workdir / "fgsm_eps.png")
        plt.close(fig)
        files.append("fgsm_eps.png")
    if doc.get("examples"):
        reporting.examples_figure(
            workdir / "examples.png", doc["examples"], doc["class_names"]
        )
        files.append("examples.png")
    return files


def report(doc: dict[str, Any]) -> str:
    f = reporting.fmt_pct
    meta = doc["metadata"]
    config = meta["config"]
    names = doc["class_names"]
    g = doc["fgsm"]
    rows = doc["recovery"]
    lines = [
        f"# Exp 4: pixel changes on FGSM examples ({config['model']} on "
        f"{meta['dataset']})",
        "",
        f"- command: `{meta['command']}`",
        f"- clean accuracy {f(doc['clean_accuracy'])}%; FGSM ({config['norm']}, eps "
        f"{config['eps']}, loss {config['loss']}, 8-bit images) turned "
        f"{g['successful']} of {g['attacked']} correctly classified images adversarial "
        f"({f(g['success_rate'])}%, 95% CI [{f(g['success_ci'][0])}, "
        f"{f(g['success_ci'][1])}])",
        reporting.zero_gradient_line(g["zero_gradient_attacked"], g["attacked"]),
        f"- seeds {list(config['seeds'])}; computation {meta['compute_seconds']:.1f} s",
        "- cells: share of the adversarial examples back to the correct class, % "
        f"(mean +- {SPREAD} over seeds)",
        "",
    ]
    if rows:
        series = list(dict.fromkeys(r["series"] for r in rows))
        nums = sorted({r["num"] for r in rows})
        table = []
        for n in nums:
            row = [n]
            for name in series:
                r = next(
                    (r for r in rows if r["series"] == name and r["num"] == n), None
                )
                row.append(
                    "-"
                    if r is None
                    else f"{f(r['recovered_mean'])} +- {f(r['recovered_std'])}"
                )
            table.append(row)
        lines += [
            "## Recovered by random pixel changes",
            "",
            reporting.markdown_table(["Num", *series], table),
            "",
        ]
        best = max(rows, key=lambda r: r["recovered_mean"])
        lines += [
            f"Best: {best['series']} at Num = {best['num']}: {f(best['recovered_mean'])}% "
            f"[{f(best['recovered_ci'][0])}, {f(best['recovered_ci'][1])}]; per class: "
            + ", ".join(
                f"{names[c] if c < len(names) else c}: {f(v, 1)}"
                for c, v in enumerate(best["per_class_recovered"])
            ),
            "",
        ]
    if doc["eps_curve"]:
        c = doc["eps_curve"]
        lines += [
            "## FGSM vs eps",
            "",
            "Adversarial images scored as floats (not rounded to 8 bits as above), so "
            "the row at the main eps can differ slightly from the headline.",
            "",
            reporting.zero_gradient_line(c["zero_gradient"], meta["images"]),
            "",
            reporting.markdown_table(
                ["eps", "attack success %", "robust accuracy %"],
                [
                    [f"{e:g}", f(s), f(a)]
                    for e, s, a in zip(
                        c["eps"], c["success_rate"], c["robust_accuracy"], strict=True
                    )
                ],
            ),
            "",
        ]
    if rows:
        lines.append("![recovery](recovery.png)")
    if doc["eps_curve"]:
        lines.append("![fgsm vs eps](fgsm_eps.png)")
    if doc.get("examples"):
        lines.append("![examples](examples.png)")
    return "\n".join(lines) + "\n"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    g = doc["fgsm"]
    best = max([r["recovered_mean"] for r in doc["recovery"]] or [0])
    return [
        f"FGSM eps={g['eps']}: {g['successful']} of {g['attacked']} correctly "
        f"classified images became adversarial; best recovery {100 * best:.1f}%"
    ]
