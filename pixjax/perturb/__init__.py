"""Random perturbations of images (pure sample / apply pairs)."""

from pixjax.perturb.pixels import (
    Changes,
    PixelChange,
    PixelConfig,
    PixelParams,
    change_pixels,
    pixel_change,
    stack_configs,
    validate_config,
)
from pixjax.perturb.shifts import NUDGES, nudge, random_shift, shift

__all__ = [
    "NUDGES",
    "nudge",
    "random_shift",
    "shift",
    "Changes",
    "PixelChange",
    "PixelConfig",
    "PixelParams",
    "change_pixels",
    "pixel_change",
    "stack_configs",
    "validate_config",
]
