"""Exp 4 of Zhang & Cai (2021): do a few random pixel changes undo FGSM?

Command::

    pixjax run fgsm-recovery --workdir runs/fgsm-recovery

FGSM (L-inf, eps 0.1 in [0, 1] pixel space, cross-entropy computed in log space so it
does not vanish on images the model is sure of, images saved as 8-bit) on the bundled MNIST
test split with the shipped LeNet-5; the successful adversarial examples are then changed
at random (Num in 1..64 with values 0..255, and +- R magnitudes at every Num) and the
share that returns to the correct class is reported with 95% Wilson intervals, per class,
over 3 seeds. Expected on the shipped model: FGSM turns about half of the correctly
classified digits adversarial (947 of 1951), and the share that random changes bring
back grows with Num, and with R, most with values anywhere in 0..255 (at Num 64: about
18% with 0..255, 1.4% with +- 10, 9% with +- 127; the paper: "a considerable
proportion" returns to the correct class). The ``smoke`` preset
(120 digits, Num 1 and 16, one seed) shows the growth with Num in both series (its test
checks it); it is too small to order the series.

The random changes come from one key, ``key``; each seed is folded into it by the sweep
engine, so two seeds share no change (FGSM itself is deterministic).
"""

from __future__ import annotations

import dataclasses

from pixjax.experiments.common import choose_preset


@dataclasses.dataclass(frozen=True)
class Config:
    model: str = "lenet5"
    checkpoint: str | None = "lenet5-mnist"
    dataset: str = "mnist-sample"
    split: str = "test"
    limit: int | None = None
    labels_from_model: bool = False
    eps: float = 0.1
    norm: str = "linf"
    # the attack's loss: cross_entropy (log space, exact when p_y rounds to 1), margin
    # (Carlini-Wagner; invariant to scaling the logits) or dlr (Croce & Hein)
    loss: str = "cross_entropy"
    eps_curve: tuple[float, ...] = (
        0.0,
        0.02,
        0.04,
        0.06,
        0.08,
        0.1,
        0.12,
        0.14,
        0.16,
        0.18,
        0.2,
        0.22,
        0.24,
        0.26,
        0.28,
        0.3,
    )
    nums: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    magnitudes: tuple[float, ...] = (10, 40, 70, 100, 127)  # original +- R at each Num
    per_channel: bool = False
    seeds: tuple[int, ...] = (0, 1, 2)
    key: int = 0
    batch_size: int = 500
    examples: int = 6
    progress: bool = True


def get_config(preset: str = "default") -> Config:
    """``default`` (the documented run) or ``smoke`` (seconds, for tests)."""
    smoke = Config(
        limit=120,
        nums=(1, 16),
        magnitudes=(70,),
        seeds=(0,),
        eps_curve=(0.0, 0.1, 0.2),
        batch_size=60,
        examples=3,
        progress=False,
    )
    return choose_preset(preset, {"default": Config(), "smoke": smoke})
