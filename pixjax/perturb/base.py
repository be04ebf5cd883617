"""The perturbation protocol and the registry of perturbations.

A perturbation is a pair of pure functions over a per-configuration parameter pytree
(Zhang & Cai's random pixel changes, shifts, Gaussian noise, and whatever comes next)::

    draw = perturbation.sample(key, image, params)   # the random part
    changed = perturbation.apply(draw, image)        # deterministic given the draw

``image`` is ``[H, W, C]`` float32 in ``[0, 1]`` and ``changed`` is too. ``params`` is
one configuration (a NamedTuple of scalar / small arrays); a grid of configurations is
the same NamedTuple with a leading axis ``[K]``, so a sweep is one ``vmap`` over it and
an evolutionary search can evolve ``draw`` directly. Everything that fixes shapes (the
image shape, the largest ``num`` of a pixel change, quantisation) is static: the factory
closes over it.

Host-side, before any device work, ``make_params(configs)`` turns a list of per-
configuration settings (mappings, or the perturbation's own NamedTuple) into validated
stacked params ``[K]``, and ``check_params(params)`` validates stacked params built any
other way; both raise a :class:`ValueError` naming the argument and the accepted values.

The registry :data:`PERTURBATIONS` is a literal dict of factories;
:func:`get_perturbation` builds one by name::

    noise = get_perturbation("gaussian_noise", (28, 28, 1))
    params = noise.make_params([{"sigma": 0.05}, {"sigma": 0.1}])      # [K = 2]
    keys = jax.random.split(key, 2)
    out = jax.vmap(lambda k, p: noise.apply(noise.sample(k, x, p), x))(keys, params)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from pixjax.types import Image, PRNGKey, PyTree


class Perturbation(NamedTuple):
    """A perturbation as a pair of pure functions plus its static settings.

    Attributes:
      sample: ``sample(key, image, params) -> draw``; ``image`` ``[H, W, C]`` float32
        in ``[0, 1]``, ``params`` one (unstacked) configuration. Pure, jit-able and
        vmap-able; the draw is a pytree of fixed shapes for every ``params``.
      apply: ``apply(draw, image) -> image`` ``[H, W, C]`` float32 in ``[0, 1]``.
      make_params: host side, ``make_params(configs) -> params [K]``: one entry per
        configuration, a mapping of field names to values (missing fields take their
        defaults) or the params NamedTuple itself; validated as ``check_params`` does.
      check_params: host side, ``check_params(params)`` validates stacked params
        ``[K]`` (raises :class:`ValueError` naming the field and the accepted values).
      name: the registry name.
      image_shape: ``(H, W, C)`` the functions were built for.
      static: the factory's other static settings (read-only by convention), e.g.
        ``{"max_num": 64, "per_channel": False, "quantize": True}``.
    """

    sample: Callable[[PRNGKey, Image, PyTree], PyTree]
    apply: Callable[[PyTree, Image], Image]
    make_params: Callable[[Sequence[Any]], PyTree]
    check_params: Callable[[PyTree], None]
    name: str
    image_shape: tuple[int, int, int]
    static: Mapping[str, Any]


def check_image_shape(image_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(H, W, C)`` of positive ints, or a :class:`ValueError` naming ``image_shape``."""
    shape = tuple(image_shape)
    if len(shape) != 3 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) and v > 0
        for v in shape
    ):
        raise ValueError(
            f"image_shape: expected (H, W, C) of positive integers, got {shape}"
        )
    h, w, c = (int(v) for v in shape)
    return h, w, c


def num_configs(params: PyTree, params_type: type | None = None) -> int:
    """The number ``K`` of configurations in stacked ``params``.

    Raises:
      ValueError: if ``params`` is not a ``params_type`` (when given), has no leaves, or
        its leaves do not share one leading axis ``K >= 1``.
    """
    if params_type is not None and not isinstance(params, params_type):
        raise ValueError(
            f"params: expected a stacked {params_type.__name__}, got "
            f"{type(params).__name__}"
        )
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError("params: expected a pytree of arrays [K, ...], got no leaves")
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(
            "params: expected stacked params, every leaf with the same leading axis "
            f"[K, ...], got leaf shapes {[np.shape(a) for a in leaves]}"
        )
    (k,) = sizes
    if k < 1:
        raise ValueError("params: expected at least one configuration (K >= 1), got 0")
    return int(k)


def params_at(params: PyTree, k: int) -> PyTree:
    """Configuration ``k`` of stacked ``params`` (the unstacked pytree)."""
    return jax.tree_util.tree_map(lambda a: a[k], params)


def config_records(
    configs: Sequence[Any], params_type: type, defaults: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Host-side: each configuration as a full ``{field: value}`` dict.

    Args:
      configs: per configuration a mapping (missing fields take ``defaults``) or an
        instance of ``params_type`` (a NamedTuple of the same fields).
      params_type: the perturbation's params NamedTuple.
      defaults: default values of the optional fields.

    Raises:
      ValueError: no configuration, an unknown or missing field, or another type.
    """
    if isinstance(configs, Mapping) or not isinstance(configs, Sequence):
        raise ValueError(
            "configs: expected a sequence of configurations (one mapping each), got "
            f"{type(configs).__name__}"
        )
    if len(configs) == 0:
        raise ValueError("configs: expected at least one configuration, got none")
    fields = params_type._fields
    out = []
    for cfg in configs:
        if isinstance(cfg, params_type):
            cfg = cfg._asdict()
        if not isinstance(cfg, Mapping):
            raise ValueError(
                f"configs: expected mappings with fields {list(fields)}, got "
                f"{type(cfg).__name__}"
            )
        unknown = sorted(set(cfg) - set(fields))
        if unknown:
            raise ValueError(
                f"configs: unknown field(s) {unknown}; accepted fields: {list(fields)}"
            )
        rec = {**defaults, **cfg}
        missing = [f for f in fields if f not in rec]
        if missing:
            raise ValueError(f"configs: missing required field(s) {missing}")
        out.append(rec)
    return out


def host_array(params: PyTree, field: str) -> np.ndarray:
    """One field of stacked ``params`` as a host numpy array (for validation)."""
    return np.asarray(getattr(params, field))


# The factories live in their own modules, which import this one for the protocol; they
# are imported here, after the protocol is defined, so the registry can list them.
from pixjax.perturb.noise import gaussian_noise  # noqa: E402
from pixjax.perturb.pixels import pixel_change  # noqa: E402
from pixjax.perturb.shifts import shift_perturbation  # noqa: E402

# name -> factory(image_shape, **static) -> Perturbation
PERTURBATIONS: dict[str, Callable[..., Perturbation]] = {
    "pixel_change": pixel_change,
    "shift": shift_perturbation,
    "gaussian_noise": gaussian_noise,
}


def get_perturbation(
    name: str, image_shape: Sequence[int], **static: Any
) -> Perturbation:
    """Builds the registered perturbation ``name`` for images of ``image_shape``.

    Args:
      name: a key of :data:`PERTURBATIONS` (``pixel_change``, ``shift``,
        ``gaussian_noise``).
      image_shape: ``(H, W, C)``.
      **static: the factory's static settings (e.g. ``max_num=64`` for
        ``pixel_change``, ``quantize=True`` for ``gaussian_noise``).

    Raises:
      ValueError: an unknown name (listing the valid ones), or a static setting the
        factory does not take (listing those it does).
    """
    if not isinstance(name, str) or name not in PERTURBATIONS:
        raise ValueError(
            f"perturbation: unknown name {name!r}; expected one of "
            f"{sorted(PERTURBATIONS)}"
        )
    params = inspect.signature(PERTURBATIONS[name]).parameters
    accepted = [p for p in params if p != "image_shape"]
    unknown = sorted(set(static) - set(accepted))
    if unknown:
        raise ValueError(
            f"{name}: unknown setting(s) {unknown}; accepted settings: {accepted}"
        )
    missing = [
        p
        for p in accepted
        if params[p].default is inspect.Parameter.empty and p not in static
    ]
    if missing:
        raise ValueError(f"{name}: missing required setting(s) {missing}")
    return PERTURBATIONS[name](image_shape, **static)
