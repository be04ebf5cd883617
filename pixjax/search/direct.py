"""The direct encoding of the fooling-images search (Nguyen, Yosinski & Clune, CVPR
2015): a genome is the image itself, one gene per pixel and channel, in ``[0, 1]``.

Genomes start uniform in ``[0, 1]``. A parent pair is crossed by SBX (eta 10) with
probability ``cross_probability`` (0.5; else the children are the parents) and both
children are mutated by polynomial mutation (eta 15, per-gene ``mutation_rate`` 0.1,
clipped), as sferes2's ``EvoFloat`` in the original code
(:mod:`pixjax.search.operators`). Mutation-rate schedules: ``"code"`` (constant, what
the original code does) and ``"paper"`` (halved every 1000 generations, as the paper
describes). The generation itself is generic: :mod:`pixjax.search.evolve`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pixjax.keys import purpose_keys
from pixjax.search.evolve import Encoding
from pixjax.search.operators import polynomial_mutation, sbx_crossover
from pixjax.types import PRNGKey

SCHEDULES = ("code", "paper")


class DirectSettings(NamedTuple):
    """Static settings of the direct encoding (closed over by :func:`direct_encoding`).

    Attributes:
      mutation_rate: per-gene mutation probability in ``[0, 1]`` (0.1).
      eta_mutation: polynomial-mutation distribution index ``> 0`` (15).
      eta_crossover: SBX distribution index ``> 0`` (10).
      cross_probability: probability in ``[0, 1]`` that a pair is crossed (0.5).
      schedule: ``"code"`` (constant rate) or ``"paper"`` (rate halves every 1000
        generations).
    """

    mutation_rate: float = 0.1
    eta_mutation: float = 15.0
    eta_crossover: float = 10.0
    cross_probability: float = 0.5
    schedule: str = "code"


def check_settings(settings: DirectSettings) -> None:
    """Raises ``ValueError`` naming the first bad setting and the accepted values."""
    s = settings
    for name in ("mutation_rate", "cross_probability"):
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ValueError(f"{name}: expected a probability in [0, 1], got {v!r}")
    for name in ("eta_mutation", "eta_crossover"):
        v = getattr(s, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ValueError(f"{name}: expected a positive number, got {v!r}")
        if v == float("inf"):
            raise ValueError(f"{name}: expected a finite positive number, got {v!r}")
    if s.schedule not in SCHEDULES:
        raise ValueError(
            f"schedule: expected one of {list(SCHEDULES)}, got {s.schedule!r}"
        )


def check_image_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """``image_shape`` as a tuple of three positive ints ``(H, W, C)``, C in {1, 3}.

    Raises:
      ValueError: anything else.
    """
    shape = tuple(image_shape) if isinstance(image_shape, (tuple, list)) else None
    if (
        shape is None
        or len(shape) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or min(shape) < 1
        or shape[2] not in (1, 3)
    ):
        raise ValueError(
            f"image_shape: expected (H, W, C) positive integers with C 1 (grey) or 3 "
            f"(RGB), got {image_shape!r}"
        )
    return shape  # type: ignore[return-value]


def direct_encoding(
    image_shape: tuple[int, int, int], settings: DirectSettings | None = None
) -> Encoding:
    """The direct encoding of images of ``image_shape`` ``(H, W, C)``: genomes are
    float32 ``[H, W, C]`` in ``[0, 1]``, rendered as themselves.

    Raises:
      ValueError: a bad setting (:func:`check_settings`) or ``image_shape``.
    """
    s = DirectSettings() if settings is None else settings
    check_settings(s)
    shape = check_image_shape(image_shape)

    def init(key: PRNGKey) -> jax.Array:
        return jax.random.uniform(key, shape, jnp.float32)

    def vary(key: PRNGKey, a: jax.Array, b: jax.Array, generation: jax.Array):
        keys = purpose_keys(key, "crossover", "mutate_a", "mutate_b")
        c1, c2 = sbx_crossover(
            keys["crossover"],
            a,
            b,
            eta=s.eta_crossover,
            probability=s.cross_probability,
        )
        rate = s.mutation_rate
        if s.schedule == "paper":
            rate = rate * 0.5 ** (generation // 1000).astype(jnp.float32)
        c1 = polynomial_mutation(keys["mutate_a"], c1, rate=rate, eta=s.eta_mutation)
        c2 = polynomial_mutation(keys["mutate_b"], c2, rate=rate, eta=s.eta_mutation)
        return c1, c2

    return Encoding("direct", shape, init, vary, lambda genome: genome)


__all__ = [
    "SCHEDULES",
    "DirectSettings",
    "check_image_shape",
    "check_settings",
    "direct_encoding",
]
