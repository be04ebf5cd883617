"""The in-memory dataset every loader returns, plus pure preprocessing helpers."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Dataset(NamedTuple):
    """An image classification dataset held in host memory.

    Attributes:
      images: ``[N, H, W, C]`` uint8 in ``0..255`` (channels last, always 4-D).
      labels: ``[N]`` int32 class indices, or ``None`` for unlabelled data (experiments
        then use the model's clean predictions as labels).
      class_names: one name per class (may be empty when unknown).
      name: a short description of where the data came from (for metadata).
    """

    images: np.ndarray
    labels: np.ndarray | None
    class_names: tuple[str, ...]
    name: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        if self.class_names:
            return len(self.class_names)
        if self.labels is None or len(self.labels) == 0:
            return 0
        return int(self.labels.max()) + 1

    def take(self, index: np.ndarray | slice) -> Dataset:
        """Returns the subset at ``index`` (a slice or an integer index array)."""
        labels = None if self.labels is None else self.labels[index]
        return self._replace(images=self.images[index], labels=labels)

    def with_labels(self, labels: np.ndarray) -> Dataset:
        labels = np.asarray(labels, dtype=np.int32)
        if labels.shape != (len(self.images),):
            raise ValueError(
                f"labels: expected shape ({len(self.images)},), got {labels.shape}"
            )
        return self._replace(labels=labels)


def check_images(images: np.ndarray, argument: str = "images") -> np.ndarray:
    """Validates a uint8 ``[N, H, W, C]`` image array and returns it.

    Raises:
      ValueError: naming ``argument`` and the accepted shapes / dtypes.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"{argument}: expected a 4-D array [N, H, W, C] (channels last), got shape "
            f"{images.shape}"
        )
    if images.dtype != np.uint8:
        hint = (
            "convert float images in [0, 1] with (x * 255).round().astype(np.uint8)"
            if np.issubdtype(images.dtype, np.floating)
            else "convert integer levels 0..255 with .astype(np.uint8) (check the range "
            "first)"
        )
        raise ValueError(
            f"{argument}: expected dtype uint8 with values 0..255, got {images.dtype}; "
            + hint
        )
    if images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{argument}: expected 1 or 3 channels in the last axis, got shape "
            f"{images.shape}"
        )
    return images


def check_positive_int(name: str, value) -> None:
    """``value`` must be a positive integer (not a bool, not a float).

    Raises:
      ValueError: naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")


def check_labels(
    labels,
    num_classes: int | None = None,
    *,
    num_images: int | None = None,
    argument: str = "labels",
    classes_from: str = "the model's {n} logits",
) -> None:
    """Validates class labels: an integer dtype, shape ``(num_images,)`` when given, and
    (unless traced inside ``jit``) every value in ``0 .. num_classes - 1``.

    Args:
      labels: ``[N]`` array-like (numpy, jax or a list).
      num_classes: the number of classes of whatever the labels meet (a model's
        logits, a dataset's class names); ``None`` skips the range check.
      num_images: the expected ``N``.
      argument: the name used in messages (``labels``, ``targets``, a file, ...).
      classes_from: says where ``num_classes`` comes from (``{n}`` is replaced).

    Raises:
      ValueError: naming ``argument``, the accepted classes and what was found.
    """
    import jax

    if labels is None:
        raise ValueError(f"{argument}: expected integer class labels, got None")
    shape = np.shape(labels)
    if num_images is not None and shape != (num_images,):
        raise ValueError(
            f"{argument}: expected shape ({num_images},) to match images, got {shape}"
        )
    dtype = getattr(labels, "dtype", None)
    if dtype is None:
        dtype = np.asarray(labels).dtype
    if not np.issubdtype(dtype, np.integer):
        raise ValueError(f"{argument}: expected integer classes, got dtype {dtype}")
    if num_classes is None or isinstance(labels, jax.core.Tracer):
        return
    a = np.asarray(labels)
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        bad = int(np.sum((a < 0) | (a >= num_classes)))
        raise ValueError(
            f"{argument}: expected classes in 0..{num_classes - 1} ("
            + classes_from.format(n=num_classes)
            + f"), got range [{a.min()}, {a.max()}] ({bad} outside)"
        )


def to_float(images: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
    """Images as float32 in ``[0, 1]``: the one uint8 -> float conversion of pixjax.

    Pure and jit-able; the dtype decides (statically). The result is of the kind of
    the input, and so is the arithmetic: a ``jax.Array`` (or a tracer inside
    ``jit``) gives a ``jax.Array`` computed by XLA, which divides by 255 as
    ``x * float32(1 / 255)``; a numpy array (or a list) gives a numpy array divided
    exactly, as numpy does. The two differ by one unit in the last place for some
    values (126 of the 256); each path gives what its callers computed before this
    function existed (device code: training, prediction, attacks, sweeps; host code:
    scikit-learn style features and figures), so no result changed.

    Args:
      images: any shape; uint8 ``0..255`` (divided by 255), or a floating dtype
        already in ``[0, 1]`` (cast to float32, values unchanged; not range-checked,
        see :func:`check_float_images`).

    Returns:
      float32 of the same shape, in ``[0, 1]`` for uint8 input; a ``jax.Array`` for a
      ``jax.Array`` input, else a numpy array.

    Raises:
      ValueError: any other dtype (signed or wider integers, bool), naming it.
    """
    on_host = not isinstance(images, jax.Array)
    if on_host:
        images = np.asarray(images)
    dtype = np.dtype(images.dtype)
    if dtype == np.uint8:
        if on_host:
            return images.astype(np.float32) / np.float32(255)
        return images.astype(jnp.float32) / 255.0
    if jnp.issubdtype(dtype, jnp.floating):
        return images.astype(np.float32) if on_host else images.astype(jnp.float32)
    raise ValueError(
        f"images: expected uint8 values 0..255 or floating values in [0, 1], got "
        f"dtype {dtype}"
    )


@jax.jit
def _float_stats(x):
    finite = jnp.isfinite(x)
    return (
        jnp.sum(~finite),
        jnp.min(jnp.where(finite, x, jnp.inf)),
        jnp.max(jnp.where(finite, x, -jnp.inf)),
    )


def check_float_images(images, argument: str = "images") -> None:
    """Validates a batch of float images: ``[N, H, W, C]``, ``N >= 1``, a floating
    dtype, and (unless ``images`` is traced inside ``jit``, where only the shape and
    dtype are known) finite values in ``[0, 1]``. Works on numpy and jax arrays (one
    reduction on the array's device).

    Raises:
      ValueError: naming ``argument``, the accepted values and, for 0..255 data, the
        fix.
    """
    shape = np.shape(images)
    if len(shape) != 4:
        raise ValueError(f"{argument}: expected shape [N, H, W, C], got {shape}")
    if shape[0] == 0:
        raise ValueError(f"{argument}: expected a non-empty batch, got 0 images")
    dtype = getattr(images, "dtype", None) or np.asarray(images).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{argument}: expected floating images in [0, 1], got dtype {dtype}; "
            "divide uint8 images by 255"
        )
    if isinstance(images, jax.core.Tracer):
        return
    bad, lo, hi = (float(v) for v in _float_stats(jnp.asarray(images)))
    if bad:
        raise ValueError(
            f"{argument}: expected finite values in [0, 1], got {int(bad)} NaN or "
            "infinite entries"
        )
    if lo < 0 or hi > 1:
        hint = "; divide uint8 images by 255" if hi > 1 else ""
        raise ValueError(
            f"{argument}: expected values in [0, 1], got range [{lo:g}, {hi:g}]{hint}"
        )
