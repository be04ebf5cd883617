"""``pixjax run train``: supervised training with optax, orbax checkpoints, resume.

Writes into the run directory: ``checkpoints/`` (orbax CheckpointManager, one step per
epoch), ``model/`` (the final model directory: metadata + variables, loadable with
``pixjax.checkpoints.load_model``), ``results.json`` and ``config.json``. Running the
same command again after a kill resumes from the latest epoch checkpoint and ends with
the same parameters as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp

from experiments import common
from experiments.configs.train import Config
from pixjax import checkpoints, data, models
from pixjax.perturb.shifts import random_shift
from pixjax.training import create_state, epoch_batches, evaluate, make_train_step

DESCRIPTION = "train any registered classifier with optax on any dataset (resumable)"


def validate(config: Config) -> tuple[data.Dataset, data.Dataset]:
    """Checks the configuration and loads the data (no writes)."""
    models.get_model(config.model)  # unknown name -> ValueError listing the models
    for name in ("epochs", "batch_size"):
        if getattr(config, name) <= 0:
            raise common.ConfigError(
                f"{name}: expected a positive integer, got {getattr(config, name)}"
            )
    if not config.learning_rate > 0:
        raise common.ConfigError(
            f"learning_rate: expected a positive number, got {config.learning_rate}"
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
    if config.init_checkpoint:
        path = common.resolve_checkpoint(config.init_checkpoint)
        meta = checkpoints.read_metadata(path)
        if meta["arch"] != config.model:
            raise common.ConfigError(
                f"init_checkpoint: holds a {meta['arch']!r} model, expected "
                f"{config.model!r}"
            )
    return train, test


def run(config: Config, workdir: pathlib.Path) -> dict[str, Any]:
    train, test = validate(config)
    workdir = common.prepare_workdir(workdir)
    cfg_path = workdir / "config.json"
    cfg_dict = dataclasses.asdict(config)
    if cfg_path.exists():
        import json

        previous = json.loads(cfg_path.read_text())
        if previous != cfg_dict:
            raise common.ConfigError(
                f"workdir: {str(workdir)!r} holds a run with another configuration "
                f"({previous}); use a new workdir"
            )
    else:
        common.write_json_atomic(cfg_path, cfg_dict)

    num_classes = max(train.num_classes, test.num_classes)
    model_kwargs = {"num_classes": num_classes}
    model = models.get_model(config.model, **model_kwargs)
    key = jax.random.key(config.seed)
    init_key, order_key, aug_key = jax.random.split(key, 3)
    steps_per_epoch = len(train.images) // config.batch_size
    schedule = optax.cosine_decay_schedule(
        config.learning_rate, steps_per_epoch * config.epochs
    )
    tx = optax.adamw(schedule, weight_decay=config.weight_decay)
    params = None
    if config.init_checkpoint:
        _, variables, _ = checkpoints.load_model(
            common.resolve_checkpoint(config.init_checkpoint), arch=config.model
        )
        params = variables["params"]
    state = create_state(model, init_key, train.image_shape, tx, params)

    manager = checkpoints.run_manager(workdir)
    start_epoch = 0
    latest = manager.latest_step()
    if latest is not None:  # resume
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
        restored = manager.restore(
            latest, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )
        state = restored["state"]
        start_epoch = latest
        print(f"resuming from epoch {latest}")

    augment = None
    if config.augment_shift > 0:
        shift = config.augment_shift
        augment = lambda k, x: random_shift(k, x, shift)
    train_step = make_train_step(augment)
    from tqdm.auto import tqdm

    history = []
    for epoch in range(start_epoch, config.epochs):
        batches = epoch_batches(
            jax.random.fold_in(order_key, epoch), len(train.images), config.batch_size
        )
        losses = []
        for idx in tqdm(
            batches, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False
        ):
            step_key = jax.random.fold_in(aug_key, int(state.step))
            state, metrics = train_step(
                state, train.images[idx], train.labels[idx], step_key
            )
            losses.append(metrics["loss"])
        loss = float(np.mean(jax.device_get(losses)))
        history.append({"epoch": epoch + 1, "loss": loss})
        manager.save(
            epoch + 1, args=ocp.args.Composite(state=ocp.args.StandardSave(state))
        )
        print(f"epoch {epoch + 1}: loss {loss:.4f}")
    manager.wait_until_finished()

    variables = {"params": state.params}
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
