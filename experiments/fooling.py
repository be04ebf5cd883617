"""``pixjax run fooling``: fooling images (Nguyen, Yosinski & Clune, CVPR 2015).

validate -> compute -> write -> plots -> report (see
:func:`pixjax.experiments.common.run_experiment`). Every search is
:func:`pixjax.search.evolve.search` (one jitted generation, the shared resumable
driver): the archive of every run is an orbax checkpoint under ``search/`` in the run
directory, so a killed run resumes and ends with the same archives. Writes
``results.json`` (curves, generations and seconds to the threshold, the elites as
8-bit images), ``results.csv`` (one row per study, run and class), ``report.md``,
``elites_<study>.png`` (the best image per class with its confidence), ``curves.png``
(confidence vs generation, median and range over runs) and, with the CPPN,
``elites_cppn_large.png`` (the elites re-rendered at ``render_scale`` x the size).
``pixjax report WORKDIR`` redraws all of it from ``results.json``.

Keys: ``key(config.key)`` is split by purpose (:func:`pixjax.keys.purpose_keys`) into
one key per study (``direct``, ``cppn``, ``ascent``, ``transfer``, ``ensemble``,
``retrain``); run ``r`` of a study folds ``r`` into its key.

Seconds to the threshold are wall-clock from the start of the run, interpolated inside
the chunk in which the threshold was passed (the first run of a study includes the
compilation of its generation; later runs reuse it); a run resumed from a checkpoint
was not timed (``None``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from pixjax.experiments import common, reporting
from pixjax.experiments.configs.fooling import STUDIES, Config
from pixjax.experiments.fitting import check_recipe, train_classifier

from pixjax import data, distributed, models, sharding
from pixjax.evaluation import accuracy
from pixjax.keys import purpose_keys
from pixjax.search import (
    DirectSettings,
    Encoding,
    direct_encoding,
    render_population,
    target_probs,
)
from pixjax.search.evolve import check_population, first_reaching, search

DESCRIPTION = (
    "fooling images: MAP-Elites (direct, CPPN), gradient ascent, transfer, ensemble, "
    "retraining with a fooling class"
)
SEARCH_DIR = "search"
RETRAIN_DIR = "retrain"
SPREAD = "median and range (min-max) over runs"


@dataclasses.dataclass(frozen=True)
class Net:
    """A network named ``ARCH:CHECKPOINT``: its logits function and metadata."""

    spec: str
    module: Any
    variables: Any
    logits_fn: Callable[[jax.Array], jax.Array]
    probs: Callable[[jax.Array], jax.Array]  # its softmax (one object: compiled once)
    num_classes: int
    meta: dict[str, Any]

    def accuracy(self, dataset: data.Dataset, batch_size: int) -> float:
        return accuracy(
            self.module.apply,
            self.variables,
            dataset.images,
            dataset.labels,
            batch_size,
        )


@dataclasses.dataclass(frozen=True)
class Setup:
    target: Net
    image_shape: tuple[int, int, int]
    class_names: list[str]
    test: data.Dataset | None
    train: data.Dataset | None
    transfer: list[Net]
    ensemble: list[Net]
    encodings: dict[str, Encoding]
    ascent: Any  # (settings pytree, labels) or None
    population_sharding: Any


# --- validate ----------------------------------------------------------------------------


def _load_net(spec: str, image_shape, field: str) -> Net:
    arch, sep, checkpoint = spec.partition(":")
    if not sep or not arch or not checkpoint:
        raise common.ConfigError(
            f"{field}: expected ARCH:CHECKPOINT entries (e.g. lenet5:lenet5-mnist-seed1), "
            f"got {spec!r}"
        )
    try:
        module, variables, meta = common.load_checkpoint(arch, checkpoint, image_shape)
    except (ValueError, FileNotFoundError) as e:
        if field == "checkpoint":
            raise
        raise common.ConfigError(f"{field}: {spec!r}: {e}") from None
    fn = models.logits_fn(module, variables)
    n = models.num_logits(module.apply, variables, image_shape)
    return Net(spec, module, variables, fn, target_probs(fn), n, meta)


# the library's argument names -> this config's fields, for error messages
_FIELDS = {
    "max_nodes": "cppn_max_nodes",
    "max_connections": "cppn_max_connections",
    "decay": "ascent_decays",
    "blur_sigma": "ascent_blur_sigmas",
    "blur_every": "ascent_blur_every",
    "percentile": "ascent_percentiles",
    "early_progress": "ascent_early_progress",
    "late_progress": "ascent_late_progress",
    "steps": "ascent_steps",
    "limit": "retrain_limit",
}


def _config_error(e: Exception) -> common.ConfigError:
    """``e`` with the library's argument name replaced by the config field's."""
    text = str(e)
    name, sep, rest = text.partition(":")
    if sep and name in _FIELDS:
        text = f"{_FIELDS[name]}:{rest}"
    return common.ConfigError(text)


def _check_choice(name: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise common.ConfigError(
            f"{name}: expected one of {list(allowed)}, got {value!r}"
        )


def _encodings(config: Config, image_shape) -> dict[str, Encoding]:
    out: dict[str, Encoding] = {}
    try:
        out["direct"] = direct_encoding(
            image_shape,
            DirectSettings(
                mutation_rate=config.mutation_rate,
                eta_mutation=config.eta_mutation,
                eta_crossover=config.eta_crossover,
                cross_probability=config.cross_probability,
                schedule=config.schedule,
            ),
        )
        if "cppn" in config.studies:
            from pixjax.search import cppn

            out["cppn"] = cppn.cppn_encoding(
                image_shape,
                cppn.CPPNSettings(
                    max_nodes=config.cppn_max_nodes,
                    max_connections=config.cppn_max_connections,
                    coordinates=config.coordinates,
                ),
            )
    except ValueError as e:
        raise _config_error(e) from None
    return out


def _ascent_settings(config: Config):
    """The grid of gradient-ascent settings (an ``AscentSettings`` of ``[S]`` arrays)
    and one label per setting."""
    from pixjax.search import ascent

    grid = [
        (d, b, p)
        for d in config.ascent_decays
        for b in config.ascent_blur_sigmas
        for p in config.ascent_percentiles
    ]
    base = ascent.AscentSettings(
        early_progress=config.ascent_early_progress,
        late_progress=config.ascent_late_progress,
        blur_every=config.ascent_blur_every,
    )
    # each list checked as the user wrote it (the grid below repeats its values)
    for name, values in (
        ("decay", config.ascent_decays),
        ("blur_sigma", config.ascent_blur_sigmas),
        ("percentile", config.ascent_percentiles),
    ):
        ascent.check_settings(base._replace(**{name: np.asarray(values, float)}))
    settings = ascent.settings_grid(
        base,
        decay=config.ascent_decays,
        blur_sigma=config.ascent_blur_sigmas,
        percentile=config.ascent_percentiles,
    )
    every = config.ascent_blur_every
    blur = lambda b: (  # noqa: E731
        f"blur {b:g} every {every}" if b > 0 and every > 0 else "no blur"
    )
    labels = [f"decay {d:g}, {blur(b)}, percentile {p:g}" for d, b, p in grid]
    ascent.check_settings(settings)
    return settings, labels


def _check_memory(config: Config, image_shape) -> None:
    """Refuses a population whose arrays cannot fit in this machine's memory: a
    generation holds about 8 copies of the population's images (parents, children,
    rendered images, temporaries)."""
    need = 8 * 4 * config.pop_size * int(np.prod(image_shape))
    try:
        have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if need > have:
        raise common.ConfigError(
            f"pop_size: {config.pop_size} images of {tuple(image_shape)} need about "
            f"{need / 2**30:.0f} GiB per generation, more than this machine's "
            f"{have / 2**30:.0f} GiB; use a smaller population"
        )


def validate(config: Config) -> Setup:
    """All checks and loading (the nets, the data), before any work or file write."""
    common.require_finite(config)
    common.require_nonempty(config, "studies")
    for s in config.studies:
        _check_choice("studies", s, STUDIES)
    if len(set(config.studies)) != len(config.studies):
        raise common.ConfigError(f"studies: repeated entries in {list(config.studies)}")
    common.require_positive(
        config,
        "runs",
        "generations",
        "cppn_generations",
        "ascent_steps",
        "chunk_size",
        "render_scale",
        "retrain_rounds",
        "retrain_epochs",
        "retrain_images",
        "batch_size",
        "learning_rate",
    )
    for name in ("runs", "generations", "cppn_generations", "ascent_steps"):
        v = getattr(config, name)
        if not isinstance(v, int) or isinstance(v, bool):
            raise common.ConfigError(f"{name}: expected a positive integer, got {v!r}")
    if isinstance(config.key, bool) or not 0 <= config.key < 2**63:
        raise common.ConfigError(
            f"key: expected an integer in [0, 2**63), got {config.key!r}"
        )
    if not 0.0 < config.threshold < 1.0:
        raise common.ConfigError(
            f"threshold: expected a probability in (0, 1), got {config.threshold}"
        )
    try:
        check_population(config.pop_size, config.rule)
    except ValueError as e:
        raise common.ConfigError(str(e)) from None
    if config.examples < 1:
        raise common.ConfigError(f"examples: expected 1 or more, got {config.examples}")
    test = train = None
    if config.dataset:
        test = data.load(config.dataset, "test")
        image_shape = test.image_shape
    else:
        if not config.checkpoint:
            raise common.ConfigError("checkpoint: required")
        meta = _metadata_of(config.checkpoint)
        image_shape = tuple(meta["input_shape"])
    target = _load_net(f"{config.model}:{config.checkpoint}", image_shape, "checkpoint")
    names = common.class_names(
        test.class_names if test is not None else (), target.meta, target.num_classes
    )
    if test is not None and test.labels is not None:
        try:
            data.check_labels(test.labels, target.num_classes)
        except ValueError as e:
            raise common.ConfigError(str(e)) from None
    nets = {"transfer": [], "ensemble": []}
    for study, field in (
        ("transfer", "transfer_models"),
        ("ensemble", "ensemble_models"),
    ):
        if study not in config.studies:
            continue
        specs = getattr(config, field)
        if not specs:
            raise common.ConfigError(f"{field}: expected at least one ARCH:CHECKPOINT")
        for spec in specs:
            net = _load_net(spec, image_shape, field)
            if net.num_classes != target.num_classes:
                raise common.ConfigError(
                    f"{field}: {spec!r} has {net.num_classes} classes, the target "
                    f"{target.num_classes}"
                )
            nets[study].append(net)
    if "retrain" in config.studies:
        if config.model == "rbm_lr":
            raise common.ConfigError(
                "studies: retrain trains the target's architecture with the shared "
                "gradient recipe; rbm_lr is fitted by its own (pixjax run rbm-nudge): "
                "use a network such as lenet5"
            )
        if test is None:
            raise common.ConfigError("dataset: retrain needs a labelled dataset")
        try:
            train = data.load(config.dataset, "train", limit=config.retrain_limit)
        except ValueError as e:
            raise _config_error(e) from None
        check_recipe(config, train, test)
    _check_memory(config, image_shape)
    encodings = _encodings(config, image_shape)
    ascent = None
    if "ascent" in config.studies:
        common.require_nonempty(
            config, "ascent_decays", "ascent_blur_sigmas", "ascent_percentiles"
        )
        try:
            ascent = _ascent_settings(config)
        except ValueError as e:
            raise _config_error(e) from None
    n = jax.device_count()
    pop_sharding = None
    if n > 1 and config.pop_size % n == 0:
        pop_sharding = sharding.batch_sharding(sharding.data_mesh())
    return Setup(
        target,
        tuple(image_shape),
        names,
        test,
        train,
        nets["transfer"],
        nets["ensemble"],
        encodings,
        ascent,
        pop_sharding,
    )


def _metadata_of(checkpoint: str) -> dict[str, Any]:
    from pixjax import checkpoints

    path = common.resolve_checkpoint(checkpoint)
    if path is None or not path.exists():
        raise FileNotFoundError(
            f"checkpoint: {checkpoint!r} does not exist; shipped checkpoints: "
            f"{common.shipped_checkpoints()}"
        )
    return checkpoints.read_metadata(path)


# --- compute -----------------------------------------------------------------------------


class _Clock:
    """Wall-clock seconds at the end of every chunk computed in this process."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.initial: float | None = None  # the initial population scored
        self.chunks: list[tuple[int, int, float]] = []  # (first gen, last gen, t)

    def started(self, state: Any) -> None:
        self.initial = time.perf_counter() - self.start

    def __call__(self, first: int, state: Any, metrics: dict) -> None:
        n = len(next(iter(metrics.values())))
        self.chunks.append((first + 1, first + n, time.perf_counter() - self.start))

    def seconds_at(self, generation: int) -> float | None:
        """Seconds from the start until ``generation`` was done (interpolated in its
        chunk); ``None`` for a generation restored from a checkpoint."""
        if generation == 0:
            return self.initial
        if not self.chunks or self.chunks[0][0] != 1:
            return None  # resumed: the generations before were timed elsewhere
        prev_t = self.initial or 0.0
        for lo, hi, t in self.chunks:
            if lo <= generation <= hi:
                return prev_t + (generation - lo + 1) / (hi - lo + 1) * (t - prev_t)
            prev_t = t
        return None


def _curve_rows(generations: int, chunk: int) -> list[int]:
    return sorted({0, *range(chunk, generations, chunk), generations})


@functools.lru_cache(maxsize=16)
def _jitted(fn: Callable) -> Callable:
    return jax.jit(fn)


def _own_class(probs_fn, images: np.ndarray) -> np.ndarray:
    """``[cells]``: the probability of cell k's class for image k (one jitted call)."""
    p = np.asarray(_jitted(probs_fn)(jnp.asarray(images, jnp.float32)))
    return p[np.arange(len(images)), np.arange(len(images))]


def _quantised_confidence(probs_fn, images: np.ndarray) -> np.ndarray:
    """The class probability of each cell's elite after saving it as 8 bits."""
    return _own_class(probs_fn, data.to_float(common.float_to_uint8(images)))


@functools.lru_cache(maxsize=16)
def _renderer(encoding: Encoding) -> Callable:
    return jax.jit(functools.partial(render_population, encoding))


def _render(encoding: Encoding, genomes: Any) -> np.ndarray:
    return np.asarray(_renderer(encoding)(genomes))


def _evolve(
    config: Config,
    setup: Setup,
    name: str,
    probs_fn,
    num_cells: int,
    key: jax.Array,
    generations: int,
    run_dir: pathlib.Path,
    tag: str,
    collect: Callable[[int, Any], None] | None = None,
) -> dict[str, Any]:
    """One MAP-Elites run: its curve, generations / seconds to the threshold, the
    elites (float images) and their confidences."""
    encoding = setup.encodings[name]
    clock = _Clock()

    def on_chunk(first, state, metrics):
        clock(first, state, metrics)
        if collect is not None:
            collect(first + len(next(iter(metrics.values()))), state)

    result = search(
        key,
        encoding,
        probs_fn,
        pop_size=config.pop_size,
        num_cells=num_cells,
        generations=generations,
        rule=config.rule,
        chunk_size=config.chunk_size,
        checkpoint_dir=run_dir / SEARCH_DIR / tag,
        on_chunk=on_chunk,
        on_start=clock.started,
        sharding=setup.population_sharding,
        desc=tag,
        progress=config.progress,
    )
    fitness = result.fitness
    first = first_reaching(fitness, config.threshold)
    seconds = [None if g < 0 else clock.seconds_at(int(g)) for g in first]
    images = _render(encoding, result.state.archive.genomes)
    filled = np.isfinite(fitness[-1])  # an empty cell (argmax rule) has no elite
    quantised = _quantised_confidence(probs_fn, images)
    resumed = not clock.chunks or clock.chunks[0][0] != 1
    rows = _curve_rows(generations, config.chunk_size)
    all_reached = int(first.max()) if (first >= 0).all() else -1
    return {
        "curve": fitness[rows].tolist(),
        "first_generation": first.tolist(),
        "seconds_to": seconds,
        "all_classes_generation": all_reached,
        "all_classes_seconds": None
        if all_reached < 0
        else clock.seconds_at(all_reached),
        "final": fitness[-1].tolist(),
        "confidence_8bit": [
            float(q) if ok else None for q, ok in zip(quantised, filled, strict=True)
        ],
        # wall seconds of the whole run; None when (part of) it ran in another process
        "seconds": None if resumed else clock.chunks[-1][2],
        "_images": images,
        "_state": result.state,
    }


def _median(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None


def _encoding_study(
    config: Config, setup: Setup, name: str, key: jax.Array, run_dir: pathlib.Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``runs`` independent runs of one encoding against the target."""
    probs = setup.target.probs
    c = setup.target.num_classes
    generations = config.generations if name == "direct" else config.cppn_generations
    runs = [
        _evolve(
            config,
            setup,
            name,
            probs,
            c,
            jax.random.fold_in(key, r),
            generations,
            run_dir,
            f"{name}-run{r}",
        )
        for r in range(config.runs)
    ]
    final = np.array([r["final"] for r in runs])  # [R, C]
    per_class = []
    for k in range(c):
        gens = [r["first_generation"][k] for r in runs]
        reached = [g for g in gens if g >= 0]
        per_class.append(
            {
                "class": k,
                "median": float(np.median(final[:, k])),
                "min": float(final[:, k].min()),
                "max": float(final[:, k].max()),
                "runs_reached": len(reached),
                "median_generations": _median(reached) if reached else None,
                "median_seconds": _median(
                    [r["seconds_to"][k] for r in runs if r["first_generation"][k] >= 0]
                ),
            }
        )
    best = int(np.argmax(final.min(axis=1)))  # the run whose weakest cell is best
    shown = min(c, config.examples)
    out = {
        "generations": generations,
        "curve_generations": _curve_rows(generations, config.chunk_size),
        "runs": [{k: v for k, v in r.items() if not k.startswith("_")} for r in runs],
        "per_class": per_class,
        "classes_reached": int(
            sum(p["runs_reached"] == config.runs for p in per_class)
        ),
        "best_run": best,
        "elites": common.pack_uint8(
            common.float_to_uint8(runs[best]["_images"][:shown])
        ),
        "elite_confidence": runs[best]["final"][:shown],
    }
    if name == "cppn":
        from pixjax.search import cppn

        h, w, ch = setup.image_shape
        s = config.render_scale
        genomes = jax.tree_util.tree_map(
            lambda a: a[:shown], runs[best]["_state"].archive.genomes
        )
        large = jax.vmap(
            lambda g: cppn.render(g, h * s, w * s, ch, coordinates=config.coordinates)
        )(genomes)
        out["elites_large"] = common.pack_uint8(common.float_to_uint8(large))
    return out, runs


def _ascent_study(config: Config, setup: Setup, key: jax.Array) -> dict[str, Any]:
    from pixjax.search import ascent

    settings, labels = setup.ascent
    c = setup.target.num_classes
    t0 = time.perf_counter()
    out = ascent.fooling_ascent(
        key,
        setup.target.logits_fn,
        jnp.arange(c),
        settings,
        steps=config.ascent_steps,
        image_shape=setup.image_shape,
        thresholds=(0.99, 0.999, config.threshold),
        # a host loop of the jitted step on the CPU: XLA:CPU compiles the input
        # gradient ~3x slower inside a scan (jax#12868), as pixjax.driver's loops
        loop="python" if jax.default_backend() == "cpu" else "scan",
    )
    final = np.asarray(out.probs)  # [S, C]
    seconds = time.perf_counter() - t0
    first = np.asarray(out.first_step)  # [S, C, 3]
    best = np.argmax(final, axis=0)  # per class, the best setting
    shown = min(c, config.examples)
    images = np.asarray(out.images)[best[:shown], np.arange(shown)]
    probs = setup.target.probs
    return {
        "steps": config.ascent_steps,
        "settings": labels,
        "thresholds": [0.99, 0.999, config.threshold],
        "final": final.tolist(),
        "first_step": first.tolist(),
        "classes_reached": [
            int((first[s, :, 2] >= 0).sum()) for s in range(len(labels))
        ],
        "seconds": seconds,
        "best_setting": best.tolist(),
        "elites": common.pack_uint8(common.float_to_uint8(images)),
        "elite_confidence": final[best[:shown], np.arange(shown)].tolist(),
        "confidence_8bit": _quantised_confidence(probs, images).tolist(),
    }


def _score_elites(net: Net, images: np.ndarray) -> np.ndarray:
    """``[cells]``: net's probability of cell k's class for elite k."""
    return _own_class(net.probs, images)


def _transfer_study(
    config: Config,
    setup: Setup,
    key: jax.Array,
    run_dir: pathlib.Path,
    direct_runs: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """Direct-encoding elites evolved on each net, scored by every net."""
    nets = [setup.target, *setup.transfer]
    c = setup.target.num_classes
    sources = []
    for i, net in enumerate(nets):
        if i == 0 and direct_runs is not None:
            images = [r["_images"] for r in direct_runs]
        else:
            r = _evolve(
                config,
                setup,
                "direct",
                net.probs,
                c,
                jax.random.fold_in(key, i),
                config.generations,
                run_dir,
                f"transfer-{i}",
            )
            images = [r["_images"]]
        sources.append(images)
    median, fooled = [], []
    for images in sources:
        row_m, row_f = [], []
        for net in nets:
            p = np.concatenate([_score_elites(net, im) for im in images])
            row_m.append(float(np.median(p)))
            row_f.append(float(np.mean(p >= 0.99)))
        median.append(row_m)
        fooled.append(row_f)
    return {
        "nets": [n.spec for n in nets],
        "elites_per_source": [len(s) * c for s in sources],
        "median_confidence": median,
        "share_at_99": fooled,
    }


def _ensemble_study(
    config: Config, setup: Setup, key: jax.Array, run_dir: pathlib.Path
) -> dict[str, Any]:
    nets = setup.ensemble
    c = setup.target.num_classes
    r = _evolve(
        config,
        setup,
        "direct",
        target_probs([n.logits_fn for n in nets]),
        c,
        key,
        config.generations,
        run_dir,
        "ensemble",
    )
    members = [_score_elites(n, r["_images"]).tolist() for n in nets]
    return {
        "nets": [n.spec for n in nets],
        "final": r["final"],
        "first_generation": r["first_generation"],
        "classes_reached": int(sum(g >= 0 for g in r["first_generation"])),
        "member_confidence": members,
        "seconds": r["seconds"],
    }


def _read_images(file: pathlib.Path, image_shape) -> np.ndarray:
    """The uint8 images ``[N, H, W, C]`` a retraining round saved.

    Raises:
      ValueError: a missing or corrupt file (naming it).
    """
    try:
        images = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{file}: unreadable fooling images of a retraining round ({e}); delete "
            "the workdir's retrain/ and search/retrain-* folders to redo the study"
        ) from None
    if images.dtype != np.uint8 or images.shape[1:] != tuple(image_shape):
        raise ValueError(
            f"{file}: expected uint8 images of shape [N, {', '.join(map(str, image_shape))}], "
            f"got {images.dtype} {list(images.shape)}"
        )
    return images


def _retrain_study(
    config: Config, setup: Setup, key: jax.Array, run_dir: pathlib.Path
) -> dict[str, Any]:
    """Paper sec. 7: evolve against net_r, add its fooling images as class C, train
    net_{r+1} from scratch on the training split plus every fooling image so far,
    evolve again; the digits' cells score p(digit) under the (C+1)-way softmax."""
    c = setup.target.num_classes
    train, test = setup.train, setup.test
    keys = purpose_keys(key, "search", "train")
    fooling: list[np.ndarray] = []
    rounds = []
    logits_fn = setup.target.logits_fn
    clean = setup.target.accuracy(test, config.batch_size)
    found_dir = run_dir / RETRAIN_DIR / "found"
    found_dir.mkdir(parents=True, exist_ok=True)
    for r in range(config.retrain_rounds + 1):

        def collect(done: int, state, r=r) -> None:
            # the elites at the threshold after this chunk, kept on disk before the
            # chunk's checkpoint is saved: a resumed round reads the chunks it restored
            ok = np.asarray(state.archive.fitness) >= config.threshold
            imgs = common.float_to_uint8(
                _render(setup.encodings["direct"], state.archive.genomes)
            )[ok]
            common.atomic_write(
                found_dir / f"round{r}-generation{done}.npy",
                lambda f, imgs=imgs: np.save(f, imgs),
                binary=True,
            )

        lf = logits_fn
        probs = lambda x, lf=lf: target_probs(lf)(x)[:, :c]  # noqa: E731
        run = _evolve(
            config,
            setup,
            "direct",
            probs,
            c,
            jax.random.fold_in(keys["search"], r),
            config.generations,
            run_dir,
            f"retrain-round{r}",
            collect=collect,
        )
        # process 0 wrote the files (the only writer of a job); the others read them
        distributed.barrier("fooling-found")
        seen: dict[bytes, np.ndarray] = {}
        for done in _curve_rows(config.generations, config.chunk_size)[1:]:
            file = found_dir / f"round{r}-generation{done}.npy"
            for im in _read_images(file, setup.image_shape):
                seen.setdefault(im.tobytes(), im)
        found = list(seen.values())[: config.retrain_images]
        rounds.append(
            {
                "round": r,
                "clean_accuracy": clean,
                "classes_reached": int(sum(g >= 0 for g in run["first_generation"])),
                "all_classes_generation": run["all_classes_generation"],
                "all_classes_seconds": run["all_classes_seconds"],
                "median_final": float(np.median(run["final"])),
                "fooling_images_found": len(found),
            }
        )
        if r == config.retrain_rounds:
            break
        fooling += found
        # train net_{r+1}: C + 1 classes, the fooling images labelled C
        model = models.get_model(config.model, num_classes=c + 1)
        images = (
            np.concatenate([train.images, np.stack(fooling)])
            if fooling
            else train.images
        )
        labels = np.concatenate(
            [train.labels.astype(np.int32), np.full(len(fooling), c, np.int32)]
        )
        variables, _ = train_classifier(
            model,
            images,
            labels,
            key=jax.random.fold_in(keys["train"], r + 1),
            run_dir=run_dir / RETRAIN_DIR / f"round{r + 1}",
            epochs=config.retrain_epochs,
            batch_size=config.batch_size,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            augment_shift=config.augment_shift,
            desc=f"retrain round {r + 1}",
            progress=config.progress,
        )
        logits_fn = models.logits_fn(model, variables)
        clean = accuracy(
            model.apply, variables, test.images, test.labels, config.batch_size
        )
        rounds[-1]["fooling_images_added"] = len(found)
        rounds[-1]["training_images"] = int(len(images))
    return {"rounds": rounds, "fooling_class": c}


def compute(
    config: Config, setup: Setup, *, run_dir: pathlib.Path, command: str
) -> dict[str, Any]:
    """Every study of ``config.studies``; touches only the search checkpoints and the
    retraining runs under ``run_dir``."""
    t0 = time.perf_counter()
    run_dir = pathlib.Path(run_dir)
    keys = purpose_keys(jax.random.key(config.key), *STUDIES)
    results: dict[str, Any] = {}
    clean = None
    if setup.test is not None and setup.test.labels is not None:
        clean = setup.target.accuracy(setup.test, config.batch_size)
    direct_runs = None
    for name in ("direct", "cppn"):
        if name in config.studies:
            results[name], runs = _encoding_study(
                config, setup, name, keys[name], run_dir
            )
            if name == "direct":
                direct_runs = runs
    if "ascent" in config.studies:
        results["ascent"] = _ascent_study(config, setup, keys["ascent"])
    if "transfer" in config.studies:
        results["transfer"] = _transfer_study(
            config, setup, keys["transfer"], run_dir, direct_runs
        )
    if "ensemble" in config.studies:
        results["ensemble"] = _ensemble_study(config, setup, keys["ensemble"], run_dir)
    if "retrain" in config.studies:
        results["retrain"] = _retrain_study(config, setup, keys["retrain"], run_dir)
    return {
        "metadata": common.run_metadata(
            config,
            command=command,
            model=setup.target.meta.get("arch"),
            image_shape=list(setup.image_shape),
            compute_seconds=time.perf_counter() - t0,
        ),
        "class_names": setup.class_names,
        "clean_accuracy": clean,
        "threshold": config.threshold,
        "studies": results,
    }


# --- write / plots / report (from the results document alone) -----------------------


def write(workdir: pathlib.Path, doc: dict[str, Any]) -> None:
    """``results.csv``: one row per (study, run or setting, class)."""
    rows = []
    names = doc["class_names"]
    studies = doc["studies"]
    for study in ("direct", "cppn"):
        if study not in studies:
            continue
        for r, run in enumerate(studies[study]["runs"]):
            for k, name in enumerate(names):
                rows.append(
                    {
                        "study": study,
                        "run": r,
                        "setting": "",
                        "class": name,
                        "confidence": run["final"][k],
                        "confidence_8bit": run["confidence_8bit"][k],
                        "first_generation_or_step": run["first_generation"][k],
                        "seconds_to_threshold": run["seconds_to"][k],
                    }
                )
    if "ascent" in studies:
        a = studies["ascent"]
        for s, label in enumerate(a["settings"]):
            for k, name in enumerate(names):
                rows.append(
                    {
                        "study": "ascent",
                        "run": 0,
                        "setting": label,
                        "class": name,
                        "confidence": a["final"][s][k],
                        "confidence_8bit": None,
                        "first_generation_or_step": a["first_step"][s][k][-1],
                        "seconds_to_threshold": None,
                    }
                )
    nan = lambda v: float("nan") if v is None else v  # noqa: E731
    common.write_csv_atomic(
        pathlib.Path(workdir) / "results.csv",
        [{k: nan(v) for k, v in row.items()} for row in rows],
    )


def _elite_figure(path, images, confidence, names, title) -> None:
    plt = reporting._plt()
    imgs = np.asarray(images)
    m = len(imgs)
    fig, axes = plt.subplots(1, m, figsize=(1.6 * m, 2.0), squeeze=False)
    for j, ax in enumerate(axes[0]):
        img = imgs[j]
        if img.shape[-1] == 1:
            ax.imshow(
                img[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest"
            )
        else:
            ax.imshow(img, interpolation="nearest")
        ax.set_title(f"{names[j]}: {reporting.fmt_pct(confidence[j], 2)}%", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    common.save_figure_atomic(fig, path)
    plt.close(fig)


def _curves_figure(path, doc) -> None:
    plt = reporting._plt()
    studies = [s for s in ("direct", "cppn") if s in doc["studies"]]
    names = doc["class_names"]
    floor = 1e-7
    fig, axes = plt.subplots(
        1, len(studies), figsize=(6 * len(studies), 4), squeeze=False
    )
    for ax, study in zip(axes[0], studies, strict=True):
        st = doc["studies"][study]
        x = np.asarray(st["curve_generations"])
        curves = np.array([r["curve"] for r in st["runs"]], float)  # [R, K, C]
        curves = np.nan_to_num(curves, nan=0.0)
        gap = np.clip(1.0 - curves, floor, 1.0)
        per_class = gap.shape[2] <= 10
        groups = range(gap.shape[2]) if per_class else [None]
        for k in groups:
            g = gap[:, :, k] if k is not None else np.median(gap, axis=2)
            med = np.median(g, axis=0)
            line = ax.plot(x, med, label=names[k] if k is not None else "median class")
            ax.fill_between(
                x, g.min(axis=0), g.max(axis=0), alpha=0.15, color=line[0].get_color()
            )
        ax.axhline(1.0 - doc["threshold"], color="black", ls="--", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("generation")
        ax.set_ylabel("1 - confidence (log; dashed: the threshold)")
        ax.set_title(f"{study}: median and range over {len(st['runs'])} runs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    common.save_figure_atomic(fig, path)
    plt.close(fig)


def plots(workdir: pathlib.Path, doc: dict[str, Any]) -> list[str]:
    """``curves.png`` and ``elites_<study>.png`` (``elites_cppn_large.png``)."""
    workdir = pathlib.Path(workdir)
    studies = doc["studies"]
    names = doc["class_names"]
    files = []
    if any(s in studies for s in ("direct", "cppn")):
        _curves_figure(workdir / "curves.png", doc)
        files.append("curves.png")
    for study in ("direct", "cppn", "ascent"):
        if study not in studies:
            continue
        st = studies[study]
        file = f"elites_{study}.png"
        _elite_figure(
            workdir / file,
            common.unpack_uint8(st["elites"]),
            st["elite_confidence"],
            names,
            f"{study}: the best image per class (confidence of the target)",
        )
        files.append(file)
        if "elites_large" in st:
            file = f"elites_{study}_large.png"
            _elite_figure(
                workdir / file,
                common.unpack_uint8(st["elites_large"]),
                st["elite_confidence"],
                names,
                f"{study}: the same genomes rendered at "
                f"{doc['metadata']['config']['render_scale']}x the size (confidence: "
                "at the search's size)",
            )
            files.append(file)
    return files


def _fmt_conf(p: float | None) -> str:
    """A confidence as a percentage with enough digits to tell 99.99% apart."""
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{100 * p:.4f}" if p >= 0.99 else f"{100 * p:.2f}"


def _fmt_opt(value: float | int | None, digits: int = 1) -> str:
    """A count or measurement; ``-`` for none (``None`` or a negative "never")."""
    if value is None or value < 0:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


def _eight_bit_line(before: list, after: list, threshold: float) -> str:
    """How the elites fare when saved as 8-bit images (what a user would feed the
    network from a PNG)."""
    was = [
        a
        for b, a in zip(before, after, strict=True)
        if b is not None and b >= threshold
    ]
    kept = sum(a is not None and a >= threshold for a in was)
    return (
        f"Saved as 8-bit images, {kept} of the {len(was)} elites at the threshold stay "
        f"at it (median confidence after saving "
        f"{_fmt_conf(float(np.median([a for a in after if a is not None])))}%)."
    )


def report(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    config = meta["config"]
    names = doc["class_names"]
    studies = doc["studies"]
    thr = doc["threshold"]
    pct = reporting.fmt_pct
    lines = [
        f"# Fooling images ({config['model']}:{config['checkpoint']})",
        "",
        f"- command: `{meta['command']}`",
        f"- images {tuple(meta['image_shape'])}; clean accuracy "
        + (
            f"{pct(doc['clean_accuracy'])}% on {config['dataset']}"
            if doc["clean_accuracy"] is not None
            else "n/a (no dataset)"
        ),
        f"- fooled = the target class's probability >= {100 * thr:g}%; computation "
        f"{meta['compute_seconds']:.1f} s",
        "",
    ]
    for study in ("direct", "cppn"):
        if study not in studies:
            continue
        st = studies[study]
        runs = st["runs"]
        lines += [
            f"## {study} encoding (MAP-Elites, pop {config['pop_size']}, "
            f"{st['generations']} generations, {len(runs)} runs, rule "
            f"{config['rule']})",
            "",
            f"{st['classes_reached']} of {len(names)} classes reached {100 * thr:g}% in "
            f"every run. Cells: final confidence (%, {SPREAD}), runs that reached the "
            "threshold, and the median generation / wall seconds from the start of the "
            "run at which they did (the first run computed in a process includes "
            "compiling the generation, the others reuse it; a resumed run is not "
            "timed).",
            "",
        ]
        table = [
            [
                names[p["class"]],
                _fmt_conf(p["median"]),
                f"{_fmt_conf(p['min'])} - {_fmt_conf(p['max'])}",
                f"{p['runs_reached']}/{len(runs)}",
                _fmt_opt(p["median_generations"], 0),
                _fmt_opt(p["median_seconds"], 1),
            ]
            for p in st["per_class"]
        ]
        lines += [
            reporting.markdown_table(
                ["class", "median %", "range %", "reached", "generations", "seconds"],
                table,
            ),
            "",
            "All classes at the threshold, per run: "
            + "; ".join(
                f"run {i}: "
                + (
                    f"generation {r['all_classes_generation']}"
                    + (
                        f", {r['all_classes_seconds']:.1f} s"
                        if r["all_classes_seconds"] is not None
                        else " (resumed: not timed)"
                    )
                    if r["all_classes_generation"] >= 0
                    else "not reached"
                )
                for i, r in enumerate(runs)
            )
            + ".",
            "",
            _eight_bit_line(
                [p for r in runs for p in r["final"]],
                [p for r in runs for p in r["confidence_8bit"]],
                thr,
            ),
            "",
            f"![{study} elites](elites_{study}.png)",
            "",
        ]
        if "elites_large" in st:
            lines += [f"![{study} elites, larger](elites_{study}_large.png)", ""]
    if "ascent" in studies:
        a = studies["ascent"]
        t = a["thresholds"]
        rows = []
        for s, label in enumerate(a["settings"]):
            steps = [a["first_step"][s][k][-1] for k in range(len(names))]
            hit = [x for x in steps if x >= 0]
            rows.append(
                [
                    label,
                    f"{a['classes_reached'][s]}/{len(names)}",
                    _fmt_conf(float(np.median(a["final"][s]))),
                    _fmt_opt(float(np.median(hit)) if hit else None, 0),
                    _fmt_opt(max(hit) if len(hit) == len(names) else None),
                ]
            )
        lines += [
            f"## Gradient ascent ({a['steps']} steps; every class x every setting "
            f"batched in each step: {a['seconds']:.1f} s for all of it, compilation "
            "included)",
            "",
            reporting.markdown_table(
                [
                    "setting",
                    f"classes >= {100 * t[-1]:g}%",
                    "median confidence %",
                    "median step to it",
                    "step all classes",
                ],
                rows,
            ),
            "",
            _eight_bit_line(a["elite_confidence"], a["confidence_8bit"], thr),
            "",
            "![ascent elites](elites_ascent.png)",
            "",
        ]
    if "transfer" in studies:
        tr = studies["transfer"]
        lines += [
            "## Transfer (direct-encoding elites evolved on the row's net, scored by "
            "the column's)",
            "",
            "Cells: median confidence of the elite's class (%) / share of elites at "
            ">= 99% (%).",
            "",
            reporting.markdown_table(
                ["evolved on \\ scored by", *tr["nets"]],
                [
                    [
                        f"{src} ({tr['elites_per_source'][i]} elites)",
                        *(
                            f"{_fmt_conf(m)} / {pct(f, 0)}"
                            for m, f in zip(
                                tr["median_confidence"][i],
                                tr["share_at_99"][i],
                                strict=True,
                            )
                        ),
                    ]
                    for i, src in enumerate(tr["nets"])
                ],
            ),
            "",
        ]
    if "ensemble" in studies:
        e = studies["ensemble"]
        lines += [
            f"## Ensemble target (mean softmax of {', '.join(e['nets'])})",
            "",
            f"{e['classes_reached']} of {len(names)} classes reached {100 * thr:g}% "
            f"against the ensemble in {config['generations']} generations "
            f"({e['seconds']:.1f} s)."
            if e["seconds"] is not None
            else "",
            "",
            reporting.markdown_table(
                ["class", "ensemble %", *e["nets"]],
                [
                    [
                        names[k],
                        _fmt_conf(e["final"][k]),
                        *(_fmt_conf(m[k]) for m in e["member_confidence"]),
                    ]
                    for k in range(len(names))
                ],
            ),
            "",
        ]
    if "retrain" in studies:
        rt = studies["retrain"]
        lines += [
            f"## Retraining with a fooling class (class {rt['fooling_class']}; "
            f"{config['retrain_epochs']} epoch(s) per round, from scratch)",
            "",
            "Round r searches against net r (round 0: the target); its fooling images "
            "join the training set of net r + 1 as the extra class. The digits' cells "
            "score p(digit) under the extended softmax.",
            "",
            reporting.markdown_table(
                [
                    "round",
                    "clean accuracy %",
                    f"classes >= {100 * thr:g}%",
                    "generation all classes",
                    "seconds",
                    "median confidence %",
                    "fooling images added",
                ],
                [
                    [
                        r["round"],
                        pct(r["clean_accuracy"]),
                        f"{r['classes_reached']}/{len(names)}",
                        _fmt_opt(r["all_classes_generation"]),
                        _fmt_opt(r["all_classes_seconds"]),
                        _fmt_conf(r["median_final"]),
                        r.get("fooling_images_added", "-"),
                    ]
                    for r in rt["rounds"]
                ],
            ),
            "",
        ]
    if any(s in studies for s in ("direct", "cppn")):
        lines.append("![confidence vs generation](curves.png)")
    return "\n".join(lines) + "\n"


def summary_lines(doc: dict[str, Any]) -> list[str]:
    out = []
    n = len(doc["class_names"])
    for study in ("direct", "cppn"):
        if study in doc["studies"]:
            st = doc["studies"][study]
            out.append(
                f"{study}: {st['classes_reached']} of {n} classes fooled at "
                f">= {100 * doc['threshold']:g}% in every run"
            )
    if "ascent" in doc["studies"]:
        out.append(
            f"ascent: up to {max(doc['studies']['ascent']['classes_reached'])} of {n} "
            "classes fooled"
        )
    return out
