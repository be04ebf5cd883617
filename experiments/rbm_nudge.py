"""``pixjax run rbm-nudge``: RBM + logistic regression on MNIST, then one-pixel shifts.

validate -> compute -> write -> plots / report (``common.run_experiment``); the figures
and the report are drawn from ``results.json`` alone (``pixjax report WORKDIR``).

Run directory::

    stages/         compute's resumable state: one JSON per finished stage (grid
                    search, raw-pixel LR, each seed, each compared checkpoint); a killed
                    run resumes after the last finished stage, no work lost or repeated
    model/          the RBM + LR of the first seed, a pixjax model directory (arch rbm_lr)
    results.json, seeds.csv, grid.csv (with the grid search), report.md, filters.png,
    nudged.png

Keys: each seed's root key ``key(seed)`` is split by purpose
(:func:`pixjax.keys.purpose_keys`): ``fit`` (the pipeline's RBM), ``remedy`` (the RBM
trained on the shifted copies too), ``shift`` (the nudge sweep's key; the four nudges
are fixed shifts and draw nothing from it); the grid search uses the first seed's
``grid_search`` key.
"""

from __future__ import annotations

import functools
import json
import pathlib
import time
from typing import Any, NamedTuple

import jax
import numpy as np
from pixjax.experiments import common, reporting
from pixjax.experiments.configs.rbm_nudge import Config

from pixjax import checkpoints, data, models
from pixjax.evaluation import (
    classification_report,
    format_classification_report,
    make_sweeper,
    run_sweep,
    summarize_outputs,
    summarize_seeds,
    wilson_interval,
)
from pixjax.keys import purpose_keys
from pixjax.models import rbm
from pixjax.perturb import NUDGES, nudge, nudge_configs, shift_perturbation
from pixjax.training import logistic
from pixjax.training.grid_search import grid_search_rbm_lr, stratified_kfold

DESCRIPTION = "RBM + logistic regression on MNIST; accuracy on one-pixel nudged digits"

# The named subkeys of every seed's root key ``key(seed)``.
PURPOSES = ("grid_search", "fit", "remedy", "shift")
# The version of the JSON kept under stages/: a stage written by a pixjax that computed
# it differently is recomputed, never mixed into this run's results.
STAGE_FORMAT = 2
SPREAD = "sample sd (ddof=1)"
# Test images shown in nudged.png: these fractions of the test set.
_EXAMPLE_AT = (0, 1 / 3, 2 / 3)


class Setup(NamedTuple):
    """What :func:`validate` loaded and checked."""

    train: data.Dataset
    test: data.Dataset
    n_classes: int
    class_names: list[str]
    compared: dict[str, tuple[Any, Any, dict]]  # name -> (module, variables, meta)


def validate(config: Config) -> Setup:
    common.require_finite(config)
    common.require_positive(
        config, "n_components", "learning_rate", "n_iter", "batch_size", "c", "raw_c"
    )
    common.require_positive(config, "lr_max_iter", "shift", "filters_shown")
    common.require_nonempty(config, "seeds")
    if len(set(config.seeds)) != len(config.seeds):
        raise common.ConfigError(
            f"seeds: expected distinct seeds, got {list(config.seeds)}"
        )
    try:
        rbm.check_hyperparameters(
            n_components=config.n_components,
            learning_rate=config.learning_rate,
            batch_size=config.batch_size,
            n_iter=config.n_iter,
        )
        if config.grid_search or config.use_grid_best:
            common.require_nonempty(
                config,
                "grid_learning_rates",
                "grid_n_iters",
                "grid_n_components",
                "grid_cs",
            )
            rbm.check_hyperparameters(
                n_components=list(config.grid_n_components),
                learning_rate=list(config.grid_learning_rates),
                n_iter=list(config.grid_n_iters),
            )
            logistic.check_c(list(config.grid_cs))
    except ValueError as e:
        raise common.ConfigError(str(e)) from None
    if config.use_grid_best and not config.grid_search:
        raise common.ConfigError("use_grid_best: needs grid_search=true")
    train = data.load(config.dataset, config.train_split, limit=config.limit_train)
    test = data.load(config.dataset, config.test_split, limit=config.limit_test)
    if train.labels is None or test.labels is None:
        raise common.ConfigError(f"dataset: {config.dataset!r} needs labels")
    if train.image_shape != test.image_shape:
        raise common.ConfigError(
            f"dataset: train images {train.image_shape} and test images "
            f"{test.image_shape} differ in shape"
        )
    side = min(train.image_shape[:2])
    if config.shift >= side:
        raise common.ConfigError(
            f"shift: expected 1..{side - 1} pixels, got {config.shift}"
        )
    if config.grid_search:
        try:
            stratified_kfold(train.labels, config.folds)
        except ValueError as e:
            raise common.ConfigError(str(e)) from None
    n_classes = max(int(train.labels.max()) + 1, len(train.class_names))
    data.check_labels(
        test.labels,
        n_classes,
        argument=f"labels of {test.name}",
        classes_from="the {n} classes of the training labels",
    )
    compared = {}
    for name in config.compare_checkpoints:
        module, variables, meta = checkpoints.load_model(
            _compare_path(name, test.image_shape)
        )
        data.check_labels(
            test.labels,
            models.num_logits(module.apply, variables, test.image_shape),
            argument=f"labels of {test.name}",
            classes_from=f"the {{n}} logits of compare_checkpoints {name!r}",
        )
        compared[name] = (module, variables, meta)
    names = [str(c) for c in (train.class_names or range(n_classes))][:n_classes]
    return Setup(train, test, n_classes, names, compared)


def _compare_path(name: str, image_shape) -> pathlib.Path:
    """The model directory of ``compare_checkpoints`` entry ``name``, checked."""
    path = common.resolve_checkpoint(name)
    shipped = common.shipped_checkpoints()
    if path is None or not (path / checkpoints.METADATA).is_file():
        raise common.ConfigError(
            f"compare_checkpoints: {name!r} is not a shipped checkpoint ({shipped}) "
            "or a model directory written by pixjax"
        )
    shape = tuple(checkpoints.read_metadata(path)["input_shape"])
    if shape != tuple(image_shape):
        raise common.ConfigError(
            f"compare_checkpoints: {name!r} takes images of shape {shape}, the dataset "
            f"has {tuple(image_shape)}"
        )
    return path


# --- compute ------------------------------------------------------------------------


def _stage(run_dir: pathlib.Path, name: str, fn) -> Any:
    """``fn()`` once: its JSON result is kept under ``run_dir/stages/`` (a stage of
    another ``STAGE_FORMAT`` is recomputed)."""
    path = run_dir / "stages" / f"{name}.json"
    if path.is_file():
        try:
            kept = json.loads(path.read_text())
        except ValueError:
            kept = None
        if isinstance(kept, dict) and kept.get("stage_format") == STAGE_FORMAT:
            return kept["value"]
    value = common.to_jsonable(fn())
    path.parent.mkdir(exist_ok=True)
    record = {"stage_format": STAGE_FORMAT, "value": value}
    common.write_text_atomic(path, json.dumps(record, indent=1))
    return value


# Hyperparameters are static (compile-time constants, as in the grid search's own
# calls); the seeds of one run share the compiled fits.
@functools.partial(
    jax.jit,
    static_argnames=("learning_rate", "n_components", "batch_size", "n_iter"),
)
def _fit_rbm(key, x, *, learning_rate, n_components, batch_size, n_iter):
    return rbm.fit(
        key,
        x,
        n_components=n_components,
        learning_rate=learning_rate,
        batch_size=batch_size,
        n_iter=n_iter,
    )


_features = jax.jit(rbm.transform)
_fit_logistic = jax.jit(
    logistic.fit_logistic, static_argnames=("c", "num_classes", "max_iter")
)


def _fit_pipeline(key, x, y, n_classes, config: Config, hp: dict[str, Any]):
    """The RBM (``key``) and the logistic regression on its features, checked finite."""
    params = _fit_rbm(
        key,
        x,
        learning_rate=float(hp["learning_rate"]),
        n_components=int(hp["n_components"]),
        batch_size=config.batch_size,
        n_iter=int(hp["n_iter"]),
    )
    lr = _fit_logistic(
        _features(params, x),
        y,
        c=float(hp["C"]),
        num_classes=n_classes,
        max_iter=config.lr_max_iter,
    )
    bad = checkpoints.nonfinite_leaves({"rbm": params, "logistic": lr})
    if bad:
        raise ValueError(
            f"training: the RBM + logistic regression with {hp} has non-finite "
            f"parameters {bad}; check the hyperparameters"
        )
    return params, lr


def _raw_logits(variables, images):
    """Logistic regression on raw pixels: ``images [B, H, W, C]`` in [0, 1]."""
    x = images.reshape(images.shape[0], -1)
    return x @ variables["kernel"] + variables["bias"]


def _flat(images: np.ndarray) -> np.ndarray:
    return data.to_float(images.reshape(len(images), -1))


def _nudge_scores(sweeper, variables, test, key, config: Config, n_classes, names):
    """Original and nudged scores of one classifier on the test set: the sweep engine
    over the four fixed shifts (clean forward once per batch)."""
    params = sweeper.perturbation.make_params(nudge_configs(config.shift))
    out = run_sweep(
        sweeper, variables, test.images, params, key, progress=config.progress
    )
    y = test.labels.astype(np.int32)
    k = int(max(n_classes, out.clean_pred.max() + 1, out.pred.max() + 1))
    rows = summarize_outputs(out, y, k)  # one per direction, NUDGES order
    n, correct = len(y), int(np.sum(out.clean_pred == y))
    flips = sum(r["flips"] for r in rows)
    nudged_y, nudged_pred = np.tile(y, len(NUDGES)), out.pred.reshape(-1)
    nudged_correct = sum(r["correct"] for r in rows)
    return {
        "n": n,
        "correct": correct,
        "accuracy": correct / n,
        "nudged_n": len(NUDGES) * n,
        "nudged_correct": nudged_correct,
        "nudged_accuracy": nudged_correct / (len(NUDGES) * n),
        # flip rate (Zhang & Cai 2021): changed predictions among correct originals
        "nudged_flips": flips,
        "nudged_flip_rate": flips / (len(NUDGES) * correct) if correct else None,
        "per_direction": {d: r["accuracy"] for d, r in zip(NUDGES, rows, strict=True)},
        "report": classification_report(y, out.clean_pred, k, _names(names, k)),
        "nudged_report": classification_report(
            nudged_y, nudged_pred, k, _names(names, k)
        ),
    }


def _names(names: list[str], k: int) -> list[str]:
    return names + [str(i) for i in range(len(names), k)]


def _filter_pixels(params: rbm.RBMParams, shown: int, image_shape) -> np.ndarray:
    """The first ``shown`` RBM filters as images ``[k, H, W, C]`` uint8, each scaled
    from its own minimum (0) to its maximum (255), the grey scale of the figure."""
    w = np.asarray(params.weights, np.float64).T[:shown]  # [k, H * W * C]
    lo, hi = w.min(1, keepdims=True), w.max(1, keepdims=True)
    scaled = (w - lo) / np.where(hi > lo, hi - lo, 1.0)
    return np.round(255 * scaled).astype(np.uint8).reshape(-1, *image_shape)


def _nudged_examples(test: data.Dataset, pixels: int) -> dict[str, Any]:
    """A few test images and their four nudges, uint8 ``[M, 1 + 4, H, W, C]``."""
    n = len(test.images)  # > 0 (data.load refuses an empty split)
    picks = sorted({int(f * n) for f in _EXAMPLE_AT})
    images = test.images[picks]
    views = np.asarray(nudge(images, pixels))  # [4, M, H, W, C]
    return {
        "index": picks,
        "labels": test.labels[picks].astype(int).tolist(),
        "views": ["original", *NUDGES],
        "images": common.pack_uint8(
            np.concatenate([images[None], views]).swapaxes(0, 1)
        ),
    }


def _save_model(path, params, lp, config: Config, hp, train, command) -> None:
    variables = rbm.pipeline_variables(params, lp.kernel, lp.bias)
    meta = {
        **common.run_metadata(config, command=command),
        "arch": "rbm_lr",
        "model_kwargs": {
            "n_components": int(hp["n_components"]),
            "num_classes": int(lp.bias.shape[0]),
        },
        "input_shape": list(train.image_shape),
        "class_names": [str(c) for c in train.class_names],
        "hyperparameters": {**hp, "batch_size": config.batch_size},
        "trained_on": f"{train.name} ({len(train.images)} images, pixels / 255)",
    }
    checkpoints.save_model(path, variables, meta)


def compute(
    config: Config, setup: Setup, *, run_dir: pathlib.Path, command: str
) -> dict[str, Any]:
    t0 = time.perf_counter()
    train, test = setup.train, setup.test
    n_classes, names = setup.n_classes, setup.class_names
    run_dir = pathlib.Path(run_dir)
    keys = {s: purpose_keys(jax.random.key(s), *PURPOSES) for s in config.seeds}
    first = config.seeds[0]
    x, y = _flat(train.images), train.labels.astype(np.int32)
    shift = shift_perturbation(test.image_shape)
    score = functools.partial(
        _nudge_scores, test=test, config=config, n_classes=n_classes, names=names
    )

    grid = None
    if config.grid_search:

        def search():
            ts = time.perf_counter()
            g = grid_search_rbm_lr(
                keys[first]["grid_search"],
                x,
                y,
                learning_rates=config.grid_learning_rates,
                n_iters=config.grid_n_iters,
                n_components=config.grid_n_components,
                cs=config.grid_cs,
                folds=config.folds,
                batch_size=config.batch_size,
                num_classes=n_classes,
                lr_max_iter=config.lr_max_iter,
            )
            g["seconds"] = time.perf_counter() - ts
            return {
                k: g[k]
                for k in (
                    "params",
                    "mean",
                    "std",
                    "best_index",
                    "best_params",
                    "compiled_calls",
                    "seconds",
                )
            }

        grid = _stage(run_dir, "grid", search)
    hp = (
        grid["best_params"]
        if config.use_grid_best
        else {
            "learning_rate": config.learning_rate,
            "n_iter": config.n_iter,
            "n_components": config.n_components,
            "C": config.c,
        }
    )

    # Raw-pixel logistic regression: deterministic, one fit.
    def raw():
        lp = _fit_logistic(
            x, y, c=config.raw_c, num_classes=n_classes, max_iter=config.lr_max_iter
        )
        variables = {"kernel": lp.kernel, "bias": lp.bias}
        sweeper = make_sweeper(_raw_logits, shift)
        return score(sweeper, variables, key=keys[first]["shift"])

    raw_scores = _stage(run_dir, "raw-lr", raw)

    # One RBM + LR per seed (and the remedy: trained on the shifted copies too).
    pipeline = models.get_model(
        "rbm_lr", n_components=int(hp["n_components"]), num_classes=n_classes
    )
    rbm_sweeper = make_sweeper(pipeline.apply, shift)

    @functools.cache
    def augmented():  # the remedy's training set: the originals, then the 4 nudges
        shifted = np.asarray(nudge(train.images, config.shift))
        xa = _flat(np.concatenate([train.images, *shifted]))
        return xa, np.tile(y, 1 + len(NUDGES))

    per_seed = []
    for seed in config.seeds:

        def one(seed=seed):
            ts = time.perf_counter()
            params, lp = _fit_pipeline(keys[seed]["fit"], x, y, n_classes, config, hp)
            fit_s = time.perf_counter() - ts
            variables = rbm.pipeline_variables(params, lp.kernel, lp.bias)
            out = score(rbm_sweeper, variables, key=keys[seed]["shift"])
            out["fit_seconds"] = fit_s
            if seed == first:
                _save_model(run_dir / "model", params, lp, config, hp, train, command)
                out["filters"] = common.pack_uint8(
                    _filter_pixels(params, config.filters_shown, train.image_shape)
                )
            if config.remedy:
                pa, la = _fit_pipeline(
                    keys[seed]["remedy"], *augmented(), n_classes, config, hp
                )
                va = rbm.pipeline_variables(pa, la.kernel, la.bias)
                ra = score(rbm_sweeper, va, key=keys[seed]["shift"])
                out["remedy"] = {
                    k: ra[k]
                    for k in (
                        "n",
                        "correct",
                        "accuracy",
                        "nudged_n",
                        "nudged_correct",
                        "nudged_accuracy",
                    )
                }
            return out

        per_seed.append(_stage(run_dir, f"seed-{seed}", one))
    filters = per_seed[0].pop("filters")

    compared = {}
    for name, (module, variables, meta) in setup.compared.items():

        def other(module=module, variables=variables, meta=meta):
            sweeper = make_sweeper(module.apply, shift)
            out = score(sweeper, variables, key=keys[first]["shift"])
            return {"arch": meta["arch"], **out}

        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        compared[name] = _stage(run_dir, f"compare-{safe}", other)

    return {
        "metadata": common.run_metadata(
            config,
            command=command,
            dataset=train.name,
            train_images=len(train.images),
            test_images=len(test.images),
            seconds=time.perf_counter() - t0,
        ),
        "pipeline": hp,
        "summary": _summarize(config, raw_scores, per_seed),
        "raw_lr": raw_scores,
        "seeds": dict(zip([str(s) for s in config.seeds], per_seed, strict=True)),
        "grid_search": grid,
        "compared": compared,
        "figures": {
            "filters": {
                "of": int(hp["n_components"]),
                "pixels": filters,
            },
            "nudged": _nudged_examples(test, config.shift),
        },
    }


def _summarize(config: Config, raw_scores, per_seed) -> dict[str, Any]:
    """Raw LR as measured; RBM + LR and the remedy over seeds: mean, sample sd
    (ddof=1) and the Wilson interval of the counts pooled over the seeds."""
    fields = {
        "accuracy": ("correct", "n"),
        "nudged_accuracy": ("nudged_correct", "nudged_n"),
    }
    rbm_lr = summarize_seeds(per_seed, fields)
    acc, nud = rbm_lr["accuracy_mean"], rbm_lr["nudged_accuracy_mean"]
    summary = {
        "spread": SPREAD,
        "seeds": len(per_seed),
        "raw_lr": {
            "accuracy": raw_scores["accuracy"],
            "accuracy_ci": list(
                wilson_interval(raw_scores["correct"], raw_scores["n"])
            ),
            "nudged_accuracy": raw_scores["nudged_accuracy"],
            "nudged_accuracy_ci": list(
                wilson_interval(raw_scores["nudged_correct"], raw_scores["nudged_n"])
            ),
        },
        "rbm_lr": {**rbm_lr, "drop_mean": acc - nud},
    }
    if config.remedy:
        remedy = summarize_seeds([r["remedy"] for r in per_seed], fields)
        rn = remedy["nudged_accuracy_mean"]
        summary["remedy"] = {
            **remedy,
            "gap_closed": (rn - nud) / (acc - nud) if acc > nud else float("nan"),
        }
    return summary


# --- write / plots / report ---------------------------------------------------------


def write(workdir: pathlib.Path, doc: dict[str, Any]) -> None:
    """``seeds.csv`` (one row per seed) and, with the grid search, ``grid.csv``."""
    workdir = pathlib.Path(workdir)
    rows = []
    for seed, r in doc["seeds"].items():
        row = {
            "seed": seed,
            "accuracy": r["accuracy"],
            "nudged_accuracy": r["nudged_accuracy"],
            **{d: r["per_direction"][d] for d in NUDGES},
            "nudged_flip_rate": r["nudged_flip_rate"],
            "fit_seconds": r["fit_seconds"],
        }
        if "remedy" in r:
            row["remedy_accuracy"] = r["remedy"]["accuracy"]
            row["remedy_nudged_accuracy"] = r["remedy"]["nudged_accuracy"]
        rows.append(row)
    common.write_csv_atomic(workdir / "seeds.csv", rows)
    g = doc["grid_search"]
    if g:
        common.write_csv_atomic(
            workdir / "grid.csv",
            [
                {**p, "cv_accuracy_mean": m, "cv_accuracy_std": s}
                for p, m, s in zip(g["params"], g["mean"], g["std"], strict=True)
            ],
        )


def plots(workdir: pathlib.Path, doc: dict[str, Any]) -> list[str]:
    """``filters.png`` and ``nudged.png`` from the images kept in the results."""
    workdir = pathlib.Path(workdir)
    plt = reporting._plt()

    def show(ax, img):
        img = np.asarray(img, np.uint8)
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(img)
        ax.axis("off")

    f = doc["figures"]["filters"]
    pixels = common.unpack_uint8(f["pixels"])
    k = len(pixels)
    side = max(1, int(np.ceil(np.sqrt(k))))
    fig, axes = plt.subplots(side, side, figsize=(side * 0.9, side * 0.9))
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i < k:
            show(ax, pixels[i])
    fig.suptitle(f"RBM filters (first {k} of {f['of']})", fontsize=9)
    common.save_figure_atomic(fig, workdir / "filters.png")
    plt.close(fig)

    ex = doc["figures"]["nudged"]
    examples = common.unpack_uint8(ex["images"])  # [M, 1 + 4, H, W, C]
    rows = max(1, len(examples))
    fig, axes = plt.subplots(rows, len(ex["views"]), figsize=(6, 1.3 * rows))
    axes = np.atleast_2d(axes)
    for ax in np.ravel(axes):
        ax.axis("off")
    for r, views in enumerate(examples):
        for c, (img, title) in enumerate(zip(views, ex["views"], strict=True)):
            show(axes[r, c], img)
            if r == 0:
                axes[r, c].set_title(title, fontsize=8)
    common.save_figure_atomic(fig, workdir / "nudged.png")
    plt.close(fig)
    return ["filters.png", "nudged.png"]


def _pct(x) -> str:
    return reporting.fmt_pct(x)


def _ci(ci) -> str:
    if not ci or None in ci:
        return ""
    return f" [{_pct(ci[0])}, {_pct(ci[1])}]"


def _over_seeds(s: dict[str, Any], name: str) -> str:
    return (
        f"{_pct(s[f'{name}_mean'])} +- {_pct(s[f'{name}_std'])}{_ci(s[f'{name}_ci'])}"
    )


def report(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    m = doc["metadata"]
    cfg = m["config"]
    p = doc["pipeline"]
    seeds = list(cfg["seeds"])
    first = doc["seeds"][str(seeds[0])]
    raw = s["raw_lr"]
    lines = [
        "# RBM nudge study",
        "",
        f"- command: `{m['command']}`",
        f"- data: {m['dataset']}, {m['train_images']} training / {m['test_images']} test "
        f"images (pixels / 255); nudged test set: every test image shifted "
        f"{cfg['shift']} pixel(s) up, down, left and right with zero fill "
        f"({len(NUDGES)} x {m['test_images']} images, originals excluded)",
        f"- pipeline: Bernoulli RBM (learning rate {p['learning_rate']}, "
        f"{p['n_iter']} epochs, {p['n_components']} components, batch "
        f"{cfg['batch_size']}) -> logistic regression (C {p['C']}); seeds {seeds}; "
        "each seed's key split by purpose (grid search, fit, remedy, shift)",
        f"- whole run {m['seconds']:.1f} s",
        "",
        "## Accuracy",
        "",
        reporting.markdown_table(
            ["model", "original test %", "nudged test %"],
            [
                [
                    "raw-pixel LR (one deterministic fit)",
                    f"{_pct(raw['accuracy'])}{_ci(raw['accuracy_ci'])}",
                    f"{_pct(raw['nudged_accuracy'])}{_ci(raw['nudged_accuracy_ci'])}",
                ],
                [
                    f"RBM + LR (mean +- sd over {_seeds(s['seeds'])})",
                    _over_seeds(s["rbm_lr"], "accuracy"),
                    _over_seeds(s["rbm_lr"], "nudged_accuracy"),
                ],
                *(
                    [
                        [
                            "RBM + LR trained on shifted copies too (remedy)",
                            _over_seeds(s["remedy"], "accuracy"),
                            _over_seeds(s["remedy"], "nudged_accuracy"),
                        ]
                    ]
                    if "remedy" in s
                    else []
                ),
            ],
        ),
        "",
        f"Spread: {s['spread']} over the seeds"
        + (" (one seed: no spread, shown as 0)" if s["seeds"] == 1 else "")
        + "; in brackets the 95% Wilson interval of the correct images pooled over "
        "the seeds (of the test images for the raw-pixel LR).",
        "",
        "Per direction (first seed): "
        + ", ".join(f"{d} {_pct(v)}%" for d, v in first["per_direction"].items()),
        "",
    ]
    if doc.get("compared"):
        lines += [
            "The same nudges on other trained classifiers (`compare_checkpoints`):",
            "",
            reporting.markdown_table(
                ["checkpoint", "architecture", "original test %", "nudged test %"]
                + [f"{d} %" for d in NUDGES],
                [
                    [name, r["arch"], _pct(r["accuracy"]), _pct(r["nudged_accuracy"])]
                    + [_pct(r["per_direction"][d]) for d in NUDGES]
                    for name, r in doc["compared"].items()
                ],
            ),
            "",
        ]
    if "remedy" in s:
        gap = s["remedy"]["gap_closed"]
        lines += [
            f"The remedy closes {100 * gap:.0f}% of the nudge gap."
            if gap is not None
            else "The remedy's share of the nudge gap is undefined (no gap).",
            "",
        ]
    lines += [
        "## Classification reports (first seed)",
        "",
        "RBM + LR, original test set:",
        "",
        "```",
        format_classification_report(first["report"]),
        "```",
        "",
        "RBM + LR, nudged test set:",
        "",
        "```",
        format_classification_report(first["nudged_report"]),
        "```",
        "",
        "Raw-pixel LR, original test set:",
        "",
        "```",
        format_classification_report(doc["raw_lr"]["report"]),
        "```",
        "",
    ]
    g = doc["grid_search"]
    if g:
        means = np.array([np.nan if v is None else v for v in g["mean"]], float)
        order = np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable")[:10]
        lines += [
            f"## Grid search ({len(g['params'])} points, {cfg['folds']}-fold stratified "
            f"CV, {g['compiled_calls']} compiled calls, {g['seconds']:.1f} s)",
            "",
            f"Best: {g['best_params']}",
            "",
            reporting.markdown_table(
                [
                    "learning rate",
                    "n_iter",
                    "n_components",
                    "C",
                    "CV accuracy % (mean +- sd over folds, ddof=0)",
                ],
                [
                    [
                        g["params"][i]["learning_rate"],
                        g["params"][i]["n_iter"],
                        g["params"][i]["n_components"],
                        g["params"][i]["C"],
                        f"{_pct(g['mean'][i])} +- {_pct(g['std'][i])}",
                    ]
                    for i in order
                ],
            ),
            "",
        ]
    lines += [
        "Figures: `filters.png` (RBM filters), `nudged.png` (nudged digits). Data: "
        "`seeds.csv`" + (", `grid.csv`." if g else "."),
        "",
    ]
    return "\n".join(lines)


def _seeds(n: int) -> str:
    return f"{n} seed" + ("" if n == 1 else "s")


def summary_lines(doc: dict[str, Any]) -> list[str]:
    s = doc["summary"]
    f = _pct
    return [
        f"RBM + LR {f(s['rbm_lr']['accuracy_mean'])}% original -> "
        f"{f(s['rbm_lr']['nudged_accuracy_mean'])}% nudged (mean over "
        f"{_seeds(s['seeds'])}); raw LR {f(s['raw_lr']['accuracy'])}% -> "
        f"{f(s['raw_lr']['nudged_accuracy'])}%"
    ]
