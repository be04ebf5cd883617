"""``pixjax run pixel-change``: Exp 1-3 of Zhang & Cai (2021) and the Pixel-index.

Writes ``results.json`` (every configuration and seed, with per-class flips, where the
flipped images go and their confidence), ``results.csv`` (one row per experiment and
configuration, mean and spread over seeds), ``report.md`` (tables), ``exp1.png``,
``exp2.png``, ``exp3.png`` (accuracy and flip rate with 95% Wilson intervals) and
``examples.png`` (changed images with predictions before and after).
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
from pixjax.experiments.configs.pixel_change import Config
from pixjax import checkpoints, data, models
from pixjax.evaluation import change_batch, make_sweeper, run_sweep, summarize_outputs
from pixjax.evaluation.metrics import wilson_interval
from pixjax.perturb import PixelConfig, pixel_change, stack_configs
from pixjax.training import predict

DESCRIPTION = "main job: random pixel changes Exp 1-3 + Pixel-index (Zhang & Cai 2021)"


@dataclasses.dataclass
class Setup:
    module: Any
    variables: Any
    meta: dict[str, Any]
    dataset: data.Dataset
    grid: list[PixelConfig]
    members: dict[int, list[tuple[Any, int, int]]]  # exp -> (series, num, grid index)


def load_model(config: Config, image_shape: tuple[int, ...]):
    models.get_model(config.model)  # unknown name -> error listing the models
    path = common.resolve_checkpoint(config.checkpoint)
    if path is None:
        raise common.ConfigError(
            "checkpoint: required (a shipped name such as 'lenet5-mnist' or a model "
            "directory written by `pixjax run train` / pixjax.checkpoints.save_model)"
        )
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint: {str(path)!r} does not exist; shipped checkpoints: "
            f"{common.shipped_checkpoints()}"
        )
    module, variables, meta = checkpoints.load_model(path, arch=config.model)
    if tuple(meta["input_shape"]) != tuple(image_shape):
        # Any size the architecture takes with these weights is fine (a converted
        # ResNet records 224x224 but runs on 32x32); the recorded one is a default.
        try:
            models.check_input(module, variables, image_shape)
        except ValueError as e:
            raise common.ConfigError(
                f"dataset: images of shape {tuple(image_shape)} do not fit checkpoint "
                f"{str(path)!r} (recorded input {tuple(meta['input_shape'])}): {e}"
            ) from None
    return module, variables, meta


def default_regions(side: int) -> tuple[int, ...]:
    return tuple(
        sorted({max(1, round(side * f / 7)) for f in (7, 6, 5, 4, 3)}, reverse=True)
    )


def build_grid(config: Config, image_shape: tuple[int, int, int]):
    """The unique configurations of the requested experiments and where each belongs."""
    h, w, c = image_shape
    grid: dict[PixelConfig, int] = {}
    members: dict[int, list[tuple[Any, int, int]]] = {}

    def add(exp, series, cfg):
        if cfg not in grid:
            grid[cfg] = len(grid)
        members.setdefault(exp, []).append((series, cfg.num, grid[cfg]))

    per = c if config.per_channel else 1
    if 1 in config.experiments:
        for n in config.nums:
            add(1, "0..255", PixelConfig(n))
    if 2 in config.experiments:
        for r in config.magnitudes:
            for n in config.nums:
                add(2, f"+-{r:g}", PixelConfig(n, magnitude=r, relative=True))
    if 3 in config.experiments:
        for s in config.regions or default_regions(min(h, w)):
            if not 1 <= s <= min(h, w):
                raise common.ConfigError(
                    f"regions: expected centred square sides 1..{min(h, w)} (the image "
                    f"is {h}x{w}), got {s}"
                )
            region = None if (s == h and s == w) else s
            for n in config.nums:
                if n <= s * s * per:
                    add(3, f"{s}x{s}", PixelConfig(n, region=region))
    return list(grid), members


def validate(config: Config) -> Setup:
    """All checks and loading, before any work or file write."""
    common.require_finite(config)
    if not config.experiments or not set(config.experiments) <= {1, 2, 3}:
        raise common.ConfigError(
            f"experiments: expected a non-empty subset of 1,2,3, got {config.experiments}"
        )
    common.require_nonempty(config, "nums", "seeds")
    if 2 in config.experiments:
        common.require_nonempty(config, "magnitudes")
    common.require_magnitudes(config.magnitudes)
    common.require_positive(config, "batch_size")
    if config.examples < 0:
        raise common.ConfigError(f"examples: expected 0 or more, got {config.examples}")
    models.get_model(config.model)
    dataset = data.load(config.dataset, config.split, limit=config.limit)
    module, variables, meta = load_model(config, dataset.image_shape)
    if dataset.labels is not None and not config.labels_from_model:
        data.check_labels(
            dataset.labels,
            models.num_logits(module.apply, variables, dataset.image_shape),
            argument=f"labels of {dataset.name}",
        )
    common.require_nums(config, "nums", dataset.image_shape, config.per_channel)
    grid, members = build_grid(config, dataset.image_shape)
    if 3 in config.experiments and not members.get(3):
        raise common.ConfigError(
            f"regions: no Exp 3 configuration fits: every region in "
            f"{config.regions or 'the default'} is smaller than every Num in nums="
            f"{config.nums}"
        )
    stack_configs(grid, dataset.image_shape, config.per_channel)  # num/region/magnitude
    return Setup(module, variables, meta, dataset, grid, members)


def aggregate(
    rows: list[dict[str, Any]], n_cfg: int, n_seeds: int
) -> list[dict[str, Any]]:
    """Mean / spread over seeds and pooled Wilson intervals, per configuration."""
    out = []
    for k in range(n_cfg):
        rs = [rows[s * n_cfg + k] for s in range(n_seeds)]
        flips = sum(r["flips"] for r in rs)
        cc = sum(r["clean_correct"] for r in rs)
        correct = sum(r["correct"] for r in rs)
        n = sum(r["n"] for r in rs)
        fr = np.array([r["flip_rate"] for r in rs])
        acc = np.array([r["accuracy"] for r in rs])
        pi = np.array([r["pixel_index"] for r in rs])
        conf = np.array([r["flipped_confidence"] for r in rs])
        out.append(
            {
                **rs[0]["config"],
                "flip_rate_mean": float(np.mean(fr)),
                "flip_rate_std": float(np.std(fr, ddof=1)) if n_seeds > 1 else 0.0,
                "flip_rate_ci": list(wilson_interval(flips, cc)),
                "accuracy_mean": float(np.mean(acc)),
                "accuracy_std": float(np.std(acc, ddof=1)) if n_seeds > 1 else 0.0,
                "accuracy_ci": list(wilson_interval(correct, n)),
                "pixel_index_mean": float(np.mean(pi)),
                "pixel_index_std": float(np.std(pi, ddof=1)) if n_seeds > 1 else 0.0,
                "flipped_confidence_mean": float(np.nanmean(conf))
                if np.isfinite(conf).any()
                else float("nan"),
                "flips_total": flips,
                "clean_correct_total": cc,
            }
        )
    return out


def run(
    config: Config, workdir: pathlib.Path, *, overwrite: bool = False
) -> dict[str, Any]:
    t0 = time.perf_counter()
    setup = validate(config)
    ds = setup.dataset
    shape = ds.image_shape
    apply_fn = setup.module.apply
    labels = ds.labels
    if labels is None or config.labels_from_model:
        labels, _ = predict(apply_fn, setup.variables, ds.images, config.batch_size)
        labels = labels.astype(np.int32)
    workdir = common.prepare_workdir(
        workdir, config, experiment="pixel-change", overwrite=overwrite
    )

    # One compiled sweep over the whole grid x seeds.
    max_num = max(c.num for c in setup.grid)
    change = pixel_change(
        shape, max_num, per_channel=config.per_channel, quantize=config.quantize
    )
    sweeper = make_sweeper(apply_fn, change)
    key = jax.random.key(config.key)
    t1 = time.perf_counter()
    out = run_sweep(
        sweeper,
        setup.variables,
        ds.images,
        setup.grid,
        key,
        seeds=config.seeds,
        batch_size=config.batch_size,
        progress=config.progress,
    )
    sweep_s = time.perf_counter() - t1
    num_classes = max(
        len(ds.class_names), int(setup.meta["model_kwargs"].get("num_classes", 0))
    )
    rows = summarize_outputs(out, labels, setup.grid, config.seeds, shape, num_classes)
    agg = aggregate(rows, len(setup.grid), len(config.seeds))
    clean_acc = float(np.mean(out.clean_pred == labels))

    results = {
        "metadata": common.run_metadata(
            config,
            model=setup.meta.get("arch"),
            checkpoint=str(config.checkpoint),
            dataset=ds.name,
            images=int(len(ds.images)),
            image_shape=list(shape),
            sweep_seconds=sweep_s,
            evaluations=int(out.pred.size),
        ),
        "clean_accuracy": clean_acc,
        "clean_correct": int(np.sum(out.clean_pred == labels)),
        "configs": agg,
        "experiments": {
            str(e): [{"series": s, "num": n, "config": i} for s, n, i in m]
            for e, m in setup.members.items()
        },
        "per_seed": rows,
    }
    headline = _headline(setup, agg, shape)
    results["pixel_index"] = headline
    common.write_json_atomic(workdir / "results.json", common.to_jsonable(results))
    _write_csv(workdir / "results.csv", setup, agg)
    _plots(workdir, setup, agg, config, ds)
    _examples(workdir, setup, out, labels, change, key, config)
    total_s = time.perf_counter() - t0
    report = _report(setup, agg, results, config, total_s, sweep_s)
    common.write_text_atomic(workdir / "report.md", report)
    print(
        f"clean accuracy {100 * clean_acc:.2f}% on {len(ds.images)} images; "
        f"{out.pred.size} changed-image evaluations in {sweep_s:.1f}s "
        f"({out.pred.size / sweep_s:,.0f}/s)"
    )
    if headline:
        print(
            f"Pixel-index (Num={headline['num']}, values 0..255, whole image): "
            f"{headline['pi']:.2f}"
        )
    print(f"wrote {workdir}/report.md, results.json, results.csv and plots")
    return results


def _headline(setup: Setup, agg, shape) -> dict[str, Any] | None:
    if 1 not in setup.members:
        return None
    _, num, idx = max(setup.members[1], key=lambda m: m[1])
    a = agg[idx]
    return {
        "num": num,
        "pi": a["pixel_index_mean"],
        "pi_std": a["pixel_index_std"],
        "w": a["flip_rate_mean"],
        "p": num / (shape[0] * shape[1]),
        "r": 1.0,
        "a": 1.0,
    }


def _write_csv(path, setup: Setup, agg) -> None:
    rows = []
    for exp, members in sorted(setup.members.items()):
        for series, num, idx in members:
            a = agg[idx]
            rows.append(
                {
                    "experiment": exp,
                    "series": series,
                    "num": num,
                    "magnitude": a["magnitude"],
                    "relative": a["relative"],
                    "region_h": a["region"][0],
                    "region_w": a["region"][1],
                    "flip_rate_mean": a["flip_rate_mean"],
                    "flip_rate_std": a["flip_rate_std"],
                    "flip_rate_ci_lo": a["flip_rate_ci"][0],
                    "flip_rate_ci_hi": a["flip_rate_ci"][1],
                    "accuracy_mean": a["accuracy_mean"],
                    "accuracy_std": a["accuracy_std"],
                    "accuracy_ci_lo": a["accuracy_ci"][0],
                    "accuracy_ci_hi": a["accuracy_ci"][1],
                    "pixel_index_mean": a["pixel_index_mean"],
                    "pixel_index_std": a["pixel_index_std"],
                    "flipped_confidence_mean": a["flipped_confidence_mean"],
                }
            )
    common.write_csv_atomic(path, rows)


def _series(setup: Setup, agg, exp: int):
    by: dict[str, dict[int, dict]] = {}
    for series, num, idx in setup.members.get(exp, []):
        by.setdefault(series, {})[num] = agg[idx]
    return by


def _plots(workdir, setup: Setup, agg, config: Config, ds) -> None:
    titles = {
        1: "Exp 1: number of changed pixels (values 0..255, anywhere)",
        2: "Exp 2: magnitude of the change (original +- R)",
        3: "Exp 3: position range (centred square)",
    }
    for exp in sorted(setup.members):
        by = _series(setup, agg, exp)
        nums = sorted({n for s in by.values() for n in s})
        series = {}
        for name, vals in by.items():

            def get(key, i=None, vals=vals, nums=nums):
                pick = lambda v: v[key] if i is None else v[key][i]
                return np.array([pick(vals[n]) if n in vals else np.nan for n in nums])

            series[name] = {
                "accuracy": get("accuracy_mean"),
                "accuracy_lo": get("accuracy_ci", 0),
                "accuracy_hi": get("accuracy_ci", 1),
                "flip": get("flip_rate_mean"),
                "flip_lo": get("flip_rate_ci", 0),
                "flip_hi": get("flip_rate_ci", 1),
            }
        reporting.line_plot(
            workdir / f"exp{exp}.png",
            nums,
            series,
            xlabel="changed pixels (Num)",
            title=f"{titles[exp]} - {config.model} on {ds.name}",
            logx=True,
        )


def _examples(workdir, setup: Setup, out, labels, change, key, config: Config) -> None:
    if config.examples == 0:
        return
    picks = []  # (title, grid index): the most damaging setting of each experiment
    for exp in sorted(setup.members):
        hw = setup.dataset.image_shape
        series, num, idx = max(
            setup.members[exp],
            key=lambda m: (
                m[1],
                setup.grid[m[2]].magnitude,
                -np.prod(setup.grid[m[2]].region_hw(hw)),
            ),
        )
        picks.append((f"Exp {exp}\n" + setup.grid[idx].label().replace(" ", "\n"), idx))
    seen: set[int] = set()
    picks = [p for p in picks if not (p[1] in seen or seen.add(p[1]))]
    # Prefer images that flipped under the first pick (seed 0).
    first = picks[0][1]
    correct = out.clean_pred == labels
    flipped = np.flatnonzero(correct & (out.pred[first] != out.clean_pred))
    others = np.flatnonzero(correct & (out.pred[first] == out.clean_pred))
    chosen = _spread(flipped, labels, (config.examples + 1) // 2)
    rest = _spread(np.setdiff1d(others, chosen), labels, config.examples - len(chosen))
    chosen = np.concatenate([chosen, rest]).astype(np.int64)
    if len(chosen) == 0:
        return
    x = jnp.asarray(setup.dataset.images[chosen], jnp.float32) / 255.0
    params = stack_configs(setup.grid, setup.dataset.image_shape, config.per_channel)
    seed = config.seeds[0]
    rows = []
    for title, idx in picks:
        p = jax.tree_util.tree_map(lambda a, idx=idx: a[idx], params)
        changed = change_batch(
            change, key, seed, idx, jnp.asarray(chosen, jnp.int32), x, p
        )
        rows.append((title, np.asarray(changed), out.pred[idx][chosen]))
    reporting.example_grid(
        workdir / "examples.png",
        np.asarray(x),
        rows,
        labels[chosen],
        out.clean_pred[chosen],
        setup.dataset.class_names,
    )


def _spread(candidates: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` of ``candidates``, cycling through the classes in order."""
    by_class = [list(candidates[labels[candidates] == c]) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < k and any(by_class):
        for group in by_class:
            if group and len(picked) < k:
                picked.append(group.pop(0))
    return np.asarray(picked, np.int64)


def _report(setup: Setup, agg, results, config: Config, total_s, sweep_s) -> str:
    f = reporting.fmt_pct
    meta = results["metadata"]
    shape = setup.dataset.image_shape
    lines = [
        f"# Pixel-change robustness: {config.model} on {setup.dataset.name}",
        "",
        f"- command: `{meta['command']}`",
        f"- checkpoint: `{config.checkpoint}`; images: {len(setup.dataset.images)} of "
        f"shape {shape}; seeds: {list(config.seeds)}; devices: {meta['devices']}",
        f"- clean accuracy: {f(results['clean_accuracy'])}% "
        f"({results['clean_correct']} correct); flip rates are among these images "
        "(the paper's denominator)",
        f"- {meta['evaluations']:,} changed-image evaluations in {sweep_s:.1f} s; "
        f"whole run {total_s:.1f} s",
        "- cells: flip rate % mean over seeds (+- sd), [95% Wilson interval pooled over "
        "seeds]; changes per pixel: "
        + ("one channel" if config.per_channel else "all channels redrawn"),
        "",
    ]
    hw = shape[0] * shape[1]
    if 1 in setup.members:
        lines += ["## Exp 1: number of changed pixels (values 0..255, anywhere)", ""]
        rows = []
        for _, num, idx in setup.members[1]:
            a = agg[idx]
            rows.append(
                [
                    num,
                    f"{100 * num / hw:.3f}",
                    f"{f(a['flip_rate_mean'])} +- {f(a['flip_rate_std'])}",
                    f"[{f(a['flip_rate_ci'][0])}, {f(a['flip_rate_ci'][1])}]",
                    f"{f(a['accuracy_mean'])}",
                    f"{f(a['flipped_confidence_mean'], 1)}",
                    f"{a['pixel_index_mean']:.2f}",
                ]
            )
        lines += [
            reporting.markdown_table(
                [
                    "Num",
                    "% of pixels",
                    "flipped %",
                    "95% CI",
                    "accuracy %",
                    "new-class confidence %",
                    "Pixel-index",
                ],
                rows,
            ),
            "",
        ]
    for exp, axis in ((2, "values"), (3, "region")):
        if exp not in setup.members:
            continue
        title = {
            2: "Exp 2: magnitude (original +- R, clipped)",
            3: "Exp 3: position range (centred square)",
        }[exp]
        by = _series(setup, agg, exp)
        nums = sorted({n for s in by.values() for n in s})
        rows = []
        for n in nums:
            row = [n]
            for name in by:
                a = by[name].get(n)
                row.append(
                    "-"
                    if a is None
                    else f"{f(a['flip_rate_mean'])} +- {f(a['flip_rate_std'])}"
                )
            rows.append(row)
        lines += [
            f"## {title}",
            "",
            "flipped % by Num (rows) and " + axis + " (columns)",
            "",
            reporting.markdown_table(["Num", *by.keys()], rows),
            "",
        ]
        rows = [
            [n]
            + [
                (
                    "-"
                    if by[name].get(n) is None
                    else f"{by[name][n]['pixel_index_mean']:.2f}"
                )
                for name in by
            ]
            for n in nums
        ]
        lines += [
            "Pixel-index:",
            "",
            reporting.markdown_table(["Num", *by.keys()], rows),
            "",
        ]
    head = results.get("pixel_index")
    if head:
        lines += [
            "## Pixel-index",
            "",
            f"`Pi = w / (p r a)` (Zhang & Cai 2021, eq. 7) at Num = {head['num']}, values "
            f"0..255, whole image: w = {f(head['w'])}%, p = {100 * head['p']:.3f}%, r = 1, "
            f"a = 1 -> **Pi = {head['pi']:.2f}** (+- {head['pi_std']:.2f} over seeds). "
            "Lower is more robust. r = value range / 255 (2R/255 for +- R), a = region "
            "area / image area.",
            "",
        ]
        idx = max(setup.members[1], key=lambda m: m[1])[2]
        r0 = results["per_seed"][idx]
        names = setup.dataset.class_names
        rows = []
        conf = np.asarray(r0["flip_confusion"])
        for c in range(len(r0["per_class_correct"])):
            dest = int(np.argmax(conf[c])) if conf[c].sum() else None
            rows.append(
                [
                    names[c] if c < len(names) else c,
                    r0["per_class_correct"][c],
                    r0["per_class_flips"][c],
                    f(r0["per_class_flip_rate"][c]),
                    "-"
                    if dest is None
                    else f"{names[dest] if dest < len(names) else dest} "
                    f"({conf[c, dest]})",
                ]
            )
        lines += [
            f"## Per class at Num = {head['num']} (seed {config.seeds[0]})",
            "",
            reporting.markdown_table(
                ["class", "correct", "flipped", "flipped %", "most common new class"],
                rows,
            ),
            "",
        ]
    lines += ["## Figures", ""]
    lines += [f"![Exp {e}](exp{e}.png)" for e in sorted(setup.members)]
    if config.examples:
        lines += ["![examples](examples.png)"]
    return "\n".join(lines) + "\n"
