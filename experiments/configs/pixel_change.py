"""The main job: Exp 1-3 of Zhang & Cai (2021) and the Pixel-index.

Command::

    pixjax run pixel-change --workdir runs/pixel-change

Reproduces, on the shipped LeNet-5 and the bundled MNIST test split (2000 images), the
paper's three random pixel-change experiments over 3 seeds:

* Exp 1: ``Num`` in 1, 2, 4, 8, 16, 32, 64 changed pixels, values anywhere in 0..255,
  positions anywhere;
* Exp 2: values limited to the original +- 10, 40, 70, 100, 127 (clipped), for each Num;
* Exp 3: positions limited to shrinking centred squares, for each Num;

and the Pixel-index ``Pi = w / (p r a)`` of every configuration, in about a minute on a
2-core CPU. Expected on the shipped model:

* the flip rate grows with Num (about 0.05% of the correctly classified digits at
  Num 1, 3% at Num 64; Pixel-index 0.37 at Num 64);
* values limited to the original +- R flip far fewer digits than values anywhere in
  0..255 (at most about 0.2% at Num 64, most with the largest R);
* shrinking the region to the centre, where the strokes are, raises the flip rate at
  the same Num (about 15% in the 12x12 centre at Num 64).

The random changes come from one key, ``key``; each seed is folded into it by the sweep
engine (``fold_in(key, seed)``, then the configuration and the image), so two seeds
share no change. The ``smoke`` preset (64 digits, Num 1 and 64) is large enough to show
all three (its test checks them, at Num 64: more flips than at Num 1, fewer with +- 40
than with 0..255, more in the 14x14 centre than anywhere); it is too small to order
several magnitudes or regions.
"""

from __future__ import annotations

import dataclasses

from pixjax.experiments.common import choose_preset


@dataclasses.dataclass(frozen=True)
class Config:
    model: str = "lenet5"
    checkpoint: str | None = "lenet5-mnist"  # shipped name or a model directory
    dataset: str = "mnist-sample"
    split: str = "test"
    limit: int | None = None  # only the first N images
    labels_from_model: bool = False  # use clean predictions as labels (unlabelled data)
    nums: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)  # Exp 1 (and the Num axis of 2, 3)
    magnitudes: tuple[float, ...] = (10, 40, 70, 100, 127)  # Exp 2: original +- R
    # Exp 3: centred square sides; empty -> image side x (1, 6/7, 5/7, 4/7, 3/7)
    regions: tuple[int, ...] = ()
    experiments: tuple[int, ...] = (1, 2, 3)
    per_channel: bool = False
    quantize: bool = True
    seeds: tuple[int, ...] = (0, 1, 2)
    key: int = 0
    batch_size: int = 512
    examples: int = 6  # images in the example grid
    progress: bool = True


def get_config(preset: str = "default") -> Config:
    """``default`` (the documented run) or ``smoke`` (seconds, for tests)."""
    smoke = Config(
        limit=64,
        nums=(1, 64),
        magnitudes=(40,),
        regions=(28, 14),
        seeds=(0, 1),
        batch_size=64,
        examples=3,
        progress=False,
    )
    return choose_preset(preset, {"default": Config(), "smoke": smoke})
