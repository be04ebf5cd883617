"""``pixjax run rbm-nudge``: RBM + logistic regression on MNIST, then one-pixel shifts.

Run directory::

    stages/         one JSON per finished stage (grid search, each seed): a killed run
                    resumes after the last finished stage, no work lost or repeated
    model/          the RBM + LR of the first seed, a pixjax model directory (arch rbm_lr)
    results.json, report.md, filters.png, nudged.png
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import jax
import numpy as np

from pixjax.experiments import common, reporting
from pixjax.experiments.configs.rbm_nudge import Config
from pixjax import checkpoints, data, models
from pixjax.evaluation import classification_report, format_classification_report
from pixjax.models import rbm
from pixjax.perturb import NUDGES, nudge
from pixjax.training import logistic
from pixjax.training.grid_search import grid_search_rbm_lr, stratified_kfold

DESCRIPTION = "RBM + logistic regression on MNIST; accuracy on one-pixel nudged digits"


def validate(config: Config):
    common.require_finite(config)
    common.require_positive(
        config, "n_components", "learning_rate", "n_iter", "batch_size", "c", "raw_c"
    )
    common.require_positive(config, "lr_max_iter", "shift", "filters_shown")
    common.require_nonempty(config, "seeds")
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
    for name in config.compare_checkpoints:
        path = _compare_path(name, test.image_shape)
        module, variables, _ = checkpoints.load_model(path)
        data.check_labels(
            test.labels,
            models.num_logits(module.apply, variables, test.image_shape),
            argument=f"labels of {test.name}",
            classes_from=f"the {{n}} logits of compare_checkpoints {name!r}",
        )
    return train, test


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


def _classifier_scores(name, images, y, nudged, y_nudged, n_classes, names):
    """Original and nudged scores of a trained classifier (``compare_checkpoints``)."""
    module, variables, meta = checkpoints.load_model(
        _compare_path(name, images.shape[1:])
    )
    apply = jax.jit(module.apply)

    def predict(imgs, batch=1000):
        return np.concatenate(
            [
                np.asarray(
                    apply(variables, imgs[i : i + batch] / np.float32(255))
                ).argmax(-1)
                for i in range(0, len(imgs), batch)
            ]
        )

    out = _scores(y, predict(images), y_nudged, predict(nudged), n_classes, names)
    out["arch"] = meta["arch"]
    return out


def _flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def _nudged(images: np.ndarray, pixels: int) -> np.ndarray:
    """``[4 * N, ...]`` uint8: up, down, left, right copies (originals excluded)."""
    out = np.asarray(jax.jit(nudge, static_argnums=1)(images, pixels))
    return out.reshape(-1, *images.shape[1:])


def _stage(workdir: pathlib.Path, name: str, compute) -> Any:
    """Runs ``compute()`` once; its JSON result is kept under ``stages/``."""
    path = workdir / "stages" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    value = common.to_jsonable(compute())
    path.parent.mkdir(exist_ok=True)
    common.write_text_atomic(path, json.dumps(value, indent=1))
    return value


def _fit_pipeline(key, x, y, n_classes, config: Config, hp: dict[str, Any]):
    params = jax.jit(
        lambda k, x: rbm.fit(
            k,
            x,
            n_components=hp["n_components"],
            learning_rate=hp["learning_rate"],
            batch_size=config.batch_size,
            n_iter=hp["n_iter"],
        )
    )(key, x)
    features = jax.jit(rbm.transform)(params, x)
    lr = jax.jit(
        lambda f, y: logistic.fit_logistic(
            f, y, c=hp["C"], num_classes=n_classes, max_iter=config.lr_max_iter
        )
    )(features, y)
    bad = checkpoints.nonfinite_leaves({"rbm": params, "logistic": lr})
    if bad:
        raise ValueError(
            f"training: the RBM + logistic regression with {hp} has non-finite "
            f"parameters {bad}; check the hyperparameters"
        )
    return params, lr


def _scores(y, pred_orig, y_nudged, pred_nudged, n_classes, names):
    return {
        "accuracy": float(np.mean(pred_orig == y)),
        "nudged_accuracy": float(np.mean(pred_nudged == y_nudged)),
        "per_direction": {
            d: float(np.mean(p == y))
            for d, p in zip(NUDGES, np.split(pred_nudged, len(NUDGES)), strict=True)
        },
        "report": classification_report(y, pred_orig, n_classes, names),
        "nudged_report": classification_report(y_nudged, pred_nudged, n_classes, names),
    }


def run(
    config: Config, workdir: pathlib.Path, *, overwrite: bool = False
) -> dict[str, Any]:
    t0 = time.perf_counter()
    train, test = validate(config)
    workdir = common.prepare_workdir(
        workdir, config, experiment="rbm-nudge", overwrite=overwrite
    )
    n_classes = max(int(train.labels.max()) + 1, len(train.class_names))
    names = [str(c) for c in (train.class_names or range(n_classes))][:n_classes]
    x, y = _flat(train.images), train.labels.astype(np.int32)
    xt, yt = _flat(test.images), test.labels.astype(np.int32)
    test_nudged = _nudged(test.images, config.shift)
    xn, yn = _flat(test_nudged), np.tile(yt, len(NUDGES))
    train_aug = np.concatenate([train.images, _nudged(train.images, config.shift)])
    xa, ya = _flat(train_aug), np.tile(y, 1 + len(NUDGES))

    grid = None
    if config.grid_search:

        def search():
            ts = time.perf_counter()
            g = grid_search_rbm_lr(
                jax.random.key(config.seeds[0]),
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
            return g

        grid = _stage(workdir, "grid", search)
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
        lp = jax.jit(
            lambda x, y: logistic.fit_logistic(
                x, y, c=config.raw_c, num_classes=n_classes, max_iter=config.lr_max_iter
            )
        )(x, y)
        pred = np.asarray(logistic.predict(lp, xt))
        return _scores(
            yt, pred, yn, np.asarray(logistic.predict(lp, xn)), n_classes, names
        )

    raw_scores = _stage(workdir, "raw-lr", raw)

    per_seed = []
    for seed in config.seeds:

        def one(seed=seed):
            ts = time.perf_counter()
            params, lp = _fit_pipeline(
                jax.random.key(seed), x, y, n_classes, config, hp
            )
            fit_s = time.perf_counter() - ts
            if seed == config.seeds[0]:
                _save_model(workdir / "model", params, lp, config, hp, train)
                _filters_figure(workdir, params, config)
            out = _scores(
                yt,
                _predict(params, lp, xt),
                yn,
                _predict(params, lp, xn),
                n_classes,
                names,
            )
            out["fit_seconds"] = fit_s
            if config.remedy:
                k = jax.random.fold_in(jax.random.key(seed), 1)
                params_a, lp_a = _fit_pipeline(k, xa, ya, n_classes, config, hp)
                out["remedy"] = {
                    "accuracy": float(np.mean(_predict(params_a, lp_a, xt) == yt)),
                    "nudged_accuracy": float(
                        np.mean(_predict(params_a, lp_a, xn) == yn)
                    ),
                }
            return out

        per_seed.append(_stage(workdir, f"seed-{seed}", one))

    compared = {
        name: _stage(
            workdir,
            "compare-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in name),
            lambda name=name: _classifier_scores(
                name, test.images, yt, test_nudged, yn, n_classes, names
            ),
        )
        for name in config.compare_checkpoints
    }

    _nudged_figure(workdir, test.images, test_nudged)
    results = _summarize(config, hp, grid, raw_scores, per_seed, train, test, t0)
    results["compared"] = common.to_jsonable(compared)
    common.write_json_atomic(workdir / "results.json", results)
    common.write_text_atomic(workdir / "report.md", _report(results, config))
    s = results["summary"]
    print(
        f"RBM + LR {s['rbm_lr']['accuracy_mean']:.4f} original -> "
        f"{s['rbm_lr']['nudged_accuracy_mean']:.4f} nudged; raw LR "
        f"{s['raw_lr']['accuracy']:.4f} -> {s['raw_lr']['nudged_accuracy']:.4f}"
    )
    print(f"wrote {workdir}/report.md, results.json and plots")
    return results


def _predict(params, lp, x) -> np.ndarray:
    return np.asarray(
        jax.jit(lambda p, q, x: logistic.predict(q, rbm.transform(p, x)))(params, lp, x)
    )


def _save_model(path, params, lp, config: Config, hp, train) -> None:
    variables = rbm.pipeline_variables(params, lp.kernel, lp.bias)
    meta = {
        **common.run_metadata(config),
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


def _summarize(config, hp, grid, raw_scores, per_seed, train, test, t0):
    def stats(key, rows):
        v = np.array([r[key] for r in rows])
        return float(v.mean()), float(v.std())

    acc, acc_sd = stats("accuracy", per_seed)
    nud, nud_sd = stats("nudged_accuracy", per_seed)
    summary = {
        "raw_lr": {
            "accuracy": raw_scores["accuracy"],
            "nudged_accuracy": raw_scores["nudged_accuracy"],
        },
        "rbm_lr": {
            "accuracy_mean": acc,
            "accuracy_std": acc_sd,
            "nudged_accuracy_mean": nud,
            "nudged_accuracy_std": nud_sd,
            "drop_mean": acc - nud,
        },
    }
    if config.remedy:
        ra, ra_sd = stats("accuracy", [r["remedy"] for r in per_seed])
        rn, rn_sd = stats("nudged_accuracy", [r["remedy"] for r in per_seed])
        summary["remedy"] = {
            "accuracy_mean": ra,
            "accuracy_std": ra_sd,
            "nudged_accuracy_mean": rn,
            "nudged_accuracy_std": rn_sd,
            "gap_closed": float((rn - nud) / (acc - nud))
            if acc > nud
            else float("nan"),
        }
    grid_out = None
    if grid is not None:
        grid_out = {
            k: grid[k]
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
    return common.to_jsonable(
        {
            "metadata": common.run_metadata(
                config,
                dataset=train.name,
                train_images=len(train.images),
                test_images=len(test.images),
                seconds=time.perf_counter() - t0,
            ),
            "pipeline": hp,
            "summary": summary,
            "raw_lr": raw_scores,
            "seeds": dict(zip([str(s) for s in config.seeds], per_seed, strict=True)),
            "grid_search": grid_out,
        }
    )


def _filters_figure(workdir, params, config: Config) -> None:
    plt = reporting._plt()
    w = np.asarray(params.weights).T  # [components, 784]
    k = min(config.filters_shown, w.shape[0])
    side = int(np.ceil(np.sqrt(k)))
    fig, axes = plt.subplots(side, side, figsize=(side * 0.9, side * 0.9))
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i < k:
            ax.imshow(
                w[i].reshape(28, 28) if w.shape[1] == 784 else w[i][None], cmap="gray"
            )
    fig.suptitle(f"RBM filters (first {k} of {w.shape[0]})", fontsize=9)
    common.save_figure_atomic(fig, workdir / "filters.png")
    plt.close(fig)


def _nudged_figure(workdir, images, nudged) -> None:
    plt = reporting._plt()
    n = len(images)
    picks = [0, n // 3, 2 * n // 3] if n >= 3 else list(range(n))
    fig, axes = plt.subplots(len(picks), 1 + len(NUDGES), figsize=(6, 1.3 * len(picks)))
    axes = np.atleast_2d(axes)
    for r, i in enumerate(picks):
        views = [images[i]] + [nudged[d * n + i] for d in range(len(NUDGES))]
        for c, (img, title) in enumerate(
            zip(views, ["original", *NUDGES], strict=True)
        ):
            axes[r, c].imshow(img[..., 0], cmap="gray")
            axes[r, c].axis("off")
            if r == 0:
                axes[r, c].set_title(title, fontsize=8)
    common.save_figure_atomic(fig, workdir / "nudged.png")
    plt.close(fig)


def _report(results, config: Config) -> str:
    s = results["summary"]
    f = reporting.fmt_pct
    m = results["metadata"]
    first = next(iter(results["seeds"].values()))
    lines = [
        "# RBM nudge study",
        "",
        f"- command: `{m['command']}`",
        f"- data: {m['dataset']}, {m['train_images']} training / {m['test_images']} test "
        f"images (pixels / 255); nudged test set: every test image shifted "
        f"{config.shift} pixel(s) up, down, left and right with zero fill "
        f"({len(NUDGES)} x {m['test_images']} images, originals excluded)",
        f"- pipeline: Bernoulli RBM (learning rate {results['pipeline']['learning_rate']}, "
        f"{results['pipeline']['n_iter']} epochs, {results['pipeline']['n_components']} "
        f"components, batch {config.batch_size}) -> logistic regression (C "
        f"{results['pipeline']['C']}); seeds {list(config.seeds)}",
        f"- whole run {m['seconds']:.1f} s",
        "",
        "## Accuracy",
        "",
        reporting.markdown_table(
            ["model", "original test %", "nudged test %"],
            [
                [
                    "raw-pixel LR",
                    f(s["raw_lr"]["accuracy"]),
                    f(s["raw_lr"]["nudged_accuracy"]),
                ],
                [
                    "RBM + LR (mean +- sd over seeds)",
                    f"{f(s['rbm_lr']['accuracy_mean'])} +- {f(s['rbm_lr']['accuracy_std'])}",
                    f"{f(s['rbm_lr']['nudged_accuracy_mean'])} +- "
                    f"{f(s['rbm_lr']['nudged_accuracy_std'])}",
                ],
                *(
                    [
                        [
                            "RBM + LR trained on shifted copies too (remedy)",
                            f"{f(s['remedy']['accuracy_mean'])} +- "
                            f"{f(s['remedy']['accuracy_std'])}",
                            f"{f(s['remedy']['nudged_accuracy_mean'])} +- "
                            f"{f(s['remedy']['nudged_accuracy_std'])}",
                        ]
                    ]
                    if "remedy" in s
                    else []
                ),
            ],
        ),
        "",
        "Per direction (first seed): "
        + ", ".join(f"{d} {f(v)}%" for d, v in first["per_direction"].items()),
        "",
    ]
    if results.get("compared"):
        lines += [
            "The same nudges on other trained classifiers (`compare_checkpoints`):",
            "",
            reporting.markdown_table(
                ["checkpoint", "architecture", "original test %", "nudged test %"]
                + [f"{d} %" for d in NUDGES],
                [
                    [name, r["arch"], f(r["accuracy"]), f(r["nudged_accuracy"])]
                    + [f(r["per_direction"][d]) for d in NUDGES]
                    for name, r in results["compared"].items()
                ],
            ),
            "",
        ]
    if "remedy" in s:
        lines += [
            f"The remedy closes {100 * s['remedy']['gap_closed']:.0f}% of the nudge gap.",
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
        format_classification_report(results["raw_lr"]["report"]),
        "```",
        "",
    ]
    g = results["grid_search"]
    if g:
        order = np.argsort(-np.asarray(g["mean"]))[:10]
        lines += [
            f"## Grid search ({len(g['params'])} points, {config.folds}-fold stratified "
            f"CV, {g['compiled_calls']} compiled calls, {g['seconds']:.1f} s)",
            "",
            f"Best: {g['best_params']}",
            "",
            reporting.markdown_table(
                ["learning rate", "n_iter", "n_components", "C", "CV accuracy %"],
                [
                    [
                        g["params"][i]["learning_rate"],
                        g["params"][i]["n_iter"],
                        g["params"][i]["n_components"],
                        g["params"][i]["C"],
                        f"{f(g['mean'][i])} +- {f(g['std'][i])}",
                    ]
                    for i in order
                ],
            ),
            "",
        ]
    lines += ["Figures: `filters.png` (RBM filters), `nudged.png` (nudged digits).", ""]
    return "\n".join(lines)
