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

__all__ = [
    "Changes",
    "PixelChange",
    "PixelConfig",
    "PixelParams",
    "change_pixels",
    "pixel_change",
    "stack_configs",
    "validate_config",
]
