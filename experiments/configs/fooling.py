"""Fooling images (Nguyen, Yosinski & Clune, CVPR 2015): images no human would
recognise that a network classifies with >= 99.99% confidence.

Command::

    pixjax run fooling --workdir runs/fooling                   # every study
    pixjax run fooling --workdir runs/fooling-direct --preset direct
    pixjax run fooling --workdir runs/fooling-cppn --preset cppn
    pixjax run fooling --workdir runs/fooling-ascent --preset ascent
    pixjax run fooling --workdir runs/fooling-transfer --preset transfer
    pixjax run fooling --workdir runs/fooling-retrain --preset retrain

Studies (``studies``): ``direct`` and ``cppn`` (MAP-Elites with one cell per class,
``runs`` independent runs each), ``ascent`` (gradient ascent from noise, every class x
every hyperparameter setting in one compiled call), ``transfer`` (images evolved on each
net scored by every other net: the shipped LeNet-5, the same recipe from another seed,
the RBM + logistic regression), ``ensemble`` (one search against the mean softmax of
several nets) and ``retrain`` (paper sec. 7: add the evolved images as an 11th class,
retrain, evolve again, ``retrain_rounds`` times).

Expected on the shipped LeNet-5 (2-core CPU): the direct encoding brings all 10 digits
to >= 99.99% within about 600 generations (~10 s); CPPNs and gradient ascent too; the
images transfer only partly to the seed-1 LeNet-5 and hardly to the RBM; the ensemble
and the retrained nets are still fooled (the paper's findings). The ``smoke`` preset
runs the searches and the ascent in seconds (far too short to reach 99.99%);
``studies=transfer,ensemble,retrain`` adds the others at toy sizes.

Target another model: ``model=resnet18 checkpoint=DIR dataset=none`` (a model directory
from ``pixjax convert``; colour 224 px: the direct encoding evolves 150,528 genes, the
CPPN renders in HSL); ``transfer_models`` / ``ensemble_models`` take ``ARCH:CHECKPOINT``
entries.
"""

from __future__ import annotations

import dataclasses

from pixjax.experiments.common import choose_preset

STUDIES = ("direct", "cppn", "ascent", "transfer", "ensemble", "retrain")


@dataclasses.dataclass(frozen=True)
class Config:
    # the target network and the data its classes come from (None: no clean accuracy,
    # class names from the checkpoint; retraining needs a dataset)
    model: str = "lenet5"
    checkpoint: str | None = "lenet5-mnist"
    dataset: str | None = "mnist-sample"
    studies: tuple[str, ...] = STUDIES
    key: int = 0  # the root key of every random stream (split by purpose)
    runs: int = 3  # independent runs per evolutionary encoding
    threshold: float = 0.9999  # "fooled": the class probability reaches this
    # MAP-Elites (both encodings)
    pop_size: int = 200
    rule: str = "original"  # original (every cell it beats) | argmax (textbook)
    chunk_size: int = 50  # generations per compiled chunk and archive checkpoint
    # direct encoding (sferes2's EvoFloat, as the original code)
    generations: int = 1000
    schedule: str = "code"  # code (constant rate) | paper (halves every 1000 gens)
    mutation_rate: float = 0.1
    eta_mutation: float = 15.0
    eta_crossover: float = 10.0
    cross_probability: float = 0.5
    # CPPN encoding
    cppn_generations: int = 1000
    cppn_max_nodes: int = 16  # node slots of the padded genome (inputs, outputs too)
    cppn_max_connections: int = 40
    coordinates: str = "centred"  # centred ([-1, 1]) | pixel (the original's indices)
    render_scale: int = 4  # the CPPN elites re-rendered at this many times the size
    # gradient ascent (the original's adaptive step, lr = min(max, min(early, late x
    # (1 - p)) / |grad p|^2); every decay x blur sigma x percentile combination in one
    # compiled call. The original's early / late progress (0.03 / 0.1) bring 1 of 10
    # digits to 99.99% on the shipped LeNet-5 in 300 steps; 0.1 / 0.3 bring all 10
    ascent_steps: int = 300
    ascent_early_progress: float = 0.1
    ascent_late_progress: float = 0.3
    ascent_decays: tuple[float, ...] = (0.001, 0.005)  # x <- (1 - decay) x per step
    ascent_blur_sigmas: tuple[float, ...] = (0.0, 0.3)  # pixels (0: no blur)
    ascent_blur_every: int = 1  # blur after every k-th step
    ascent_percentiles: tuple[float, ...] = (0.0,)  # zero |x| below it (0: off)
    # transfer: ARCH:CHECKPOINT nets scored against (and evolved on) besides the target
    transfer_models: tuple[str, ...] = (
        "lenet5:lenet5-mnist-seed1",
        "rbm_lr:rbm-lr-mnist",
    )
    # ensemble: the nets whose mean softmax is the target of one direct search
    ensemble_models: tuple[str, ...] = (
        "lenet5:lenet5-mnist",
        "lenet5:lenet5-mnist-seed1",
        "rbm_lr:rbm-lr-mnist",
    )
    # retraining with a fooling class (the shipped models' training recipe)
    retrain_rounds: int = 2
    retrain_epochs: int = 20
    retrain_limit: int | None = None  # first N training images (None: all)
    retrain_images: int = 300  # at most this many fooling images added per round
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    augment_shift: int = 2
    examples: int = 10  # classes shown in the figures (the first ones)
    progress: bool = True


def _only(*studies: str) -> Config:
    return Config(studies=studies)


def get_config(preset: str = "default") -> Config:
    """``default`` (every study), one study (``direct``, ``cppn``, ``ascent``,
    ``transfer``, ``ensemble``, ``retrain``) or ``smoke`` (the searches and the
    ascent at toy sizes, seconds; add ``studies=...`` for the others)."""
    smoke = Config(
        # the searches and the ascent; transfer, ensemble and retrain have their own
        # tests (each study compiles its own target)
        studies=("direct", "cppn", "ascent"),
        runs=2,
        pop_size=16,
        chunk_size=5,
        generations=10,
        cppn_generations=10,
        cppn_max_nodes=8,
        cppn_max_connections=16,
        render_scale=2,
        ascent_steps=20,
        retrain_rounds=1,
        retrain_epochs=1,
        retrain_limit=300,
        retrain_images=40,
        batch_size=32,
        transfer_models=("lenet5:lenet5-mnist-seed1",),
        ensemble_models=("lenet5:lenet5-mnist", "lenet5:lenet5-mnist-seed1"),
        examples=4,
        progress=False,
    )
    presets = {"default": Config(), "smoke": smoke}
    presets.update({s: _only(s) for s in STUDIES})
    return choose_preset(preset, presets)
