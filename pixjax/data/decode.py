"""One image decoder for every file pixjax reads (``folder:``, ``photos:`` and any image
input to come): a Pillow image of any mode becomes uint8 ``[H, W, C]`` by a fixed rule,
or the file is refused with its name.

The rule, by Pillow mode:

* EXIF orientation is applied first (``ImageOps.exif_transpose``), as a viewer shows
  the photo.
* ``1`` (bilevel): 0 / 255. ``L``: as stored. ``P`` / ``PA`` (palette): the palette's
  colours (Pillow's conversion).
* ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` (16-bit grey) and ``I`` (32-bit integers, how
  Pillow opens some 16-bit PNG / TIFF files): read as 16-bit levels ``0..65535`` and
  **scaled** to ``round(v * 255 / 65535)``, never clipped; an ``I`` image with values
  outside ``0..65535`` is refused.
* ``F`` (32-bit float): values must lie in ``[0, 1]`` and become ``round(255 v)``; other
  ranges are refused (their scale is unknown).
* Alpha (``LA``, ``La``, ``RGBA``, ``RGBa``, ``PA``): dropped, the colour channels kept as
  stored (premultiplied modes are un-premultiplied by Pillow), as torchvision's
  ``ImageFolder`` does with ``convert("RGB")``.
* ``RGB``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: Pillow's conversion to RGB. Pillow reads
  16-bit-per-channel colour PNGs as 8-bit RGB (the high byte of each value).
* Channels: ``channels=3`` repeats a grey image over R, G, B; ``channels=1`` turns colour
  into grey with Pillow's ITU-R 601-2 luma (``L = R 299/1000 + G 587/1000 +
  B 114/1000``); ``channels=None`` keeps grey modes grey and everything else RGB.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

# Pillow modes without colour information.
GREY_MODES = frozenset(
    {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
)
_SIXTEEN = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _grey_levels(im: Image.Image, path: str) -> Image.Image:
    """An ``L`` image from a 16-bit, 32-bit integer or float grey image."""
    if im.mode in _SIXTEEN:
        v = np.asarray(im).astype(np.int64)
        if v.size and (v.min() < 0 or v.max() > 65535):
            raise ValueError(
                f"image {path!r}: mode {im.mode} values in [{v.min()}, {v.max()}] are "
                "not 16-bit levels 0..65535"
            )
        return Image.fromarray(((v * 255 + 32767) // 65535).astype(np.uint8), "L")
    v = np.asarray(im, np.float64)  # "F"
    if v.size and not (np.isfinite(v).all() and v.min() >= 0 and v.max() <= 1):
        raise ValueError(
            f"image {path!r}: mode F (float) values must lie in [0, 1], got "
            f"[{np.nanmin(v):g}, {np.nanmax(v):g}] (unknown scale)"
        )
    return Image.fromarray(np.rint(v * 255).astype(np.uint8), "L")


def decode_image(path: str | os.PathLike, channels: int | None = None) -> np.ndarray:
    """Decodes one image file by the module's rule.

    Args:
      path: a file Pillow can read.
      channels: 1, 3, or ``None`` (grey modes -> 1, others -> 3).

    Returns:
      uint8 ``[H, W, channels]``.

    Raises:
      ValueError: naming the file, for a file Pillow cannot decode (truncated,
        not an image) or values outside the rule's range.
      FileNotFoundError: for a missing file.
    """
    path = os.fspath(path)
    if channels not in (None, 1, 3):
        raise ValueError(f"channels: expected None, 1 or 3, got {channels!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file {path!r} does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            grey = im.mode in GREY_MODES
            if im.mode in ("LA", "La"):
                im = im.convert("L")
            elif im.mode in _SIXTEEN or im.mode == "F":
                im = _grey_levels(im, path)
            elif im.mode == "1":
                im = im.convert("L")
            elif im.mode != "L":
                im = im.convert("RGB")
            want = channels or (1 if grey else 3)
            im = im.convert("L" if want == 1 else "RGB")
            out = np.asarray(im, np.uint8)
    except ValueError as e:
        if str(e).startswith(f"image {path!r}"):
            raise
        raise ValueError(f"image {path!r}: cannot decode it with Pillow ({e})") from e
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"image {path!r}: cannot decode it with Pillow ({e})") from e
    return out.reshape(out.shape[0], out.shape[1], want)


def image_mode(path: str | os.PathLike) -> tuple[str, tuple[int, int]]:
    """``(mode, (H, W))`` from the file's header only (after EXIF orientation).

    Raises:
      ValueError: naming the file, when Pillow cannot open it.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as im:
            h, w = im.height, im.width
            orientation = im.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
                h, w = w, h
            return im.mode, (h, w)
    except (OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"image {path!r}: cannot decode it with Pillow ({e})") from e
