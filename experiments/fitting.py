"""The resumable epoch loop shared by the training experiments.

A thin use of :func:`pixjax.driver.run`: one driver step is one batch
(:func:`pixjax.training.make_fit_step`), one chunk is one epoch, so
``run_dir/checkpoints`` (one orbax CheckpointManager) holds the state and the
per-batch losses after every epoch. A rerun restores the newest intact checkpoint and
continues. Batch order is ``fold_in(order_key, epoch)`` and augmentation
``fold_in(aug_key, step)``, so the result equals an uninterrupted run exactly. On the
CPU an epoch runs as a host loop of the jitted step (XLA:CPU compiles convolution
gradients ~2.4x slower inside a ``lax.scan``, jax#12868); elsewhere as one scan.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pixjax import checkpoints, driver
from pixjax.keys import purpose_keys
from pixjax.perturb.shifts import random_shift
from pixjax.training import (
    Augment,
    FitData,
    FitState,
    TrainState,
    create_state,
    fit_order,
    make_fit_step,
)

# the purposes of the subkeys of a training key (pixjax.keys.purpose_keys); fit splits
# the "train" key into the data order and the augmentation
PURPOSES = ("init", "train")


def _history(losses: np.ndarray) -> list[dict[str, Any]]:
    """``[{"epoch": e, "loss": mean batch loss}]`` from per-batch losses ``[E, S]``."""
    return [
        {"epoch": e + 1, "loss": float(np.mean(np.asarray(row, np.float64)))}
        for e, row in enumerate(losses)
    ]


def fit(
    state: TrainState,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    run_dir: pathlib.Path,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    augment: Augment | None = None,
    paired: bool = False,
    desc: str = "train",
    progress: bool = True,
) -> tuple[TrainState, list[dict[str, Any]]]:
    """Trains for ``epochs`` epochs, resuming from ``run_dir/checkpoints`` if present.

    Stops with a ``ValueError`` (naming the epoch and step, saving nothing of that
    epoch) when a loss or a parameter becomes non-finite.

    Returns:
      The final state and the per-epoch history of the whole run (restored epochs
      included): ``[{"epoch": e, "loss": mean training loss}]``.
    """
    order_key, aug_key = jax.random.split(key)
    order = fit_order(order_key, epochs, len(images), batch_size)  # checks both
    per_epoch = int(order.shape[1])

    def check(first: int, fit_state: FitState, metrics: dict) -> None:
        # One chunk is one epoch: metrics["loss"] is [steps_per_epoch].
        losses = np.asarray(metrics["loss"], np.float64)
        ts = fit_state.train
        epoch = first // per_epoch
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            first_step = int(ts.step) - len(losses)
            raise ValueError(
                f"training: the loss became {losses[bad[0]]} at epoch "
                f"{epoch + 1}, step {first_step + bad[0] + 1}; stopped without saving "
                "this epoch (check learning_rate, weight_decay and the data)"
            )
        bad_params = checkpoints.nonfinite_leaves(ts.variables)
        if bad_params:
            raise ValueError(
                f"training: non-finite parameters {bad_params} after epoch "
                f"{epoch + 1}, step {int(ts.step)}; stopped without saving this "
                "epoch (check learning_rate, weight_decay and the data)"
            )
        if progress:
            from tqdm.auto import tqdm

            tqdm.write(
                f"{desc}: epoch {epoch + 1}/{epochs} loss {float(np.mean(losses)):.4f}"
            )

    final, metrics = driver.run(
        make_fit_step(augment, paired=paired),
        FitState(state, jnp.zeros((), jnp.int32)),
        FitData(jnp.asarray(images), jnp.asarray(labels, jnp.int32), order, aug_key),
        num_steps=epochs * per_epoch,
        chunk_size=per_epoch,
        checkpoint_dir=pathlib.Path(run_dir) / "checkpoints",
        on_chunk=check,
        desc=desc,
        unit="batch",
        chunk_unit="epoch",
        progress=progress,
        loop="python" if jax.default_backend() == "cpu" else "scan",
    )
    return final.train, _history(metrics["loss"].reshape(epochs, per_epoch))


def check_recipe(config: Any, train: Any, test: Any) -> None:
    """The checks of :func:`train_classifier`'s settings, read from ``config``
    (``epochs``-like counts are checked by the caller): ``batch_size`` and
    ``learning_rate`` positive, ``weight_decay`` >= 0, ``augment_shift`` in ``0 ..
    image size - 1``, both splits labelled, a batch no larger than the training split.

    Raises:
      ConfigError: naming the field and the accepted values.
    """
    from pixjax.experiments import common

    common.require_positive(config, "batch_size", "learning_rate")
    if config.weight_decay < 0:
        raise common.ConfigError(
            f"weight_decay: expected 0 or more, got {config.weight_decay}"
        )
    if config.augment_shift < 0:
        raise common.ConfigError(
            f"augment_shift: expected 0 or more pixels, got {config.augment_shift}"
        )
    if train.labels is None or test.labels is None:
        raise common.ConfigError(
            f"dataset: {train.name!r} has no labels; training needs labelled data"
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


def train_classifier(
    model: Any,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    key: jax.Array,
    run_dir: pathlib.Path,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    augment_shift: int,
    init_variables: Any = None,
    desc: str = "train",
    progress: bool = True,
) -> tuple[Any, list[dict[str, Any]]]:
    """The project's training recipe (``pixjax run train``; the shipped LeNet-5s):
    AdamW with a cosine-decayed learning rate over all steps, random shifts of up to
    ``augment_shift`` pixels, resumable epochs (:func:`fit`). ``key`` is split by
    purpose into ``"init"`` (random weights, unused with ``init_variables``) and
    ``"train"``.

    Returns:
      ``(variables, history)``.
    """
    keys = purpose_keys(key, *PURPOSES)
    steps_per_epoch = len(images) // batch_size
    schedule = optax.cosine_decay_schedule(learning_rate, steps_per_epoch * epochs)
    tx = optax.adamw(schedule, weight_decay=weight_decay)
    params = stats = None
    if init_variables is not None:
        params = init_variables["params"]
        stats = init_variables.get("batch_stats")
    state = create_state(model, keys["init"], images.shape[1:], tx, params, stats)
    augment = None
    if augment_shift > 0:
        augment = lambda k, x: random_shift(k, x, augment_shift)  # noqa: E731
    state, history = fit(
        state,
        images,
        labels,
        run_dir=run_dir,
        epochs=epochs,
        batch_size=batch_size,
        key=keys["train"],
        augment=augment,
        desc=desc,
        progress=progress,
    )
    return state.variables, history
