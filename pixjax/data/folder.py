"""Folders of image files readable by Pillow.

Layouts:

* ``DIR/<class>/...``: one sub-folder per class (torchvision ``ImageFolder`` style);
  class names are the sorted sub-folder names and labels index them. Images may sit
  anywhere below their class folder.
* ``DIR/*.png``: a flat folder of images, unlabelled (``labels=None``).
* ``DIR/train/<class>/...`` and ``DIR/test/<class>/...``: ``split`` picks one
  (``"all"`` concatenates train then test). In the other layouts ``split`` is ignored.

Files are read in sorted path order, so loading is deterministic. Hidden files and
folders (names starting with ``.``) and files of other types are skipped. Every file is
decoded by :func:`pixjax.data.decode.decode_image` (16-bit images scaled, alpha
dropped, EXIF orientation applied; an unreadable file is one error naming it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image

from pixjax.data.base import Dataset
from pixjax.data.decode import GREY_MODES, decode_image, image_mode

SPLITS = ("train", "test", "all")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _subfolders(folder: str) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``folder``."""
    return sorted(
        e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")
    )


def _images_in(folder: str, recursive: bool) -> list[str]:
    """Sorted paths of the image files in ``folder`` (and below, if recursive)."""
    if not recursive:
        return sorted(
            e.path for e in os.scandir(folder) if e.is_file() and _is_image(e.name)
        )
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths.extend(os.path.join(root, f) for f in files if _is_image(f))
    return sorted(paths)


def _scan(folder: str, labelled: bool | None) -> tuple[list[str], list[str], list[int]]:
    """Lists the images of one root folder.

    Returns:
      ``(paths, class_names, labels)``; ``class_names`` is empty and ``labels`` holds
      ``-1`` for unlabelled data.
    """
    classes = _subfolders(folder)
    per_class = [_images_in(os.path.join(folder, c), recursive=True) for c in classes]
    loose = _images_in(folder, recursive=False)
    has_class_images = any(per_class)
    if labelled is None:
        if has_class_images and loose:
            raise ValueError(
                f"image folder {folder!r} has both loose images (e.g. "
                f"{os.path.basename(loose[0])!r}) and class sub-folders; pass "
                "labelled=True to use the class sub-folders only, or labelled=False "
                "to load every image below it unlabelled"
            )
        labelled = has_class_images
    if labelled:
        if not has_class_images:
            raise ValueError(
                f"labelled=True, but image folder {folder!r} has no class sub-folders "
                f"with images (sub-folders: {classes}); expected DIR/<class>/<image>"
            )
        paths, labels = [], []
        for index, class_paths in enumerate(per_class):
            paths.extend(class_paths)
            labels.extend([index] * len(class_paths))
        return paths, classes, labels
    paths = _images_in(folder, recursive=True) if has_class_images else loose
    return paths, [], [-1] * len(paths)


def check_size(size) -> tuple[int, int] | None:
    """Validates a ``size=(H, W)`` argument (or ``None``) and returns it as ints."""
    if size is None:
        return None
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"size: expected (H, W) or None, got {size!r}") from None
    if height <= 0 or width <= 0 or (height, width) != tuple(size):
        raise ValueError(f"size: expected two positive integers (H, W), got {size!r}")
    return height, width


def _read_images(
    paths: Sequence[str], size: tuple[int, int] | None, channels: int | None
) -> np.ndarray:
    """Reads ``paths`` into a uint8 ``[N, H, W, C]`` array
    (:func:`pixjax.data.decode.decode_image`'s rule for every Pillow mode)."""
    # First pass: headers only (Pillow opens lazily), to pick channels and check sizes.
    headers = [image_mode(p) for p in paths]
    if channels is None:
        channels = 1 if all(m in GREY_MODES for m, _ in headers) else 3
    if size is None:
        first = headers[0][1]
        for path, (_, other) in zip(paths, headers, strict=True):
            if other != first:
                raise ValueError(
                    f"images differ in size: {paths[0]!r} is {first[0]}x{first[1]} "
                    f"(HxW) but {path!r} is {other[0]}x{other[1]}; resize them to one "
                    "size, or load with pixjax.data.load(spec, size=(H, W))"
                )
        size = first
    height, width = size
    out = np.empty((len(paths), height, width, channels), np.uint8)
    for i, path in enumerate(paths):
        pixels = decode_image(path, channels)
        if pixels.shape[:2] != (height, width):
            im = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
            im = im.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(im, np.uint8).reshape(height, width, channels)
        out[i] = pixels
    return out


def load_folder(
    path: str | os.PathLike,
    split: str = "test",
    *,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    labelled: bool | None = None,
) -> Dataset:
    """Loads a folder of images (png, jpg, jpeg, bmp, gif, tif, tiff, webp).

    Args:
      path: the folder (see the module docstring for the layouts).
      split: ``"train"``, ``"test"`` or ``"all"``; used only when the folder has
        ``train/`` and ``test/`` sub-folders, ignored otherwise.
      size: ``(H, W)`` to resize every image (Pillow bilinear); ``None`` requires all
        images to have the same size.
      channels: 1 (greyscale) or 3 (RGB); ``None`` picks 3 if any image is in a
        colour mode, else 1.
      labelled: ``None`` detects the layout (class sub-folders -> labelled, a flat
        folder -> unlabelled); ``True`` requires class sub-folders; ``False`` loads
        every image below ``path`` without labels.

    Returns:
      A :class:`Dataset` with images ``[N, H, W, C]`` uint8 and labels ``[N]`` int32
      (indices into the sorted class folder names) or ``None``.

    Raises:
      FileNotFoundError: when ``path`` is not a folder.
      ValueError: for bad arguments, no images, mixed sizes without ``size``, or an
        unreadable image.
    """
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"image folder {folder!r} does not exist")
    size = check_size(size)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels: expected None, 1 or 3, got {channels!r}")
    if labelled not in (None, True, False):
        raise ValueError(f"labelled: expected None, True or False, got {labelled!r}")

    subfolders = _subfolders(folder)
    split_layout = (
        "train" in subfolders
        and "test" in subfolders
        and all(_subfolders(os.path.join(folder, s)) for s in ("train", "test"))
    )
    if split_layout:
        if split not in SPLITS:
            raise ValueError(
                f"split: expected one of {SPLITS} for image folder {folder!r} (it has "
                f"train/ and test/ sub-folders), got {split!r}"
            )
        parts = [
            _scan(os.path.join(folder, s), labelled)
            for s in (("train", "test") if split == "all" else (split,))
        ]
        if len(parts) == 1:
            paths, class_names, labels = parts[0]
        elif bool(parts[0][1]) != bool(parts[1][1]):
            raise ValueError(
                f"image folder {folder!r}: one of train/ and test/ has class "
                "sub-folders and the other does not; pass labelled=False to load "
                "both unlabelled, or load the splits separately"
            )
        else:
            # Map both splits onto the union of their class names.
            class_names = sorted(set(parts[0][1]) | set(parts[1][1]))
            paths, labels = [], []
            for part_paths, part_classes, part_labels in parts:
                paths.extend(part_paths)
                labels.extend(
                    class_names.index(part_classes[k]) if k >= 0 else -1
                    for k in part_labels
                )
        name = f"folder:{folder}:{split}"
    else:
        paths, class_names, labels = _scan(folder, labelled)
        name = f"folder:{folder}"
    if not paths:
        raise ValueError(
            f"image folder {folder!r} has no images (looked for files ending in "
            f"{', '.join(IMAGE_EXTENSIONS)}, any case)"
        )
    images = _read_images(paths, size, channels)
    is_labelled = bool(class_names)
    return Dataset(
        images=images,
        labels=np.asarray(labels, np.int32) if is_labelled else None,
        class_names=tuple(class_names),
        name=name,
    )
