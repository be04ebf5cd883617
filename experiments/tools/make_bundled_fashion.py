"""Rebuilds ``pixjax/data/_bundled/fashion_mnist_5k.npz`` from Fashion-MNIST.

Run: ``python experiments/tools/make_bundled_fashion.py [FOLDER]`` where ``FOLDER``
holds the four Fashion-MNIST IDX files (default ``/usr/share/datasets/fashion-mnist``,
as installed by Debian's ``dataset-fashion-mnist`` package). ``--check`` compares the
rebuilt arrays with the shipped file instead of writing it.

The sample (see ``pixjax/data/_bundled/README.md``): 300 images per class from the
training split and 200 per class from the ``t10k`` split, chosen and shuffled with a
generator seeded by ``numpy.random.default_rng(42)``. Only the generator's raw 64-bit
output (``bit_generator.random_raw``) is used, never ``Generator.permutation`` and
the like, whose streams numpy does not promise to keep across versions: a random
permutation of ``n`` items is the stable argsort of ``n`` raw 64-bit words.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys

import numpy as np

from pixjax.data.idx import read_idx

DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"
OUT = (
    pathlib.Path(__file__).resolve().parents[2]
    / "pixjax"
    / "data"
    / "_bundled"
    / "fashion_mnist_5k.npz"
)
NUM_CLASSES = 10
PER_CLASS = {"train": 300, "test": 200}
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# The order in which the arrays enter array_digest (README: "SHA-256 of the arrays").
DIGEST_KEYS = (
    "images",
    "labels",
    "train_index",
    "test_index",
    "train_source",
    "test_source",
)


def permutation(rng: np.random.Generator, n: int) -> np.ndarray:
    """A random permutation of ``range(n)`` from ``n`` raw 64-bit words of ``rng``."""
    keys = rng.bit_generator.random_raw(n).astype(np.uint64)
    return np.argsort(keys, kind="stable")


def array_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the arrays of ``DIGEST_KEYS`` in order (C order, little-endian)."""
    h = hashlib.sha256()
    for key in DIGEST_KEYS:
        a = np.asarray(arrays[key])
        h.update(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def _read(folder: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    image_file, label_file = FILES[split]
    images = read_idx(folder / image_file)
    labels = read_idx(folder / label_file)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{folder / image_file}: expected uint8 [N, 28, 28], got {images.dtype} "
            f"{images.shape}"
        )
    if labels.shape != (len(images),):
        raise ValueError(
            f"{folder / label_file}: expected {len(images)} labels, got {labels.shape}"
        )
    return images, labels


def build(source: str | pathlib.Path = DEFAULT_SOURCE) -> dict[str, np.ndarray]:
    """Draws the sample from the Fashion-MNIST folder ``source``.

    Returns:
      The arrays stored in the npz: ``images`` uint8 ``[5000, 28, 28]`` (the 3000
      train images, then the 2000 test images, each block in its stored shuffled
      order), ``labels`` uint8 ``[5000]``, ``train_index`` / ``test_index`` int16
      (positions in ``images``) and ``train_source`` / ``test_source`` int32 (the
      index of each of those images in the Fashion-MNIST train / t10k split).
    """
    folder = pathlib.Path(source)
    rng = np.random.default_rng(42)
    picked, chosen_index = {}, {}
    for split in ("train", "test"):
        images, labels = _read(folder, split)
        chosen = []
        for c in range(NUM_CLASSES):
            idx = np.flatnonzero(labels == c)
            if len(idx) < PER_CLASS[split]:
                raise ValueError(
                    f"{folder}: split {split!r} has {len(idx)} images of class {c}, "
                    f"fewer than {PER_CLASS[split]}"
                )
            chosen.append(idx[permutation(rng, len(idx))][: PER_CLASS[split]])
        picked[split] = (images, labels)
        chosen_index[split] = np.concatenate(chosen)
    # Stored in a fixed shuffled order, so that any prefix (limit=) mixes the classes.
    source_index = {
        split: idx[permutation(rng, len(idx))] for split, idx in chosen_index.items()
    }
    images = np.concatenate(
        [picked[s][0][source_index[s]] for s in ("train", "test")]
    ).astype(np.uint8)
    labels = np.concatenate(
        [picked[s][1][source_index[s]] for s in ("train", "test")]
    ).astype(np.uint8)
    n_train = len(source_index["train"])
    return {
        "images": images,
        "labels": labels,
        "train_index": np.arange(n_train, dtype=np.int16),
        "test_index": np.arange(n_train, len(images), dtype=np.int16),
        "train_source": source_index["train"].astype(np.int32),
        "test_source": source_index["test"].astype(np.int32),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source",
        nargs="?",
        default=DEFAULT_SOURCE,
        help=f"folder of the Fashion-MNIST IDX .gz files (default {DEFAULT_SOURCE})",
    )
    parser.add_argument("--out", default=str(OUT), help=f"output (default {OUT})")
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare the rebuilt arrays with --out instead of writing it",
    )
    args = parser.parse_args(argv)
    arrays = build(args.source)
    if args.check:
        with np.load(args.out) as f:
            stored = {k: f[k] for k in f.files}
        same = sorted(stored) == sorted(arrays) and all(
            stored[k].dtype == arrays[k].dtype and np.array_equal(stored[k], arrays[k])
            for k in arrays
        )
        print(f"{args.out}: {'identical' if same else 'DIFFERENT'} arrays")
        print(f"array SHA-256: {array_digest(arrays)}")
        return 0 if same else 1
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({pathlib.Path(args.out).stat().st_size} bytes)")
    print(f"array SHA-256: {array_digest(arrays)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
