"""``pixjax run few-pixel-attack``: the one-pixel attack (Su, Vargas & Sakurai 2019)
side by side with random pixel changes (Zhang & Cai 2021).

validate -> compute -> write -> plots -> report (see
:func:`pixjax.experiments.common.run_experiment`). Writes ``results.json``,
``results.csv`` (one row per ``k``), ``per_image.csv`` (each attacked image: per ``k``
success, queries, new class; the minimal-pixels score), ``fooled/`` (every confirmed
fooled image as the exact uint8 PNG that was re-checked, and an enlarged copy with the
changed pixels marked), ``report.md``, ``attack_vs_random.png`` (success rate of the
attack and flip rate of random changes vs ``k``, Wilson 95%), ``minimal_pixels.png``
(the distribution of the minimal-pixels score) and ``fooled_examples.png``.
``pixjax report WORKDIR`` redraws the figures and the report from ``results.json``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import jax
import numpy as np
from pixjax.experiments import common, reporting
from pixjax.experiments.configs.few_pixel_attack import TARGETS, Config

from pixjax import data, models
from pixjax.attacks import few_pixel as fp
from pixjax.evaluation import summarize, summarize_seeds, sweep
from pixjax.evaluation.predict import predict
from pixjax.keys import purpose_key, purpose_keys
from pixjax.perturb import PixelConfig
from pixjax.search import target_probs
from pixjax.search.differential import DESettings

DESCRIPTION = (
    "few-pixel attack: differential evolution (Su et al. 2019) vs random pixel changes"
)
ATTACK_DIR = "attack"
FOOLED_DIR = "fooled"
OVERRIDES = ("pop_size", "iterations", "F", "F_max", "CR")


@dataclasses.dataclass(frozen=True)
class Setup:
    module: Any
    variables: Any
    meta: dict[str, Any]
    dataset: data.Dataset
    labels: np.ndarray  # int32 [N]: the dataset's, or the clean predictions
    probs_fn: Any
    num_classes: int
    spaces: dict[int, fp.PixelSpace]
    settings: dict[int, DESettings]


def _settings(config: Config, space: fp.PixelSpace) -> DESettings:
    s = fp.preset_settings(config.de_preset, space)
    changes = {
        f: getattr(config, f) for f in OVERRIDES if getattr(config, f) is not None
    }
    if "F" in changes and "F_max" not in changes:
        changes["F_max"] = None  # F alone: a constant mutation factor
    return fp.check_settings(s._replace(**changes))


def validate(config: Config) -> Setup:
    """All checks and loading, before any work or file write."""
    common.require_finite(config)
    common.require_nonempty(config, "pixels", "random_seeds")
    common.require_positive(config, "batch_size", "chunk_size")
    if config.images_per_call is not None:
        common.require_positive(config, "images_per_call")
    if config.targets not in TARGETS:
        raise common.ConfigError(
            f"targets: expected one of {list(TARGETS)}, got {config.targets!r}"
        )
    if config.de_preset not in fp.PRESETS:
        raise common.ConfigError(
            f"de_preset: expected one of {list(fp.PRESETS)}, got {config.de_preset!r}"
        )
    if isinstance(config.key, bool) or not 0 <= config.key < 2**63:
        raise common.ConfigError(
            f"key: expected an integer in [0, 2**63), got {config.key!r}"
        )
    if len(set(config.pixels)) != len(config.pixels):
        raise common.ConfigError(f"pixels: repeated entries in {list(config.pixels)}")
    if config.examples < 0:
        raise common.ConfigError(f"examples: expected 0 or more, got {config.examples}")
    dataset = data.load(config.dataset, config.split, limit=config.limit)
    spaces, settings = {}, {}
    for k in sorted(config.pixels):
        try:
            spaces[k] = fp.pixel_space(dataset.image_shape, k, config.region)
            settings[k] = _settings(config, spaces[k])
        except ValueError as e:
            raise common.ConfigError(str(e)) from None
    module, variables, meta = common.load_checkpoint(
        config.model, config.checkpoint, dataset.image_shape
    )
    num_classes = models.num_logits(module.apply, variables, dataset.image_shape)
    labels = dataset.labels
    if labels is None or config.labels_from_model:
        labels, _ = predict(module.apply, variables, dataset.images, config.batch_size)
    else:
        try:
            data.check_labels(labels, num_classes)
        except ValueError as e:
            raise common.ConfigError(str(e)) from None
    if config.targets != "none" and num_classes < 2:
        raise common.ConfigError("targets: a targeted attack needs 2 or more classes")
    probs_fn = target_probs(models.logits_fn(module, variables))
    return Setup(
        module,
        variables,
        meta,
        dataset,
        np.asarray(labels, np.int32),
        probs_fn,
        num_classes,
        spaces,
        settings,
    )


def attack_rows(
    labels: np.ndarray, targets: str, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(image [R], target [R])``: the attack problems: one per image (untargeted:
    target -1; ``next``: label + 1), or one per image and other class (``all``)."""
    n = len(labels)
    if targets == "none":
        return np.arange(n), np.full(n, -1, np.int32)
    if targets == "next":
        return np.arange(n), ((labels + 1) % num_classes).astype(np.int32)
    image = np.repeat(np.arange(n), num_classes - 1)
    offset = np.tile(np.arange(1, num_classes), n)
    return image, ((labels[image] + offset) % num_classes).astype(np.int32)


# --- compute ---------------------------------------------------------------------------


def compute(
    config: Config, setup: Setup, *, run_dir: pathlib.Path, command: str
) -> dict[str, Any]:
    """The attack for every ``k`` (checkpointed under ``run_dir/attack/k<k>``), the
    PNG re-check, then the random changes on the same images."""
    t0 = time.perf_counter()
    ds, labels = setup.dataset, setup.labels
    keys = purpose_keys(jax.random.key(config.key), "attack", "random")
    image, target = attack_rows(labels, config.targets, setup.num_classes)
    row_labels = labels[image]
    row_images = ds.images[image]
    targets = None if config.targets == "none" else target
    per_k, outcomes = [], {}
    for k in sorted(config.pixels):
        t_k = time.perf_counter()
        computed = []  # the queries of the batches this process computed (not restored)
        out = fp.few_pixel_attack(
            purpose_key(keys["attack"], f"pixels={k}"),
            setup.probs_fn,
            row_images,
            row_labels,
            pixels=k,
            settings=setup.settings[k],
            targets=targets,
            region=config.region,
            batch_size=config.batch_size,
            images_per_call=config.images_per_call,
            checkpoint_dir=pathlib.Path(run_dir) / ATTACK_DIR / f"k{k}",
            chunk_size=config.chunk_size,
            progress=config.progress,
            desc=f"{k}-pixel attack",
            on_chunk=lambda first, state, o, into=computed: into.append(
                int(o.queries.sum())
            ),
        )
        seconds = time.perf_counter() - t_k
        confirmed, reloaded = fp.recheck(
            setup.probs_fn, row_images, out, row_labels, targets
        )
        outcomes[k] = (out, confirmed, reloaded)
        timing = {
            "seconds": seconds,
            "queries_computed": sum(computed),
            "resumed": sum(computed) != int(out.queries.sum()),
        }
        per_k.append(_k_summary(k, setup, out, confirmed, row_labels, timing))
    score = fp.minimal_pixels({k: outcomes[k][1] for k in outcomes})
    attacked = outcomes[min(outcomes)][0].attacked
    random_rows = _random_changes(config, setup, keys["random"])
    for row in per_k:
        row["random"] = random_rows[row["pixels"]]
    return {
        "metadata": common.run_metadata(
            config,
            command=command,
            model=setup.meta.get("arch"),
            dataset=ds.name,
            images=int(len(ds.images)),
            compute_seconds=time.perf_counter() - t0,
        ),
        "class_names": common.class_names(
            setup.dataset.class_names, setup.meta, setup.num_classes
        ),
        "targets": config.targets,
        "settings": {
            str(k): dict(setup.settings[k]._asdict()) for k in sorted(setup.settings)
        },
        "problems": int(len(image)),
        "attacked": int(attacked.sum()),
        "clean_accuracy": float(
            np.mean(outcomes[min(outcomes)][0].clean_pred[: len(image)] == row_labels)
        ),
        "per_k": per_k,
        "minimal_pixels": _score_summary(score, attacked, sorted(outcomes)),
        "per_image": _per_image(image, target, row_labels, outcomes, score),
        "fooled": _fooled(config, image, row_labels, row_images, outcomes),
    }


def _k_summary(k, setup, out, confirmed, labels, timing) -> dict[str, Any]:
    """One ``k``: the shared summary (:func:`pixjax.evaluation.summarize`) of the
    attack, with a fooled image's prediction as its new class; queries and time."""
    att = out.attacked
    pred = np.where(confirmed, out.adv_pred, out.clean_pred)
    conf = np.where(confirmed, out.adv_confidence, out.clean_confidence)
    # over the attacked problems (correctly classified images)
    s = summarize(
        labels[att], out.clean_pred[att], pred[att], conf[att], setup.num_classes
    )
    q = out.queries[confirmed]
    return {
        "pixels": k,
        "attacked": int(att.sum()),
        "fooled_search": int(out.success.sum()),
        "fooled": s["flips"],
        "success_rate": s["flip_rate"],
        "success_ci": s["flip_rate_ci"],
        "new_class_confidence": s["flipped_confidence"],
        "queries_total": int(out.queries.sum()),
        "queries_median": float(np.median(q)) if len(q) else float("nan"),
        "queries_mean": float(np.mean(q)) if len(q) else float("nan"),
        "label_prob_mean_failed": (
            float(np.mean(out.label_prob[att & ~confirmed]))
            if np.any(att & ~confirmed)
            else float("nan")
        ),
        "per_class_attacked": s["per_class_correct"],
        "per_class_fooled": s["per_class_flips"],
        "per_class_success_rate": s["per_class_flip_rate"],
        # where fooled images go: the non-zero cells [true, new, count] (small with
        # 1000 classes)
        "confusion": [
            [a, b, n]
            for a, row in enumerate(s["flip_confusion"])
            for b, n in enumerate(row)
            if n
        ],
        # successes of the initial population: a random search with pop_size tries
        "fooled_initial": int(np.sum(confirmed & (out.generations == 0))),
        **timing,
        # over the batches this process computed (a resumed run restores the rest)
        "evaluations_per_second": (
            timing["queries_computed"] / timing["seconds"]
            if timing["queries_computed"]
            else None
        ),
    }


def _random_changes(config: Config, setup: Setup, key) -> dict[int, dict[str, Any]]:
    """Flip rate of ``k`` random pixel changes (values 0..255, the same region) on
    the dataset's images over ``random_seeds`` (the main job's sweep engine; among the
    correctly classified images, as the attack): mean, sample sd (ddof=1), Wilson
    95% pooled over seeds."""
    ks = sorted(config.pixels)
    rows = sweep(
        setup.module.apply,
        setup.variables,
        setup.dataset.images,
        setup.labels,
        [PixelConfig(k, region=config.region) for k in ks],
        key,
        seeds=config.random_seeds,
        num_classes=setup.num_classes,
        batch_size=max(config.batch_size, 256),
        progress=False,
    )
    out = {}
    for i, k in enumerate(ks):
        rs = rows[i :: len(ks)]
        out[k] = {
            "seeds": len(rs),
            "flips": sum(r["flips"] for r in rs),
            "trials": sum(r["clean_correct"] for r in rs),
            **summarize_seeds(rs, {"flip_rate": ("flips", "clean_correct")}),
        }
    return out


def _score_summary(score, attacked, ks) -> dict[str, Any]:
    s = score[attacked]
    counts = {str(k): int(np.sum(s == k)) for k in ks}
    counts["none"] = int(np.sum(s == -1))
    return {"cap": max(ks), "counts": counts, "attacked": int(attacked.sum())}


def _per_image(image, target, labels, outcomes, score) -> list[dict[str, Any]]:
    rows = []
    first = outcomes[min(outcomes)][0]
    for r in np.flatnonzero(first.attacked):
        row = {
            "image": int(image[r]),
            "label": int(labels[r]),
            "target": int(target[r]),
            "minimal_pixels": int(score[r]),
        }
        for k, (out, confirmed, _) in outcomes.items():
            row[f"k{k}_fooled"] = bool(confirmed[r])
            row[f"k{k}_queries"] = int(out.queries[r])
            row[f"k{k}_new_class"] = int(out.adv_pred[r]) if confirmed[r] else -1
            row[f"k{k}_confidence"] = (
                float(out.adv_confidence[r]) if confirmed[r] else float("nan")
            )
        rows.append(row)
    return rows


def _fooled(config, image, labels, images, outcomes) -> list[dict[str, Any]]:
    """Every confirmed fooled image per ``k``: the original (uint8, packed), the
    pixels set (rows, cols, values), the new class and its confidence."""
    out = []
    for k, (res, confirmed, reloaded) in outcomes.items():
        idx = np.flatnonzero(confirmed)
        out.append(
            {
                "pixels": k,
                "image": image[idx].tolist(),
                "label": labels[idx].tolist(),
                "new_class": res.adv_pred[idx].tolist(),
                "confidence": res.adv_confidence[idx].tolist(),
                "queries": res.queries[idx].tolist(),
                "rows": res.pixels.rows[idx].tolist(),
                "cols": res.pixels.cols[idx].tolist(),
                "values": res.pixels.values[idx].astype(int).tolist(),
                "original": common.pack_uint8(images[idx]),
                "adversarial": common.pack_uint8(reloaded[idx]),
            }
        )
    return out


# --- write / plots / report (from the results document alone) -------------------------


def write(workdir: pathlib.Path, doc: dict[str, Any]) -> None:
    """``results.csv`` (per k), ``per_image.csv`` and ``fooled/`` (PNGs)."""
    workdir = pathlib.Path(workdir)
    nan = lambda v: float("nan") if v is None else v
    rows = []
    for r in doc["per_k"]:
        rnd = r["random"]
        rows.append(
            {
                "pixels": r["pixels"],
                "attacked": r["attacked"],
                "fooled": r["fooled"],
                "success_rate": nan(r["success_rate"]),
                "success_ci_lo": r["success_ci"][0],
                "success_ci_hi": r["success_ci"][1],
                "new_class_confidence": nan(r["new_class_confidence"]),
                "queries_median": nan(r["queries_median"]),
                "queries_total": r["queries_total"],
                "random_flip_rate_mean": nan(rnd["flip_rate_mean"]),
                "random_flip_rate_ci_lo": rnd["flip_rate_ci"][0],
                "random_flip_rate_ci_hi": rnd["flip_rate_ci"][1],
                "fooled_initial_population": r["fooled_initial"],
                "seconds": r["seconds"],
                "resumed": r["resumed"],
            }
        )
    common.write_csv_atomic(workdir / "results.csv", rows)
    common.write_csv_atomic(
        workdir / "per_image.csv",
        [{k: nan(v) for k, v in row.items()} for row in doc["per_image"]],
    )
    _write_fooled(workdir / FOOLED_DIR, doc)


def _write_fooled(folder: pathlib.Path, doc: dict[str, Any]) -> None:
    """One exact PNG per confirmed fooled image and an enlarged RGB copy with the
    changed pixels outlined in red (``*_marked.png``)."""
    from PIL import Image

    folder.mkdir(exist_ok=True)
    for group in doc["fooled"]:
        k = group["pixels"]
        adv = common.unpack_uint8(group["adversarial"])
        for j, i in enumerate(group["image"]):
            stem = f"k{k}_{i:05d}_{group['label'][j]}to{group['new_class'][j]}"
            im = adv[j]
            pil = Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im)
            tmp = folder / f".{stem}.png.tmp"
            pil.save(tmp, "PNG")
            tmp.replace(folder / f"{stem}.png")
            marked = _marked(im, *_changed(group, j))
            tmp = folder / f".{stem}_marked.png.tmp"
            Image.fromarray(marked).save(tmp, "PNG")
            tmp.replace(folder / f"{stem}_marked.png")


def _changed(group: dict[str, Any], j: int) -> tuple[list[int], list[int]]:
    """Rows and columns of the pixels fooled image ``j`` of ``group`` really changed
    (a candidate may set a pixel to its own value, or one pixel twice)."""
    adv = common.unpack_uint8(group["adversarial"])[j]
    orig = common.unpack_uint8(group["original"])[j]
    rows, cols = np.nonzero(np.any(adv != orig, axis=-1))
    return rows.tolist(), cols.tolist()


def _marked(image: np.ndarray, rows, cols, scale: int | None = None) -> np.ndarray:
    """uint8 RGB, ``image`` enlarged ``scale`` times (nearest) with a red outline
    around each changed pixel."""
    h, w, _ = image.shape
    scale = scale or max(1, 224 // max(h, w))
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
    big = np.repeat(np.repeat(rgb, scale, 0), scale, 1).copy()
    t = max(1, scale // 4)
    for r, c in zip(rows, cols, strict=True):
        y0, x0 = max(0, (r - 1) * scale), max(0, (c - 1) * scale)
        y1, x1 = min(h * scale, (r + 2) * scale), min(w * scale, (c + 2) * scale)
        red = np.array([255, 0, 0], np.uint8)
        big[y0 : y0 + t, x0:x1] = red
        big[y1 - t : y1, x0:x1] = red
        big[y0:y1, x0 : x0 + t] = red
        big[y0:y1, x1 - t : x1] = red
    return big


def plots(workdir: pathlib.Path, doc: dict[str, Any]) -> list[str]:
    """``attack_vs_random.png``, ``minimal_pixels.png`` and (with fooled images)
    ``fooled_examples.png``."""
    workdir = pathlib.Path(workdir)
    plt = reporting._plt()
    ks = [r["pixels"] for r in doc["per_k"]]
    files = []
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for label, get in (
        ("optimised (DE)", lambda r: (r["success_rate"], r["success_ci"])),
        (
            "random",
            lambda r: (r["random"]["flip_rate_mean"], r["random"]["flip_rate_ci"]),
        ),
    ):
        vals = [get(r) for r in doc["per_k"]]
        y = np.array([np.nan if v is None else 100 * v for v, _ in vals], float)
        lo = np.array([100 * ci[0] for _, ci in vals])
        hi = np.array([100 * ci[1] for _, ci in vals])
        ax.errorbar(
            ks,
            y,
            yerr=[np.nan_to_num(y - lo), np.nan_to_num(hi - y)],
            marker="o",
            capsize=3,
            label=label,
        )
    ax.set_xlabel("pixels changed (k)")
    ax.set_ylabel("fooled / flipped (%)")
    ax.set_xticks(ks)
    ax.set_title("chosen vs random pixels (95% Wilson)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    common.save_figure_atomic(fig, workdir / "attack_vs_random.png")
    plt.close(fig)
    files.append("attack_vs_random.png")

    mp = doc["minimal_pixels"]
    names = [*(str(k) for k in ks), "none"]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(
        [f"k={n}" if n != "none" else f">{mp['cap']}" for n in names],
        [mp["counts"][n] for n in names],
    )
    ax.set_ylabel("images")
    ax.set_title("minimal-pixels score (smallest k that fools)", fontsize=9)
    fig.tight_layout()
    common.save_figure_atomic(fig, workdir / "minimal_pixels.png")
    plt.close(fig)
    files.append("minimal_pixels.png")

    m = doc["metadata"]["config"]["examples"]
    groups = [g for g in doc["fooled"] if g["image"]]
    if m and groups:
        _examples_figure(workdir / "fooled_examples.png", groups, m, doc["class_names"])
        files.append("fooled_examples.png")
    return files


def _examples_figure(path, groups, m, class_names) -> None:
    plt = reporting._plt()
    cols = min(m, max(len(g["image"]) for g in groups))
    fig, axes = plt.subplots(
        len(groups), cols, figsize=(1.9 * cols, 2.1 * len(groups)), squeeze=False
    )
    name = lambda c: class_names[c] if c < len(class_names) else str(c)
    for i, g in enumerate(groups):
        adv = common.unpack_uint8(g["adversarial"])
        for j in range(cols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if j >= len(g["image"]):
                ax.axis("off")
                continue
            ax.imshow(_marked(adv[j], *_changed(g, j)))
            ax.set_title(
                f"{name(g['label'][j])} -> {name(g['new_class'][j])}\n"
                f"p={g['confidence'][j]:.2f}",
                fontsize=7,
            )
        axes[i, 0].set_ylabel(f"k={g['pixels']}", fontsize=8)
    fig.suptitle("fooled images (changed pixels outlined in red)", fontsize=9)
    fig.tight_layout()
    common.save_figure_atomic(fig, path)
    plt.close(fig)


def report(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    config = meta["config"]
    pct = reporting.fmt_pct
    num = reporting.fmt_num
    targeted = doc["targets"] != "none"
    what = "reach the target class" if targeted else "change the class"
    # with targets=all an attacked unit is an (image, target class) pair
    unit = "(image, target) pairs" if doc["targets"] == "all" else "images"
    lines = [
        "# Few-pixel attack vs random pixel changes",
        "",
        f"Model `{meta.get('model')}` ({config['checkpoint']}), data {meta['dataset']} "
        f"({meta['images']} images, clean accuracy {pct(doc['clean_accuracy'])}%). "
        f"Differential evolution (Su, Vargas & Sakurai 2019) over k (row, column, "
        f"value) tuples, preset `{config['de_preset']}`; targets: `{doc['targets']}` "
        f"({doc['problems']} attack problems, {doc['attacked']} on correctly "
        f"classified images, the only ones attacked). Positions are integers"
        + (
            f" in the centred {config['region']}x{config['region']} region"
            if config["region"]
            else ""
        )
        + ", values 8-bit levels; a success counts only if the saved PNG is still "
        "adversarial.",
        "",
    ]
    if not doc["attacked"]:
        lines += [
            "**No image was attacked**: the model classified none of them correctly "
            "(success is counted over correctly classified images only).",
            "",
        ]
    lines += [
        "## Success rate per k",
        "",
        f"Fooled = the attack found pixels that {what} (Wilson 95%), within at most "
        "population x (iterations + 1) queries (model evaluations) per attacked "
        f"{unit[:-1] if unit == 'images' else 'pair'}; by the initial population = "
        "fooled by the first, random, population (a random search with that many "
        "tries). Random = the flip rate of one draw of k random pixel changes (k "
        "distinct positions, values 0..255) per image and seed, on the same correctly "
        f"classified images: mean over {len(config['random_seeds'])} seeds, pooled "
        "Wilson 95%, spread as sample sd (ddof=1); untargeted"
        + (" (the attack is targeted: no ratio)" if targeted else "")
        + ". The budgets differ: one random draw against up to "
        "population x (iterations + 1) chosen candidates.",
        "",
        reporting.markdown_table(
            [
                "k",
                "attacked",
                "fooled",
                "success rate % [95% CI]",
                "new-class conf.",
                "median queries",
                "by the initial population",
                "random flip rate % [95% CI]",
                "random sd %",
                "chosen / random",
                "PNG re-check",
            ],
            [
                [
                    r["pixels"],
                    r["attacked"],
                    r["fooled"],
                    f"{pct(r['success_rate'])} [{pct(r['success_ci'][0])}, "
                    f"{pct(r['success_ci'][1])}]",
                    num(r["new_class_confidence"], 3),
                    num(r["queries_median"], 0),
                    r["fooled_initial"],
                    f"{pct(r['random']['flip_rate_mean'])} "
                    f"[{pct(r['random']['flip_rate_ci'][0])}, "
                    f"{pct(r['random']['flip_rate_ci'][1])}]",
                    pct(r["random"]["flip_rate_std"]),
                    "n/a"
                    if targeted
                    else _ratio(r["success_rate"], r["random"]["flip_rate_mean"]),
                    f"{r['fooled']} of {r['fooled_search']}",
                ]
                for r in doc["per_k"]
            ],
        ),
        "",
        "## Minimal-pixels robustness score",
        "",
        f"The smallest k that fooled each attacked {unit[:-1]}; "
        f"`>{doc['minimal_pixels']['cap']}` = not fooled with any k tried (the score "
        "is censored there: the search never ran beyond it).",
        "",
        reporting.markdown_table(
            ["score", unit],
            [
                [f"k={k}" if k != "none" else f">{doc['minimal_pixels']['cap']}", c]
                for k, c in doc["minimal_pixels"]["counts"].items()
            ],
        ),
        "",
        "## Per class (success rate)",
        "",
        "Classes with attacked images; fooled / attacked in brackets.",
        "",
        reporting.markdown_table(
            ["class", *(f"k={r['pixels']} (%)" for r in doc["per_k"])],
            [
                [
                    name,
                    *(
                        f"{pct(r['per_class_success_rate'][c])} "
                        f"({r['per_class_fooled'][c]}/{r['per_class_attacked'][c]})"
                        for r in doc["per_k"]
                    ),
                ]
                for c, name in enumerate(doc["class_names"])
                if any(r["per_class_attacked"][c] for r in doc["per_k"])
            ],
        ),
        "",
        "## Where fooled images go",
        "",
    ]
    for r in doc["per_k"]:
        moves = [
            (doc["class_names"][a], doc["class_names"][b], n)
            for a, b, n in r["confusion"]
        ]
        moves.sort(key=lambda t: -t[2])
        text = ", ".join(f"{a} -> {b}: {n}" for a, b, n in moves[:12]) or "none"
        lines.append(f"- k={r['pixels']}: {text}")
    lines += [
        "",
        "## Settings and cost",
        "",
        reporting.markdown_table(
            [
                "k",
                "population",
                "iterations",
                "F",
                "CR",
                "strategy",
                "init",
                "queries",
                "seconds",
                "evaluations/s",
            ],
            [
                [
                    r["pixels"],
                    s["pop_size"],
                    s["iterations"],
                    (
                        f"{s['F']:g}"
                        if s["F_max"] is None
                        else f"U({s['F']:g}, {s['F_max']:g})"
                    ),
                    f"{s['CR']:g}",
                    s["strategy"],
                    s["init"],
                    r["queries_total"],
                    num(r["seconds"], 1),
                    num(r["evaluations_per_second"], 0),
                ]
                for r in doc["per_k"]
                for s in [doc["settings"][str(r["pixels"])]]
            ],
        ),
        "",
        "Queries = model evaluations, the initial population included; an image stops "
        "at the first generation with an adversarial candidate. Seconds include "
        "compilation; evaluations/s counts the batches this process computed"
        + (
            " (resumed from checkpoints for k = "
            + ", ".join(str(r["pixels"]) for r in doc["per_k"] if r["resumed"])
            + ": the restored batches' time is not known)."
            if any(r["resumed"] for r in doc["per_k"])
            else "."
        ),
        "",
        "![attack vs random](attack_vs_random.png)",
        "",
        "![minimal pixels](minimal_pixels.png)",
    ]
    if any(g["image"] for g in doc["fooled"]) and config["examples"]:
        lines += ["", "![fooled examples](fooled_examples.png)"]
    return "\n".join(lines) + "\n"


def _ratio(a, b) -> str:
    """``a / b`` as ``"12.3x"``; ``n/a`` when either is missing or ``b`` is 0 (no
    random flip observed: the ratio has no finite estimate)."""
    if a is None or b is None or not np.isfinite(a) or not np.isfinite(b) or b == 0:
        return "n/a"
    return f"{a / b:.1f}x"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    if not doc["attacked"]:
        return ["no image was attacked: the model classified none of them correctly"]
    out = []
    for r in doc["per_k"]:
        out.append(
            f"k={r['pixels']}: fooled {r['fooled']}/{r['attacked']} "
            f"({reporting.fmt_pct(r['success_rate'])}%); random changes flip "
            f"{reporting.fmt_pct(r['random']['flip_rate_mean'])}%"
        )
    return out


__all__ = [
    "DESCRIPTION",
    "compute",
    "plots",
    "report",
    "summary_lines",
    "validate",
    "write",
]
