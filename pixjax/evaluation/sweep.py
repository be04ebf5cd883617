"""The sweep engine: one compiled function evaluates a whole grid of pixel changes.

For every image ``i`` of a dataset and every configuration ``k`` of a grid, the image is
changed with the key ``fold_in(fold_in(fold_in(key, seed_k), config_id_k), i)`` and
classified. ``i`` is the image's global index, so results do not depend on the batch
size, the number of devices or the order of the grid. Per batch, the clean forward pass
runs once and the changed images of all configurations run as one ``vmap``; the batch is
split over every visible device (:mod:`pixjax.sharding`). Per-image outcomes come back to
the host and are reduced there with exact integer counts
(:func:`pixjax.evaluation.metrics.summarize`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax import sharding
from pixjax.data.base import check_images, check_labels
from pixjax.evaluation.metrics import summarize
from pixjax.evaluation.pixel_index import pixel_index
from pixjax.models import num_logits
from pixjax.perturb.pixels import (
    PixelChange,
    PixelConfig,
    PixelParams,
    pixel_change,
    stack_configs,
)

ApplyFn = Callable[[Any, jax.Array], jax.Array]


class SweepOutputs(NamedTuple):
    """Per-image outcomes of a sweep (host numpy arrays).

    Attributes:
      clean_pred: ``[N]`` predictions on the unchanged images.
      pred: ``[K, N]`` predictions after each configuration's change.
      confidence: ``[K, N]`` softmax probability of ``pred``.
    """

    clean_pred: np.ndarray
    pred: np.ndarray
    confidence: np.ndarray


class Sweeper(NamedTuple):
    """A compiled sweep for one model function and one perturbation.

    ``step(variables, images_u8, index, params, config_ids, seeds, key)`` evaluates one
    batch (``images_u8 [B, H, W, C]`` uint8, ``index [B]`` global image indices, a
    stacked :class:`~pixjax.perturb.PixelParams` ``[K]``) and returns
    ``(pred [K, B], confidence [K, B])``; ``clean(variables, images_u8)`` returns the
    clean predictions ``[B]`` (once per batch, not per configuration chunk). Build it once with
    :func:`make_sweeper` and reuse it: later calls with the same shapes do not recompile.
    """

    step: Callable[..., tuple[jax.Array, jax.Array]]
    clean: Callable[..., jax.Array]
    perturbation: PixelChange
    mesh: jax.sharding.Mesh


def change_batch(
    change: PixelChange,
    key: jax.Array,
    seed: jax.Array | int,
    config_id: jax.Array | int,
    index: jax.Array,
    images: jax.Array,
    params: PixelParams,
) -> jax.Array:
    """The changed images of one configuration, exactly as the sweep makes them.

    Args:
      change: the perturbation.
      key: the sweep's base key; ``seed`` and ``config_id`` select the grid row.
      index: ``[B]`` global image indices (image ``i`` uses ``fold_in(.., i)``).
      images: ``[B, H, W, C]`` float32 in ``[0, 1]``.
      params: one (unstacked) :class:`~pixjax.perturb.PixelParams`.
    """
    ck = jax.random.fold_in(jax.random.fold_in(key, seed), config_id)

    def one_image(i, image):
        k = jax.random.fold_in(ck, i)
        return change.apply(change.sample(k, image, params), image)

    return jax.vmap(one_image)(index, images)


def make_sweeper(
    apply_fn: ApplyFn,
    perturbation: PixelChange,
    mesh: jax.sharding.Mesh | None = None,
) -> Sweeper:
    """Compiles the per-batch sweep step.

    Args:
      apply_fn: ``apply_fn(variables, images [N, H, W, C] in [0, 1]) -> logits`` (e.g.
        ``model.apply``; for a plain logits function pass ``lambda _, x: f(x)``).
      perturbation: from :func:`pixjax.perturb.pixel_change`.
      mesh: device mesh (default: all visible devices).
    """
    mesh = sharding.data_mesh() if mesh is None else mesh
    change = perturbation

    def clean(variables, images_u8):
        x = images_u8.astype(jnp.float32) / 255.0
        return jnp.argmax(apply_fn(variables, x), axis=-1)

    def step(variables, images_u8, index, params, config_ids, seeds, key):
        x = images_u8.astype(jnp.float32) / 255.0

        def one_config(p, config_id, seed):
            changed = change_batch(change, key, seed, config_id, index, x, p)
            probs = jax.nn.softmax(apply_fn(variables, changed), axis=-1)
            return jnp.argmax(probs, axis=-1), jnp.max(probs, axis=-1)

        return jax.vmap(one_config)(params, config_ids, seeds)

    return Sweeper(
        step=jax.jit(step), clean=jax.jit(clean), perturbation=change, mesh=mesh
    )


def run_sweep(
    sweeper: Sweeper,
    variables: Any,
    images: np.ndarray,
    configs: Sequence[PixelConfig],
    key: jax.Array,
    *,
    seeds: Sequence[int] = (0,),
    batch_size: int = 512,
    config_chunk: int | None = None,
    progress: bool = True,
) -> SweepOutputs:
    """Runs every ``(config, seed)`` pair over every image.

    Args:
      sweeper: from :func:`make_sweeper`.
      variables: the model variables passed to ``apply_fn``.
      images: ``[N, H, W, C]`` uint8 (validated).
      configs: the grid; each is validated against the image shape before any work.
      key: base PRNG key.
      seeds: repetitions; entry ``s * K + k`` of the outputs is seed ``seeds[s]``,
        config ``k``.
      batch_size: images per step (rounded up to a multiple of the device count).
      config_chunk: configurations per step (default: all, capped so that one step
        holds at most ~16k changed images).
      progress: show a tqdm progress bar.

    Returns:
      :class:`SweepOutputs` with ``K * len(seeds)`` rows.
    """
    images = check_images(images)
    change = sweeper.perturbation
    if tuple(images.shape[1:]) != change.image_shape:
        raise ValueError(
            f"images: expected shape [N, {', '.join(map(str, change.image_shape))}] "
            f"to match the perturbation, got {images.shape}"
        )
    if batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
    if len(seeds) == 0:
        raise ValueError("seeds: expected at least one seed, got none")
    params = stack_configs(configs, change.image_shape, change.per_channel)
    too_many = [c.num for c in configs if c.num > change.max_num]
    if too_many:
        raise ValueError(
            f"num: the perturbation was built with max_num={change.max_num}, got {too_many}"
        )
    n_cfg = len(configs)
    total = n_cfg * len(seeds)
    # Flattened grid: row s * K + k.
    tile = lambda a: jnp.concatenate([a] * len(seeds), axis=0)
    params = jax.tree_util.tree_map(tile, params)
    config_ids = jnp.asarray(list(range(n_cfg)) * len(seeds), jnp.int32)
    seed_arr = jnp.asarray([s for s in seeds for _ in range(n_cfg)], jnp.uint32)

    mesh = sweeper.mesh
    n_dev = mesh.devices.size
    n = images.shape[0]
    batch = sharding.round_up(min(batch_size, max(n, 1)), n_dev)
    if config_chunk is None:
        config_chunk = max(1, min(total, 16384 // batch))
    if config_chunk <= 0:
        raise ValueError(
            f"config_chunk: expected a positive integer, got {config_chunk}"
        )
    # Equal chunks with the least padding (77 configs at most 32 a call -> 3 x 26).
    n_chunks = -(-total // min(config_chunk, total))
    chunk = -(-total // n_chunks)
    pad_cfg = n_chunks * chunk - total
    if pad_cfg:  # repeat the last row so every call has the same shape (one compile)
        pad = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad_cfg, axis=0)])
        params = jax.tree_util.tree_map(pad, params)
        config_ids, seed_arr = pad(config_ids), pad(seed_arr)
    rep = sharding.replicate(mesh, (variables, params, config_ids, seed_arr, key))
    variables, params, config_ids, seed_arr, key = rep

    clean = np.zeros(n, np.int32)
    pred = np.zeros((n_chunks * chunk, n), np.int32)
    conf = np.zeros((n_chunks * chunk, n), np.float32)
    starts = range(0, n, batch)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n * total, unit="img", unit_scale=True, desc="sweep")
    # Pre-slice the config chunks once (device arrays, replicated).
    chunks = [
        (
            slice(c * chunk, (c + 1) * chunk),
            jax.tree_util.tree_map(
                lambda a, c=c: a[c * chunk : (c + 1) * chunk], params
            ),
            config_ids[c * chunk : (c + 1) * chunk],
            seed_arr[c * chunk : (c + 1) * chunk],
        )
        for c in range(n_chunks)
    ]
    pending: list[tuple] = []

    def collect(limit: int) -> None:
        # Pull finished results to the host, keeping up to ``limit`` steps in flight so
        # the device never waits for the host.
        while len(pending) > limit:
            sl, start, stop, outs = pending.pop(0)
            if sl is None:
                clean[start:stop] = np.asarray(outs)[: stop - start]
                continue
            pr, cf = outs
            pred[sl, start:stop] = np.asarray(pr)[:, : stop - start]
            conf[sl, start:stop] = np.asarray(cf)[:, : stop - start]
            if bar is not None:
                bar.update((stop - start) * min(chunk, total - sl.start))

    for start in starts:
        stop = min(start + batch, n)
        block = images[start:stop]
        index = np.arange(start, start + batch, dtype=np.int32)
        if stop - start < batch:  # pad the last batch; padded rows are dropped
            block = np.concatenate(
                [block, np.zeros((batch - (stop - start), *block.shape[1:]), np.uint8)]
            )
        block_d, index_d = sharding.shard_batch(mesh, block, index)
        pending.append((None, start, stop, sweeper.clean(variables, block_d)))
        for sl, p_c, ids_c, seeds_c in chunks:
            outs = sweeper.step(variables, block_d, index_d, p_c, ids_c, seeds_c, key)
            pending.append((sl, start, stop, outs))
            collect(2 * n_chunks + 2)
    collect(0)
    if bar is not None:
        bar.close()
    return SweepOutputs(clean_pred=clean, pred=pred[:total], confidence=conf[:total])


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
    """Evaluates a grid of pixel changes and returns one metrics dict per config/seed.

    The one-call front door: builds the perturbation and the compiled step, runs
    :func:`run_sweep` and reduces with :func:`~pixjax.evaluation.metrics.summarize`.
    Each dict also holds ``config`` (the settings), ``seed`` and ``pixel_index``.

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
    sweeper = make_sweeper(apply_fn, change, mesh)
    out = run_sweep(
        sweeper,
        variables,
        images,
        configs,
        key,
        seeds=seeds,
        batch_size=batch_size,
        progress=progress,
    )
    return summarize_outputs(
        out, labels, configs, seeds, shape, num_classes or model_classes
    )


def summarize_outputs(
    out: SweepOutputs,
    labels: np.ndarray,
    configs: Sequence[PixelConfig],
    seeds: Sequence[int],
    image_shape: Sequence[int],
    num_classes: int | None = None,
) -> list[dict[str, Any]]:
    """Reduces :class:`SweepOutputs` to one metrics dict per (seed, config) row."""
    labels = np.asarray(labels)
    if num_classes is None:
        num_classes = int(max(labels.max(), out.clean_pred.max(), out.pred.max())) + 1
    rows = []
    for s_i, seed in enumerate(seeds):
        for k, cfg in enumerate(configs):
            r = s_i * len(configs) + k
            m = summarize(
                labels, out.clean_pred, out.pred[r], out.confidence[r], num_classes
            )
            w = m["flip_rate"]
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
            m["seed"] = int(seed)
            rows.append(m)
    return rows
