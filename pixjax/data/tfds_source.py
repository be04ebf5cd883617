"""Prepared tensorflow-datasets datasets, read without TensorFlow and never downloaded.

``load_tfds`` reads a dataset that was already prepared (in the ``array_record`` or
``parquet`` file format) under a data directory, through tfds' random-access data
source (the reader behind ``tfds.data_source``). It first looks for the prepared files
itself, ``DATA_DIR/NAME/[CONFIG/]VERSION/dataset_info.json``, and raises
``FileNotFoundError`` at once when they are absent, so tfds never gets the chance to
try a download (which, without network, retries for minutes).

To prepare a dataset on a machine with network access (the stock builders, e.g.
``mnist``, need TensorFlow to prepare, not to read)::

    tfds build mnist --data_dir DIR --file_format array_record

then copy ``DIR`` over and pass ``data_dir=DIR`` (or set ``TFDS_DATA_DIR``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import numpy as np
from PIL import Image

from pixjax.data.base import Dataset
from pixjax.data.folder import check_size

_INFO_FILE = "dataset_info.json"
_CHUNK = 4096  # records decoded per __getitems__ call


def default_data_dir() -> str:
    """``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets`` (tfds' own default)."""
    return os.path.expanduser(
        os.environ.get("TFDS_DATA_DIR") or os.path.join("~", "tensorflow_datasets")
    )


def _prepare_hint(name: str, data_dir: str) -> str:
    return (
        "pixjax never downloads. To prepare it, on a machine with network access run "
        f"`tfds build {name} --data_dir {data_dir} --file_format array_record` (or, "
        f"in Python, tfds.builder({name!r}, data_dir=...).download_and_prepare("
        "file_format='array_record'); the stock builders need TensorFlow for this "
        "step), copy the data directory here, and pass data_dir=DIR or set "
        "TFDS_DATA_DIR"
    )


def _version_dirs(folder: str) -> dict[str, str]:
    """Prepared version sub-folders of ``folder``: ``{version: path}``."""
    import tensorflow_datasets as tfds

    if not os.path.isdir(folder):
        return {}
    return {
        e.name: e.path
        for e in os.scandir(folder)
        if e.is_dir()
        and tfds.core.Version.is_valid(e.name)
        and os.path.isfile(os.path.join(e.path, _INFO_FILE))
    }


def _default_config(name: str) -> str | None:
    """The default config of the registered builder ``name``, if there is one."""
    import tensorflow_datasets as tfds

    try:
        cls = tfds.builder_cls(name)
    except Exception:  # not registered, or its module fails to import
        return None
    default = getattr(cls, "DEFAULT_BUILDER_CONFIG_NAME", None)
    configs = getattr(cls, "BUILDER_CONFIGS", None) or []
    return default or (configs[0].name if configs else None)


def find_prepared(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """Finds the folder of a prepared tfds dataset, without touching the network.

    Args:
      name: ``"NAME"``, ``"NAME/CONFIG"``, ``"NAME:VERSION"`` or
        ``"NAME/CONFIG:VERSION"`` (a version may use ``*``, e.g. ``"3.*.*"``).
      data_dir: the tfds data directory; ``None`` uses :func:`default_data_dir`.

    Returns:
      The path ``DATA_DIR/NAME/[CONFIG/]VERSION`` holding ``dataset_info.json``
      (the newest matching version when none is given).

    Raises:
      FileNotFoundError: when no prepared version exists (the message says how to
        prepare one).
      ValueError: for a malformed name, or several prepared configs and none named.
    """
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import naming

    data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    try:
        dataset_name, kwargs = naming.parse_builder_name_kwargs(name)
    except Exception as e:
        raise ValueError(
            f"tfds name: expected 'NAME[/CONFIG][:VERSION]', got {name!r} ({e})"
        ) from e
    base = os.path.join(data_dir, dataset_name.name)
    config, version = kwargs.get("config"), kwargs.get("version")
    where = os.path.join(base, "[CONFIG]" if config is None else config, "VERSION")
    missing = (
        f"tfds dataset {name!r} is not prepared in {data_dir!r} (looked for "
        f"{os.path.join(where, _INFO_FILE)})"
    )
    if config is not None:
        candidates = _version_dirs(os.path.join(base, config))
    else:
        candidates = _version_dirs(base)
        if not candidates and os.path.isdir(base):
            configs = {
                c: dirs
                for c in sorted(os.listdir(base))
                if (dirs := _version_dirs(os.path.join(base, c)))
            }
            if len(configs) == 1:
                (candidates,) = configs.values()
            elif len(configs) > 1:
                default = _default_config(dataset_name.name)
                if default not in configs:
                    raise ValueError(
                        f"tfds dataset {name!r} has several prepared configs in "
                        f"{base!r}: {sorted(configs)}; name one, e.g. "
                        f"'{dataset_name.name}/{next(iter(configs))}'"
                    )
                candidates = configs[default]
    if version is not None:
        matching = {
            v: p for v, p in candidates.items() if tfds.core.Version(v).match(version)
        }
        if candidates and not matching:
            missing += f"; prepared versions: {sorted(candidates)}"
        candidates = matching
    if not candidates:
        prepared = sorted(os.listdir(data_dir)) if os.path.isdir(data_dir) else []
        prepared = [p for p in prepared if p not in ("downloads",)]
        raise FileNotFoundError(
            f"{missing}. Datasets present there: {prepared or 'none'}. "
            + _prepare_hint(name, data_dir)
        )
    newest = max(candidates, key=tfds.core.Version)
    return candidates[newest]


def _walk(features, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple, object]]:
    """Yields ``(path, feature)`` for every feature, depth first, in key order."""
    import tensorflow_datasets as tfds

    for key, feature in features.items():
        yield prefix + (key,), feature
        if isinstance(feature, tfds.features.FeaturesDict):
            yield from _walk(feature, prefix + (key,))


def _pick(features, key: str, accept) -> tuple[tuple, object] | tuple[None, None]:
    """``features[key]`` if ``accept``-able, else the first acceptable feature."""
    if key in features.keys() and accept(features[key]):
        return (key,), features[key]
    for path, feature in _walk(features):
        if accept(feature):
            return path, feature
    return None, None


def _get(record: Mapping, path: tuple[str, ...]):
    for key in path:
        record = record[key]
    return record


def _to_uint8_hwc(image: np.ndarray, where: str) -> np.ndarray:
    """One decoded image -> uint8 ``[H, W, C]`` with C in (1, 3)."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"{where}: expected uint8 images, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4):
        raise ValueError(f"{where}: expected an [H, W, C] image, got {image.shape}")
    if image.shape[-1] in (2, 4):  # drop alpha (LA -> L, RGBA -> RGB)
        image = image[..., : image.shape[-1] - 1]
    return image


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 ``[H, W, C]`` -> ``[*size, C]`` with Pillow bilinear."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    channels = image.shape[-1]
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    out = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
    return out.reshape(height, width, channels)


def load_tfds(
    name: str,
    split: str = "test",
    *,
    data_dir: str | os.PathLike | None = None,
    size: tuple[int, int] | None = None,
) -> Dataset:
    """Loads a prepared tfds dataset into memory (no TensorFlow, no download).

    Args:
      name: ``"NAME[/CONFIG][:VERSION]"``, e.g. ``"mnist"`` or ``"cifar10:3.0.2"``.
      split: a tfds split: ``"test"``, ``"train"``, ``"all"``, or tfds slicing such
        as ``"test[:1000]"`` or ``"train+test"``.
      data_dir: the tfds data directory; ``None`` uses ``$TFDS_DATA_DIR``, else
        ``~/tensorflow_datasets``.
      size: ``(H, W)`` to resize every image (Pillow bilinear); ``None`` requires
        all images to have the same size.

    Returns:
      A :class:`Dataset` with images ``[N, H, W, C]`` uint8 (C = 1 or 3; an alpha
      channel is dropped) from the ``"image"`` feature (else the first ``Image``
      feature), labels ``[N]`` int32 from ``"label"`` (else the first ``ClassLabel``
      feature; ``None`` if there is none), and the ``ClassLabel``'s names.

    Raises:
      FileNotFoundError: when the dataset is not prepared under ``data_dir`` (the
        message says how to prepare it).
      ValueError: for an unknown split (the message lists the available ones), a
        dataset without random-access files or without an image feature, or images
        of mixed sizes without ``size``.
    """
    import tensorflow_datasets as tfds

    data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    size = check_size(size)
    prepared = find_prepared(name, data_dir)
    try:
        builder = tfds.builder_from_directory(prepared)
        info = builder.info
    except Exception as e:  # noqa: BLE001 - tfds raises many kinds for a bad info file
        raise ValueError(
            f"tfds dataset {name!r}: {os.path.join(prepared, _INFO_FILE)!r} cannot be "
            f"read ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
            "); re-prepare the dataset"
        ) from e
    usable = set(info.available_file_formats()) & set(
        tfds.core.FileFormat.with_random_access()
    )
    if not usable:
        raise ValueError(
            f"tfds dataset {name!r} in {builder.data_dir!r} is stored as "
            f"{sorted(f.value for f in info.available_file_formats())}, which cannot "
            "be read without TensorFlow; re-prepare it with --file_format "
            "array_record, or convert it with `tfds convert_format "
            f"--dataset_version_dir={builder.data_dir} --out_file_format=array_record "
            "--out_dir=NEW_DIR`"
        )
    try:
        source = builder.as_data_source(split=split)
    except (ValueError, KeyError, AssertionError) as e:
        raise ValueError(
            f"split: {split!r} is not valid for tfds dataset {name!r}; available "
            f"splits: {sorted(info.splits.keys())} (also 'all', and tfds slicing such "
            f"as 'test[:1000]' or 'train+test'). tfds said: {e}"
        ) from e

    features = info.features
    image_path, _ = _pick(
        features, "image", lambda f: isinstance(f, tfds.features.Image)
    )
    if image_path is None:
        raise ValueError(
            f"tfds dataset {name!r} has no Image feature (features: "
            f"{list(features.keys())})"
        )
    label_path, label_feature = _pick(
        features, "label", lambda f: isinstance(f, tfds.features.ClassLabel)
    )
    class_names = tuple(label_feature.names) if label_feature is not None else ()

    n = len(source)
    where = f"tfds dataset {name!r} feature {'/'.join(image_path)!r}"
    if n == 0:
        raise ValueError(f"tfds dataset {name!r} split {split!r} has no examples")
    images: list[np.ndarray] = []
    labels = np.empty((n,), np.int32)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        records = source.__getitems__(list(range(start, stop)))
        for i, record in enumerate(records, start):
            image = _to_uint8_hwc(_get(record, image_path), where)
            if size is not None:
                image = _resize(image, size)
            elif images and image.shape != images[0].shape:
                raise ValueError(
                    f"{where}: images differ in size: example 0 is "
                    f"{images[0].shape} but example {i} is {image.shape}; pass "
                    "size=(H, W) to resize them all"
                )
            images.append(image)
            if label_path is not None:
                labels[i] = int(_get(record, label_path))
    channels = {im.shape[-1] for im in images}
    if len(channels) > 1:  # a mix of grey and colour: promote grey to RGB
        images = [
            np.repeat(im, 3, axis=-1) if im.shape[-1] == 1 else im for im in images
        ]
    return Dataset(
        images=np.stack(images),
        labels=labels if label_path is not None else None,
        class_names=class_names,
        name=f"tfds:{name}:{split}",
    )
