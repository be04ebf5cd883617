"""Image shifts with zero fill (pure, jit- and vmap-able).

Used for the RBM "nudge" study (one-pixel shifts) and as a standard augmentation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pixjax.types import Image, PRNGKey


def shift(image: Image, dy: jax.Array | int, dx: jax.Array | int) -> Image:
    """Shifts ``image`` ``[H, W, C]`` by ``dy`` rows down and ``dx`` columns right.

    Vacated pixels are zero; content moved past the border is lost. ``dy`` / ``dx`` may be
    traced integers (so the function vmaps over shifts) with ``|dy| < H``, ``|dx| < W``.
    """
    h, w = image.shape[0], image.shape[1]
    padded = jnp.pad(image, ((h, h), (w, w), (0, 0)))
    return jax.lax.dynamic_slice(padded, (h - dy, w - dx, 0), (h, w, image.shape[2]))


def random_shift(key: PRNGKey, image: Image, max_shift: int) -> Image:
    """Shifts by integers drawn uniformly from ``-max_shift..max_shift`` on each axis."""
    d = jax.random.randint(key, (2,), -max_shift, max_shift + 1)
    return shift(image, d[0], d[1])
