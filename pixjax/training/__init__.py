"""Training: a train state, a jitted step with on-the-fly augmentation, evaluation."""

from pixjax.training.augment import (
    gaussian_noise,
    identity,
    random_shifts,
    small_distance,
)
from pixjax.training.loop import (
    Augment,
    TrainState,
    check_batchnorm_batch,
    create_state,
    epoch_batches,
    evaluate,
    make_train_step,
    predict,
)

__all__ = [
    "Augment",
    "TrainState",
    "check_batchnorm_batch",
    "create_state",
    "epoch_batches",
    "evaluate",
    "gaussian_noise",
    "identity",
    "make_train_step",
    "predict",
    "random_shifts",
    "small_distance",
]
