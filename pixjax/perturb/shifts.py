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


# (rows down, columns right) of the four one-pixel "nudges" of the RBM study.
NUDGES: dict[str, tuple[int, int]] = {
    "up": (-1, 0),
    "down": (1, 0),
    "left": (0, -1),
    "right": (0, 1),
}


def nudge(images: jax.Array, pixels: int = 1) -> jax.Array:
    """The four nudged copies of a batch: ``[4, N, H, W, C]`` in :data:`NUDGES` order
    (up, down, left, right), each image moved by ``pixels`` with zero fill."""
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"pixels: expected a positive integer, got {pixels!r}")
    h, w = images.shape[1], images.shape[2]
    if pixels >= min(h, w):
        raise ValueError(
            f"pixels: expected < {min(h, w)} (the image side), got {pixels}"
        )
    moves = jnp.asarray(list(NUDGES.values())) * pixels
    per_image = jax.vmap(shift, in_axes=(0, None, None))
    return jax.vmap(per_image, in_axes=(None, 0, 0))(images, moves[:, 0], moves[:, 1])
