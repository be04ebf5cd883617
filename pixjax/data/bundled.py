"""The embedded samples shipped inside the package: 5000 real MNIST digits (the
default dataset) and 5000 real Fashion-MNIST images.

See ``pixjax/data/_bundled/README.md`` for provenance, licences and the fixed splits
(3000 train / 2000 test, 300 / 200 per class, in both samples).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence

import numpy as np

from pixjax.data.base import Dataset
from pixjax.data.idx import FASHION_MNIST_CLASSES

SPLITS = ("train", "test", "all")
MNIST_CLASSES = tuple(str(i) for i in range(10))


def _load_sample(
    filename: str, split: str, class_names: Sequence[str], kind: str
) -> Dataset:
    """Loads ``_bundled/{filename}`` (``images``, ``labels``, ``train_index``,
    ``test_index``) as the ``Dataset`` ``"{kind}:{split}"``."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS} for {kind}, got {split!r}")
    ref = importlib.resources.files("pixjax.data") / "_bundled" / filename
    with importlib.resources.as_file(ref) as path, np.load(path) as f:
        images, labels = f["images"], f["labels"]
        index = {"train": f["train_index"], "test": f["test_index"]}.get(split)
    if index is not None:
        images, labels = images[index.astype(np.int64)], labels[index.astype(np.int64)]
    return Dataset(
        images=images[..., None],
        labels=labels.astype(np.int32),
        class_names=tuple(class_names),
        name=f"{kind}:{split}",
    )


def load_mnist_sample(split: str = "test") -> Dataset:
    """Loads the bundled MNIST sample.

    Args:
      split: ``"train"`` (3000 images), ``"test"`` (2000) or ``"all"`` (5000).

    Returns:
      A ``Dataset`` with images ``[N, 28, 28, 1]`` uint8 and labels ``[N]`` int32.
    """
    return _load_sample("mnist_5k.npz", split, MNIST_CLASSES, "mnist-sample")


def load_fashion_sample(split: str = "test") -> Dataset:
    """Loads the bundled Fashion-MNIST sample.

    Args:
      split: ``"train"`` (3000 images from the Fashion-MNIST training split),
        ``"test"`` (2000 from its ``t10k`` split) or ``"all"`` (5000, train then
        test).

    Returns:
      A ``Dataset`` with images ``[N, 28, 28, 1]`` uint8, labels ``[N]`` int32 and
      the class names ``FASHION_MNIST_CLASSES``, named ``"fashion-sample:{split}"``.
    """
    return _load_sample(
        "fashion_mnist_5k.npz", split, FASHION_MNIST_CLASSES, "fashion-sample"
    )
