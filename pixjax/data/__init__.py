"""Data loading: one front door, :func:`load`.

Dataset specs (strings, so that a command line can name them):

* ``"mnist-sample"`` — the embedded 5000-image real MNIST sample (default; no network).
* ``"fashion-sample"`` — the embedded 5000-image real Fashion-MNIST sample (no network).
* ``"idx:DIR"`` — an MNIST / Fashion-MNIST style folder of IDX files (``.gz`` or raw).
* ``"folder:DIR"`` — images in one sub-folder per class, or a flat unlabelled folder.
* ``"photos:DIR"`` — every image file in a folder (or one file), ImageNet-preprocessed
  (shorter side 256, centre crop 224, RGB), unlabelled; ``"photos:sample"`` uses the
  real photos shipped by matplotlib (and scikit-image when installed).
* ``"tfds:NAME"`` — a prepared tensorflow-datasets dataset read through
  ``tfds.data_source`` (no TensorFlow needed), e.g. ``tfds:mnist``, ``tfds:cifar10``.
"""

from __future__ import annotations

from pixjax.data.base import (
    Dataset,
    check_float_images,
    check_images,
    check_labels,
    check_positive_int,
    to_float,
)
from pixjax.data.bundled import load_fashion_sample, load_mnist_sample

KINDS = (
    "mnist-sample",
    "fashion-sample",
    "idx:DIR",
    "folder:DIR",
    "photos:DIR",
    "tfds:NAME",
)

# The bundled samples, by spec.
_SAMPLES = {"mnist-sample": load_mnist_sample, "fashion-sample": load_fashion_sample}

__all__ = [
    "Dataset",
    "KINDS",
    "check_float_images",
    "check_images",
    "check_labels",
    "check_positive_int",
    "load",
    "load_fashion_sample",
    "load_mnist_sample",
    "to_float",
]


def load(spec: str = "mnist-sample", split: str = "test", **kwargs) -> Dataset:
    """Loads a dataset named by ``spec``.

    Args:
      spec: one of ``"mnist-sample"``, ``"fashion-sample"``, ``"idx:DIR"``,
        ``"folder:DIR"``, ``"photos:DIR"``, ``"tfds:NAME"``.
      split: ``"train"``, ``"test"`` or ``"all"`` (folder datasets ignore it unless the
        folder has ``train/`` and ``test/`` sub-folders; tfds accepts its own split
        syntax, e.g. ``"test[:1000]"``).
      **kwargs: passed to the specific loader (``size=``/``channels=`` for folders,
        ``data_dir=`` for tfds, ``limit=`` for all).

    Returns:
      A :class:`Dataset` with uint8 ``[N, H, W, C]`` images.

    Raises:
      ValueError: for an unknown spec (the message lists the accepted forms).
      FileNotFoundError: when the data is absent (the message says how to prepare it).
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"dataset: expected one of {KINDS}, got {spec!r}")
    kind, _, arg = spec.partition(":")
    limit = kwargs.pop("limit", None)
    if kind in _SAMPLES and not arg:
        if kwargs:
            raise ValueError(f"dataset {kind} takes no options, got {sorted(kwargs)}")
        data = _SAMPLES[kind](split)
    elif kind == "idx" and arg:
        from pixjax.data.idx import load_idx

        data = load_idx(arg, split=split, **kwargs)
    elif kind == "folder" and arg:
        from pixjax.data.folder import load_folder

        data = load_folder(arg, split=split, **kwargs)
    elif kind == "photos" and arg:
        data = _load_photos(arg, **kwargs)
    elif kind == "tfds" and arg:
        from pixjax.data.tfds_source import load_tfds

        data = load_tfds(arg, split=split, **kwargs)
    else:
        raise ValueError(f"dataset: expected one of {KINDS}, got {spec!r}")
    if limit is not None:
        if int(limit) <= 0:
            raise ValueError(f"limit: expected a positive integer, got {limit!r}")
        data = data.take(slice(0, int(limit)))
    if len(data.images) == 0:
        raise ValueError(
            f"dataset: {data.name} holds no images (split {split!r}); an experiment "
            "needs at least one"
        )
    if data.labels is not None and data.class_names:
        check_labels(
            data.labels,
            len(data.class_names),
            argument=f"labels of {data.name}",
            classes_from="the dataset's {n} class names",
        )
    return data


def _load_photos(arg: str, resize: int = 256, crop: int = 224) -> Dataset:
    import pathlib

    from pixjax.data import imagenet, photos

    if arg == "sample":
        paths = photos.sample_photo_paths()
    else:
        root = pathlib.Path(arg).expanduser()
        if root.is_file():
            paths = [root]
        elif root.is_dir():
            exts = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
            paths = sorted(p for p in root.iterdir() if p.suffix.lower() in exts)
        else:
            raise FileNotFoundError(
                f"dataset: photos folder {str(root)!r} does not exist"
            )
    if not paths:
        raise FileNotFoundError(f"dataset: no image files found for photos:{arg}")
    data = imagenet.load_photos(paths, resize=resize, crop=crop)
    return data._replace(name=f"photos:{arg}")
