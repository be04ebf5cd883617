"""The resumable epoch loop shared by the training experiments.

One orbax CheckpointManager per run directory saves the train state and the loss
history after every epoch (one step, so they cannot disagree); a rerun restores the
latest one and continues, and its history equals an uninterrupted run's. Batch order is
``fold_in(order_key, epoch)`` and augmentation ``fold_in(aug_key, step)``, so the
result equals an uninterrupted run exactly.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from pixjax import checkpoints
from pixjax.training import Augment, TrainState, epoch_batches, make_train_step


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
    desc: str = "epoch",
    progress: bool = True,
) -> tuple[TrainState, list[dict[str, Any]]]:
    """Trains for ``epochs`` epochs, resuming from ``run_dir/checkpoints`` if present.

    Returns:
      The final state and the per-epoch history of the whole run (restored epochs
      included): ``[{"epoch": e, "loss": mean training loss}]``.
    """
    order_key, aug_key = jax.random.split(key)
    manager = checkpoints.run_manager(run_dir)
    start = 0
    history: list[dict[str, Any]] = []
    latest = manager.latest_step()
    if latest is not None:
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
        items = manager.item_metadata(latest)
        args = {"state": ocp.args.StandardRestore(abstract)}
        if "history" in (items.keys() if items is not None else ()):
            args["history"] = ocp.args.JsonRestore()
        restored = manager.restore(latest, args=ocp.args.Composite(**args))
        state, start = restored["state"], latest
        history = list(restored.get("history") or [])  # none in pre-0.1 checkpoints
        bad = checkpoints.nonfinite_leaves(state.variables)
        if bad:
            raise ValueError(
                f"checkpoint: epoch {latest} in {str(manager.directory)!r} holds "
                f"non-finite values in {bad}; delete it or use --overwrite"
            )
        print(f"{desc}: resuming from epoch {latest}")
    step = make_train_step(augment, paired=paired)
    from tqdm.auto import tqdm

    for epoch in range(start, epochs):
        batches = epoch_batches(
            jax.random.fold_in(order_key, epoch), len(images), batch_size
        )
        losses = []
        for idx in tqdm(
            batches,
            desc=f"{desc} {epoch + 1}/{epochs}",
            leave=False,
            disable=not progress,
        ):
            step_key = jax.random.fold_in(aug_key, int(state.step))
            state, metrics = step(state, images[idx], labels[idx], step_key)
            losses.append(metrics["loss"])
        epoch_losses = np.asarray(jax.device_get(losses), np.float64)
        bad = np.flatnonzero(~np.isfinite(epoch_losses))
        first_step = int(state.step) - len(epoch_losses)
        if bad.size:
            raise ValueError(
                f"training: the loss became {epoch_losses[bad[0]]} at epoch "
                f"{epoch + 1}, step {first_step + bad[0] + 1}; stopped without saving "
                "this epoch (check learning_rate, weight_decay and the data)"
            )
        bad_params = checkpoints.nonfinite_leaves(state.variables)
        if bad_params:
            raise ValueError(
                f"training: non-finite parameters {bad_params} after epoch "
                f"{epoch + 1}, step {int(state.step)}; stopped without saving this "
                "epoch (check learning_rate, weight_decay and the data)"
            )
        loss = float(np.mean(epoch_losses))
        history.append({"epoch": epoch + 1, "loss": loss})
        manager.save(
            epoch + 1,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                history=ocp.args.JsonSave(history),
            ),
        )
        if progress:
            print(f"{desc} {epoch + 1}: loss {loss:.4f}")
    manager.wait_until_finished()
    manager.close()
    return state, history
