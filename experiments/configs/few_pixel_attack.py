"""The few-pixel attack (Su, Vargas & Sakurai, IEEE TEVC 2019): how few *chosen* pixels
change a prediction, next to how often the same number of *random* pixels do (Zhang &
Cai 2021).

Command::

    pixjax run few-pixel-attack --workdir runs/few-pixel
    pixjax run few-pixel-attack --workdir runs/fp-art --preset art          # ART's DE
    pixjax run few-pixel-attack --workdir runs/fp-t targets=next            # targeted
    pixjax run few-pixel-attack --workdir runs/fp-z model=resnet18 \\
        checkpoint=DIR dataset=photos:DIR labels_from_model=true pixels=1 batch_size=1

Differential evolution over ``k`` (row, column, value per channel) tuples for every ``k``
in ``pixels`` (1, 3, 5), on the images the model classifies correctly (the first
``limit`` of the bundled MNIST test split with the shipped LeNet-5 by default), with the
settings of ``de_preset`` (``paper``: population 400, 100 iterations, F 0.5, no
crossover; ``hyperparticle`` and ``art``: the defaults of those implementations;
``pop_size``, ``iterations``, ``F``, ``F_max``, ``CR`` override them). Positions are
integers inside the image (or the centred ``region``), values 8-bit levels; a success
counts only if the saved PNG is still adversarial. Per ``k``: success rate (Wilson 95%),
confidence in the new class, queries to success, per class, where fooled images go;
per image the minimal-pixels score (the smallest ``k`` that fooled it, censored at the
largest ``k``); and the flip rate of ``k`` random pixel changes (values 0..255, same
region) on the same images over ``random_seeds``.

Measured on the shipped LeNet-5 (first 100 bundled MNIST test digits, 98 classified
correctly; 3.1 minutes on 2 quiet CPU cores): one chosen pixel fooled 4 of 98 digits
(4.1%), three 7 (7.1%), five 6 (6.1%: with the same budget the larger search space is
not always searched better; the minimal-pixels score keeps the smallest k that
worked), while k random pixels flipped 0.00%, 0.00% and 0.10% of them (10 seeds).
``targets``: ``none`` (untargeted), ``next``
(class label + 1) or ``all`` (every other class, as the paper's targeted study).
"""

from __future__ import annotations

import dataclasses

from pixjax.experiments.common import choose_preset

TARGETS = ("none", "next", "all")


@dataclasses.dataclass(frozen=True)
class Config:
    model: str = "lenet5"
    checkpoint: str | None = "lenet5-mnist"
    dataset: str = "mnist-sample"
    split: str = "test"
    limit: int | None = 100
    labels_from_model: bool = False  # unlabelled data (photos): the clean predictions
    pixels: tuple[int, ...] = (1, 3, 5)  # k: pixels per candidate
    region: int | None = None  # centred square of the positions (None: whole image)
    targets: str = "none"  # none | next | all
    # differential evolution: a preset (paper | hyperparticle | art), and overrides
    de_preset: str = "paper"
    pop_size: int | None = None
    iterations: int | None = None
    # F alone: a constant factor; F_max: dither F ~ U(F, F_max) per generation
    F: float | None = None
    F_max: float | None = None
    CR: float | None = None  # 1: no crossover
    key: int = 0  # root key: "attack" (per k) and "random" streams
    random_seeds: tuple[int, ...] = tuple(range(10))  # random changes, side by side
    batch_size: int = 8  # images per driver step (per checkpointed unit of work)
    # images whose populations one model call scores (None: 1 on a CPU, 32 on an
    # accelerator); outcomes are identical for any batch_size / device count
    images_per_call: int | None = None
    chunk_size: int = 4  # batches per checkpoint
    examples: int = 8  # fooled images per k in the figure
    progress: bool = True


def get_config(preset: str = "default") -> Config:
    """``default`` (the paper's DE), ``hyperparticle`` / ``art`` (those
    implementations' DE defaults) or ``smoke`` (seconds, for tests)."""
    default = Config()
    smoke = Config(
        limit=14,  # image 12 falls to 3 pixels even with this small budget
        pixels=(1, 3),
        pop_size=100,
        iterations=30,
        random_seeds=(0, 1),
        batch_size=4,
        chunk_size=1,
        examples=3,
        progress=False,
    )
    return choose_preset(
        preset,
        {
            "default": default,
            "paper": default,
            "hyperparticle": Config(de_preset="hyperparticle"),
            "art": Config(de_preset="art"),
            "smoke": smoke,
        },
    )
