"""``pixjax run fgsm-recovery``: Exp 4 of Zhang & Cai (2021).

Writes ``results.json``, ``results.csv``, ``report.md``, ``recovery.png`` (share back to
the correct class vs Num, per magnitude, with 95% Wilson intervals), ``fgsm_eps.png``
(FGSM success and robust accuracy vs eps) and ``examples.png`` (clean, FGSM, FGSM +
pixel changes, with predictions).
"""

from __future__ import annotations

import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.experiments import common, reporting
from pixjax.experiments.adversarial import check_dataset_attack, eps_curve, fgsm_dataset
from pixjax.experiments.configs.fgsm_recovery import Config
from pixjax.experiments.pixel_change import load_model
from pixjax import data
from pixjax.attacks import check_args
from pixjax.evaluation import change_batch, make_sweeper, run_sweep, wilson_interval
from pixjax.perturb import PixelConfig, pixel_change, stack_configs
from pixjax.training import predict

DESCRIPTION = "Exp 4: FGSM examples, then random pixel changes: how many recover"


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


def validate(config: Config):
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
    module, variables, meta = load_model(config, dataset.image_shape)
    common.require_nums(config, "nums", dataset.image_shape, config.per_channel)
    grid, series = build_grid(config)
    stack_configs(grid, dataset.image_shape, config.per_channel)
    labels = dataset.labels
    if labels is None or config.labels_from_model:
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
    return module, variables, meta, dataset, labels, grid, series


def recovery_rows(pred, labels, grid, series, seeds, num_classes):
    """Per config: recovered share (mean, sd over seeds, pooled Wilson CI), per class."""
    k = len(grid)
    out = []
    for i, cfg in enumerate(grid):
        per_seed = [pred[s * k + i] == labels for s in range(len(seeds))]
        rec = [float(np.mean(r)) for r in per_seed]
        hits = int(sum(r.sum() for r in per_seed))
        total = int(len(labels) * len(seeds))
        pooled = np.concatenate(per_seed)
        cls = np.tile(labels, len(seeds))
        per_class = [
            float(pooled[cls == c].mean()) if (cls == c).any() else float("nan")
            for c in range(num_classes)
        ]
        name = next(n for n, idx in series.items() if i in idx)
        out.append(
            {
                "series": name,
                "num": cfg.num,
                "magnitude": float(cfg.magnitude),
                "relative": cfg.relative,
                "recovered_mean": float(np.mean(rec)) if rec else float("nan"),
                "recovered_std": float(np.std(rec, ddof=1)) if len(rec) > 1 else 0.0,
                "recovered_ci": list(wilson_interval(hits, total)),
                "still_adversarial_mean": float(
                    np.mean(
                        [np.mean(pred[s * k + i] != labels) for s in range(len(seeds))]
                    )
                ),
                "per_class_recovered": per_class,
                "per_seed": rec,
            }
        )
    return out


def run(
    config: Config, workdir: pathlib.Path, *, overwrite: bool = False
) -> dict[str, Any]:
    t0 = time.perf_counter()
    module, variables, meta, ds, labels, grid, series = validate(config)
    workdir = common.prepare_workdir(
        workdir, config, experiment="fgsm-recovery", overwrite=overwrite
    )

    adv = fgsm_dataset(
        module.apply,
        variables,
        ds.images,
        labels,
        config.eps,
        norm=config.norm,
        loss=config.loss,
        batch_size=config.batch_size,
    )
    correct = adv.clean_pred == labels
    success = correct & (adv.pred != labels)
    idx = np.flatnonzero(success)
    curve = (
        eps_curve(
            module.apply,
            variables,
            ds.images,
            labels,
            config.eps_curve,
            norm=config.norm,
            loss=config.loss,
            batch_size=config.batch_size,
        )
        if config.eps_curve
        else None
    )
    num_classes = max(len(ds.class_names), int(labels.max()) + 1)
    rows: list[dict[str, Any]] = []
    key = jax.random.key(config.key)
    change = pixel_change(
        ds.image_shape, max(c.num for c in grid), per_channel=config.per_channel
    )
    out = None
    if len(idx):
        sweeper = make_sweeper(module.apply, change)
        out = run_sweep(
            sweeper,
            variables,
            adv.images[idx],
            grid,
            key,
            seeds=config.seeds,
            batch_size=config.batch_size,
            progress=config.progress,
        )
        rows = recovery_rows(
            out.pred, labels[idx], grid, series, config.seeds, num_classes
        )
    results = {
        "metadata": common.run_metadata(
            config, model=meta.get("arch"), dataset=ds.name, images=int(len(ds.images))
        ),
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
    }
    common.write_json_atomic(workdir / "results.json", common.to_jsonable(results))
    common.write_csv_atomic(
        workdir / "results.csv",
        [
            {k: v for k, v in r.items() if k not in ("per_class_recovered", "per_seed")}
            | {
                "recovered_ci_lo": r["recovered_ci"][0],
                "recovered_ci_hi": r["recovered_ci"][1],
            }
            for r in rows
        ],
    )
    _plots(workdir, rows, curve, config)
    if out is not None and config.examples:
        _examples(workdir, ds, adv, idx, labels, grid, series, out, change, key, config)
    common.write_text_atomic(
        workdir / "report.md",
        _report(results, rows, config, ds, time.perf_counter() - t0),
    )
    print(
        f"FGSM eps={config.eps}: {success.sum()} of {correct.sum()} correctly classified "
        f"images became adversarial; best recovery "
        f"{100 * max([r['recovered_mean'] for r in rows] or [0]):.1f}%"
    )
    print(f"wrote {workdir}/report.md, results.json, results.csv and plots")
    return results


def _plots(workdir, rows, curve, config: Config) -> None:
    plt = reporting._plt()
    if rows:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for name in dict.fromkeys(r["series"] for r in rows):
            rs = [r for r in rows if r["series"] == name]
            x = [r["num"] for r in rs]
            y = np.array([r["recovered_mean"] for r in rs]) * 100
            lo = np.array([r["recovered_ci"][0] for r in rs]) * 100
            hi = np.array([r["recovered_ci"][1] for r in rs]) * 100
            ax.errorbar(
                x, y, yerr=[y - lo, hi - y], marker="o", ms=4, capsize=3, label=name
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("changed pixels (Num)")
        ax.set_ylabel("FGSM examples back to the correct class (%)")
        ax.set_title(f"Exp 4: pixel changes on FGSM examples (eps {config.eps})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        common.save_figure_atomic(fig, workdir / "recovery.png")
        plt.close(fig)
    if curve:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        ax.plot(
            curve["eps"],
            np.array(curve["success_rate"]) * 100,
            "o-",
            label="attack success (among correct)",
        )
        ax.plot(
            curve["eps"],
            np.array(curve["robust_accuracy"]) * 100,
            "s-",
            label="robust accuracy",
        )
        ax.set_xlabel(f"eps ({config.norm}, [0, 1] pixel space)")
        ax.set_ylabel("%")
        ax.set_title("FGSM vs eps")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        common.save_figure_atomic(fig, workdir / "fgsm_eps.png")
        plt.close(fig)


def _examples(workdir, ds, adv, idx, labels, grid, series, out, change, key, config):
    m = min(config.examples, len(idx))
    pick = np.arange(len(idx))[:: max(1, len(idx) // m)][:m]
    orig = ds.images[idx[pick]].astype(np.float32) / 255.0
    adv_x = adv.images[idx[pick]].astype(np.float32) / 255.0
    k_big = series["0..255"][-1]
    params = stack_configs(grid, ds.image_shape, config.per_channel)
    p = jax.tree_util.tree_map(lambda a: a[k_big], params)
    changed = change_batch(
        change,
        key,
        config.seeds[0],
        k_big,
        jnp.asarray(pick, jnp.int32),
        jnp.asarray(adv_x),
        p,
    )
    rows = [
        (f"FGSM\neps {config.eps}", adv_x, adv.pred[idx[pick]]),
        (
            "FGSM +\n" + grid[k_big].label().replace(" ", "\n"),
            np.asarray(changed),
            out.pred[k_big][pick],
        ),
    ]
    reporting.example_grid(
        workdir / "examples.png",
        orig,
        rows,
        labels[idx[pick]],
        adv.clean_pred[idx[pick]],
        ds.class_names,
    )


def _report(results, rows, config: Config, ds, total_s) -> str:
    f = reporting.fmt_pct
    g = results["fgsm"]
    lines = [
        f"# Exp 4: pixel changes on FGSM examples ({config.model} on {ds.name})",
        "",
        f"- command: `{results['metadata']['command']}`",
        f"- clean accuracy {f(results['clean_accuracy'])}%; FGSM ({config.norm}, eps "
        f"{config.eps}, loss {config.loss}, 8-bit images) turned {g['successful']} of "
        f"{g['attacked']} correctly classified images adversarial "
        f"({f(g['success_rate'])}%, 95% CI [{f(g['success_ci'][0])}, "
        f"{f(g['success_ci'][1])}])",
        reporting.zero_gradient_line(g["zero_gradient_attacked"], g["attacked"]),
        f"- seeds {list(config.seeds)}; whole run {total_s:.1f} s",
        "- cells: share of the adversarial examples back to the correct class, % "
        "(mean +- sd over seeds)",
        "",
    ]
    if rows:
        names = list(dict.fromkeys(r["series"] for r in rows))
        nums = sorted({r["num"] for r in rows})
        table = []
        for n in nums:
            row = [n]
            for name in names:
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
            reporting.markdown_table(["Num", *names], table),
            "",
        ]
        best = max(rows, key=lambda r: r["recovered_mean"])
        lines += [
            f"Best: {best['series']} at Num = {best['num']}: {f(best['recovered_mean'])}% "
            f"[{f(best['recovered_ci'][0])}, {f(best['recovered_ci'][1])}]; per class: "
            + ", ".join(
                f"{ds.class_names[c] if c < len(ds.class_names) else c}: {f(v, 1)}"
                for c, v in enumerate(best["per_class_recovered"])
            ),
            "",
        ]
    if results["eps_curve"]:
        c = results["eps_curve"]
        lines += [
            "## FGSM vs eps",
            "",
            "Adversarial images scored as floats (not rounded to 8 bits as above), so "
            "the row at the main eps can differ slightly from the headline.",
            "",
            reporting.zero_gradient_line(c["zero_gradient"], len(ds.images)),
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
    lines += ["![recovery](recovery.png)", "![fgsm vs eps](fgsm_eps.png)"]
    if config.examples:
        lines.append("![examples](examples.png)")
    return "\n".join(lines) + "\n"
