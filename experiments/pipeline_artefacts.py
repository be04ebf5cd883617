"""``pixjax run pipeline-artefacts``: image-library pipeline differences that flip
predictions (see :mod:`pixjax.experiments.configs.pipeline_artefacts`).

validate -> compute -> write -> plots -> report (see
:func:`pixjax.experiments.common.run_experiment`). Writes ``results.json`` (with the
library versions: Pillow's JPEG decoder changed pixels across versions),
``results.csv`` (one row per evaluated cell of every study), ``report.md``,
``matrix.png`` (train/serve accuracy matrices), ``jpeg.png`` (flip rate vs JPEG
quality, Wilson 95%), ``defences.png`` (FGSM examples back to the correct class through
each pipeline, next to random pixel changes and the pipelines' cost on clean images),
``differences.png`` (amplified difference images between the pipelines) and
``flipped_examples.png`` (images whose prediction flips between the train and the serve
pipeline). The models of the matrix are trained under ``WORKDIR/models/`` (resumable
per epoch); each ends as a model directory ``models/<task>/<i>/model`` (the i-th
pipeline's LeNet-5, loadable by ``pixjax check-pipeline --checkpoint``).
``pixjax report WORKDIR`` redraws the figures and the report.

Every evaluation goes through the shared sweep with precomputed variants
(:func:`pixjax.evaluation.run_variants`): the pipelines run on the host (they are
library calls), the model on the devices.
"""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import re
import time
from typing import Any

import jax
import numpy as np
from pixjax.experiments import common, reporting
from pixjax.experiments.adversarial import fgsm_dataset
from pixjax.experiments.configs.pipeline_artefacts import Config
from pixjax.experiments.fitting import check_recipe, train_classifier

from pixjax import checkpoints, data, models
from pixjax.attacks import check_args
from pixjax.evaluation import (
    make_sweeper,
    run_sweep,
    run_variants,
    summarize_outputs,
)
from pixjax.evaluation.metrics import mcnemar
from pixjax.evaluation.predict import predict
from pixjax.keys import purpose_keys
from pixjax.perturb import PixelConfig, pixel_change
from pixjax.perturb import pipeline as pl

DESCRIPTION = "pipeline artefacts: resize / JPEG / dtype differences between libraries"
MODELS_DIR = "models"
MAX_SIZE = 1024  # the largest side of the matrix's resized images
AMPLIFY = 8  # difference images are shown as min(255, |a - b| * AMPLIFY)
SUBSAMPLING = (None, "444", "422", "420")
# the summary fields kept per evaluated cell (the rest of summarize() is per class)
CELL_FIELDS = (
    "n",
    "clean_correct",
    "correct",
    "accuracy",
    "accuracy_ci",
    "flips",
    "flip_rate",
    "flip_rate_ci",
    "changed_rate",
    "flipped_confidence",
    "per_class_flip_rate",
    "flip_confusion",
)


@dataclasses.dataclass(frozen=True)
class Task:
    """One (dataset, size) of the train/serve matrix, with its pipelines resolved."""

    dataset: str
    size: int
    pipelines: tuple[pl.Pipeline, ...]
    train: data.Dataset
    test: data.Dataset


@dataclasses.dataclass(frozen=True)
class Target:
    """A model evaluated by the JPEG sweep: its name, model and (labelled) images."""

    name: str
    module: Any
    variables: Any
    dataset: data.Dataset
    labels: np.ndarray
    labels_from_model: bool


@dataclasses.dataclass(frozen=True)
class Setup:
    tasks: list[Task]
    targets: list[Target]  # the main model first
    jpeg: tuple[pl.Pipeline, ...]
    defences: tuple[pl.Pipeline, ...]


def _pipeline(spec: str, field: str) -> pl.Pipeline:
    try:
        return pl.parse(spec)
    except ValueError as e:
        raise common.ConfigError(f"{field}: {e}") from None


def _check_output(p: pl.Pipeline, shape, expected, field: str) -> None:
    """``p`` must turn uint8 images of ``shape`` ``(H, W, C)`` into uint8 images of
    ``expected`` (checked without running it: nothing is computed in validation)."""
    if pl.output_dtype(p, np.uint8) != np.uint8:
        raise common.ConfigError(
            f"{field}: {str(p)!r} ends in float32; end it with uint8:round, "
            "uint8:trunc or uint8:wrap (the model takes 8-bit images)"
        )
    try:
        out = pl.output_shape(p, (1, *shape))
    except ValueError as e:
        raise common.ConfigError(f"{field}: {e}") from None
    if out[1:] != tuple(expected):
        raise common.ConfigError(
            f"{field}: {str(p)!r} turns {tuple(shape)} images into {out[1:]}, "
            f"expected {tuple(expected)}"
        )


def _target(name, module, variables, dataset, batch_size) -> Target:
    labels = dataset.labels
    from_model = labels is None
    if from_model:
        labels, _ = predict(module.apply, variables, dataset.images, batch_size)
    return Target(
        name, module, variables, dataset, np.asarray(labels, np.int32), from_model
    )


def validate(config: Config) -> Setup:
    """All checks and loading, before any work or file write."""
    common.require_finite(config)
    if config.datasets:  # datasets= (empty) skips the train/serve matrix
        common.require_nonempty(config, "sizes", "pipelines")
    common.require_positive(
        config, "epochs", "batch_size", "learning_rate", "eval_batch_size"
    )
    for field in ("sizes", "jpeg_qualities", "random_nums"):
        values = getattr(config, field)
        if len(set(values)) != len(values):
            raise common.ConfigError(f"{field}: repeated entries in {list(values)}")
    for s in config.sizes:
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= MAX_SIZE:
            raise common.ConfigError(
                f"sizes: expected integers 1..{MAX_SIZE} (pixels per side of the "
                f"resized images a LeNet-5 is trained on), got {list(config.sizes)}"
            )
    if len(config.pipelines) < 2:
        raise common.ConfigError(
            "pipelines: expected 2 or more distinct pipelines, got "
            f"{list(config.pipelines)}"
        )
    if len(set(config.datasets)) != len(config.datasets):
        raise common.ConfigError(
            f"datasets: repeated entries in {list(config.datasets)}"
        )
    if config.jpeg_subsampling not in SUBSAMPLING:
        raise common.ConfigError(
            f"jpeg_subsampling: expected one of {list(SUBSAMPLING)}, got "
            f"{config.jpeg_subsampling!r}"
        )
    if config.examples < 0:
        raise common.ConfigError(f"examples: expected 0 or more, got {config.examples}")
    if isinstance(config.key, bool) or not 0 <= config.key < 2**63:
        raise common.ConfigError(
            f"key: expected an integer in [0, 2**63), got {config.key!r}"
        )
    if (config.zoo_model is None) != (config.zoo_checkpoint is None):
        raise common.ConfigError(
            "zoo_model / zoo_checkpoint: give both (e.g. zoo_model=resnet18 "
            "zoo_checkpoint=DIR) or neither"
        )
    try:
        check_args(config.eps, "linf")
    except ValueError as e:
        raise common.ConfigError(str(e)) from None
    sub = "" if config.jpeg_subsampling is None else f":{config.jpeg_subsampling}"
    jpeg = tuple(
        _pipeline(f"jpeg:{q}{sub}", "jpeg_qualities") for q in config.jpeg_qualities
    )
    defences = tuple(
        _pipeline(s, "defence_pipelines") for s in config.defence_pipelines
    )
    for field, ps in (("jpeg_qualities", jpeg), ("defence_pipelines", defences)):
        if len(set(ps)) != len(ps):
            raise common.ConfigError(
                f"{field}: repeated pipelines {[str(p) for p in ps]}"
            )

    tasks = []
    for name in config.datasets:
        train = data.load(name, config.train_split, limit=config.train_limit)
        test = data.load(name, config.test_split, limit=config.test_limit)
        check_recipe(config, train, test)
        for size in config.sizes:
            ps = []
            for template in config.pipelines:
                if "{size}" not in template:
                    raise common.ConfigError(
                        f"pipelines: {template!r} has no {{size}} (each pipeline "
                        "resizes to every entry of sizes)"
                    )
                p = _pipeline(template.replace("{size}", str(size)), "pipelines")
                if p in ps:  # the parsed form: case and spelling do not matter
                    raise common.ConfigError(
                        f"pipelines: {template!r} is the same pipeline as another "
                        f"entry ({str(p)!r}); expected distinct pipelines"
                    )
                _check_output(
                    p,
                    train.image_shape,
                    (size, size, train.image_shape[2]),
                    "pipelines",
                )
                ps.append(p)
            tasks.append(Task(name, size, tuple(ps), train, test))

    dataset = data.load(config.dataset, config.split, limit=config.limit)
    for p in jpeg + defences:
        field = "defence_pipelines" if p in defences else "jpeg_qualities"
        _check_output(p, dataset.image_shape, dataset.image_shape, field)
    if config.random_nums:
        common.require_nums(config, "random_nums", dataset.image_shape, False)
    module, variables, meta = common.load_checkpoint(
        config.model, config.checkpoint, dataset.image_shape
    )
    if dataset.labels is None:
        raise common.ConfigError(
            f"dataset: {dataset.name!r} has no labels; the FGSM study needs them"
        )
    targets = [
        _target(
            f"{meta.get('arch', config.model)} on {dataset.name}",
            module,
            variables,
            dataset,
            config.eval_batch_size,
        )
    ]
    if config.zoo_model is not None:
        zoo_data = data.load(config.zoo_dataset, "test")
        for p in jpeg:
            _check_output(
                p, zoo_data.image_shape, zoo_data.image_shape, "jpeg_qualities"
            )
        zmod, zvars, zmeta = common.load_checkpoint(
            config.zoo_model, config.zoo_checkpoint, zoo_data.image_shape
        )
        targets.append(
            _target(
                f"{zmeta.get('arch', config.zoo_model)} on {zoo_data.name}",
                zmod,
                zvars,
                zoo_data,
                min(config.eval_batch_size, 32),
            )
        )
    return Setup(tasks, targets, jpeg, defences)


# --- compute ---------------------------------------------------------------------------


def _cells(out, labels, num_classes) -> list[dict[str, Any]]:
    rows = summarize_outputs(out, labels, num_classes)
    return [{k: r[k] for k in CELL_FIELDS} for r in rows]


def _stats(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    s = pl.difference_stats(a, b)
    return {
        k: (float(v) if isinstance(v, float | np.floating) else v)
        for k, v in s.items()
        if not k.startswith("per_image")
    }


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40]


def matrix_study(
    task: Task, index: int, config: Config, key: jax.Array, run_dir: pathlib.Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Trains one model per pipeline and evaluates it through every pipeline.

    Returns the results of the task and its figure material (images)."""
    train_x = [pl.apply(p, task.train.images) for p in task.pipelines]
    test_x = [pl.apply(p, task.test.images) for p in task.pipelines]
    labels = task.test.labels.astype(np.int32)
    num_classes = max(len(task.train.class_names), int(labels.max()) + 1)
    module = models.get_model("lenet5", num_classes=num_classes)
    sweeper = make_sweeper(module.apply)
    variants = np.stack(test_x)
    rows, worst = [], None
    task_dir = run_dir / MODELS_DIR / f"{index}-{_slug(task.dataset)}-{task.size}"
    for i, p in enumerate(task.pipelines):
        variables, history = train_classifier(
            module,
            train_x[i],
            task.train.labels.astype(np.int32),
            key=key,
            run_dir=task_dir / str(i),
            epochs=config.epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            augment_shift=config.augment_shift,
            desc=f"train {task.dataset} {task.size}px on {p}",
            progress=config.progress,
        )
        # A model directory, so that a user can check it (pixjax check-pipeline).
        checkpoints.save_model(
            task_dir / str(i) / "model",
            variables,
            {
                "arch": "lenet5",
                "model_kwargs": {"num_classes": num_classes},
                "input_shape": list(train_x[i].shape[1:]),
                "class_names": [str(c) for c in task.train.class_names],
                "dataset": {"train": task.train.name, "pipeline": str(p)},
            },
        )
        out = run_variants(
            sweeper,
            variables,
            test_x[i],
            variants,
            batch_size=config.eval_batch_size,
            progress=False,
        )
        cells = _cells(out, labels, num_classes)
        matched = out.pred[i] == labels
        for j, cell in enumerate(cells):
            cell["serve"] = str(task.pipelines[j])
            cell["mcnemar"] = mcnemar(matched, out.pred[j] == labels)
            off = j != i and cell["flips"]
            if off and (worst is None or cell["flip_rate"] > worst[0]):
                flipped = np.flatnonzero(
                    (out.clean_pred == labels) & (out.pred[j] != out.clean_pred)
                )
                worst = (cell["flip_rate"], i, j, flipped, out)
        rows.append(
            {
                "train": str(p),
                "final_loss": history[-1]["loss"],
                "cells": cells,
            }
        )
    pairs = [
        {"a": str(task.pipelines[a]), "b": str(task.pipelines[b])}
        | _stats(test_x[a], test_x[b])
        for a, b in itertools.combinations(range(len(task.pipelines)), 2)
    ]
    result = {
        "dataset": task.test.name,
        "train_dataset": task.train.name,
        "size": task.size,
        "class_names": [str(c) for c in task.test.class_names],
        "train_images": int(len(task.train.images)),
        "test_images": int(len(task.test.images)),
        "matrix": rows,
        "differences": pairs,
    }
    figures = {"difference_images": [common.pack_uint8(x[:1]) for x in test_x]}
    if worst is not None and config.examples:
        _, i, j, flipped, out = worst
        pick = flipped[: config.examples]
        figures["flipped"] = {
            "flip_rate": worst[0],
            "suptitle": f"{task.test.name} {task.size}px: trained on "
            f"{task.pipelines[i]}, served {task.pipelines[j]} (red: flipped)",
            "original_title": f"trained on\n{task.pipelines[i]}".replace("|", "\n"),
            "index": pick.tolist(),
            "labels": labels[pick].tolist(),
            "clean_pred": out.clean_pred[pick].tolist(),
            "original": common.pack_uint8(test_x[i][pick]),
            "rows": [
                {
                    "title": f"served\n{task.pipelines[j]}".replace("|", "\n"),
                    "images": common.pack_uint8(test_x[j][pick]),
                    "pred": out.pred[j][pick].tolist(),
                }
            ],
        }
    return result, figures


def jpeg_study(target: Target, jpeg, config: Config) -> dict[str, Any]:
    """Flip rate of ``target`` on its images re-encoded at each JPEG quality."""
    images = target.dataset.images
    variants = np.stack([pl.apply(p, images) for p in jpeg])
    out = run_variants(
        make_sweeper(target.module.apply),
        target.variables,
        images,
        variants,
        batch_size=config.eval_batch_size,
        progress=False,
    )
    num_classes = max(int(target.labels.max()), int(out.pred.max())) + 1
    cells = _cells(out, target.labels, num_classes)
    for p, cell, v in zip(jpeg, cells, variants, strict=True):
        cell["pipeline"] = str(p)
        cell["quality"] = p.steps[0].args[0]
        cell["pixels"] = _stats(images, v)
    return {
        "target": target.name,
        "labels_from_model": target.labels_from_model,
        "images": int(len(images)),
        "cells": cells,
    }


def defence_study(
    target: Target, defences, config: Config, key: jax.Array
) -> dict[str, Any]:
    """FGSM examples through each pipeline (back to the correct class?), beside random
    pixel changes and the pipelines' flip rate on clean images."""
    images, labels = target.dataset.images, target.labels
    apply, variables = target.module.apply, target.variables
    adv = fgsm_dataset(
        apply, variables, images, labels, config.eps, batch_size=config.eval_batch_size
    )
    correct = adv.clean_pred == labels
    success = correct & (adv.pred != labels)
    idx, ok = np.flatnonzero(success), np.flatnonzero(correct)
    num_classes = int(max(labels.max(), adv.pred.max(), adv.clean_pred.max())) + 1
    result: dict[str, Any] = {
        "eps": config.eps,
        "attacked": int(correct.sum()),
        "successful": int(success.sum()),
        "pipelines": [],
        "random": [],
    }
    if not len(defences) and not config.random_nums:
        return result
    sweeper = make_sweeper(apply)
    if len(defences) and len(idx):
        adv_v = np.stack([pl.apply(p, adv.images[idx]) for p in defences])
        clean_v = np.stack([pl.apply(p, images[ok]) for p in defences])
        back = _cells(
            run_variants(
                sweeper,
                variables,
                adv.images[idx],
                adv_v,
                batch_size=config.eval_batch_size,
                progress=False,
            ),
            labels[idx],
            num_classes,
        )
        cost = _cells(
            run_variants(
                sweeper,
                variables,
                images[ok],
                clean_v,
                batch_size=config.eval_batch_size,
                progress=False,
            ),
            labels[ok],
            num_classes,
        )
        for p, b, c in zip(defences, back, cost, strict=True):
            result["pipelines"].append(
                {
                    "pipeline": str(p),
                    "recovered": b["correct"],
                    "recovered_rate": b["accuracy"],
                    "recovered_ci": b["accuracy_ci"],
                    "clean_flips": c["flips"],
                    "clean_flip_rate": c["flip_rate"],
                    "clean_flip_rate_ci": c["flip_rate_ci"],
                }
            )
    if config.random_nums and len(idx):
        grid = [PixelConfig(n) for n in config.random_nums]
        change = pixel_change(target.dataset.image_shape, max(config.random_nums))
        out = run_sweep(
            make_sweeper(apply, change),
            variables,
            adv.images[idx],
            change.make_params(grid),
            key,
            seeds=(0,),
            batch_size=config.eval_batch_size,
            progress=False,
        )
        for cfg, r in zip(grid, _cells(out, labels[idx], num_classes), strict=True):
            result["random"].append(
                {
                    "num": cfg.num,
                    "label": cfg.label(),
                    "recovered": r["correct"],
                    "recovered_rate": r["accuracy"],
                    "recovered_ci": r["accuracy_ci"],
                }
            )
    return result


def compute(
    config: Config, setup: Setup, *, run_dir: pathlib.Path, command: str
) -> dict[str, Any]:
    """The four studies; touches only the resumable model directories under
    ``run_dir/models``."""
    t0 = time.perf_counter()
    keys = purpose_keys(jax.random.key(config.key), "train", "changes")
    matrices, figures = [], []
    for i, task in enumerate(setup.tasks):
        result, fig = matrix_study(task, i, config, keys["train"], run_dir)
        matrices.append(result)
        figures.append(fig)
    main = setup.targets[0]
    return {
        "metadata": common.run_metadata(
            config,
            command=command,
            versions=pl.library_versions(),
            compute_seconds=time.perf_counter() - t0,
        ),
        "matrices": matrices,
        "jpeg": [jpeg_study(t, setup.jpeg, config) for t in setup.targets]
        if setup.jpeg
        else [],
        "defences": defence_study(main, setup.defences, config, keys["changes"]),
        "figures": figures,
    }


# --- write / plots / report (from the results document alone) -------------------------


def _with_ci(name: str, value, ci) -> dict[str, Any]:
    """CSV columns ``name``, ``name_ci_lo``, ``name_ci_hi``."""
    return {name: value, f"{name}_ci_lo": ci[0], f"{name}_ci_hi": ci[1]}


def write(workdir: pathlib.Path, doc: dict[str, Any]) -> None:
    """``results.csv``: one row per evaluated cell (matrix cells, JPEG qualities,
    pipelines and random changes on FGSM examples)."""
    rows = []
    for m in doc["matrices"]:
        for r in m["matrix"]:
            rows += [
                {"study": "matrix", "dataset": m["dataset"], "size": m["size"]}
                | {"train": r["train"], "serve": c["serve"]}
                | _with_ci("accuracy", c["accuracy"], c["accuracy_ci"])
                | _with_ci("flip_rate", c["flip_rate"], c["flip_rate_ci"])
                | {"mcnemar_p": c["mcnemar"]["p_value"]}
                for c in r["cells"]
            ]
    for j in doc["jpeg"]:
        rows += [
            {"study": "jpeg", "dataset": j["target"], "serve": c["pipeline"]}
            | _with_ci("accuracy", c["accuracy"], c["accuracy_ci"])
            | _with_ci("flip_rate", c["flip_rate"], c["flip_rate_ci"])
            for c in j["cells"]
        ]
    d = doc["defences"]
    rows += [
        {"study": "fgsm_defence", "serve": p["pipeline"]}
        | _with_ci("recovered_rate", p["recovered_rate"], p["recovered_ci"])
        | _with_ci("flip_rate", p["clean_flip_rate"], p["clean_flip_rate_ci"])
        for p in d["pipelines"]
    ]
    rows += [
        {"study": "fgsm_random_changes", "serve": r["label"]}
        | _with_ci("recovered_rate", r["recovered_rate"], r["recovered_ci"])
        for r in d["random"]
    ]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    nan = float("nan")
    common.write_csv_atomic(
        pathlib.Path(workdir) / "results.csv",
        [{k: (nan if r.get(k) is None else r.get(k, "")) for k in keys} for r in rows],
    )


def _matrix_figure(
    path: pathlib.Path, matrices: list[dict[str, Any]], templates: list[str]
) -> None:
    plt = reporting._plt()
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4.4), squeeze=False)
    for ax, m in zip(axes[0], matrices, strict=True):
        acc = (
            np.array(
                [
                    [
                        np.nan if c["accuracy"] is None else c["accuracy"]
                        for c in r["cells"]
                    ]
                    for r in m["matrix"]
                ],
                float,
            )
            * 100
        )
        im = ax.imshow(acc, cmap="viridis")
        k = len(acc)
        for a, b in itertools.product(range(k), range(k)):
            ax.text(
                b,
                a,
                f"{acc[a, b]:.1f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if acc[a, b] < np.nanmean(acc) else "black",
            )
        ticks = [f"P{t + 1}" for t in range(k)]
        ax.set_xticks(range(k), ticks, fontsize=7)
        ax.set_yticks(range(k), ticks, fontsize=7)
        ax.set_xlabel("served through", fontsize=8)
        ax.set_ylabel("trained on", fontsize=8)
        ax.set_title(f"{m['dataset']} -> {m['size']} px: accuracy %", fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046)
    legend = "   ".join(
        f"P{k + 1} = {t.replace('{size}', 'S')}" for k, t in enumerate(templates)
    )
    fig.text(0.5, 0.01, legend, ha="center", fontsize=7)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    common.save_figure_atomic(fig, path)
    plt.close(fig)


def _difference_figure(path: pathlib.Path, doc: dict[str, Any]) -> None:
    """Per (dataset, size): the first test image through each pipeline, then its
    amplified absolute difference from the first pipeline's."""
    plt = reporting._plt()
    rows = []
    for m, f in zip(doc["matrices"], doc["figures"], strict=True):
        ims = [
            common.unpack_uint8(p)[0].astype(np.int16) for p in f["difference_images"]
        ]
        rows.append((f"{m['dataset']} {m['size']}px", ims))
    cols = max(2 * len(ims) - 1 for _, ims in rows)
    fig, axes = plt.subplots(
        len(rows), cols, figsize=(1.6 * cols, 1.9 * len(rows)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    for r, (title, ims) in enumerate(rows):
        panels = [(f"P{i + 1}", im) for i, im in enumerate(ims)]
        panels += [
            (
                f"|P{i + 1} - P1| x{AMPLIFY}",
                np.minimum(255, np.abs(im - ims[0]) * AMPLIFY),
            )
            for i, im in enumerate(ims[1:], start=1)
        ]
        for c, (name, im) in enumerate(panels):
            im = im.astype(np.uint8)
            axes[r, c].imshow(
                im[..., 0] if im.shape[-1] == 1 else im,
                cmap="gray",
                vmin=0,
                vmax=255,
                interpolation="nearest",
            )
            axes[r, c].set_title(name, fontsize=7)
        axes[r, 0].text(
            -0.1,
            0.5,
            title,
            transform=axes[r, 0].transAxes,
            fontsize=7,
            rotation=90,
            ha="right",
            va="center",
        )
    fig.suptitle("pipelines P1.. (see report) and amplified differences", fontsize=9)
    fig.tight_layout()
    common.save_figure_atomic(fig, path)
    plt.close(fig)


def plots(workdir: pathlib.Path, doc: dict[str, Any]) -> list[str]:
    workdir = pathlib.Path(workdir)
    files = []
    plt = reporting._plt()
    if doc["matrices"]:
        templates = list(doc["metadata"]["config"]["pipelines"])
        _matrix_figure(workdir / "matrix.png", doc["matrices"], templates)
        _difference_figure(workdir / "differences.png", doc)
        files += ["matrix.png", "differences.png"]
    if doc["jpeg"]:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for j in doc["jpeg"]:
            q = [c["quality"] for c in j["cells"]]
            y = (
                np.array(
                    [
                        np.nan if c["flip_rate"] is None else c["flip_rate"]
                        for c in j["cells"]
                    ]
                )
                * 100
            )
            lo = np.array([c["flip_rate_ci"][0] for c in j["cells"]]) * 100
            hi = np.array([c["flip_rate_ci"][1] for c in j["cells"]]) * 100
            ax.errorbar(
                q,
                y,
                yerr=[y - lo, hi - y],
                marker="o",
                ms=4,
                capsize=3,
                label=j["target"],
            )
        ax.invert_xaxis()
        ax.set_xlabel("JPEG quality")
        ax.set_ylabel("flip rate among correct images (%)")
        ax.set_title("JPEG re-encoding (Wilson 95%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        common.save_figure_atomic(fig, workdir / "jpeg.png")
        plt.close(fig)
        files.append("jpeg.png")
    d = doc["defences"]
    if d["pipelines"] or d["random"]:
        names = [p["pipeline"] for p in d["pipelines"]] + [
            r["label"] for r in d["random"]
        ]
        rec = [p["recovered_rate"] for p in d["pipelines"]] + [
            r["recovered_rate"] for r in d["random"]
        ]
        ci = [p["recovered_ci"] for p in d["pipelines"]] + [
            r["recovered_ci"] for r in d["random"]
        ]
        y = np.array(rec, float) * 100
        lo = np.array([c[0] for c in ci]) * 100
        hi = np.array([c[1] for c in ci]) * 100
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
        colors = ["C0"] * len(d["pipelines"]) + ["C1"] * len(d["random"])
        ax.barh(range(len(names)), y, xerr=[y - lo, hi - y], color=colors, capsize=3)
        cost = [p["clean_flip_rate"] for p in d["pipelines"]]
        if cost:
            ax.plot(
                np.array([np.nan if c is None else c for c in cost], float) * 100,
                range(len(cost)),
                "k|",
                ms=12,
                label="flip rate on clean images",
            )
            ax.legend(fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("FGSM examples back to the correct class (%)")
        ax.set_title(
            f"pipelines (blue) vs random pixel changes (orange), eps {d['eps']}",
            fontsize=9,
        )
        fig.tight_layout()
        common.save_figure_atomic(fig, workdir / "defences.png")
        plt.close(fig)
        files.append("defences.png")
    flipped = [
        (f["flipped"], m["class_names"])
        for m, f in zip(doc["matrices"], doc["figures"], strict=True)
        if f.get("flipped")
    ]
    if flipped:
        # the cell with the largest flip rate
        examples, names = max(flipped, key=lambda t: t[0]["flip_rate"])
        reporting.examples_figure(workdir / "flipped_examples.png", examples, names)
        files.append("flipped_examples.png")
    return files


def _code(p: str) -> str:
    """A pipeline string as inline code in a markdown table cell (``|`` escaped)."""
    return "`" + p.replace("|", "\\|") + "`"


def _pct(x) -> str:
    return reporting.fmt_num(None if x is None else 100 * x, 1)


def _ci(ci) -> str:
    return f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def _worst_cell_lines(m: dict[str, Any]) -> list[str]:
    """The off-diagonal cell with the largest flip rate: per class, where the flipped
    images go and how sure the model is of the new class."""
    cells = [
        (c["flip_rate"], i, j, c)
        for i, r in enumerate(m["matrix"])
        for j, c in enumerate(r["cells"])
        if i != j and c["flips"]
    ]
    if not cells:
        return ["No prediction flipped between any two pipelines.", ""]
    _, i, j, c = max(cells, key=lambda t: t[0])
    names = m["class_names"]
    name = lambda k: names[k] if k < len(names) else str(k)  # noqa: E731
    moves = sorted(
        (
            (n, a, b)
            for a, row in enumerate(c["flip_confusion"])
            for b, n in enumerate(row)
            if n
        ),
        reverse=True,
    )[:3]
    per_class = ", ".join(
        f"{name(k)} {_pct(v)}"
        for k, v in enumerate(c["per_class_flip_rate"])
        if v is not None
    )
    return [
        f"Largest flip rate: trained on P{i + 1}, served P{j + 1}: {c['flips']} flips; "
        f"per class (%, classes without a correct image left out): {per_class}; most "
        "frequent moves: "
        + ", ".join(f"{name(a)} -> {name(b)} ({n})" for n, a, b in moves)
        + f"; mean confidence in the new class {reporting.fmt_num(c['flipped_confidence'])}.",
        "",
    ]


def report(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    config = meta["config"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v)
    lines = [
        "# Pipeline artefacts: image-library differences that flip predictions",
        "",
        f"- command: `{meta['command']}`",
        f"- library versions: {versions}",
        f"- computation {meta['compute_seconds']:.1f} s",
        "",
    ]
    if doc["matrices"]:
        lines += [
            "## 1. Train/serve matrix",
            "",
            f"LeNet-5 trained for {config['epochs']} epochs on each pipeline's output "
            "(every model from the same key), evaluated on the test split through every "
            "pipeline. Cells: accuracy % [Wilson 95%]; flip rate: test images correct "
            "under the matched pipeline whose prediction changes; McNemar p: exact "
            "test of the cell against the diagonal on the same images.",
            "",
        ]
    for m in doc["matrices"]:
        ps = [r["train"] for r in m["matrix"]]
        lines += [
            f"### {m['dataset']} resized to {m['size']} x {m['size']} "
            f"({m['train_images']} train / {m['test_images']} test images)",
            "",
            "Pipelines: "
            + "; ".join(f"P{i + 1} = {_code(p)}" for i, p in enumerate(ps)),
            "",
            reporting.markdown_table(
                ["trained on \\ served", *[f"P{i + 1}" for i in range(len(ps))]],
                [
                    [f"P{i + 1}"]
                    + [
                        f"{_pct(c['accuracy'])} {_ci(c['accuracy_ci'])}"
                        for c in r["cells"]
                    ]
                    for i, r in enumerate(m["matrix"])
                ],
            ),
            "",
            reporting.markdown_table(
                ["trained on", "served", "flip rate %", "95% CI", "flips", "McNemar p"],
                [
                    [
                        f"P{i + 1}",
                        f"P{j + 1}",
                        _pct(c["flip_rate"]),
                        _ci(c["flip_rate_ci"]),
                        f"{c['flips']} / {c['clean_correct']}",
                        f"{c['mcnemar']['p_value']:.3g}",
                    ]
                    for i, r in enumerate(m["matrix"])
                    for j, c in enumerate(r["cells"])
                    if i != j
                ],
            ),
            "",
            *_worst_cell_lines(m),
            "Pixel differences between the pipelines' test images (0..255 levels):",
            "",
            reporting.markdown_table(
                [
                    "a",
                    "b",
                    "max",
                    "mean",
                    "values differing %",
                    "images differing %",
                    "PSNR dB",
                ],
                [
                    [
                        f"P{ps.index(d['a']) + 1}",
                        f"P{ps.index(d['b']) + 1}",
                        f"{d['max_abs']:g}",
                        f"{d['mean_abs']:.3f}",
                        _pct(d["share_values_differing"]),
                        _pct(d["share_images_differing"]),
                        "inf" if d["psnr_db"] is None else f"{d['psnr_db']:.1f}",
                    ]
                    for d in m["differences"]
                ],
            ),
            "",
        ]
    if doc["matrices"]:
        lines += ["![matrix](matrix.png)", "", "![differences](differences.png)", ""]
        if any(f.get("flipped") for f in doc["figures"]):
            lines += ["![flipped examples](flipped_examples.png)", ""]
    if doc["jpeg"]:
        lines += ["## 2. JPEG re-encoding", ""]
        for j in doc["jpeg"]:
            note = (
                " (labels: the model's own predictions)"
                if j["labels_from_model"]
                else ""
            )
            lines += [
                f"### {j['target']}{note}, {j['images']} images",
                "",
                reporting.markdown_table(
                    [
                        "quality",
                        "flip rate %",
                        "95% CI",
                        "flips",
                        "accuracy %",
                        "mean abs diff",
                        "PSNR dB",
                    ],
                    [
                        [
                            c["quality"],
                            _pct(c["flip_rate"]),
                            _ci(c["flip_rate_ci"]),
                            f"{c['flips']} / {c['clean_correct']}",
                            _pct(c["accuracy"]),
                            f"{c['pixels']['mean_abs']:.2f}",
                            "inf"
                            if c["pixels"]["psnr_db"] is None
                            else f"{c['pixels']['psnr_db']:.1f}",
                        ]
                        for c in j["cells"]
                    ],
                ),
                "",
            ]
        lines += ["![jpeg](jpeg.png)", ""]
    d = doc["defences"]
    lines += [
        "## 3. Pipelines vs FGSM examples",
        "",
        f"FGSM (L-inf, eps {d['eps']}, 8-bit) turned {d['successful']} of "
        f"{d['attacked']} correctly classified images adversarial.",
        "",
    ]
    if d["pipelines"] or d["random"]:
        lines += [
            reporting.markdown_table(
                [
                    "applied to the FGSM examples",
                    "back to correct %",
                    "95% CI",
                    "flip rate on clean images %",
                    "95% CI",
                ],
                [
                    [
                        _code(p["pipeline"]),
                        _pct(p["recovered_rate"]),
                        _ci(p["recovered_ci"]),
                        _pct(p["clean_flip_rate"]),
                        _ci(p["clean_flip_rate_ci"]),
                    ]
                    for p in d["pipelines"]
                ]
                + [
                    [
                        f"random pixel changes, {r['label']} (Exp 4)",
                        _pct(r["recovered_rate"]),
                        _ci(r["recovered_ci"]),
                        "",
                        "",
                    ]
                    for r in d["random"]
                ],
            ),
            "",
            "![defences](defences.png)",
            "",
        ]
    return "\n".join(lines) + "\n"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    lines = []
    for m in doc["matrices"]:
        off = [
            (c["flip_rate"], r["train"], c["serve"])
            for r in m["matrix"]
            for c in r["cells"]
            if c["serve"] != r["train"] and c["flip_rate"] is not None
        ]
        if off:
            rate, a, b = max(off)
            lines.append(
                f"{m['dataset']} {m['size']}px: largest flip rate {100 * rate:.1f}% "
                f"(trained on {a}, served {b})"
            )
    return lines
