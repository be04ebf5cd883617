"""Attacks: gradient attacks on logits functions (FGSM, iterative FGSM / PGD) and the
losses they ascend (cross-entropy in log space, Carlini-Wagner margin, DLR); the
few-pixel attack by differential evolution (:mod:`pixjax.attacks.few_pixel`, Su et al.
2019)."""

from pixjax.attacks.few_pixel import (
    AttackOutputs,
    few_pixel_attack,
    minimal_pixels,
    pixel_space,
    preset_settings,
    recheck,
)
from pixjax.attacks.fgsm import (
    NORMS,
    AttackResult,
    EpsSweep,
    LossGradient,
    VanishedGradientWarning,
    check_args,
    check_attack,
    fgsm,
    fgsm_sweep,
    loss_gradient,
    pgd,
    project,
    warn_zero_gradient,
)
from pixjax.attacks.losses import (
    LOSSES,
    AttackLoss,
    cross_entropy,
    dlr,
    get_loss,
    margin,
)

__all__ = [
    "AttackOutputs",
    "few_pixel_attack",
    "minimal_pixels",
    "pixel_space",
    "preset_settings",
    "recheck",
    "LOSSES",
    "NORMS",
    "AttackLoss",
    "AttackResult",
    "EpsSweep",
    "LossGradient",
    "VanishedGradientWarning",
    "check_args",
    "check_attack",
    "cross_entropy",
    "dlr",
    "fgsm",
    "fgsm_sweep",
    "get_loss",
    "loss_gradient",
    "margin",
    "pgd",
    "project",
    "warn_zero_gradient",
]
