"""Training a registered classifier (produces the shipped LeNet-5).

Command::

    pixjax run train --workdir runs/lenet5

Expected (default): LeNet-5 on the bundled MNIST train split (3000 images) reaches
about 98% top-1 on the bundled test split (2000 images): 97.70% with seed 0 on a CPU.
The shipped ``checkpoints/lenet5-mnist`` (97.55%) was made by this command in an
earlier version; the random streams have changed since (last in issue 12: the root
key is split by purpose, where ``key(seed)`` initialised and ``key(seed + 1)`` trained,
so seed 1's initialisation was seed 0's training key; with those keys this code gives
97.75%), so today's command trains a model of the same accuracy, not the same weights.
The smoke preset (2 epochs on 256 images) checks that the loss falls and the accuracy
beats chance (10%).

The model has one output per class of the training split (its class names, or its
largest label + 1 for a dataset without names); test labels outside them are refused.
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
    progress: bool = True  # progress bar (changes nothing in the results)


def get_config(preset: str = "default") -> Config:
    """``default`` (the documented run) or ``smoke`` (seconds, for tests)."""
    smoke = Config(epochs=2, limit=256, batch_size=32, progress=False)
    return choose_preset(preset, {"default": Config(), "smoke": smoke})
