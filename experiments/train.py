"""``pixjax run train``: supervised training with optax, orbax checkpoints, resume.

Writes into the run directory: ``checkpoints/`` (orbax CheckpointManager, one step per
epoch), ``model/`` (the final model directory: metadata + variables, loadable with
``pixjax.checkpoints.load_model``), ``results.json`` (accuracies, the loss history),
``report.md`` and ``config.json``. Running the same command again after a kill resumes
from the latest epoch checkpoint and ends with the same parameters as an uninterrupted
run.

Keys: the root key ``key(seed)`` is split by purpose (:func:`pixjax.keys.purpose_keys`):
``init`` (the random initial weights; unused with ``init_checkpoint``) and ``train``
(split by :func:`pixjax.experiments.fitting.fit` into the data order and the
augmentation), so no two seeds share a subkey.

Classes: the model has one output per class of the training split (its class names, or
its largest label + 1 for a dataset without names); test labels outside them, or test
class names that contradict the training split's, are refused before any work.
"""

from __future__ import annotations

import dataclasses
import pathlib
import time
from typing import Any

import jax
from pixjax.experiments import common, reporting
from pixjax.experiments.configs.train import Config
from pixjax.experiments.fitting import PURPOSES, check_recipe, train_classifier

from pixjax import checkpoints, data, models
from pixjax.evaluation import accuracy
from pixjax.training import check_batchnorm_batch

DESCRIPTION = "train any registered classifier with optax on any dataset (resumable)"
MODEL_DIR = "model"
__all__ = [
    "DESCRIPTION",
    "PURPOSES",
    "compute",
    "num_classes_of",
    "plots",
    "report",
    "summary_lines",
    "validate",
    "write",
]


@dataclasses.dataclass(frozen=True)
class Setup:
    train: data.Dataset
    test: data.Dataset
    num_classes: int
    init_variables: Any  # from init_checkpoint, or None (random initialisation)


def num_classes_of(train: data.Dataset, test: data.Dataset) -> int:
    """The model's outputs: one per class of the training split (its class names, or
    its largest label + 1 without names).

    Raises:
      ConfigError: test labels outside those classes, or class names of the test split
        that differ from the training split's.
    """
    names = tuple(train.class_names)
    n = len(names) if names else int(train.labels.max()) + 1
    if names and test.class_names:
        shared = min(len(names), len(test.class_names))
        if tuple(test.class_names[:shared]) != names[:shared]:
            raise common.ConfigError(
                f"dataset: the splits name their classes differently ({train.name}: "
                f"{list(names[:5])}..., {test.name}: {list(test.class_names[:5])}...); "
                "expected the test split to use the training split's classes"
            )
    try:
        data.check_labels(
            test.labels,
            n,
            argument=f"labels of {test.name}",
            classes_from=(
                "the {n} classes of the training split"
                + ("" if names else ", its largest label + 1")
            ),
        )
    except ValueError as e:
        raise common.ConfigError(str(e)) from None
    return n


def validate(config: Config) -> Setup:
    """Checks the configuration and loads the data and any initial weights (no
    writes)."""
    common.require_finite(config)
    models.get_model(config.model)  # unknown name -> ValueError listing the models
    common.require_positive(config, "epochs")
    train = data.load(config.dataset, config.train_split, limit=config.limit)
    test = data.load(config.dataset, config.test_split)
    check_recipe(config, train, test)
    num_classes = num_classes_of(train, test)
    module = models.get_model(config.model, num_classes=num_classes)
    wanted = jax.eval_shape(
        lambda: models.init_variables(module, jax.random.key(0), train.image_shape)
    )
    check_batchnorm_batch(module, wanted, config.batch_size, train.image_shape)
    variables = None
    if config.init_checkpoint:
        path = common.resolve_checkpoint(config.init_checkpoint)
        meta = checkpoints.read_metadata(path)
        if meta.get("arch") != config.model:
            raise common.ConfigError(
                f"init_checkpoint: holds a {meta.get('arch')!r} model, expected "
                f"{config.model!r}"
            )
        _, variables, _ = checkpoints.load_model(path, arch=config.model)
        problems = checkpoints.tree_mismatches(wanted, variables)
        if problems:
            raise common.ConfigError(
                f"init_checkpoint: {str(path)!r} does not fit a {config.model!r} for "
                f"{num_classes} classes and images {train.image_shape}: "
                + "; ".join(problems)
            )
    return Setup(train, test, num_classes, variables)


def compute(
    config: Config, setup: Setup, *, run_dir: pathlib.Path, command: str
) -> dict[str, Any]:
    """Trains (resuming from ``run_dir/checkpoints``), saves ``run_dir/model`` and
    returns the accuracies and the loss history."""
    t0 = time.perf_counter()
    train, test = setup.train, setup.test
    model_kwargs = {"num_classes": setup.num_classes}
    model = models.get_model(config.model, **model_kwargs)
    variables, history = train_classifier(
        model,
        train.images,
        train.labels,
        key=jax.random.key(config.seed),
        run_dir=run_dir,
        epochs=config.epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        augment_shift=config.augment_shift,
        init_variables=setup.init_variables,
        progress=config.progress,
    )
    t_fit = time.perf_counter()
    test_acc = accuracy(model.apply, variables, test.images, test.labels)
    train_acc = accuracy(model.apply, variables, train.images, train.labels)
    described = dict(
        arch=config.model,
        model_kwargs=model_kwargs,
        input_shape=list(train.image_shape),
        class_names=list(train.class_names),
        dataset={"train": train.name, "test": test.name},
        train_images=len(train.images),
        test_images=len(test.images),
        seed=config.seed,
        parameters=models.count_params(variables),
    )
    model_meta = common.run_metadata(
        config,
        command=command,
        **described,
        train_accuracy=train_acc,
        test_accuracy=test_acc,
    )
    checkpoints.save_model(pathlib.Path(run_dir) / MODEL_DIR, variables, model_meta)
    timings = {
        "train_s": t_fit - t0,
        "evaluate_s": time.perf_counter() - t_fit,
        "total_s": time.perf_counter() - t0,
    }
    return {
        "metadata": common.run_metadata(
            config, command=command, **described, model_dir=MODEL_DIR, timings=timings
        ),
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "history": history,
    }


def write(workdir: pathlib.Path, doc: dict[str, Any]) -> None:
    """No data files besides ``results.json``: the model directory is written by
    :func:`compute` (it is part of the resumable state of the run)."""


def plots(workdir: pathlib.Path, doc: dict[str, Any]) -> list[str]:
    """No figures: the loss history is a table in the report."""
    return []


def _loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def report(doc: dict[str, Any]) -> str:
    """A short Markdown report: the command, the setting, the accuracies and the loss
    history per epoch."""
    f = reporting.fmt_pct
    meta = doc["metadata"]
    cfg = meta["config"]
    start = (
        f"from `{cfg['init_checkpoint']}`"
        if cfg.get("init_checkpoint")
        else f"from random weights (seed {cfg['seed']})"
    )
    augment = (
        f"random shifts of up to {cfg['augment_shift']} pixels"
        if cfg["augment_shift"]
        else "none"
    )
    lines = [
        f"# Training {meta['arch']} on {cfg['dataset']}",
        "",
        f"- command: `{meta['command']}`",
        f"- {meta['arch']} ({meta['parameters']} parameters, "
        f"{meta['model_kwargs']['num_classes']} classes, images "
        f"{'x'.join(map(str, meta['input_shape']))}) trained {start} on "
        f"{meta['train_images']} images of {meta['dataset']['train']}: "
        f"{cfg['epochs']} epochs, batch {cfg['batch_size']}, adamw lr "
        f"{cfg['learning_rate']} (cosine decay), weight decay {cfg['weight_decay']}, "
        f"augmentation: {augment}",
        f"- model directory: `{meta['model_dir']}/` (load with "
        "`pixjax.checkpoints.load_model`)",
        f"- whole run {meta['timings']['total_s']:.1f} s",
        "",
        reporting.markdown_table(
            ["split", "images", "top-1 accuracy %"],
            [
                [meta["dataset"]["test"], meta["test_images"], f(doc["test_accuracy"])],
                [
                    meta["dataset"]["train"],
                    meta["train_images"],
                    f(doc["train_accuracy"]),
                ],
            ],
        ),
        "",
        "## Training loss (mean over the epoch's batches)",
        "",
        reporting.markdown_table(
            ["epoch", "loss"], [[h["epoch"], _loss(h["loss"])] for h in doc["history"]]
        ),
    ]
    return "\n".join(lines) + "\n"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    meta = doc["metadata"]
    return [
        f"test accuracy {reporting.fmt_pct(doc['test_accuracy'])}% "
        f"({meta['dataset']['test']}); model saved to the run directory's "
        f"{meta['model_dir']}/"
    ]
