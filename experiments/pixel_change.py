"""``pixjax run pixel-change``: Exp 1-3 of Zhang & Cai (2021) and the Pixel-index.

validate -> compute -> write -> plots -> report (see
:func:`pixjax.experiments.common.run_experiment`). Writes ``results.json`` (every
configuration and seed, with per-class flips, where the flipped images go as the
non-zero cells ``[true class, new class, flips]`` of the confusion, their confidence, and
the few example images of the figure), ``results.csv`` (one row per
experiment and configuration, mean and spread over seeds), ``report.md`` (tables),
``exp1.png``, ``exp2.png``, ``exp3.png`` (accuracy and flip rate with 95% Wilson
intervals) and ``examples.png`` (changed images with predictions before and after).
``pixjax report WORKDIR`` redraws the figures and the report from ``results.json``.
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

from pixjax import data, models
from pixjax.evaluation import (
    change_batch,
    make_sweeper,
    run_sweep,
    seed_summary,
    summarize_pixel_outputs,
    summarize_seeds,
)
from pixjax.perturb import PixelConfig, params_at, pixel_change, stack_configs

DESCRIPTION = "main job: random pixel changes Exp 1-3 + Pixel-index (Zhang & Cai 2021)"
SPREAD = "sample sd (ddof=1)"

# exp -> [(series, num, grid index)]
Members = dict[int, list[tuple[str, int, int]]]


@dataclasses.dataclass(frozen=True)
class Setup:
    module: Any
    variables: Any
    meta: dict[str, Any]
    dataset: data.Dataset
    grid: list[PixelConfig]
    members: Members


def default_regions(side: int) -> tuple[int, ...]:
    return tuple(
        sorted({max(1, round(side * f / 7)) for f in (7, 6, 5, 4, 3)}, reverse=True)
    )


def build_grid(
    config: Config, image_shape: tuple[int, int, int]
) -> tuple[list[PixelConfig], Members]:
    """The unique configurations of the requested experiments and where each belongs."""
    h, w, c = image_shape
    grid: dict[PixelConfig, int] = {}
    members: Members = {}

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
    module, variables, meta = common.load_checkpoint(
        config.model, config.checkpoint, dataset.image_shape
    )
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
    """Mean / sample sd (ddof=1) over seeds and pooled Wilson intervals, per
    configuration (pixjax.evaluation.summarize_seeds)."""
    out = []
    for k in range(n_cfg):
        rs = [rows[s * n_cfg + k] for s in range(n_seeds)]
        counts = {
            "flip_rate": ("flips", "clean_correct"),
            "accuracy": ("correct", "n"),
            "pixel_index": None,
        }
        # the new-class confidence is undefined for a seed without flips: skipped
        conf = seed_summary([r["flipped_confidence"] for r in rs], skip_nan=True)
        out.append(
            {
                **rs[0]["config"],
                **summarize_seeds(rs, counts),
                "flipped_confidence_mean": conf.mean,
                "flips_total": sum(r["flips"] for r in rs),
                "clean_correct_total": sum(r["clean_correct"] for r in rs),
            }
        )
    return out


# --- compute ---------------------------------------------------------------------------


def compute(
    config: Config, setup: Setup, *, run_dir: pathlib.Path, command: str
) -> dict[str, Any]:
    """The sweep of every configuration x seed over the dataset, summarised, with the
    images of the examples figure; touches no files."""
    del run_dir
    t0 = time.perf_counter()
    ds = setup.dataset
    shape = ds.image_shape
    apply_fn = setup.module.apply
    # One compiled sweep over the whole grid x seeds; the only random stream (the
    # changes) comes from key(config.key), each seed folded in by the sweep engine.
    change = pixel_change(
        shape,
        max(c.num for c in setup.grid),
        per_channel=config.per_channel,
        quantize=config.quantize,
    )
    params = change.make_params(setup.grid)
    key = jax.random.key(config.key)
    t1 = time.perf_counter()
    out = run_sweep(
        make_sweeper(apply_fn, change),
        setup.variables,
        ds.images,
        params,
        key,
        seeds=config.seeds,
        batch_size=config.batch_size,
        progress=config.progress,
    )
    sweep_s = time.perf_counter() - t1
    if ds.labels is None or config.labels_from_model:
        # the labels are the clean predictions, which the sweep has just made
        labels = out.clean_pred.astype(np.int32)
    else:
        labels = np.asarray(ds.labels).astype(np.int32)
    num_classes = max(
        len(ds.class_names), int(setup.meta["model_kwargs"].get("num_classes", 0))
    )
    rows = summarize_pixel_outputs(
        out, labels, setup.grid, config.seeds, shape, num_classes
    )
    agg = aggregate(rows, len(setup.grid), len(config.seeds))
    for r in rows:  # [C, C] per row is 1M numbers for ImageNet: only the flips
        r["flip_destinations"] = _nonzero_cells(r.pop("flip_confusion"))
    examples = (
        _examples(setup, out, labels, change, params, key, config)
        if config.examples
        else None
    )
    return {
        "metadata": common.run_metadata(
            config,
            command=command,
            model=setup.meta.get("arch"),
            checkpoint=str(config.checkpoint),
            dataset=ds.name,
            images=int(len(ds.images)),
            image_shape=list(shape),
            sweep_seconds=sweep_s,
            evaluations=int(out.pred.size),
            compute_seconds=time.perf_counter() - t0,
        ),
        "class_names": [str(c) for c in ds.class_names],
        "clean_accuracy": float(np.mean(out.clean_pred == labels)),
        "clean_correct": int(np.sum(out.clean_pred == labels)),
        "configs": agg,
        "experiments": {
            str(e): [{"series": s, "num": n, "config": i} for s, n, i in m]
            for e, m in setup.members.items()
        },
        "per_seed": rows,
        "pixel_index": _headline(setup.members, agg, shape),
        "examples": examples,
    }


def _nonzero_cells(confusion: list[list[int]]) -> list[list[int]]:
    """``[[true class, new class, flips], ...]``: the non-zero cells of a flip
    confusion matrix, in row-major order."""
    m = np.asarray(confusion, np.int64)
    return [[int(t), int(n), int(m[t, n])] for t, n in zip(*np.nonzero(m), strict=True)]


def _headline(members: Members, agg, shape) -> dict[str, Any] | None:
    if 1 not in members:
        return None
    _, num, idx = max(members[1], key=lambda m: m[1])
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


def _examples(
    setup: Setup, out, labels, change, params, key, config: Config
) -> dict[str, Any] | None:
    """The images of ``examples.png``: a few correctly classified images (half of them
    flipped by the first pick, spread over the classes), changed by the most damaging
    setting of each experiment exactly as the sweep changed them (first seed), with the
    sweep's predictions; uint8, packed for results.json."""
    hw = setup.dataset.image_shape
    picks = []  # (title, grid index): the most damaging setting of each experiment
    for exp in sorted(setup.members):
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
        return None
    originals = setup.dataset.images[chosen]
    x = data.to_float(jnp.asarray(originals))
    index = jnp.asarray(chosen, jnp.int32)
    seed = config.seeds[0]
    rows = []
    for title, idx in picks:
        changed = change_batch(change, key, seed, idx, index, x, params_at(params, idx))
        rows.append(
            {
                "title": title,
                "config": idx,
                "images": common.pack_uint8(common.float_to_uint8(changed)),
                "pred": out.pred[idx][chosen].tolist(),  # row idx: the first seed
            }
        )
    return {
        "index": chosen.tolist(),
        "seed": seed,
        "labels": labels[chosen].tolist(),
        "clean_pred": out.clean_pred[chosen].tolist(),
        "original": common.pack_uint8(originals),
        "rows": rows,
    }


def _spread(candidates: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` of ``candidates``, cycling through the classes in order."""
    by_class = [list(candidates[labels[candidates] == c]) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < k and any(by_class):
        for group in by_class:
            if group and len(picked) < k:
                picked.append(group.pop(0))
    return np.asarray(picked, np.int64)


# --- write / plots / report (from the results document alone) -------------------------


def _members(doc: dict[str, Any]) -> Members:
    return {
        int(e): [(m["series"], m["num"], m["config"]) for m in ms]
        for e, ms in sorted(doc["experiments"].items(), key=lambda kv: int(kv[0]))
    }


def _nan(v: float | None) -> float:
    return float("nan") if v is None else v


def write(workdir: pathlib.Path, doc: dict[str, Any]) -> None:
    """``results.csv``: one row per experiment and configuration."""
    agg = doc["configs"]
    rows = []
    for exp, members in _members(doc).items():
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
                    "flip_rate_mean": _nan(a["flip_rate_mean"]),
                    "flip_rate_std": _nan(a["flip_rate_std"]),
                    "flip_rate_ci_lo": a["flip_rate_ci"][0],
                    "flip_rate_ci_hi": a["flip_rate_ci"][1],
                    "accuracy_mean": _nan(a["accuracy_mean"]),
                    "accuracy_std": _nan(a["accuracy_std"]),
                    "accuracy_ci_lo": a["accuracy_ci"][0],
                    "accuracy_ci_hi": a["accuracy_ci"][1],
                    "pixel_index_mean": _nan(a["pixel_index_mean"]),
                    "pixel_index_std": _nan(a["pixel_index_std"]),
                    "flipped_confidence_mean": _nan(a["flipped_confidence_mean"]),
                }
            )
    common.write_csv_atomic(pathlib.Path(workdir) / "results.csv", rows)


def _series(members: Members, agg, exp: int) -> dict[str, dict[int, dict]]:
    by: dict[str, dict[int, dict]] = {}
    for series, num, idx in members.get(exp, []):
        by.setdefault(series, {})[num] = agg[idx]
    return by


TITLES = {
    1: "Exp 1: number of changed pixels (values 0..255, anywhere)",
    2: "Exp 2: magnitude of the change (original +- R)",
    3: "Exp 3: position range (centred square)",
}


def plots(workdir: pathlib.Path, doc: dict[str, Any]) -> list[str]:
    """``exp{1,2,3}.png`` (the experiments run) and ``examples.png``."""
    workdir = pathlib.Path(workdir)
    meta = doc["metadata"]
    members = _members(doc)
    files = []
    for exp in members:
        by = _series(members, doc["configs"], exp)
        nums = sorted({n for s in by.values() for n in s})
        series = {}
        for name, vals in by.items():

            def get(key, i=None, vals=vals, nums=nums):
                pick = lambda v: v[key] if i is None else v[key][i]
                return np.array(
                    [_nan(pick(vals[n])) if n in vals else np.nan for n in nums], float
                )

            series[name] = {
                "accuracy": get("accuracy_mean"),
                "accuracy_lo": get("accuracy_ci", 0),
                "accuracy_hi": get("accuracy_ci", 1),
                "flip": get("flip_rate_mean"),
                "flip_lo": get("flip_rate_ci", 0),
                "flip_hi": get("flip_rate_ci", 1),
            }
        name = f"exp{exp}.png"
        reporting.line_plot(
            workdir / name,
            nums,
            series,
            xlabel="changed pixels (Num)",
            title=f"{TITLES[exp]} - {meta['config']['model']} on {meta['dataset']}",
            logx=True,
        )
        files.append(name)
    if doc.get("examples"):
        reporting.examples_figure(
            workdir / "examples.png", doc["examples"], doc["class_names"]
        )
        files.append("examples.png")
    return files


def report(doc: dict[str, Any]) -> str:
    f = reporting.fmt_pct
    g = reporting.fmt_num
    meta = doc["metadata"]
    config = meta["config"]
    members = _members(doc)
    agg = doc["configs"]
    shape = tuple(meta["image_shape"])
    lines = [
        f"# Pixel-change robustness: {config['model']} on {meta['dataset']}",
        "",
        f"- command: `{meta['command']}`",
        f"- checkpoint: `{config['checkpoint']}`; images: {meta['images']} of "
        f"shape {shape}; seeds: {list(config['seeds'])}; devices: {meta['devices']}",
        f"- clean accuracy: {f(doc['clean_accuracy'])}% "
        f"({doc['clean_correct']} correct); flip rates are among these images "
        "(the paper's denominator)",
        f"- {meta['evaluations']:,} changed-image evaluations in "
        f"{meta['sweep_seconds']:.1f} s; computation {meta['compute_seconds']:.1f} s",
        f"- cells: flip rate % mean over seeds (+- {SPREAD} over seeds), [95% Wilson "
        "interval pooled over seeds]; changes per pixel: "
        + ("one channel" if config["per_channel"] else "all channels redrawn"),
        "",
    ]
    hw = shape[0] * shape[1]
    if 1 in members:
        lines += [f"## {TITLES[1]}", ""]
        rows = []
        for _, num, idx in members[1]:
            a = agg[idx]
            rows.append(
                [
                    num,
                    f"{100 * num / hw:.3f}",
                    f"{f(a['flip_rate_mean'])} +- {f(a['flip_rate_std'])}",
                    f"[{f(a['flip_rate_ci'][0])}, {f(a['flip_rate_ci'][1])}]",
                    f"{f(a['accuracy_mean'])}",
                    f"{f(a['flipped_confidence_mean'], 1)}",
                    g(a["pixel_index_mean"]),
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
        if exp not in members:
            continue
        title = {
            2: "Exp 2: magnitude (original +- R, clipped)",
            3: "Exp 3: position range (centred square)",
        }[exp]
        by = _series(members, agg, exp)
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
                "-" if by[name].get(n) is None else g(by[name][n]["pixel_index_mean"])
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
    head = doc.get("pixel_index")
    if head:
        lines += [
            "## Pixel-index",
            "",
            f"`Pi = w / (p r a)` (Zhang & Cai 2021, eq. 7) at Num = {head['num']}, values "
            f"0..255, whole image: w = {f(head['w'])}%, p = {100 * head['p']:.3f}%, r = 1, "
            f"a = 1 -> **Pi = {g(head['pi'])}** (+- {g(head['pi_std'])} {SPREAD} over "
            "seeds). Lower is more robust. r = value range / 255 (2R/255 for +- R), a = "
            "region area / image area.",
            "",
        ]
        idx = max(members[1], key=lambda m: m[1])[2]
        r0 = doc["per_seed"][idx]  # row idx: the first seed
        names = doc["class_names"]
        rows = []
        # the most common new class of each class (the lowest one of a tie)
        dest: dict[int, tuple[int, int]] = {}
        for true, new, count in r0["flip_destinations"]:
            if count > dest.get(true, (None, 0))[1]:
                dest[true] = (new, count)
        for c in range(len(r0["per_class_correct"])):
            to = dest.get(c)
            rows.append(
                [
                    names[c] if c < len(names) else c,
                    r0["per_class_correct"][c],
                    r0["per_class_flips"][c],
                    f(r0["per_class_flip_rate"][c]),
                    "-"
                    if to is None
                    else f"{names[to[0]] if to[0] < len(names) else to[0]} ({to[1]})",
                ]
            )
        lines += [
            f"## Per class at Num = {head['num']} (seed {config['seeds'][0]})",
            "",
            reporting.markdown_table(
                ["class", "correct", "flipped", "flipped %", "most common new class"],
                rows,
            ),
            "",
        ]
    lines += ["## Figures", ""]
    lines += [f"![Exp {e}](exp{e}.png)" for e in members]
    if doc.get("examples"):
        lines += ["![examples](examples.png)"]
    return "\n".join(lines) + "\n"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    meta = doc["metadata"]
    evals, sweep_s = meta["evaluations"], meta["sweep_seconds"]
    lines = [
        f"clean accuracy {reporting.fmt_pct(doc['clean_accuracy'])}% on "
        f"{meta['images']} images; {evals} changed-image evaluations in "
        f"{sweep_s:.1f}s ({evals / max(sweep_s, 1e-9):,.0f}/s)"
    ]
    head = doc.get("pixel_index")
    if head:
        lines.append(
            f"Pixel-index (Num={head['num']}, values 0..255, whole image): "
            f"{reporting.fmt_num(head['pi'])}"
        )
    return lines
