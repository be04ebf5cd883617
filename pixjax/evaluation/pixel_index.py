"""The Pixel-index of Zhang & Cai (2021), eq. (7): ``Pi = w / (p * r * a)``.

* ``w``: share of images misclassified after the change (among images the model got
  right before it),
* ``p``: changed pixels / all pixels,
* ``r``: value range of the changes / 255,
* ``a``: area of the position range / image area.

Lower is more robust. The paper's worked example (eqs. 8-12): 10,000 images of
224x224, 64 changed pixels, values 0..255, positions in a 200x200 square, 1,000
misclassified -> ``Pi = 98.30``.
"""

from __future__ import annotations

from collections.abc import Sequence


def pixel_index(
    w: float,
    num: int,
    image_hw: Sequence[int],
    value_range: float = 1.0,
    region_hw: Sequence[int] | None = None,
) -> float:
    """Computes ``Pi = w / (p * r * a)``.

    Args:
      w: misclassified share in ``[0, 1]``.
      num: changed pixels (``p = num / (H * W)``).
      image_hw: ``(H, W)`` of the image.
      value_range: ``r`` in ``(0, 1]`` (``1`` for values anywhere in ``0..255``).
      region_hw: ``(h, w)`` of the position range (``None``: the whole image).

    Returns:
      The Pixel-index (a float; ``0`` when nothing was misclassified).
    """
    h, wd = int(image_hw[0]), int(image_hw[1])
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"w: expected a share in [0, 1], got {w}")
    if not 0 < num <= h * wd:
        raise ValueError(f"num: expected 1..{h * wd}, got {num}")
    if not 0.0 < value_range <= 1.0:
        raise ValueError(f"value_range: expected a value in (0, 1], got {value_range}")
    rh, rw = (h, wd) if region_hw is None else (int(region_hw[0]), int(region_hw[1]))
    if not (0 < rh <= h and 0 < rw <= wd):
        raise ValueError(f"region_hw: expected within {h}x{wd}, got {rh}x{rw}")
    p = num / (h * wd)
    a = (rh * rw) / (h * wd)
    return w / (p * value_range * a)
