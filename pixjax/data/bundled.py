"""The embedded default: 5000 real MNIST digits shipped inside the package.

See ``pixjax/data/_bundled/README.md`` for provenance, licence and the fixed split
(3000 train / 2000 test, 300 / 200 per class).
"""

from __future__ import annotations

import importlib.resources

import numpy as np

from pixjax.data.base import Dataset

SPLITS = ("train", "test", "all")
MNIST_CLASSES = tuple(str(i) for i in range(10))


def load_mnist_sample(split: str = "test") -> Dataset:
    """Loads the bundled MNIST sample.

    Args:
      split: ``"train"`` (3000 images), ``"test"`` (2000) or ``"all"`` (5000).

    Returns:
      A ``Dataset`` with images ``[N, 28, 28, 1]`` uint8 and labels ``[N]`` int32.
    """
    if split not in SPLITS:
        raise ValueError(
            f"split: expected one of {SPLITS} for mnist-sample, got {split!r}"
        )
    ref = importlib.resources.files("pixjax.data") / "_bundled" / "mnist_5k.npz"
    with importlib.resources.as_file(ref) as path, np.load(path) as f:
        images, labels = f["images"], f["labels"]
        index = {"train": f["train_index"], "test": f["test_index"]}.get(split)
    if index is not None:
        images, labels = images[index.astype(np.int64)], labels[index.astype(np.int64)]
    return Dataset(
        images=images[..., None],
        labels=labels.astype(np.int32),
        class_names=MNIST_CLASSES,
        name=f"mnist-sample:{split}",
    )
