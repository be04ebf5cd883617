"""Random few-pixel changes, parametrised as in Zhang & Cai (2021).

"Pixel Change Robustness" (Zhang & Cai 2021, JCC 9(8)) changes ``Num`` random pixels of
an image, with the new value limited by a magnitude ``R`` and the positions limited to
a centred region ``P``. pixjax follows that parametrisation:

* ``num``: how many distinct positions change (``Num``).
* ``magnitude`` ``R`` in ``(0, 255]`` (pixel levels), with ``relative``:

  - ``relative=False`` (Exp 1): the new value is drawn uniformly from ``0..R``
    (``R = 255``: any value, the paper's default);
  - ``relative=True`` (Exp 2): the new value is the original ``+- R``, clipped to
    ``0..255``.

* ``region`` ``(h, w)``: positions are drawn from the centred ``h x w`` rectangle (Exp 3;
  e.g. 220x220 inside a 224x224 image).

Whether a change applies to all channels of a pixel is not stated in the paper; the
default (``per_channel=False``) picks ``num`` pixels and redraws every channel of each
independently, ``per_channel=True`` picks ``num`` (pixel, channel) entries instead. New
values are whole pixel levels (``quantize=True``), i.e. multiples of 1/255 in the
``[0, 1]`` image space.

The factory :func:`pixel_change` closes over the static settings (image shape, the
largest ``num`` of a sweep) and returns a :class:`~pixjax.perturb.base.Perturbation`
(registered as ``"pixel_change"``): two pure functions, ``sample`` and ``apply``; the
dynamic settings are a :class:`PixelParams` pytree, so a whole grid of configurations
is one ``vmap``::

    change = pixel_change((28, 28, 1), max_num=64)
    hp = change.make_params([PixelConfig(num=4), PixelConfig(num=8)])  # or stack_configs
    changed = jax.vmap(lambda h, k: change.apply(change.sample(k, x, h), x))(hp, keys)

The host-side layer (:class:`PixelConfig`, :func:`validate_config`,
:func:`stack_configs`) describes and validates configurations before any device work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.perturb.base import (
    Perturbation,
    check_image_shape,
    host_array,
    num_configs,
    params_at,
)
from pixjax.types import Image, PRNGKey


class PixelParams(NamedTuple):
    """Dynamic hyperparameters of a pixel change (a pytree; stack to sweep).

    Attributes:
      num: int32 ``[]``, number of changed positions.
      magnitude: float32 ``[]``, ``R`` in pixel levels, ``(0, 255]``.
      relative: bool ``[]``, ``True`` for original ``+- R``, ``False`` for ``0..R``.
      region: int32 ``[2]``, height and width of the centred region.
    """

    num: jax.Array
    magnitude: jax.Array
    relative: jax.Array
    region: jax.Array


class Changes(NamedTuple):
    """One sampled pixel change (what ``sample`` returns and ``apply`` consumes).

    Attributes:
      index: int32 ``[max_num]``, distinct flat positions inside the region (pixel
        ``y * W + x``, or ``(y * W + x) * C + c`` with ``per_channel``); unused slots
        hold ``H * W`` (resp. ``H * W * C``), out of bounds.
      values: float32 ``[max_num, V]`` new values in ``[0, 1]`` (``V = C`` per pixel,
        ``1`` per channel).
      mask: bool ``[max_num]``, ``True`` for the ``num`` entries that are applied
        (the first ``num``).
    """

    index: jax.Array
    values: jax.Array
    mask: jax.Array


@dataclasses.dataclass(frozen=True)
class PixelConfig:
    """One host-side configuration of a pixel change (see the module docstring).

    ``region=None`` means the whole image; an int means a centred square.
    """

    num: int
    magnitude: float = 255.0
    relative: bool = False
    region: int | tuple[int, int] | None = None

    def region_hw(self, image_shape: Sequence[int]) -> tuple[int, int]:
        h, w = int(image_shape[0]), int(image_shape[1])
        if self.region is None:
            return h, w
        if isinstance(self.region, int | np.integer):
            return int(self.region), int(self.region)
        rh, rw = self.region
        return int(rh), int(rw)

    def value_range(self) -> float:
        """``r`` of the Pixel-index: the width of the reachable values over 255."""
        width = 2.0 * self.magnitude if self.relative else float(self.magnitude)
        return min(width, 255.0) / 255.0

    def label(self) -> str:
        mag = f"+-{self.magnitude:g}" if self.relative else f"0..{self.magnitude:g}"
        reg = (
            "full"
            if self.region is None
            else "x".join(
                str(v)
                for v in (
                    self.region
                    if isinstance(self.region, tuple)
                    else (self.region, self.region)
                )
            )
        )
        return f"num={self.num} values={mag} region={reg}"


def validate_config(
    config: PixelConfig, image_shape: Sequence[int], per_channel: bool = False
) -> None:
    """Checks one configuration against an image shape, before any work.

    Raises:
      ValueError: naming the argument and the accepted values.
    """
    if len(image_shape) != 3:
        raise ValueError(f"image_shape: expected (H, W, C), got {tuple(image_shape)}")
    h, w, c = (int(v) for v in image_shape)
    if isinstance(config.region, tuple) and len(config.region) != 2:
        raise ValueError(
            f"region: expected an int or (height, width), got {config.region}"
        )
    rh, rw = config.region_hw(image_shape)
    if not (1 <= rh <= h and 1 <= rw <= w):
        raise ValueError(
            f"region: expected a centred region between 1x1 and the image size {h}x{w}, "
            f"got {rh}x{rw}"
        )
    units = rh * rw * (c if per_channel else 1)
    if isinstance(config.num, bool) or not isinstance(config.num, int | np.integer):
        raise ValueError(f"num: expected a positive integer, got {config.num!r}")
    if not 1 <= config.num <= units:
        what = "pixel-channel entries" if per_channel else "pixels"
        raise ValueError(
            f"num: expected 1..{units} (the {what} in the {rh}x{rw} region), "
            f"got {config.num}"
        )
    mag = float(config.magnitude)
    if not (0.0 < mag <= 255.0) or not np.isfinite(mag):
        raise ValueError(
            f"magnitude: expected a value in (0, 255] pixel levels, got {config.magnitude}"
        )


def stack_configs(
    configs: Sequence[PixelConfig],
    image_shape: Sequence[int],
    per_channel: bool = False,
) -> PixelParams:
    """Validates ``configs`` and stacks them into a :class:`PixelParams` with a leading
    axis ``[K]`` (host-side, before any device work)."""
    if len(configs) == 0:
        raise ValueError("configs: expected at least one PixelConfig, got none")
    for cfg in configs:
        validate_config(cfg, image_shape, per_channel)
    return PixelParams(
        num=jnp.asarray([c.num for c in configs], jnp.int32),
        magnitude=jnp.asarray([float(c.magnitude) for c in configs], jnp.float32),
        relative=jnp.asarray([bool(c.relative) for c in configs], jnp.bool_),
        region=jnp.asarray([c.region_hw(image_shape) for c in configs], jnp.int32),
    )


# From this many draws on, _floyd_picks finds repeated draws by a sort instead of
# comparing every pair (measured on the CPU: benchmarks/bench_draw.py).
_SORT_FROM = 256


def _floyd_picks(draws: jax.Array, base: jax.Array) -> jax.Array:
    """Floyd's algorithm for a random subset (Bentley & Floyd 1987, "Programming
    Pearls: A sample of brilliance", CACM 30(9)), made loop-free.

    Sequentially, step ``j`` (``j = 0, 1, ...``) of Floyd's algorithm draws ``t_j``
    uniformly from ``0..top_j`` with ``top_j = base + j`` and picks ``t_j``, or
    ``top_j`` if ``t_j`` was picked before; the first ``k`` picks are a uniformly
    random ``k``-subset of ``0..base + k - 1``. Here ``t_j = min(floor(draws[j] *
    (top_j + 1)), top_j)`` and all steps run at once: the picks before ``j`` are
    ``{t_i : i < j} | {top_i : i < j, step i repeated}``, so step ``j`` repeats iff
    ``t_j`` equals an earlier ``t_i``, or ``p_j = t_j - base`` is an earlier step
    (``0 <= p_j < j``) that repeated. Those pointers ``j -> p_j`` go strictly
    backwards, so "repeated" is an OR along pointer chains, found by pointer
    jumping in ``ceil(log2(n))`` rounds. Equal draws are found by comparing every
    pair (``O(n^2)``, fused) below ``_SORT_FROM`` steps and by a stable sort from
    there on. The picks are identical to those of the sequential loop (a
    ``fori_loop`` of ``n`` steps before), bit for bit, for the same draws.

    Args:
      draws: float32 ``[n]`` uniform in ``[0, 1)``, one per step.
      base: int32 ``[]``, ``top_0`` (the number of values minus the subset size).

    Returns:
      int32 ``[n]``: the pick of every step, distinct.
    """
    n = draws.shape[0]
    steps = jnp.arange(n, dtype=jnp.int32)
    top = base + steps
    t = jnp.minimum(jnp.floor(draws * (top + 1)).astype(jnp.int32), top)
    # seen[j]: t_j equals some t_i with i < j.
    if n < _SORT_FROM:
        earlier = steps[:, None] < steps[None, :]  # [i, j]: i < j
        seen = jnp.any((t[:, None] == t[None, :]) & earlier, axis=0)
    else:
        # Stable sort: equal values keep step order, so all but the first are repeats.
        t_sorted, order = jax.lax.sort((t, steps), num_keys=1, is_stable=True)
        later = jnp.concatenate([jnp.zeros(1, bool), t_sorted[1:] == t_sorted[:-1]])
        seen = jnp.zeros(n, bool).at[order].set(later, unique_indices=True)
    # repeated[j] = seen[j] | (0 <= p_j < j & repeated[p_j]): an OR along each chain,
    # by pointer jumping on code = 2 * pointer + repeated (one gather per round).
    p = t - base
    ptr = jnp.where((p >= 0) & (p < steps), p, steps)  # chain ends point to themselves
    code = 2 * ptr + seen.astype(jnp.int32)
    for _ in range(max(1, (n - 1).bit_length())):
        code = code[code >> 1] | (code & 1)
    repeated = (code & 1).astype(bool)
    return jnp.where(repeated, top, t)


def _floyd_loop(draws: jax.Array, base: jax.Array) -> jax.Array:
    """The picks of :func:`_floyd_picks`, as Floyd's sequential loop of ``n`` steps
    (faster on the CPU, where XLA runs the batched loop well and gathers slowly;
    see ``benchmarks/bench_draw.py``)."""
    n = draws.shape[0]
    slots = jnp.arange(n)

    def body(j, chosen):
        top = base + j
        t = jnp.minimum(jnp.floor(draws[j] * (top + 1)).astype(jnp.int32), top)
        seen = jnp.any((chosen == t) & (slots < j))
        return chosen.at[j].set(jnp.where(seen, top, t))

    return jax.lax.fori_loop(0, n, body, jnp.zeros(n, jnp.int32))


def _picks(draws: jax.Array, base: jax.Array) -> jax.Array:
    """Floyd's picks, by the faster of two identical formulations for the backend:
    the sequential loop on the CPU, the loop-free one elsewhere (GPU, TPU)."""
    return jax.lax.platform_dependent(
        draws, base, cpu=_floyd_loop, default=_floyd_picks
    )


def distinct_positions(
    key: PRNGKey,
    num: jax.Array,
    region: jax.Array,
    *,
    image_shape: tuple[int, int, int],
    max_num: int,
    per_channel: bool = False,
) -> jax.Array:
    """The positions a pixel change writes: int32 ``[max_num]`` flat indices whose
    first ``num`` are a uniformly random ``num``-subset of the centred ``region``
    (``(height, width)``) of an image of ``image_shape`` (pixels, or (pixel, channel)
    entries with ``per_channel``); the rest are ``H * W`` (``H * W * C``), out of
    bounds, dropped by ``apply``. Floyd's algorithm (:func:`_picks`): ``max_num``
    draws instead of a sort over every position of the image."""
    h, w, c = image_shape
    per_pixel = c if per_channel else 1
    units = h * w * per_pixel
    region_units = region[0] * region[1] * per_pixel
    draws = jax.random.uniform(key, (max_num,))
    slots = jnp.arange(max_num)
    r = _picks(draws, region_units - num)
    pix, ch = (r // c, r % c) if per_channel else (r, 0)
    y = (h - region[0]) // 2 + pix // region[1]
    x = (w - region[1]) // 2 + pix % region[1]
    flat = (y * w + x) * per_pixel + ch
    return jnp.where(slots < num, flat, units)


def pixel_change(
    image_shape: Sequence[int],
    max_num: int,
    *,
    per_channel: bool = False,
    quantize: bool = True,
) -> Perturbation:
    """Builds the pixel-change perturbation for images of ``image_shape``.

    Args:
      image_shape: ``(H, W, C)`` of the images (any size, any channel count).
      max_num: the largest ``num`` the functions will be asked for (static: it fixes the
        shapes; smaller ``num`` values are masked, so one compiled function serves a grid).
      per_channel: change ``(pixel, channel)`` entries instead of whole pixels.
      quantize: draw whole pixel levels (multiples of 1/255).

    Returns:
      A :class:`~pixjax.perturb.base.Perturbation` named ``"pixel_change"``: ``sample``
      returns :class:`Changes`, ``params`` is a :class:`PixelParams`, ``make_params``
      takes :class:`PixelConfig` s (or mappings of their fields), and ``static`` holds
      ``max_num``, ``per_channel`` and ``quantize``. Both functions are pure, jit-able
      and vmap-able.
    """
    h, w, c = check_image_shape(image_shape)
    units = h * w * (c if per_channel else 1)
    vals_per_unit = 1 if per_channel else c
    if (
        isinstance(max_num, bool)
        or not isinstance(max_num, int | np.integer)
        or not 1 <= int(max_num) <= units
    ):
        raise ValueError(f"max_num: expected 1..{units}, got {max_num!r}")
    max_num = int(max_num)
    per_channel, quantize = bool(per_channel), bool(quantize)

    def sample(key: PRNGKey, image: Image, params: PixelParams) -> Changes:
        """Draws ``num`` distinct positions in the region and their new values.

        Args:
          key: PRNG key (one per image and configuration).
          image: ``[H, W, C]`` float32 in ``[0, 1]``.
          params: an unstacked :class:`PixelParams`.
        """
        pos_key, val_key = jax.random.split(key)
        index = distinct_positions(
            pos_key,
            params.num,
            params.region,
            image_shape=(h, w, c),
            max_num=max_num,
            per_channel=per_channel,
        )
        flat_image = image.reshape(units, vals_per_unit)
        original = flat_image.at[index].get(mode="fill", fill_value=0.0) * 255.0
        shape = (max_num, vals_per_unit)
        mag = params.magnitude
        if quantize:
            mag = jnp.floor(mag)
            u = jax.random.uniform(val_key, shape)
            rel = jnp.round(original) + jnp.floor(u * (2 * mag + 1)) - mag
            ab = jnp.floor(u * (mag + 1))
        else:
            u = jax.random.uniform(val_key, shape)
            rel = original + (2 * u - 1) * mag
            ab = u * mag
        new = jnp.where(params.relative, rel, ab)
        new = jnp.clip(new, 0.0, 255.0) / 255.0
        mask = index < units
        return Changes(
            index=index.astype(jnp.int32), values=new.astype(image.dtype), mask=mask
        )

    def apply(changes: Changes, image: Image) -> Image:
        """Writes the first ``num`` sampled values into ``image`` ``[H, W, C]``."""
        flat = image.reshape(units, vals_per_unit)
        # Unused slots carry the out-of-bounds index ``units`` and are dropped.
        index = jnp.where(changes.mask, changes.index, units)
        new = flat.at[index].set(changes.values, mode="drop", unique_indices=True)
        return new.reshape(image.shape)

    def check_params(params: PixelParams) -> None:
        """Host side: every configuration of stacked ``params`` fits the image and
        ``max_num`` (the checks of :func:`validate_config`)."""
        k = num_configs(params, PixelParams)
        num, mag, rel = (
            host_array(params, f) for f in ("num", "magnitude", "relative")
        )
        region = host_array(params, "region")
        if region.shape != (k, 2):
            raise ValueError(
                f"region: expected stacked (height, width) pairs [K, 2], got shape "
                f"{region.shape}"
            )
        if not np.issubdtype(num.dtype, np.integer):
            raise ValueError(f"num: expected integers, got dtype {num.dtype}")
        for i in range(k):
            cfg = PixelConfig(
                num=int(num[i]),
                magnitude=float(mag[i]),
                relative=bool(rel[i]),
                region=(int(region[i, 0]), int(region[i, 1])),
            )
            validate_config(cfg, (h, w, c), per_channel)
        too_many = [int(n) for n in num if n > max_num]
        if too_many:
            raise ValueError(
                f"num: expected at most max_num={max_num} (the perturbation was built "
                f"with it), got {too_many}"
            )

    def make_params(configs: Sequence[PixelConfig | Mapping[str, Any]]) -> PixelParams:
        """Host side: validated :class:`PixelParams` ``[K]`` from configurations."""
        if isinstance(configs, Mapping) or not isinstance(configs, Sequence):
            raise ValueError(
                "configs: expected a sequence of PixelConfigs (or mappings of their "
                f"fields), got {type(configs).__name__}"
            )
        cfgs = [as_pixel_config(cfg) for cfg in configs]
        params = stack_configs(cfgs, (h, w, c), per_channel)
        check_params(params)
        return params

    return Perturbation(
        sample=sample,
        apply=apply,
        make_params=make_params,
        check_params=check_params,
        name="pixel_change",
        image_shape=(h, w, c),
        static={"max_num": max_num, "per_channel": per_channel, "quantize": quantize},
    )


def as_pixel_config(config: PixelConfig | Mapping[str, Any]) -> PixelConfig:
    """A :class:`PixelConfig` from itself or a mapping of its fields (e.g. a
    results-file ``config`` record, with ``region`` as ``[h, w]``).

    Raises:
      ValueError: an unknown or missing field, or another type.
    """
    if isinstance(config, PixelConfig):
        return config
    fields = [f.name for f in dataclasses.fields(PixelConfig)]
    if not isinstance(config, Mapping):
        raise ValueError(
            f"configs: expected PixelConfigs or mappings with fields {fields}, got "
            f"{type(config).__name__}"
        )
    unknown = sorted(set(config) - set(fields))
    if unknown:
        raise ValueError(f"configs: unknown field(s) {unknown}; accepted: {fields}")
    if "num" not in config:
        raise ValueError("configs: missing required field 'num'")
    rec = dict(config)
    if isinstance(rec.get("region"), list):
        rec["region"] = tuple(rec["region"])
    return PixelConfig(**rec)


def change_pixels(
    key: PRNGKey,
    images: jax.Array,
    config: PixelConfig,
    *,
    per_channel: bool = False,
    quantize: bool = True,
) -> jax.Array:
    """Convenience: applies one configuration to a batch ``[N, H, W, C]`` in ``[0, 1]``.

    Image ``i`` uses ``jax.random.fold_in(key, i)``, as the sweep engine does.
    """
    if images.ndim != 4:
        raise ValueError(f"images: expected shape [N, H, W, C], got {images.shape}")
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"images: expected float values in [0, 1], got dtype {images.dtype} "
            "(divide uint8 images by 255)"
        )
    if not isinstance(images, jax.core.Tracer) and images.size:
        lo, hi = float(jnp.min(images)), float(jnp.max(images))
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"images: expected values in [0, 1], got range [{lo:.4g}, {hi:.4g}]"
            )
    shape = tuple(images.shape[1:])
    validate_config(config, shape, per_channel)
    change = pixel_change(shape, config.num, per_channel=per_channel, quantize=quantize)
    params = params_at(change.make_params([config]), 0)

    def one(i, image):
        k = jax.random.fold_in(key, i)
        return change.apply(change.sample(k, image, params), image)

    return jax.jit(jax.vmap(one))(jnp.arange(images.shape[0]), images)
