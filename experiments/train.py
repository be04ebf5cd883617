"""``pixjax run train``: supervised training with optax, orbax checkpoints, resume.

Writes into the run directory: ``checkpoints/`` (orbax CheckpointManager, one step per
epoch), ``model/`` (the final model directory: metadata + variables, loadable with
``pixjax.checkpoints.load_model``), ``results.json`` and ``config.json``. Running the
same command again after a kill resumes from the latest epoch checkpoint and ends with
the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import optax

from pixjax.experiments import common
from pixjax.experiments.configs.train import Config
from pixjax.experiments.fitting import fit
from pixjax import checkpoints, data, models
from pixjax.perturb.shifts import random_shift
from pixjax.training import check_batchnorm_batch, create_state, evaluate

DESCRIPTION = "train any registered classifier with optax on any dataset (resumable)"


def validate(config: Config) -> tuple[data.Dataset, data.Dataset]:
    """Checks the configuration and loads the data (no writes)."""
    common.require_finite(config)
    models.get_model(config.model)  # unknown name -> ValueError listing the models
    common.require_positive(config, "epochs", "batch_size", "learning_rate")
    if config.weight_decay < 0:
        raise common.ConfigError(
            f"weight_decay: expected 0 or more, got {config.weight_decay}"
        )
    if config.augment_shift < 0:
        raise common.ConfigError(
            f"augment_shift: expected 0 or more pixels, got {config.augment_shift}"
        )
    train = data.load(config.dataset, config.train_split, limit=config.limit)
    test = data.load(config.dataset, config.test_split)
    if train.labels is None:
        raise common.ConfigError(
            f"dataset: {config.dataset!r} has no labels; training needs labelled data"
        )
    if config.batch_size > len(train.images):
        raise common.ConfigError(
            f"batch_size: expected at most the {len(train.images)} training images, "
            f"got {config.batch_size}"
        )
    if config.augment_shift >= min(train.image_shape[:2]):
        raise common.ConfigError(
            f"augment_shift: expected less than the image size {train.image_shape[:2]}"
        )
    num_classes = max(train.num_classes, test.num_classes)
    module = models.get_model(config.model, num_classes=num_classes)
    wanted = jax.eval_shape(
        lambda: models.init_variables(module, jax.random.key(0), train.image_shape)
    )
    check_batchnorm_batch(module, wanted, config.batch_size, train.image_shape)
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
    return train, test


def run(
    config: Config, workdir: pathlib.Path, *, overwrite: bool = False
) -> dict[str, Any]:
    train, test = validate(config)
    workdir = common.prepare_workdir(
        workdir, config, experiment="train", overwrite=overwrite
    )

    num_classes = max(train.num_classes, test.num_classes)
    model_kwargs = {"num_classes": num_classes}
    model = models.get_model(config.model, **model_kwargs)
    init_key = jax.random.key(config.seed)
    steps_per_epoch = len(train.images) // config.batch_size
    schedule = optax.cosine_decay_schedule(
        config.learning_rate, steps_per_epoch * config.epochs
    )
    tx = optax.adamw(schedule, weight_decay=config.weight_decay)
    params = stats = None
    if config.init_checkpoint:
        _, variables, _ = checkpoints.load_model(
            common.resolve_checkpoint(config.init_checkpoint), arch=config.model
        )
        params, stats = variables["params"], variables.get("batch_stats")
    state = create_state(model, init_key, train.image_shape, tx, params, stats)

    augment = None
    if config.augment_shift > 0:
        shift = config.augment_shift
        augment = lambda k, x: random_shift(k, x, shift)
    state, history = fit(
        state,
        train.images,
        train.labels,
        run_dir=workdir,
        epochs=config.epochs,
        batch_size=config.batch_size,
        key=jax.random.key(config.seed + 1),
        augment=augment,
    )

    variables = state.variables
    test_acc = evaluate(model.apply, variables, test.images, test.labels)
    train_acc = evaluate(model.apply, variables, train.images, train.labels)
    meta = common.run_metadata(
        config,
        arch=config.model,
        model_kwargs=model_kwargs,
        input_shape=list(train.image_shape),
        class_names=list(train.class_names),
        dataset={"train": train.name, "test": test.name},
        seed=config.seed,
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        parameters=models.count_params(variables),
    )
    checkpoints.save_model(workdir / "model", variables, meta)
    results = {
        "test_accuracy": test_acc,
        "train_accuracy": train_acc,
        "history": history,
    }
    common.write_json_atomic(workdir / "results.json", results)
    print(
        f"test accuracy {test_acc:.4f} ({test.name}); model saved to {workdir / 'model'}"
    )
    return results
