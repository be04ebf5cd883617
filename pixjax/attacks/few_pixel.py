"""The few-pixel attack: differential evolution over ``k`` chosen pixels (Su, Vargas &
Sakurai, "One pixel attack for fooling deep neural networks", IEEE TEVC 2019).

A candidate is ``k`` tuples ``(row, column, value per channel)``: a float32 genome
``[k * (2 + C)]`` inside the bounds of :func:`genome_bounds`, decoded by ``floor``
(:func:`decode`) to integer positions inside the image (or a centred ``h x w`` region,
as Exp 3 of Zhang & Cai 2021) and 8-bit values ``0..255``. The adversarial image is a
real uint8 image: the original with those pixels set (a later tuple at the same pixel
wins), so it differs from the original in at most ``k`` pixels and survives a PNG
save / reload unchanged (:func:`recheck` verifies it).

Fitness, minimised by :func:`pixjax.search.differential.minimise`: the softmax
probability of the true class (untargeted), or one minus that of the target class
(targeted). A run stops early as soon as a candidate is adversarial (another class than
the label; the target class when targeted). Only images the model classifies correctly
are attacked (as the paper counts success).

Batching: one compiled call attacks a batch of images: the batch is split over the
devices (``shard_map``), and each device maps over its images ``images_per_call`` at a
time (``vmap`` inside ``lax.map``), so every call of the model scores
``images_per_call x pop_size`` candidates of a generation, and an image that is
fooled (or not attacked) stops at once when mapped alone. A dataset is a run of
:func:`pixjax.driver.run` whose step is one batch (resumable after a kill, identical
results). Image ``i`` draws from ``fold_in(key, i)`` with ``i`` its index in the
dataset, and every model call has the same shape, so the outcomes do not depend on the
batch size or the number of devices.

Presets (:func:`preset_settings`; ``D = k (2 + C)`` genes):

* ``paper``: population 400, 100 iterations, rand/1 with F = 0.5, no crossover
  (CR = 1); positions uniform, values drawn from N(128, 127) (the paper's
  initialisation).
* ``hyperparticle`` (Hyperparticle/one-pixel-attack-keras): scipy's defaults as that
  code calls them: ``max(1, 400 // D) * D`` candidates, 75 iterations, best/1 with F
  dithered in U(0.5, 1), CR = 1, Latin-hypercube initialisation.
* ``art`` (Adversarial Robustness Toolbox ``PixelAttack``, es=1): as ``hyperparticle``
  with 100 iterations.

Where pixjax differs from those implementations: all trials of a generation are scored
together (scipy's "deferred" updating; ART's copy scores one trial at a time), an image
counts as fooled when *any* scored candidate is adversarial (they test the best one
per generation), and every preset decodes values in ``0..255`` by ``floor`` of
``[0, 256)`` (ART's bounds ``[0, 255]`` reach 255 only exactly; torchattacks keeps
float values).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from pixjax import driver, sharding
from pixjax.data.base import check_images, check_labels, check_positive_int, to_float
from pixjax.evaluation.predict import map_batches
from pixjax.keys import purpose_keys
from pixjax.perturb import pipeline
from pixjax.search import differential
from pixjax.search.differential import DESettings
from pixjax.types import PRNGKey

PRESETS = ("paper", "hyperparticle", "art")
# the attack's initialisations: differential evolution's, and the paper's
INITS = (*differential.INITS, "paper")

ProbsFn = Callable[[jax.Array], jax.Array]


class PixelSpace(NamedTuple):
    """Where and how a candidate changes an image (static, hashable).

    Attributes:
      image_shape: ``(H, W, C)``.
      pixels: ``k``, the pixels a candidate sets.
      region: ``(h, w)`` of the centred rectangle the positions lie in (the whole
        image by default).
    """

    image_shape: tuple[int, int, int]
    pixels: int
    region: tuple[int, int]

    @property
    def offset(self) -> tuple[int, int]:
        """Top-left corner ``(row, col)`` of the region (as the pixel-change study)."""
        h, w, _ = self.image_shape
        return (h - self.region[0]) // 2, (w - self.region[1]) // 2

    @property
    def genes(self) -> int:
        """``D = k (2 + C)``."""
        return self.pixels * (2 + self.image_shape[2])


def pixel_space(
    image_shape: Sequence[int], pixels: Any, region: Any = None
) -> PixelSpace:
    """A checked :class:`PixelSpace`.

    Args:
      image_shape: ``(H, W, C)`` with ``C`` 1 or 3.
      pixels: ``k``, an integer in ``1 .. h * w``.
      region: ``None`` (the whole image), an int (a centred square) or ``(h, w)``.

    Raises:
      ValueError: naming ``image_shape``, ``region`` or ``pixels`` and the accepted
        values.
    """
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) < 1:
        raise ValueError(
            f"image_shape: expected (H, W, C) with C 1 or 3, got {tuple(image_shape)}"
        )
    h, w, _ = shape
    if region is None:
        hw = (h, w)
    elif isinstance(region, int | np.integer) and not isinstance(region, bool):
        hw = (int(region), int(region))
    elif (
        isinstance(region, Sequence)
        and len(region) == 2
        and all(
            isinstance(v, int | np.integer) and not isinstance(v, bool) for v in region
        )
    ):
        hw = (int(region[0]), int(region[1]))
    else:
        raise ValueError(
            f"region: expected None, an int or (height, width), got {region!r}"
        )
    if not (1 <= hw[0] <= h and 1 <= hw[1] <= w):
        raise ValueError(
            f"region: expected a centred region between 1x1 and the image size {h}x{w}, "
            f"got {hw[0]}x{hw[1]}"
        )
    units = hw[0] * hw[1]
    if isinstance(pixels, bool) or not isinstance(pixels, int | np.integer):
        raise ValueError(f"pixels: expected an integer in 1..{units}, got {pixels!r}")
    if not 1 <= pixels <= units:
        raise ValueError(
            f"pixels: expected 1..{units} (the pixels of the {hw[0]}x{hw[1]} region), "
            f"got {pixels}"
        )
    return PixelSpace(shape, int(pixels), hw)


def genome_bounds(space: PixelSpace) -> tuple[np.ndarray, np.ndarray]:
    """float32 ``(lo [D], hi [D])``: per pixel ``[r0, r0 + h)``, ``[c0, c0 + w)`` and
    ``[0, 256)`` per channel (``floor`` gives the integer position and level)."""
    r0, c0 = space.offset
    c = space.image_shape[2]
    lo = np.array([r0, c0] + [0] * c, np.float32)
    hi = np.array([r0 + space.region[0], c0 + space.region[1]] + [256] * c, np.float32)
    return np.tile(lo, space.pixels), np.tile(hi, space.pixels)


class Pixels(NamedTuple):
    """Decoded candidate(s): int32 ``rows [..., k]``, ``cols [..., k]`` and uint8
    ``values [..., k, C]``."""

    rows: Any
    cols: Any
    values: Any


def decode(genome: jax.Array, space: PixelSpace) -> Pixels:
    """One genome ``[D]`` -> its :class:`Pixels` (``floor``, clipped to the bounds)."""
    h, w, c = space.image_shape
    g = jnp.floor(genome.reshape(space.pixels, 2 + c))
    r0, c0 = space.offset
    rows = jnp.clip(g[:, 0], r0, r0 + space.region[0] - 1).astype(jnp.int32)
    cols = jnp.clip(g[:, 1], c0, c0 + space.region[1] - 1).astype(jnp.int32)
    values = jnp.clip(g[:, 2:], 0, 255).astype(jnp.uint8)
    return Pixels(rows, cols, values)


def apply_pixels(image: jax.Array, pixels: Pixels) -> jax.Array:
    """uint8 ``[H, W, C]`` with the ``k`` pixels set, in order (a later one at the same
    position wins)."""

    def body(j, im):
        return im.at[pixels.rows[j], pixels.cols[j]].set(pixels.values[j])

    return jax.lax.fori_loop(0, pixels.rows.shape[0], body, image)


def apply_pixels_np(images: np.ndarray, pixels: Pixels) -> np.ndarray:
    """Host version of :func:`apply_pixels` over a batch: ``images [N, H, W, C]``
    uint8, ``pixels`` with leading axis ``[N]`` (numpy)."""
    out = np.array(images, np.uint8, copy=True)
    rows, cols, values = (np.asarray(a) for a in pixels)
    for j in range(rows.shape[1]):
        out[np.arange(len(out)), rows[:, j], cols[:, j]] = values[:, j]
    return out


# --- settings ------------------------------------------------------------------------


def preset_settings(name: str, space: PixelSpace) -> DESettings:
    """The differential-evolution settings of a preset (module docstring) for a
    genome of ``space.genes`` genes.

    Raises:
      ValueError: ``name`` not one of :data:`PRESETS`.
    """
    d = space.genes
    per_dim = max(1, 400 // d) * d  # scipy's popsize is a multiplier of D
    if name == "paper":
        return DESettings(400, 100, 0.5, None, 1.0, "rand1", "paper")
    if name == "hyperparticle":
        return DESettings(per_dim, 75, 0.5, 1.0, 1.0, "best1", "latinhypercube")
    if name == "art":
        return DESettings(per_dim, 100, 0.5, 1.0, 1.0, "best1", "latinhypercube")
    raise ValueError(f"preset: expected one of {list(PRESETS)}, got {name!r}")


def check_settings(settings: DESettings) -> DESettings:
    """:func:`pixjax.search.differential.check_settings` with the attack's
    initialisations (:data:`INITS`: also ``"paper"``)."""
    if isinstance(settings, DESettings) and settings.init == "paper":
        return differential.check_settings(settings._replace(init="uniform"))._replace(
            init="paper"
        )
    if isinstance(settings, DESettings) and settings.init not in INITS:
        raise ValueError(f"init: expected one of {list(INITS)}, got {settings.init!r}")
    return differential.check_settings(settings)


def _initial(key: PRNGKey, space: PixelSpace, settings: DESettings) -> jax.Array:
    """The initial population ``[P, D]``; ``"paper"``: positions uniform in the region,
    values ``N(128, 127)`` clipped into ``[0, 256)`` (Su et al., Sec. IV)."""
    lo, hi = (jnp.asarray(b) for b in genome_bounds(space))
    if settings.init != "paper":
        return differential.init_population(
            key, settings.pop_size, lo, hi, settings.init
        )
    k_pos, k_val = jax.random.split(key)
    pop = differential.init_population(k_pos, settings.pop_size, lo, hi, "uniform")
    values = 128.0 + 127.0 * jax.random.normal(k_val, pop.shape)
    is_value = (jnp.arange(space.genes) % (2 + space.image_shape[2])) >= 2
    values = jnp.clip(values, 0.0, jnp.nextafter(jnp.float32(256), jnp.float32(0)))
    return jnp.where(is_value[None], values, pop)


# --- one image ---------------------------------------------------------------------


class Outcome(NamedTuple):
    """One image's attack (device arrays; batched: leading ``[N]``).

    Attributes:
      attacked: bool: the model classified the image correctly (and it was attacked).
      success: bool: a candidate fooled the model.
      queries: int32: model evaluations spent (``P`` per generation, the initial
        population included; 0 when not attacked).
      generations: int32: generations run after the initial population.
      clean_pred, clean_confidence: the prediction on the unchanged image.
      adv_pred, adv_confidence: the prediction (and its probability) on the returned
        candidate (the successful one, else the fittest).
      label_prob: the probability of the true class on the returned candidate.
      pixels: the returned candidate, decoded (:class:`Pixels`, ``k`` rows).
    """

    attacked: Any
    success: Any
    queries: Any
    generations: Any
    clean_pred: Any
    clean_confidence: Any
    adv_pred: Any
    adv_confidence: Any
    label_prob: Any
    pixels: Pixels


def attack_image(
    key: PRNGKey,
    probs_fn: ProbsFn,
    image: jax.Array,
    label: jax.Array,
    target: jax.Array,
    space: PixelSpace,
    settings: DESettings,
    *,
    active: jax.Array | bool = True,
    branch: bool = True,
) -> Outcome:
    """The attack on one image (pure, jit-able; ``vmap`` it over images).

    Args:
      key: this image's key.
      probs_fn: ``images [P, H, W, C] float32 in [0, 1] -> probs [P, classes]``
        (:func:`pixjax.search.target_probs`).
      image: uint8 ``[H, W, C]``.
      label: int32 true class.
      target: int32 target class, or ``-1`` for an untargeted attack.
      space, settings: checked (:func:`pixel_space`, :func:`check_settings`).
      active: ``False`` skips the image (reported as not attacked).
      branch: skip an image that is not attacked with ``lax.cond`` (no model call
        at all). Pass ``False`` where the function is ``vmap``-ed: a batched
        ``cond`` runs both branches, and XLA runs the search inside it several times
        slower; the search then masks such images instead (same outcome).
    """
    clean = probs_fn(to_float(image[None]))[0]
    clean_pred = jnp.argmax(clean).astype(jnp.int32)
    attacked = jnp.asarray(active) & (clean_pred == label)
    targeted = target >= 0

    def evaluate(pop):
        adv = jax.vmap(lambda g: apply_pixels(image, decode(g, space)))(pop)
        probs = probs_fn(to_float(adv))
        pred = jnp.argmax(probs, -1).astype(jnp.int32)
        p_label = probs[:, label]
        p_target = probs[:, jnp.maximum(target, 0)]
        fitness = jnp.where(targeted, 1.0 - p_target, p_label)
        success = jnp.where(targeted, pred == target, pred != label)
        conf = jnp.take_along_axis(probs, pred[:, None], -1)[:, 0]
        return fitness, success, (pred, conf, p_label)

    lo, hi = (jnp.asarray(b) for b in genome_bounds(space))
    keys = purpose_keys(key, "init", "search")

    def search(act):
        res = differential.minimise(
            keys["search"],
            evaluate,
            lo,
            hi,
            settings,
            active=act,
            initial=_initial(keys["init"], space, settings),
        )
        pred, conf, p_label = res.aux
        found = (res.success, res.evaluations, res.generations, pred, conf, p_label)
        return found, decode(res.x, space)

    def skip(_):
        # not attacked: no model call; the "candidate" rewrites the region's first
        # pixel with its own value (the image unchanged)
        r0, c0 = space.offset
        k, c = space.pixels, space.image_shape[2]
        pixels = Pixels(
            jnp.full(k, r0, jnp.int32),
            jnp.full(k, c0, jnp.int32),
            jnp.broadcast_to(image[r0, c0], (k, c)).astype(jnp.uint8),
        )
        none = (jnp.bool_(False), jnp.int32(0), jnp.int32(0))
        return (*none, clean_pred, clean[clean_pred], clean[label]), pixels

    if branch:
        found, pixels = jax.lax.cond(attacked, search, skip, True)
    else:
        found, pixels = jax.tree_util.tree_map(
            lambda a, b: jnp.where(attacked, a, b), search(attacked), skip(None)
        )
    success, queries, generations, pred, conf, p_label = found
    return Outcome(
        attacked=attacked,
        success=success,
        queries=queries,
        generations=generations,
        clean_pred=clean_pred,
        clean_confidence=clean[clean_pred],
        adv_pred=pred,
        adv_confidence=conf,
        label_prob=p_label,
        pixels=pixels,
    )


# --- a dataset -----------------------------------------------------------------------


class AttackOutputs(NamedTuple):
    """Per-image outcomes of :func:`few_pixel_attack` (host numpy, leading ``[N]``;
    the fields of :class:`Outcome`: ``attacked``, ``success`` bool; ``queries``,
    ``generations``, ``clean_pred``, ``adv_pred`` int32; ``clean_confidence``,
    ``adv_confidence``, ``label_prob`` float32; ``pixels``: :class:`Pixels` with
    ``rows, cols [N, k]`` int32 and ``values [N, k, C]`` uint8)."""

    attacked: np.ndarray
    success: np.ndarray
    queries: np.ndarray
    generations: np.ndarray
    clean_pred: np.ndarray
    clean_confidence: np.ndarray
    adv_pred: np.ndarray
    adv_confidence: np.ndarray
    label_prob: np.ndarray
    pixels: Pixels


def num_classes_of(probs_fn: ProbsFn, image_shape: Sequence[int]) -> int:
    """The number of classes ``probs_fn`` returns for images of ``image_shape``."""
    out = jax.eval_shape(probs_fn, jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
    return int(out.shape[-1])


def check_targets(targets: Any, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """int32 ``[N]``: the target class of every image, or all ``-1`` (untargeted) for
    ``targets=None``.

    Raises:
      ValueError: ``targets`` not integers of shape ``[N]``, a target outside
        ``0 .. num_classes - 1``, or equal to the image's true label.
    """
    n = len(labels)
    if targets is None:
        return np.full(n, -1, np.int32)
    t = np.asarray(targets)
    if t.shape != (n,) or not np.issubdtype(t.dtype, np.integer):
        raise ValueError(
            f"targets: expected None or {n} integer classes (one per image), got "
            f"{t.dtype} of shape {t.shape}"
        )
    bad = np.flatnonzero((t < 0) | (t >= num_classes))
    if len(bad):
        raise ValueError(
            f"targets: expected classes in 0..{num_classes - 1}, got {int(t[bad[0]])} "
            f"for image {int(bad[0])} ({len(bad)} out of range)"
        )
    same = np.flatnonzero(t == np.asarray(labels))
    if len(same):
        raise ValueError(
            f"targets: a target must differ from the image's true label; image "
            f"{int(same[0])} has label and target {int(t[same[0]])} ({len(same)} such "
            f"images)"
        )
    return t.astype(np.int32)


def default_images_per_call() -> int:
    """1 on a CPU (one population's forward pass already keeps it busy, and a
    finished image stops at once), 32 on an accelerator (which a population of a few
    hundred small images would leave idle). On the 2-core CPU, LeNet-5 with 400
    candidates ran 8 images per call at 1.17x the evaluations/s of 1 when few images
    were fooled (2026-11-30): worth trying where that is the case."""
    return 1 if jax.default_backend() == "cpu" else 32


@functools.lru_cache(maxsize=16)
def _batch_fn(
    probs_fn: ProbsFn, space: PixelSpace, settings: DESettings, per_call: int, mesh: Any
):
    """``(key, index, images, labels, targets, valid) -> Outcome`` of a batch: the
    per-image attack mapped over the batch ``per_call`` images at a time (``vmap``
    inside ``lax.map``: every call of the model scores ``per_call x pop_size``
    candidates, whatever the batch size or the number of devices), under
    ``shard_map`` over the mesh's devices."""

    def batch(key, index, images, labels, targets, valid):
        def one(args):
            i, image, label, target, ok = args
            return attack_image(
                jax.random.fold_in(key, i),
                probs_fn,
                image,
                label,
                target,
                space,
                settings,
                active=ok,
                branch=per_call == 1,  # a true branch only where not vmapped
            )

        return jax.lax.map(
            one,
            (index, images, labels, targets, valid),
            batch_size=per_call if per_call > 1 else None,
        )

    if mesh is None or mesh.size == 1:
        return batch
    split = PartitionSpec(sharding.BATCH_AXIS)
    return jax.shard_map(
        batch,
        mesh=mesh,
        in_specs=(PartitionSpec(), split, split, split, split, split),
        out_specs=split,
        check_vma=False,  # per-image code with loops inside
    )


@functools.lru_cache(maxsize=16)
def _step_fn(
    probs_fn: ProbsFn, space: PixelSpace, settings: DESettings, per_call: int, mesh: Any
):
    """The driver step: attack batch ``state`` of ``data`` (one object per
    configuration, so the driver compiles it once)."""
    batch = _batch_fn(probs_fn, space, settings, per_call, mesh)
    fields = ("index", "images", "labels", "targets", "valid")

    def step(state, data):
        parts = [data[f][state] for f in fields]
        return state + 1, batch(data["key"], *parts)

    return step


def few_pixel_attack(
    key: PRNGKey,
    probs_fn: ProbsFn,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    pixels: int = 1,
    settings: DESettings | str = "paper",
    targets: np.ndarray | None = None,
    region: Any = None,
    batch_size: int = 16,
    images_per_call: int | None = None,
    mesh: Any = None,
    checkpoint_dir: str | os.PathLike | None = None,
    chunk_size: int = 1,
    progress: bool = False,
    loop: str = "scan",
    desc: str = "few-pixel attack",
    on_chunk: Callable[[int, Any, Any], None] | None = None,
) -> AttackOutputs:
    """The ``k``-pixel attack on every image of a dataset (module docstring).

    Args:
      key: the run's PRNG key; image ``i`` uses ``fold_in(key, i)``.
      probs_fn: the model as ``images [P, H, W, C] float32 in [0, 1] -> softmax
        [P, classes]`` (:func:`pixjax.search.target_probs`); reuse the same object
        to reuse the compilation.
      images: uint8 ``[N, H, W, C]``.
      labels: int ``[N]`` true classes (only correctly classified images are
        attacked).
      pixels: ``k``, pixels changed per candidate (1 .. the region's pixels).
      settings: a preset name (:data:`PRESETS`) or :class:`DESettings` (``init`` one
        of :data:`INITS`).
      targets: ``None`` (untargeted) or int ``[N]`` target classes, each different
        from the label.
      region: ``None``, an int or ``(h, w)``: the centred region of the positions.
      batch_size: images per step of the driver (rounded up to a multiple of the
        device count x ``images_per_call``; padded with images that are not
        attacked).
      images_per_call: images whose populations one call of the model scores
        (``images_per_call x pop_size`` candidates per call; each device maps
        over its images that many at a time). Default
        :func:`default_images_per_call`: 1 on a CPU, 32 on an accelerator. The
        outcomes are identical for any ``batch_size`` and number of devices with
        the same ``images_per_call`` (every model call has the same shape); another
        ``images_per_call`` changes the float rounding of the model, which can
        change near-ties of the selection.
      mesh: a 1-D ``"batch"`` mesh (:func:`pixjax.sharding.data_mesh`; default all
        devices).
      checkpoint_dir: orbax checkpoints of the run (one per chunk of batches); a
        killed run resumes from them and ends identical (:func:`pixjax.driver.run`).
      chunk_size: batches per checkpoint.
      progress, loop, desc, on_chunk: see :func:`pixjax.driver.run` (``on_chunk``
        sees the :class:`Outcome` s of each computed chunk, ``[batches, B]``; not
        called for chunks restored from a checkpoint).

    Returns:
      :class:`AttackOutputs`.

    Raises:
      ValueError: bad ``images``, ``labels``, ``pixels``, ``region``, ``settings``
        (:func:`check_settings`: population < 4, F outside (0, 2], CR outside
        [0, 1], iterations <= 0, ...), ``targets`` (:func:`check_targets`),
        ``batch_size`` or ``chunk_size``, before any work; a ``checkpoint_dir`` of
        another run (another key, images, labels, targets, batch size, settings,
        ``k`` or region, or another model: its probabilities on the first batch).
    """
    if (
        not (
            isinstance(key, jax.Array)
            and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        )
        or key.shape != ()
    ):
        raise ValueError(
            f"key: expected one typed PRNG key (jax.random.key(seed)), got {key!r}"
        )
    images = check_images(images)
    space = pixel_space(images.shape[1:], pixels, region)
    if isinstance(settings, str):
        settings = preset_settings(settings, space)
    settings = check_settings(settings)
    num_classes = num_classes_of(probs_fn, space.image_shape)
    check_labels(labels, num_classes, num_images=len(images))
    labels = np.asarray(labels, np.int32)
    targets = check_targets(targets, labels, num_classes)
    check_positive_int("batch_size", batch_size)
    check_positive_int("chunk_size", chunk_size)
    per_call = default_images_per_call() if images_per_call is None else images_per_call
    check_positive_int("images_per_call", per_call)
    n = len(images)
    if n == 0:
        raise ValueError("images: expected at least one image, got none")
    mesh = sharding.data_mesh() if mesh is None else mesh
    b = sharding.round_up(min(batch_size, n), mesh.size * per_call)
    nb = -(-n // b)
    pad = nb * b - n

    def blocks(a, fill=0):
        a = np.concatenate([a, np.full((pad, *a.shape[1:]), fill, a.dtype)])
        return a.reshape(nb, b, *a.shape[1:])

    # The run's identity, which a checkpoint in checkpoint_dir must match (the
    # driver's fingerprint of ``data``): besides the key and the images, the search
    # settings and the model's probabilities on the first batch (another model).
    identity = np.array(
        [
            settings.pop_size,
            settings.iterations,
            settings.F,
            -1.0 if settings.F_max is None else settings.F_max,
            settings.CR,
            differential.STRATEGIES.index(settings.strategy),
            INITS.index(settings.init),
            space.pixels,
            *space.region,
            per_call,
        ],
        np.float64,
    )
    data = {
        "settings": identity,
        "model": np.asarray(_jit_probs(probs_fn)(jnp.asarray(images[:b]))),
        "key": key,
        "index": blocks(np.arange(n, dtype=np.int32)),
        "images": blocks(images),
        "labels": blocks(labels),
        "targets": blocks(targets, -1),
        "valid": blocks(np.ones(n, bool), False),
    }
    _, out = driver.run(
        _step_fn(probs_fn, space, settings, per_call, mesh if mesh.size > 1 else None),
        jnp.int32(0),
        data,
        num_steps=nb,
        chunk_size=min(chunk_size, nb),
        checkpoint_dir=checkpoint_dir,
        desc=desc,
        unit="batch",
        progress=progress,
        loop=loop,
        on_chunk=on_chunk,
    )
    flat = jax.tree_util.tree_map(
        lambda a: np.asarray(a).reshape(nb * b, *a.shape[2:])[:n], out
    )
    return AttackOutputs(*flat)


# --- after the search (host) ---------------------------------------------------------


def adversarial_images(images: np.ndarray, outputs: AttackOutputs) -> np.ndarray:
    """uint8 ``[N, H, W, C]``: every image with its returned candidate's pixels set
    (the adversarial image where ``outputs.success``)."""
    return apply_pixels_np(images, outputs.pixels)


def changed_pixels(original: np.ndarray, changed: np.ndarray) -> np.ndarray:
    """int ``[N]``: pixels (positions, any channel) where two uint8 image batches
    differ."""
    return np.any(np.asarray(original) != np.asarray(changed), axis=-1).sum(axis=(1, 2))


def png_round_trip(images: np.ndarray) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` after saving each image as a PNG (Pillow, in memory) and
    decoding it again (lossless: the same bytes): the ``png`` step of
    :mod:`pixjax.perturb.pipeline`."""
    images = np.asarray(images, np.uint8)
    return pipeline.apply("png", images) if len(images) else images


@functools.lru_cache(maxsize=16)
def _jit_probs(probs_fn: ProbsFn) -> Callable:
    """``uint8 images [B, H, W, C] -> probs [B, classes]``, jitted once per target."""
    return jax.jit(lambda images: probs_fn(to_float(images)))


def recheck(
    probs_fn: ProbsFn,
    images: np.ndarray,
    outputs: AttackOutputs,
    labels: np.ndarray,
    targets: np.ndarray | None = None,
    *,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Success re-checked on the saved images: the adversarial images are written as
    PNG, read back and classified again.

    Returns:
      ``(confirmed [N] bool, reloaded [N, H, W, C] uint8)``: ``confirmed`` is
      ``outputs.success`` and still adversarial after the round trip.
    """
    reloaded = png_round_trip(adversarial_images(images, outputs))
    probs = map_batches(
        _jit_probs(probs_fn), [reloaded], batch_size=batch_size
    )  # the shared padded predictor loop: one compile per batch shape
    preds = np.argmax(probs, -1)
    labels = np.asarray(labels)
    if targets is None:
        still = preds != labels
    else:
        still = preds == np.asarray(targets)
    return np.asarray(outputs.success) & still, reloaded


def minimal_pixels(success_by_k: Mapping[int, np.ndarray]) -> np.ndarray:
    """The minimal-pixels robustness score: int ``[N]``, the smallest ``k`` whose
    attack fooled each image, ``-1`` when none of the ``k`` tried did (the score is
    censored at the largest ``k``: more pixels were never searched)."""
    ks = sorted(success_by_k)
    if not ks:
        raise ValueError("success_by_k: expected at least one k, got none")
    score = np.full(len(np.asarray(success_by_k[ks[0]])), -1, np.int64)
    for k in reversed(ks):
        score = np.where(np.asarray(success_by_k[k], bool), k, score)
    return score


__all__ = [
    "INITS",
    "PRESETS",
    "AttackOutputs",
    "Outcome",
    "PixelSpace",
    "Pixels",
    "adversarial_images",
    "apply_pixels",
    "apply_pixels_np",
    "attack_image",
    "changed_pixels",
    "check_settings",
    "check_targets",
    "decode",
    "default_images_per_call",
    "few_pixel_attack",
    "genome_bounds",
    "minimal_pixels",
    "num_classes_of",
    "pixel_space",
    "png_round_trip",
    "preset_settings",
    "recheck",
]
