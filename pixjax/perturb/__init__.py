"""Perturbations of images: pure ``sample`` / ``apply`` pairs over a params pytree.

See :mod:`pixjax.perturb.base` for the protocol and the registry.
"""

# base first: it defines the protocol the factory modules import, then registers them.
from pixjax.perturb.base import (
    PERTURBATIONS,
    Perturbation,
    get_perturbation,
    num_configs,
    params_at,
)
from pixjax.perturb.noise import NoiseParams, gaussian_noise
from pixjax.perturb.pixels import (
    Changes,
    PixelConfig,
    PixelParams,
    as_pixel_config,
    change_pixels,
    pixel_change,
    stack_configs,
    validate_config,
)
from pixjax.perturb.shifts import (
    NUDGES,
    ShiftParams,
    nudge,
    nudge_configs,
    random_shift,
    shift,
    shift_perturbation,
)

__all__ = [
    "NUDGES",
    "PERTURBATIONS",
    "Changes",
    "NoiseParams",
    "Perturbation",
    "PixelConfig",
    "PixelParams",
    "ShiftParams",
    "as_pixel_config",
    "change_pixels",
    "gaussian_noise",
    "get_perturbation",
    "nudge",
    "nudge_configs",
    "num_configs",
    "params_at",
    "pixel_change",
    "random_shift",
    "shift",
    "shift_perturbation",
    "stack_configs",
    "validate_config",
]
