"""Training: a train state, a jitted step with on-the-fly augmentation, and the
resumable training step of :func:`pixjax.driver.run` (one batch per step, one epoch
per chunk). Prediction and accuracy live in :mod:`pixjax.evaluation`."""

from pixjax.training.augment import (
    gaussian_noise,
    identity,
    random_shifts,
    small_distance,
)
from pixjax.training.loop import (
    Augment,
    FitData,
    FitState,
    TrainState,
    check_batchnorm_batch,
    create_state,
    epoch_batches,
    epoch_order,
    fit_order,
    make_fit_step,
    make_train_step,
)

__all__ = [
    "Augment",
    "FitData",
    "FitState",
    "TrainState",
    "check_batchnorm_batch",
    "create_state",
    "epoch_batches",
    "epoch_order",
    "fit_order",
    "gaussian_noise",
    "identity",
    "make_fit_step",
    "make_train_step",
    "random_shifts",
    "small_distance",
]
