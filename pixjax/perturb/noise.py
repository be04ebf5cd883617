"""Additive Gaussian noise (pure, jit- and vmap-able), as a perturbation.

Every entry of the image gets independent ``N(0, sigma^2)`` noise, ``sigma`` in ``[0, 1]``
image units (``sigma = 8 / 255`` is 8 pixel levels); the result is clipped to ``[0, 1]``
and, with ``quantize=True``, rounded to the nearest of the 256 8-bit levels (what saving
the noisy image as uint8 would do).
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


class NoiseParams(NamedTuple):
    """Dynamic settings of Gaussian noise (a pytree; stack to sweep).

    Attributes:
      sigma: float32 ``[]``, the standard deviation in ``[0, 1]`` image units.
    """

    sigma: jax.Array


def gaussian_noise(
    image_shape: Sequence[int], *, quantize: bool = False
) -> Perturbation:
    """Builds the Gaussian-noise perturbation for images of ``image_shape``.

    The draw is the noise itself, float32 ``[H, W, C]`` (``sigma * N(0, 1)``), so a
    search can evolve it; ``apply`` adds it, clips to ``[0, 1]`` and optionally
    quantises.

    Args:
      image_shape: ``(H, W, C)``.
      quantize: round the result to 8-bit levels (multiples of 1/255).

    Returns:
      A :class:`~pixjax.perturb.base.Perturbation` named ``"gaussian_noise"`` over
      :class:`NoiseParams`; ``make_params`` takes mappings with the field ``sigma``.
    """
    h, w, c = check_image_shape(image_shape)
    quantize = bool(quantize)

    def sample(key: PRNGKey, image: Image, params: NoiseParams) -> jax.Array:
        """The noise ``[H, W, C]`` float32 for one image."""
        return params.sigma * jax.random.normal(key, image.shape, jnp.float32)

    def apply(noise: jax.Array, image: Image) -> Image:
        """``clip(image + noise, 0, 1)``, rounded to 8-bit levels with ``quantize``."""
        out = jnp.clip(image + noise, 0.0, 1.0)
        if quantize:
            out = jnp.round(out * 255.0) / 255.0
        return out.astype(image.dtype)

    def check_params(params: NoiseParams) -> None:
        """Host side: finite ``sigma`` in ``[0, 1]``, one per configuration."""
        num_configs(params, NoiseParams)
        sigma = host_array(params, "sigma")
        if sigma.ndim != 1 or not np.issubdtype(sigma.dtype, np.floating):
            raise ValueError(
                "sigma: expected floats in [0, 1], one per configuration, got dtype "
                f"{sigma.dtype} shape {sigma.shape}"
            )
        bad = ~(np.isfinite(sigma) & (sigma >= 0.0) & (sigma <= 1.0))
        if bad.any():
            raise ValueError(
                "sigma: expected a standard deviation in [0, 1] image units (8 pixel "
                f"levels = {8 / 255:.4f}), got {sigma[bad].tolist()}"
            )

    def make_params(configs: Sequence[Mapping[str, Any]]) -> NoiseParams:
        """Host side: validated :class:`NoiseParams` ``[K]`` from configurations."""
        recs = config_records(configs, NoiseParams, {})
        for rec in recs:
            v = rec["sigma"]
            if isinstance(v, bool) or not isinstance(v, int | float | np.number):
                raise ValueError(f"sigma: expected a number in [0, 1], got {v!r}")
        params = NoiseParams(sigma=jnp.asarray([r["sigma"] for r in recs], jnp.float32))
        check_params(params)
        return params

    return Perturbation(
        sample=sample,
        apply=apply,
        make_params=make_params,
        check_params=check_params,
        name="gaussian_noise",
        image_shape=(h, w, c),
        static={"quantize": quantize},
    )
