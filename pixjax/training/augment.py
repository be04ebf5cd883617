"""Per-image augmentations used inside the jitted train step.

Each is ``augment(key, image [H, W, C] in [0, 1]) -> image``; the train step gives image
``i`` of step ``t`` the key ``fold_in(fold_in(base, t), i)``, so a resumed run makes the
same samples.

* :func:`small_distance` — the "small-distance samples" of Zhang & Cai (2021), Sec. 4:
  ``num`` random pixels changed (any value 0..255 by default), the rest untouched.
* Baselines at equal budget: :func:`gaussian_noise`, :func:`random_shifts` and
  :func:`identity` (plain repetition of the clean data).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pixjax.perturb.pixels import PixelConfig, pixel_change, stack_configs
from pixjax.perturb.shifts import random_shift
from pixjax.training.loop import Augment


def small_distance(
    image_shape: tuple[int, int, int],
    num: int,
    *,
    magnitude: float = 255.0,
    relative: bool = False,
    region: int | tuple[int, int] | None = None,
    per_channel: bool = False,
) -> Augment:
    """``num`` random pixels changed (see :mod:`pixjax.perturb.pixels`)."""
    cfg = PixelConfig(num, magnitude=magnitude, relative=relative, region=region)
    params = jax.tree_util.tree_map(
        lambda a: a[0], stack_configs([cfg], image_shape, per_channel)
    )
    change = pixel_change(image_shape, num, per_channel=per_channel)
    return lambda key, x: change.apply(change.sample(key, x, params), x)


def gaussian_noise(sigma: float) -> Augment:
    """Adds N(0, sigma^2) noise to every pixel (``sigma`` in [0, 1] units), clipped."""
    if not sigma > 0:
        raise ValueError(f"sigma: expected a positive standard deviation, got {sigma}")
    return lambda key, x: jnp.clip(x + sigma * jax.random.normal(key, x.shape), 0, 1)


def random_shifts(max_shift: int) -> Augment:
    """Shifts by up to ``max_shift`` pixels on each axis (zero fill)."""
    if max_shift <= 0:
        raise ValueError(f"max_shift: expected a positive integer, got {max_shift}")
    return lambda key, x: random_shift(key, x, max_shift)


def identity() -> Augment:
    """No change: with ``paired`` training this repeats the clean data."""
    return lambda key, x: x
