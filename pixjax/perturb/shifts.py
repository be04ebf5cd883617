"""Image shifts with zero fill (pure, jit- and vmap-able).

Used for the RBM "nudge" study (one-pixel shifts) and as a standard augmentation.
:func:`shift_perturbation` (registered as ``"shift"``) is the same operation as a
:class:`~pixjax.perturb.base.Perturbation`: a fixed offset ``(dy, dx)`` plus a random
integer shift drawn uniformly from ``-max_shift..max_shift`` on each axis, so both the
RBM nudges (``max_shift=0``, see :func:`nudge_configs`) and random shifts are params.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.perturb.base import (
    Perturbation,
    check_image_shape,
    config_records,
    host_array,
    num_configs,
)
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


class ShiftParams(NamedTuple):
    """Dynamic settings of a shift (a pytree; stack to sweep).

    Attributes:
      dy: int32 ``[]``, fixed rows down (negative: up).
      dx: int32 ``[]``, fixed columns right (negative: left).
      max_shift: int32 ``[]``, ``>= 0``: a random ``-max_shift..max_shift`` is added on
        each axis (``0``: the fixed shift only).
    """

    dy: jax.Array
    dx: jax.Array
    max_shift: jax.Array


SHIFT_DEFAULTS: dict[str, int] = {"dy": 0, "dx": 0, "max_shift": 0}


def shift_perturbation(image_shape: Sequence[int]) -> Perturbation:
    """Builds the shift perturbation (zero fill) for images of ``image_shape``.

    The draw is the int32 ``[2]`` shift ``(dy, dx)``: the params' fixed offset plus
    integers drawn uniformly from ``-max_shift..max_shift`` (as :func:`random_shift`);
    ``apply`` is :func:`shift`. Each configuration must keep ``|dy| + max_shift < H``
    and ``|dx| + max_shift < W``.

    Args:
      image_shape: ``(H, W, C)``.

    Returns:
      A :class:`~pixjax.perturb.base.Perturbation` named ``"shift"`` over
      :class:`ShiftParams`; ``make_params`` takes mappings with fields ``dy``, ``dx``,
      ``max_shift`` (each default 0).
    """
    h, w, c = check_image_shape(image_shape)

    def sample(key: PRNGKey, image: Image, params: ShiftParams) -> jax.Array:
        """The shift ``(dy, dx)`` int32 ``[2]`` for one image."""
        del image  # the shift does not depend on the content
        m = params.max_shift
        d = jax.random.randint(key, (2,), -m, m + 1)
        return jnp.stack([params.dy, params.dx]).astype(jnp.int32) + d

    def apply(draw: jax.Array, image: Image) -> Image:
        """``image`` moved by ``draw = (dy, dx)``, vacated pixels zero."""
        return shift(image, draw[0], draw[1])

    def check_params(params: ShiftParams) -> None:
        """Host side: integer settings that keep every shift inside the image."""
        num_configs(params, ShiftParams)
        vals = {f: host_array(params, f) for f in ShiftParams._fields}
        for f, v in vals.items():
            if v.ndim != 1 or not np.issubdtype(v.dtype, np.integer):
                raise ValueError(
                    f"{f}: expected integers, one per configuration, got dtype "
                    f"{v.dtype} shape {v.shape}"
                )
        if (vals["max_shift"] < 0).any():
            raise ValueError(
                "max_shift: expected integers >= 0, got "
                f"{vals['max_shift'][vals['max_shift'] < 0].tolist()}"
            )
        for f, side, axis in (("dy", h, "H"), ("dx", w, "W")):
            reach = np.abs(vals[f]) + vals["max_shift"]
            if (reach >= side).any():
                bad = [
                    (int(a), int(m))
                    for a, m, r in zip(vals[f], vals["max_shift"], reach, strict=True)
                    if r >= side
                ]
                raise ValueError(
                    f"{f}: expected |{f}| + max_shift < {side} (the image {axis}), got "
                    f"({f}, max_shift) = {bad}"
                )

    def make_params(configs: Sequence[Mapping[str, Any]]) -> ShiftParams:
        """Host side: validated :class:`ShiftParams` ``[K]`` from configurations."""
        recs = config_records(configs, ShiftParams, SHIFT_DEFAULTS)
        for rec in recs:
            for f in ShiftParams._fields:
                v = rec[f]
                if isinstance(v, bool) or not isinstance(v, int | np.integer):
                    raise ValueError(f"{f}: expected an integer, got {v!r}")
        params = ShiftParams(
            *(jnp.asarray([r[f] for r in recs], jnp.int32) for f in ShiftParams._fields)
        )
        check_params(params)
        return params

    return Perturbation(
        sample=sample,
        apply=apply,
        make_params=make_params,
        check_params=check_params,
        name="shift",
        image_shape=(h, w, c),
        static={},
    )


def nudge_configs(pixels: int = 1) -> list[dict[str, int]]:
    """The four :data:`NUDGES` (up, down, left, right) by ``pixels`` as configurations
    for ``shift_perturbation(...).make_params`` (fixed shifts, ``max_shift=0``)."""
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise ValueError(f"pixels: expected a positive integer, got {pixels!r}")
    return [
        {"dy": dy * pixels, "dx": dx * pixels, "max_shift": 0}
        for dy, dx in NUDGES.values()
    ]
