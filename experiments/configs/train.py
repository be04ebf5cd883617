"""Training a registered classifier (produces the shipped LeNet-5).

Command::

    pixjax run train --workdir runs/lenet5

Expected (default): LeNet-5 on the bundled MNIST train split (3000 images) reaches
about 98% top-1 on the bundled test split (2000 images); the shipped
``checkpoints/lenet5-mnist`` was made by exactly this command.
"""

from __future__ import annotations

import dataclasses

from pixjax.experiments.common import choose_preset


@dataclasses.dataclass(frozen=True)
class Config:
    model: str = "lenet5"
    dataset: str = "mnist-sample"
    train_split: str = "train"
    test_split: str = "test"
    limit: int | None = None  # use only the first N training images
    epochs: int = 60
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    augment_shift: int = 2  # random shifts of up to this many pixels (0: none)
    seed: int = 0
    init_checkpoint: str | None = None  # start from these weights instead of random


def get_config(preset: str = "default") -> Config:
    """``default`` (the documented run) or ``smoke`` (seconds, for tests)."""
    smoke = Config(epochs=2, limit=256, batch_size=32)
    return choose_preset(preset, {"default": Config(), "smoke": smoke})
