"""Gradient attacks on logits functions (FGSM, iterative FGSM / PGD)."""

from pixjax.attacks.fgsm import (
    NORMS,
    EpsSweep,
    check_args,
    fgsm,
    fgsm_sweep,
    loss_gradient,
    pgd,
)

__all__ = [
    "NORMS",
    "EpsSweep",
    "check_args",
    "fgsm",
    "fgsm_sweep",
    "loss_gradient",
    "pgd",
]
