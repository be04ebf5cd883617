"""Pipeline artefacts: do resize / re-encode / dtype differences between image
libraries flip a classifier's predictions?

Command::

    pixjax run pipeline-artefacts --workdir runs/pipeline-artefacts

Four studies (``../shared/seeds/image_manipulation_article.txt``; clean-fid, Parmar et
al. CVPR 2022; Dziugaite et al. 2016):

1. **Train/serve matrix.** The bundled MNIST and Fashion-MNIST samples (3000 train /
   2000 test each) are resized 28 -> 64 and 28 -> 20 by every pipeline of
   ``pipelines`` (``{size}`` is replaced by each of ``sizes``); one LeNet-5 is trained
   per (dataset, size, pipeline) with the project's recipe
   (:func:`pixjax.experiments.fitting.train_classifier`, every model from the same key,
   so the pipeline is the only difference) and evaluated on the test split through
   every pipeline: accuracy matrix, flip rate against the matched pipeline (Wilson
   95%), McNemar's test of each off-diagonal cell against the diagonal.
2. **JPEG quality sweep** (``jpeg_qualities``): flip rate of the shipped LeNet-5 on the
   bundled MNIST test split, and of a zoo model on real photos when ``zoo_model`` /
   ``zoo_checkpoint`` are given (no ImageNet weights ship with pixjax).
3. **Pipelines vs adversarial examples**: FGSM examples (as Exp 4: eps 0.1, 8-bit) put
   through ``defence_pipelines`` (JPEG, resize round trips): the share back to the
   correct class, next to Exp 4's random pixel changes (``random_nums``) and next to
   what the same pipelines cost on clean images.
4. **Pixel differences** between the pipelines (max / mean difference, share of values
   and images that differ, PSNR) and figures of amplified difference images and of
   flipped examples.

The default run takes a few minutes on 2 CPU cores and needs OpenCV
(``pip install "pixjax[opencv]"``). The ``smoke`` preset (seconds) is for tests.
"""

from __future__ import annotations

import dataclasses

from pixjax.experiments.common import choose_preset

DEFAULT_PIPELINES = (
    "resize:pillow:bilinear:{size}",
    "resize:opencv:linear:{size}",
    "resize:opencv:nearest:{size}",
    "resize:jax:linear:{size}|uint8:trunc",
)

DEFAULT_DEFENCES = (
    "jpeg:90",
    "jpeg:75",
    "jpeg:50",
    "jpeg:25",
    "jpeg:10",
    "resize:pillow:bilinear:14|resize:pillow:bilinear:28",
    "resize:pillow:bicubic:56|resize:pillow:bicubic:28",
    "resize:opencv:linear:20|resize:opencv:linear:28",
)


@dataclasses.dataclass(frozen=True)
class Config:
    # 1. the train/serve matrix (datasets= empty: skipped)
    datasets: tuple[str, ...] = ("mnist-sample", "fashion-sample")
    sizes: tuple[int, ...] = (64, 20)
    pipelines: tuple[str, ...] = DEFAULT_PIPELINES
    train_split: str = "train"
    test_split: str = "test"
    train_limit: int | None = None
    test_limit: int | None = None
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    augment_shift: int = 0  # random shifts in training (0: the pipeline alone)
    # 2. JPEG sweep and 3. pipelines vs FGSM: the shipped model on its data
    model: str = "lenet5"
    checkpoint: str | None = "lenet5-mnist"
    dataset: str = "mnist-sample"
    split: str = "test"
    limit: int | None = None
    jpeg_qualities: tuple[int, ...] = (100, 95, 90, 75, 50, 25, 10)  # empty: skipped
    jpeg_subsampling: str | None = None  # 444, 422, 420 (None: Pillow's default)
    zoo_model: str | None = None  # e.g. resnet18 with zoo_checkpoint=DIR
    zoo_checkpoint: str | None = None
    zoo_dataset: str = "photos:sample"
    eps: float = 0.1
    defence_pipelines: tuple[str, ...] = DEFAULT_DEFENCES  # empty: none
    random_nums: tuple[int, ...] = (1, 16, 64)  # Exp 4's random changes (empty: none)
    # everything
    key: int = 0
    eval_batch_size: int = 500
    examples: int = 6
    progress: bool = True


def get_config(preset: str = "default") -> Config:
    """``default`` (the documented run) or ``smoke`` (seconds, for tests)."""
    smoke = Config(
        datasets=("mnist-sample",),
        sizes=(20,),
        pipelines=(
            "resize:pillow:bilinear:{size}",
            "resize:opencv:linear:{size}",
        ),
        train_limit=128,
        test_limit=100,
        epochs=1,
        batch_size=32,
        limit=100,
        jpeg_qualities=(90, 10),
        defence_pipelines=(
            "jpeg:50",
            "resize:pillow:bilinear:14|resize:pillow:bilinear:28",
        ),
        random_nums=(16,),
        eval_batch_size=100,
        examples=3,
        progress=False,
    )
    return choose_preset(preset, {"default": Config(), "smoke": smoke})
