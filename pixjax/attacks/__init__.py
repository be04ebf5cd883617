"""Gradient attacks on logits functions (FGSM, iterative FGSM / PGD)."""

from pixjax.attacks.fgsm import NORMS, EpsSweep, fgsm, fgsm_sweep, loss_gradient, pgd

__all__ = ["NORMS", "EpsSweep", "fgsm", "fgsm_sweep", "loss_gradient", "pgd"]
