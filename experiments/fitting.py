"""The resumable epoch loop shared by the training experiments.

One orbax CheckpointManager per run directory saves the train state and the loss
history after every epoch (one step, so they cannot disagree); a rerun restores the
latest one and continues, and its history equals an uninterrupted run's. Batch order is
``fold_in(order_key, epoch)`` and augmentation ``fold_in(aug_key, step)``, so the
result equals an uninterrupted run exactly.
"""

from __future__ import annotations

import pathlib
import shutil
import sys
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from pixjax import checkpoints
from pixjax.training import Augment, TrainState, epoch_batches, make_train_step


def _restore_one(manager, step: int, abstract):
    """``(state, history)`` of checkpoint ``step``, verified against its checksums and
    for finite values; raises ``ValueError`` saying what is wrong."""
    step_dir = pathlib.Path(manager.directory) / str(step)
    args = {"state": ocp.args.StandardRestore(abstract)}
    for name in ("history", "checksums"):  # absent in checkpoints of older versions
        if (step_dir / name).exists():
            args[name] = ocp.args.JsonRestore()
    try:
        restored = manager.restore(step, args=ocp.args.Composite(**args))
    except Exception as e:  # noqa: BLE001 - any orbax / tensorstore read error
        raise ValueError(f"unreadable: {type(e).__name__}: {str(e)[:200]}") from e
    state = restored["state"]
    if "checksums" in args:
        bad = checkpoints.checksum_mismatches(restored["checksums"], state)
        if bad:
            raise ValueError(f"arrays {bad[:3]} differ from their checksums")
    bad = checkpoints.nonfinite_leaves(state.variables)
    if bad:
        raise ValueError(f"non-finite values in {bad}")
    return state, list(restored.get("history") or [])  # none in old checkpoints


def _restore_intact(manager, state, desc: str):
    """``(epoch, state, history)`` of the newest intact checkpoint, or ``None``.

    A corrupt checkpoint is moved aside to ``checkpoints/corrupt-epoch-N`` (kept, not
    deleted) with a message, and the previous one is tried."""
    abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, state)
    for step in sorted(manager.all_steps(), reverse=True):
        try:
            restored_state, history = _restore_one(manager, step, abstract)
        except ValueError as e:
            src = pathlib.Path(manager.directory) / str(step)
            dst = src.with_name(f"corrupt-epoch-{step}")
            print(
                f"{desc}: the checkpoint of epoch {step} is corrupt ({e}); moved to "
                f"{dst} and trying the previous one",
                file=sys.stderr,
            )
            if dst.exists():
                shutil.rmtree(dst)
            src.rename(dst)
            manager.reload()
            continue
        return step, restored_state, history
    return None


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
    restored = _restore_intact(manager, state, desc)
    if restored is not None:
        start, state, history = restored
        print(f"{desc}: resuming from epoch {start}")
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
                checksums=ocp.args.JsonSave(checkpoints.array_checksums(state)),
            ),
        )
        if progress:
            print(f"{desc} {epoch + 1}: loss {loss:.4f}")
    manager.wait_until_finished()
    manager.close()
    return state, history
