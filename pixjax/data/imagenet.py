"""ImageNet evaluation preprocessing in pure JAX, plus the 1000 class names.

The standard evaluation transform of torchvision's ImageNet models is
``Resize(256)`` (shorter side to 256, aspect ratio kept) followed by
``CenterCrop(224)``; :func:`preprocess` is that transform as a pure, jit-able function
of one ``[H, W, C]`` image (``vmap`` it over a batch of same-size images). Output
shapes are static: they are computed from the static input shape with torchvision's
rounding, so the crop box is exactly torchvision's. Normalisation by the ImageNet mean
and standard deviation lives inside the models, so the output stays in ``[0, 1]``.

Resampling: uint8 images go through the Pillow-exact resize
(:func:`pixjax.data.resample.resize`, bilinear), so :func:`preprocess` of a uint8 photo
gives exactly the pixels of ``torchvision.transforms`` ``Resize(256)``,
``CenterCrop(224)`` on the PIL image, the pipeline torchvision's weights were
evaluated with (tested byte for byte). Float images go through
:func:`jax.image.resize` (antialiased bilinear), which differs from Pillow's
fixed-point resampling by up to about one 8-bit level.

:func:`load_photos` is the host-side edge: it decodes files with Pillow and returns a
:class:`~pixjax.data.base.Dataset` of uint8 ``[N, crop, crop, 3]`` images.
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.data import resample
from pixjax.data.base import Dataset, to_float
from pixjax.data.decode import decode_image

__all__ = [
    "IMAGENET_CLASSES",
    "center_crop",
    "center_crop_box",
    "load_photos",
    "preprocess",
    "resize_shorter",
    "resized_shape",
]


def _read_classes() -> tuple[str, ...]:
    ref = importlib.resources.files("pixjax.data") / "imagenet_classes.txt"
    names = tuple(ref.read_text(encoding="utf-8").splitlines())
    if len(names) != 1000:  # a packaging error, not a user error
        raise RuntimeError(
            f"imagenet_classes.txt: expected 1000 lines, got {len(names)}"
        )
    return names


# The ILSVRC-2012 class names in class-index order (index 0 "tench", 207 "golden
# retriever"), as torchvision's ImageNet weights report them (``meta["categories"]``).
IMAGENET_CLASSES: tuple[str, ...] = _read_classes()


def _check_image(image: jax.Array, argument: str = "image") -> None:
    if image.ndim != 3:
        raise ValueError(
            f"{argument}: expected one image [H, W, C] (vmap over a batch), got shape "
            f"{image.shape}"
        )


def _check_size(size: int, argument: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size <= 0:
        raise ValueError(f"{argument}: expected a positive integer, got {size!r}")
    return int(size)


def resized_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """The ``(H, W)`` that ``torchvision.transforms.Resize(size)`` produces.

    The shorter side becomes ``size``; the longer one ``int(size * long / short)``
    (truncated, as torchvision does). An image whose shorter side is already ``size``
    keeps its shape.
    """
    size = _check_size(size, "size")
    short, long = (height, width) if height <= width else (width, height)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


def resize_shorter(
    image: jax.Array, size: int, method: str = "bilinear", antialias: bool = True
) -> jax.Array:
    """Resizes so that the shorter side is ``size``, keeping the aspect ratio.

    Pure and jit-able; the output shape is :func:`resized_shape` of the (static) input
    shape, matching ``torchvision.transforms.Resize(size)``.

    Args:
      image: ``[H, W, C]`` float in ``[0, 1]``.
      size: the target length of the shorter side (static).
      method: a :func:`jax.image.resize` method (``"nearest"``, ``"bilinear"``,
        ``"bicubic"``, ``"lanczos3"``, ``"lanczos5"``).
      antialias: low-pass filter when downsampling (as Pillow always does).

    Returns:
      ``[H', W', C]`` float32, clipped to ``[0, 1]`` (cubic and Lanczos kernels
      overshoot).

    Raises:
      ValueError: for a non-3-D or integer image, a bad size or an unknown method.
    """
    image = jnp.asarray(image)
    _check_image(image)
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise ValueError(
            f"image: expected float values in [0, 1], got dtype {image.dtype}; use "
            "pixjax.data.to_float or preprocess() for uint8 images"
        )
    try:
        jax.image.ResizeMethod.from_string(method)
    except ValueError:
        raise ValueError(
            "method: expected a jax.image.resize method ('nearest', 'bilinear', "
            f"'bicubic', 'lanczos3', 'lanczos5', ...), got {method!r}"
        ) from None
    height, width, channels = image.shape
    new_height, new_width = resized_shape(height, width, size)
    image = image.astype(jnp.float32)
    if (new_height, new_width) == (height, width):
        return image
    out = jax.image.resize(
        image, (new_height, new_width, channels), method=method, antialias=antialias
    )
    return jnp.clip(out, 0.0, 1.0)


def _crop_size(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, tuple | list):
        if len(size) != 2:
            raise ValueError(f"size: expected an int or (H, W), got {size!r}")
        return _check_size(size[0], "size[0]"), _check_size(size[1], "size[1]")
    size = _check_size(size, "size")
    return size, size


def center_crop_box(
    height: int, width: int, size: int | tuple[int, int]
) -> tuple[int, int, int, int]:
    """``(top, left, crop_height, crop_width)`` of torchvision's ``CenterCrop(size)``.

    ``top = int(round((height - crop_height) / 2.0))`` (Python's round-half-to-even,
    as in torchvision), likewise ``left``. Only for crops that fit inside the image.
    """
    crop_height, crop_width = _crop_size(size)
    top = int(round((height - crop_height) / 2.0))
    left = int(round((width - crop_width) / 2.0))
    return top, left, crop_height, crop_width


def center_crop(image: jax.Array, size: int | tuple[int, int]) -> jax.Array:
    """Crops the centre ``size`` (int, or ``(H, W)``) of ``image``, like torchvision.

    Pure and jit-able (a static slice). As in ``torchvision.transforms.CenterCrop``,
    an image smaller than the crop is first zero-padded (half on each side, the extra
    pixel after).

    Args:
      image: ``[H, W, C]`` of any dtype.
      size: the crop size (static).

    Returns:
      ``[crop_height, crop_width, C]`` with the dtype of ``image``.
    """
    image = jnp.asarray(image)
    _check_image(image)
    crop_height, crop_width = _crop_size(size)
    height, width = image.shape[:2]
    if crop_height > height or crop_width > width:
        pad_h, pad_w = max(crop_height - height, 0), max(crop_width - width, 0)
        image = jnp.pad(
            image,
            ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)),
        )
        height, width = image.shape[:2]
    top, left, _, _ = center_crop_box(height, width, (crop_height, crop_width))
    return image[top : top + crop_height, left : left + crop_width]


def preprocess(image: jax.Array, resize: int = 256, crop: int = 224) -> jax.Array:
    """ImageNet evaluation preprocessing: resize the shorter side, then centre crop.

    The pure-JAX counterpart of ``Resize(resize)``, ``CenterCrop(crop)``,
    ``ToTensor()`` (without ``Normalize``: the models normalise internally); for a
    uint8 image byte-exact (the Pillow-exact bilinear resize), for a float image
    :func:`resize_shorter` (``jax.image.resize``).

    Args:
      image: ``[H, W, C]``, uint8 ``0..255`` or float in ``[0, 1]``.
      resize: the shorter side after resizing (static).
      crop: the side of the square centre crop (static).

    Returns:
      ``[crop, crop, C]`` float32 in ``[0, 1]``.

    Raises:
      ValueError: an image that is not 3-D, or neither uint8 nor floating.
    """
    image = jnp.asarray(image)
    _check_image(image)
    if jnp.issubdtype(image.dtype, jnp.floating):
        return center_crop(resize_shorter(image, resize), crop)
    if image.dtype != jnp.uint8:
        to_float(image)  # raises: another integer dtype
    # uint8: Pillow's own bilinear resize, as torchvision's Resize on a PIL image.
    shape = resized_shape(*image.shape[:2], resize)
    if shape != image.shape[:2]:
        image = resample.resize(image[None], shape, "bilinear")[0]
    return to_float(center_crop(image, crop))


@functools.cache
def _quantise_fn(resize: int, crop: int):
    def fn(image):
        out = preprocess(image, resize=resize, crop=crop)
        return jnp.round(out * 255.0).astype(jnp.uint8)

    return jax.jit(fn)


def load_photos(
    paths: Sequence[str | os.PathLike], resize: int = 256, crop: int = 224
) -> Dataset:
    """Decodes image files with Pillow and applies :func:`preprocess` to each.

    Every image is decoded to RGB by :func:`pixjax.data.decode.decode_image` (16-bit
    images scaled, alpha dropped, EXIF orientation applied). Images of different sizes
    are fine (each shape compiles once).

    Args:
      paths: image files readable by Pillow.
      resize: the shorter side after resizing.
      crop: the side of the square centre crop.

    Returns:
      A :class:`Dataset` with uint8 ``[N, crop, crop, 3]`` images (rounded from the
      float result), ``labels=None`` and ``class_names=IMAGENET_CLASSES``.

    Raises:
      ValueError: for no paths, bad sizes or an unreadable file.
      FileNotFoundError: for a missing file.
    """
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("paths: expected at least one image file, got none")
    fn = _quantise_fn(_check_size(resize, "resize"), _check_size(crop, "crop"))
    images = np.empty((len(paths), crop, crop, 3), np.uint8)
    for i, path in enumerate(paths):
        images[i] = np.asarray(fn(decode_image(path, channels=3)))
    names = ",".join(os.path.basename(p) for p in paths)
    return Dataset(
        images=images,
        labels=None,
        class_names=IMAGENET_CLASSES,
        name=f"photos:{names}",
    )
