"""The sweep engine: one compiled function evaluates a whole grid of perturbations.

Generic over :class:`~pixjax.perturb.base.Perturbation`: for every image ``i`` of a
dataset, every configuration ``k`` of a stacked params pytree ``[K]`` and every seed
``s``, the image is perturbed with the key
``fold_in(fold_in(fold_in(key, s), k), i)`` and classified. ``i`` is the image's global
index, so results do not depend on the batch size, the number of devices or how the
grid is chunked. Per batch, the clean forward pass runs once and the perturbed images
of a chunk of configurations run as one ``vmap``; the batch is split over every
visible device (:mod:`pixjax.sharding`).

:func:`run_variants` evaluates *precomputed* variants ``[K, N, H, W, C]`` uint8 (made
on the host, e.g. by an image library's JPEG or resize) with the same batching,
sharding and outputs.

Per-image outcomes come back to the host as :class:`SweepOutputs` and are reduced there
with exact integer counts (:func:`summarize_outputs`, built on
:func:`pixjax.evaluation.summary.summarize`).

The pixel-change layer on top (Zhang & Cai 2021): :func:`sweep` (the one-call front
door over :class:`~pixjax.perturb.PixelConfig` s) and :func:`summarize_pixel_outputs`
(adds each configuration's settings and Pixel-index).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax import sharding
from pixjax.data.base import check_images, check_labels, to_float
from pixjax.evaluation.pixel_index import pixel_index
from pixjax.evaluation.predict import classify, forward
from pixjax.evaluation.summary import summarize
from pixjax.models import num_logits
from pixjax.perturb.base import Perturbation, num_configs
from pixjax.perturb.pixels import PixelConfig, pixel_change, stack_configs
from pixjax.types import PyTree

ApplyFn = Callable[[Any, jax.Array], jax.Array]

# At most this many perturbed images per compiled call unless ``config_chunk`` says.
_WORK_PER_CALL = 16384


class SweepOutputs(NamedTuple):
    """Per-image outcomes of a sweep (host numpy arrays).

    Attributes:
      clean_pred: int32 ``[N]`` predictions on the unchanged images.
      pred: int32 ``[R, N]`` predictions after each row's perturbation (``R = S * K``
        for :func:`run_sweep`, row ``s * K + k``; ``R = K`` for :func:`run_variants`).
      confidence: float32 ``[R, N]`` softmax probability of ``pred``.
    """

    clean_pred: np.ndarray
    pred: np.ndarray
    confidence: np.ndarray


class Sweeper(NamedTuple):
    """The compiled sweep functions for one model function (and one perturbation).

    * ``step(variables, images_u8, index, params, config_ids, seeds, key)`` evaluates
      one batch (``images_u8 [B, H, W, C]`` uint8, ``index [B]`` global image indices)
      under a chunk of configurations (stacked ``params [Kc]``, ``config_ids [Kc]``,
      ``seeds [Kc]``) and returns ``(pred [Kc, B], confidence [Kc, B])``;
    * ``variants_step(variables, variants_u8)`` does the same for precomputed variants
      ``[B, Kc, H, W, C]`` uint8 (batch axis first, as it is sharded);
    * ``clean(variables, images_u8)`` returns the clean ``(labels [B], confidence
      [B])`` (:func:`pixjax.evaluation.predict.forward`, the predictor's own compiled
      forward pass; once per
      batch, not per chunk).

    Build it once with :func:`make_sweeper` and reuse it: later calls with the same
    shapes do not recompile.
    """

    step: Callable[..., tuple[jax.Array, jax.Array]]
    variants_step: Callable[..., tuple[jax.Array, jax.Array]]
    clean: Callable[..., jax.Array]
    perturbation: Perturbation | None
    mesh: jax.sharding.Mesh


def change_batch(
    perturbation: Perturbation,
    key: jax.Array,
    seed: jax.Array | int,
    config_id: jax.Array | int,
    index: jax.Array,
    images: jax.Array,
    params: PyTree,
) -> jax.Array:
    """The perturbed images of one configuration, exactly as the sweep makes them.

    Args:
      perturbation: the perturbation.
      key: the sweep's base key; ``seed`` and ``config_id`` select the grid row.
      index: ``[B]`` global image indices (image ``i`` uses ``fold_in(.., i)``).
      images: ``[B, H, W, C]`` float32 in ``[0, 1]``.
      params: one (unstacked) configuration, e.g. ``params_at(stacked, k)``.

    Returns:
      ``[B, H, W, C]`` float32 in ``[0, 1]``.
    """
    ck = jax.random.fold_in(jax.random.fold_in(key, seed), config_id)

    def one_image(i, image):
        k = jax.random.fold_in(ck, i)
        return perturbation.apply(perturbation.sample(k, image, params), image)

    return jax.vmap(one_image)(index, images)


def make_sweeper(
    apply_fn: ApplyFn,
    perturbation: Perturbation | None = None,
    mesh: jax.sharding.Mesh | None = None,
) -> Sweeper:
    """Compiles (lazily, on first use) the per-batch sweep functions.

    Args:
      apply_fn: ``apply_fn(variables, images [N, H, W, C] in [0, 1]) -> logits`` (e.g.
        ``model.apply``; for a plain logits function pass ``lambda _, x: f(x)``).
      perturbation: from :func:`pixjax.perturb.get_perturbation` (or a factory such as
        :func:`pixjax.perturb.pixel_change`); ``None`` for a sweeper that only
        evaluates precomputed variants (:func:`run_variants`).
      mesh: device mesh (default: all visible devices).
    """
    if perturbation is not None and not isinstance(perturbation, Perturbation):
        raise ValueError(
            "perturbation: expected a pixjax.perturb.Perturbation (e.g. from "
            f"get_perturbation) or None, got {type(perturbation).__name__}"
        )
    mesh = sharding.data_mesh() if mesh is None else mesh

    def step(variables, images_u8, index, params, config_ids, seeds, key):
        x = to_float(images_u8)

        def one_config(p, config_id, seed):
            changed = change_batch(perturbation, key, seed, config_id, index, x, p)
            return classify(apply_fn(variables, changed))

        return jax.vmap(one_config)(params, config_ids, seeds)

    def variants_step(variables, variants_u8):
        # [B, Kc, H, W, C] -> per configuration [B, H, W, C]; outputs [Kc, B]
        return jax.vmap(lambda v: classify(apply_fn(variables, v)), in_axes=1)(
            to_float(variants_u8)
        )

    return Sweeper(
        step=jax.jit(step),
        variants_step=jax.jit(variants_step),
        clean=forward(apply_fn),
        perturbation=perturbation,
        mesh=mesh,
    )


def _check_seeds(seeds: Sequence[int]) -> list[int]:
    """``seeds`` as a list of integers in ``0 .. 2**32 - 1`` (folded into the key).

    Raises:
      ValueError: not a non-empty sequence of such integers (bools and floats refused).
    """
    if isinstance(seeds, str | bytes) or not isinstance(seeds, Sequence | np.ndarray):
        raise ValueError(
            f"seeds: expected a non-empty sequence of integers, got {seeds!r}"
        )
    if len(seeds) == 0:
        raise ValueError("seeds: expected at least one seed, got none")
    bad = [
        s
        for s in seeds
        if isinstance(s, bool | np.bool_)
        or not isinstance(s, int | np.integer)
        or not 0 <= int(s) < 2**32
    ]
    if bad:
        raise ValueError(
            f"seeds: expected integers in 0..2**32-1, got {[*map(repr, bad)][:5]}"
        )
    return [int(s) for s in seeds]


def _check_key(key: Any) -> None:
    """Raises ``ValueError`` unless ``key`` is one PRNG key (typed or raw uint32)."""
    ok = isinstance(key, jax.Array) and (
        (jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ())
        or (key.dtype == jnp.uint32 and key.shape == (2,))
    )
    if not ok:
        raise ValueError(
            "key: expected one PRNG key (jax.random.key(seed)), got "
            f"{type(key).__name__} {getattr(key, 'dtype', '')}"
            f"{list(getattr(key, 'shape', ()))}"
        )


def _check_batching(batch_size: int, config_chunk: int | None) -> None:
    """``batch_size`` and (unless ``None``) ``config_chunk``: positive integers."""
    for name, v in (("batch_size", batch_size), ("config_chunk", config_chunk)):
        bad = isinstance(v, bool) or not isinstance(v, int | np.integer) or v <= 0
        if bad and not (name == "config_chunk" and v is None):
            raise ValueError(f"{name}: expected a positive integer, got {v!r}")


def _plan(n: int, rows: int, n_dev: int, batch_size: int, config_chunk: int | None):
    """(batch, number of chunks, rows per chunk): equal chunks with the least padding
    (77 rows at most 32 a call -> 3 x 26)."""
    batch = sharding.round_up(min(batch_size, max(n, 1)), n_dev)
    if config_chunk is None:
        config_chunk = max(1, min(rows, _WORK_PER_CALL // batch))
    n_chunks = -(-rows // min(config_chunk, rows))
    chunk = -(-rows // n_chunks)
    return batch, n_chunks, chunk


def _drive(
    sweeper: Sweeper,
    variables: Any,
    images: np.ndarray,
    rows: int,
    batch: int,
    n_chunks: int,
    chunk: int,
    launch: Callable[..., tuple[jax.Array, jax.Array]],
    progress: bool,
    desc: str,
) -> SweepOutputs:
    """The batch loop shared by :func:`run_sweep` and :func:`run_variants`.

    ``launch(c, start, stop, block_d, index_d)`` starts chunk ``c`` of the batch of
    images ``start:stop`` (``block_d`` / ``index_d`` padded to ``batch`` and sharded)
    and returns its device outputs ``(pred [chunk, batch], confidence [chunk, batch])``.
    """
    mesh = sweeper.mesh
    n = images.shape[0]
    clean = np.zeros(n, np.int32)
    pred = np.zeros((n_chunks * chunk, n), np.int32)
    conf = np.zeros((n_chunks * chunk, n), np.float32)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n * rows, unit="img", unit_scale=True, desc=desc)
    pending: list[tuple] = []

    def collect(limit: int) -> None:
        # Pull finished results to the host, keeping up to ``limit`` steps in flight so
        # the device never waits for the host.
        while len(pending) > limit:
            c, start, stop, outs = pending.pop(0)
            outs = sharding.to_host(outs)
            if c is None:
                clean[start:stop] = np.asarray(outs[0])[: stop - start]
                continue
            pr, cf = outs
            sl = slice(c * chunk, (c + 1) * chunk)
            pred[sl, start:stop] = np.asarray(pr)[:, : stop - start]
            conf[sl, start:stop] = np.asarray(cf)[:, : stop - start]
            if bar is not None:
                bar.update((stop - start) * min(chunk, rows - c * chunk))

    for start in range(0, n, batch):
        stop = min(start + batch, n)
        block = images[start:stop]
        index = np.arange(start, start + batch, dtype=np.int32)
        if stop - start < batch:  # pad the last batch; padded rows are dropped
            block = np.concatenate(
                [block, np.zeros((batch - (stop - start), *block.shape[1:]), np.uint8)]
            )
        block_d, index_d = sharding.shard_batch(mesh, block, index)
        pending.append((None, start, stop, sweeper.clean(variables, block_d)))
        for c in range(n_chunks):
            pending.append((c, start, stop, launch(c, start, stop, block_d, index_d)))
            collect(2 * n_chunks + 2)
    collect(0)
    if bar is not None:
        bar.close()
    return SweepOutputs(clean_pred=clean, pred=pred[:rows], confidence=conf[:rows])


def run_sweep(
    sweeper: Sweeper,
    variables: Any,
    images_u8: np.ndarray,
    params: PyTree,
    key: jax.Array,
    *,
    seeds: Sequence[int] = (0,),
    batch_size: int = 512,
    config_chunk: int | None = None,
    progress: bool = True,
) -> SweepOutputs:
    """Runs every ``(seed, configuration)`` pair of the grid over every image.

    Image ``i`` under configuration ``k`` and seed ``s`` is perturbed with the key
    ``fold_in(fold_in(fold_in(key, s), k), i)`` (see :func:`change_batch`), so the
    predictions (and so every count) are the same for any ``batch_size``,
    ``config_chunk`` and device count; confidences up to float32 rounding (XLA may
    pick another algorithm for another batch shape).

    Args:
      sweeper: from :func:`make_sweeper` with a perturbation.
      variables: the model variables passed to ``apply_fn``.
      images_u8: ``[N, H, W, C]`` uint8 (validated), ``(H, W, C)`` the perturbation's
        image shape.
      params: the grid, stacked params ``[K]`` of the sweeper's perturbation (e.g.
        ``perturbation.make_params(configs)``); validated with its ``check_params``
        before any work.
      key: base PRNG key.
      seeds: repetitions; row ``s * K + k`` of the outputs is seed ``seeds[s]``,
        configuration ``k``.
      batch_size: images per step (rounded up to a multiple of the device count).
      config_chunk: rows per step (default: all, capped so that one step holds at most
        ~16k perturbed images).
      progress: show a tqdm progress bar.

    Returns:
      :class:`SweepOutputs` with ``K * len(seeds)`` rows.
    """
    perturbation = sweeper.perturbation
    if perturbation is None:
        raise ValueError(
            "sweeper: built without a perturbation (make_sweeper(apply_fn, None)); "
            "pass one, or evaluate precomputed variants with run_variants"
        )
    images = check_images(images_u8)
    if tuple(images.shape[1:]) != perturbation.image_shape:
        raise ValueError(
            "images: expected shape "
            f"[N, {', '.join(map(str, perturbation.image_shape))}] to match the "
            f"perturbation, got {images.shape}"
        )
    _check_batching(batch_size, config_chunk)
    seeds = _check_seeds(seeds)
    _check_key(key)
    perturbation.check_params(params)
    n_cfg = num_configs(params)
    total = n_cfg * len(seeds)
    # Flattened grid: row s * K + k.
    tile = lambda a: jnp.concatenate([jnp.asarray(a)] * len(seeds), axis=0)
    params = jax.tree_util.tree_map(tile, params)
    config_ids = jnp.asarray(list(range(n_cfg)) * len(seeds), jnp.int32)
    seed_arr = jnp.asarray([s for s in seeds for _ in range(n_cfg)], jnp.uint32)

    mesh = sweeper.mesh
    batch, n_chunks, chunk = _plan(
        images.shape[0], total, mesh.devices.size, batch_size, config_chunk
    )
    pad_cfg = n_chunks * chunk - total
    if pad_cfg:  # repeat the last row so every call has the same shape (one compile)
        pad = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad_cfg, axis=0)])
        params = jax.tree_util.tree_map(pad, params)
        config_ids, seed_arr = pad(config_ids), pad(seed_arr)
    rep = sharding.replicate(mesh, (variables, params, config_ids, seed_arr, key))
    variables, params, config_ids, seed_arr, key = rep
    # Pre-slice the chunks once (device arrays, replicated).
    chunks = [
        (
            jax.tree_util.tree_map(
                lambda a, c=c: a[c * chunk : (c + 1) * chunk], params
            ),
            config_ids[c * chunk : (c + 1) * chunk],
            seed_arr[c * chunk : (c + 1) * chunk],
        )
        for c in range(n_chunks)
    ]

    def launch(c, start, stop, block_d, index_d):
        p_c, ids_c, seeds_c = chunks[c]
        return sweeper.step(variables, block_d, index_d, p_c, ids_c, seeds_c, key)

    return _drive(
        sweeper,
        variables,
        images,
        total,
        batch,
        n_chunks,
        chunk,
        launch,
        progress,
        "sweep",
    )


def run_variants(
    sweeper: Sweeper,
    variables: Any,
    images_u8: np.ndarray,
    variants_u8: np.ndarray,
    *,
    batch_size: int = 512,
    config_chunk: int | None = None,
    progress: bool = True,
) -> SweepOutputs:
    """Classifies precomputed variants of every image, batched and sharded as
    :func:`run_sweep` (one compile for every batch and chunk).

    For perturbations made on the host (an image library's JPEG, resize, ...):
    ``variants_u8[k, i]`` is image ``i`` under configuration ``k``.

    Args:
      sweeper: from :func:`make_sweeper` (its perturbation, if any, is not used).
      variables: the model variables passed to ``apply_fn``.
      images_u8: ``[N, H, W, C]`` uint8, the unchanged images (for ``clean_pred``).
      variants_u8: ``[K, N, H, W, C]`` uint8.
      batch_size: images per step (rounded up to a multiple of the device count).
      config_chunk: configurations per step (default: all, capped so that one step
        holds at most ~16k images).
      progress: show a tqdm progress bar.

    Returns:
      :class:`SweepOutputs` with ``K`` rows.
    """
    images = check_images(images_u8)
    variants = np.asarray(variants_u8)
    if variants.dtype != np.uint8:
        raise ValueError(
            f"variants_u8: expected dtype uint8 (0..255), got {variants.dtype}"
        )
    if variants.ndim != 5 or variants.shape[1:] != images.shape or not len(variants):
        raise ValueError(
            "variants_u8: expected shape [K, N, H, W, C] with K >= 1 and [N, H, W, C] "
            f"= images {images.shape}, got {variants.shape}"
        )
    _check_batching(batch_size, config_chunk)
    k = variants.shape[0]
    batch, n_chunks, chunk = _plan(
        images.shape[0], k, sweeper.mesh.devices.size, batch_size, config_chunk
    )
    variables = sharding.replicate(sweeper.mesh, variables)

    def launch(c, start, stop, block_d, index_d):
        del block_d, index_d
        part = variants[c * chunk : (c + 1) * chunk, start:stop]
        # Pad configurations and images with zeros to the compiled shape (dropped).
        pad = ((0, chunk - part.shape[0]), (0, batch - part.shape[1]))
        part = np.pad(part, pad + ((0, 0),) * 3)
        (part_d,) = sharding.shard_batch(sweeper.mesh, np.swapaxes(part, 0, 1))
        return sweeper.variants_step(variables, part_d)

    return _drive(
        sweeper,
        variables,
        images,
        k,
        batch,
        n_chunks,
        chunk,
        launch,
        progress,
        "variants",
    )


def summarize_outputs(
    out: SweepOutputs,
    labels: np.ndarray,
    num_classes: int | None = None,
    seeds: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """One :func:`~pixjax.evaluation.summary.summarize` dict per row of ``out``.

    Args:
      out: from :func:`run_sweep` or :func:`run_variants`.
      labels: ``[N]`` int true labels.
      num_classes: size of the per-class arrays (default: the largest label or
        prediction + 1).
      seeds: the sweep's seeds; each row then also holds ``seed`` (row ``s * K + k``
        is seed ``seeds[s]``).

    Returns:
      ``R`` dicts in the row order of ``out``.
    """
    labels = np.asarray(labels)
    rows = out.pred.shape[0]
    if seeds is not None and (len(seeds) == 0 or rows % len(seeds)):
        raise ValueError(
            f"seeds: expected the sweep's seeds (a divisor of its {rows} rows), got "
            f"{list(seeds)}"
        )
    if num_classes is None:
        num_classes = int(max(labels.max(), out.clean_pred.max(), out.pred.max())) + 1
    per_seed = rows // len(seeds) if seeds else rows
    result = []
    for r in range(rows):
        m = summarize(
            labels, out.clean_pred, out.pred[r], out.confidence[r], num_classes
        )
        if seeds:
            m["seed"] = int(seeds[r // per_seed])
        result.append(m)
    return result


# ----------------------------------------------------------- the pixel-change layer


def summarize_pixel_outputs(
    out: SweepOutputs,
    labels: np.ndarray,
    configs: Sequence[PixelConfig],
    seeds: Sequence[int],
    image_shape: Sequence[int],
    num_classes: int | None = None,
) -> list[dict[str, Any]]:
    """:func:`summarize_outputs` of a pixel-change sweep, each row with its ``config``
    (settings) and ``pixel_index`` (Zhang & Cai 2021, eq. 7; NaN without a flip rate).
    """
    if out.pred.shape[0] != len(configs) * len(seeds):
        raise ValueError(
            f"configs: expected {out.pred.shape[0]} // {len(seeds)} seeds "
            f"configurations (the sweep's rows), got {len(configs)}"
        )
    rows = summarize_outputs(out, labels, num_classes, seeds)
    for r, m in enumerate(rows):
        cfg = configs[r % len(configs)]
        w = m["flip_rate"]
        seed = m.pop("seed")
        m["pixel_index"] = (
            pixel_index(
                w,
                cfg.num,
                image_shape[:2],
                cfg.value_range(),
                cfg.region_hw(image_shape),
            )
            if np.isfinite(w)
            else float("nan")
        )
        m["config"] = {
            "num": cfg.num,
            "magnitude": float(cfg.magnitude),
            "relative": bool(cfg.relative),
            "region": list(cfg.region_hw(image_shape)),
        }
        m["seed"] = seed
    return rows


def sweep(
    apply_fn: ApplyFn,
    variables: Any,
    images: np.ndarray,
    labels: np.ndarray,
    configs: Sequence[PixelConfig],
    key: jax.Array,
    *,
    seeds: Sequence[int] = (0,),
    num_classes: int | None = None,
    per_channel: bool = False,
    quantize: bool = True,
    batch_size: int = 512,
    progress: bool = True,
    mesh: jax.sharding.Mesh | None = None,
) -> list[dict[str, Any]]:
    """Evaluates a grid of pixel changes and returns one metrics dict per seed/config.

    The one-call front door of the pixel-change layer: validates the configurations,
    builds the perturbation and the compiled step, runs :func:`run_sweep` and reduces
    with :func:`summarize_pixel_outputs`. Each dict also holds ``config`` (the
    settings), ``seed`` and ``pixel_index``.

    Args:
      apply_fn, variables: the model (see :func:`make_sweeper`).
      images: ``[N, H, W, C]`` uint8.
      labels: ``[N]`` int labels.
      configs: the grid.
      key: base PRNG key.
      seeds, batch_size, progress: see :func:`run_sweep`.
      num_classes: size of the per-class arrays (default: the model's number of
        logits; labels must lie in ``0 .. logits - 1``).
      per_channel, quantize: see :func:`pixjax.perturb.pixel_change`.
      mesh: device mesh (default: all visible devices).
    """
    images = check_images(images)
    model_classes = num_logits(apply_fn, variables, images.shape[1:])
    check_labels(labels, model_classes, num_images=images.shape[0])
    labels = np.asarray(labels)
    if num_classes is not None and num_classes < model_classes:
        raise ValueError(
            f"num_classes: expected at least the model's {model_classes} logits, got "
            f"{num_classes}"
        )
    if len(configs) == 0:
        raise ValueError("configs: expected at least one PixelConfig, got none")
    shape = tuple(images.shape[1:])
    stack_configs(configs, shape, per_channel)  # validate before any compilation
    change = pixel_change(
        shape, max(c.num for c in configs), per_channel=per_channel, quantize=quantize
    )
    out = run_sweep(
        make_sweeper(apply_fn, change, mesh),
        variables,
        images,
        change.make_params(configs),
        key,
        seeds=seeds,
        batch_size=batch_size,
        progress=progress,
    )
    return summarize_pixel_outputs(
        out, labels, configs, seeds, shape, num_classes or model_classes
    )
