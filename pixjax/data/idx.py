"""MNIST / Fashion-MNIST style folders of IDX files (raw or gzip-compressed).

The IDX format (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a big-endian
header followed by the raw array:

* bytes 0-1: zero; byte 2: element type code (``0x08`` = uint8, ``0x09`` = int8,
  ``0x0B`` = int16, ``0x0C`` = int32, ``0x0D`` = float32, ``0x0E`` = float64);
  byte 3: the number of dimensions ``D``;
* ``D`` big-endian uint32 sizes;
* the elements in C order.

A folder holds up to four such files, ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``,
each optionally gzip-compressed (``.gz``) and also accepted with a dot before ``idx``
(``train-images.idx3-ubyte``). Debian's ``dataset-fashion-mnist`` package installs the
``.gz`` form in ``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence

import numpy as np

from pixjax.data.base import Dataset

SPLITS = ("train", "test", "all")
DIGIT_CLASSES = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# IDX element type code -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
# File stems per split: (images, labels). "t10k" is the MNIST name of the test split.
_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parses the bytes of one (uncompressed) IDX file.

    Args:
      data: the whole file content.
      source: a name for error messages (usually the file path).

    Returns:
      The array with the header's shape, in native byte order (``uint8`` for the
      ``0x08`` type code used by MNIST).

    Raises:
      ValueError: on a wrong magic number, an unknown type code, or a file whose size
        does not match its header (truncated or with trailing bytes).
    """
    if len(data) < 4:
        raise ValueError(
            f"{source}: not an IDX file: {len(data)} bytes, shorter than the 4-byte "
            "magic number"
        )
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{source}: not an IDX file: bad magic number 0x{data[:4].hex()} (expected "
            "0x0000TTDD with type code TT in "
            f"{{{', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}}} and DD >= 1 "
            "dimensions, e.g. 0x00000803 for MNIST images)"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"{source}: truncated IDX file: {len(data)} bytes, but the header of a "
            f"{ndim}-D array needs {header_size}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = _IDX_DTYPES[code]
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise ValueError(
            f"{source}: truncated IDX file: header says shape {shape} of {dtype.name} "
            f"({expected} bytes with the header), but the file has {len(data)} bytes"
        )
    if len(data) > expected:
        raise ValueError(
            f"{source}: corrupt IDX file: header says shape {shape} of {dtype.name} "
            f"({expected} bytes with the header), but the file has {len(data)} bytes "
            f"({len(data) - expected} extra)"
        )
    count = (expected - header_size) // dtype.itemsize
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header_size)
    # astype copies into native byte order, so the result is writable.
    return array.reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file, raw or gzip-compressed (detected from its first bytes).

    Args:
      path: the file.

    Returns:
      The parsed array (see :func:`parse_idx`).
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip file: {e}") from e
    return parse_idx(data, source=path)


def _find_file(folder: str, stem: str) -> str:
    """Returns the path of ``stem`` in ``folder`` in any accepted spelling."""
    dotted = stem.replace("-idx", ".idx")
    candidates = [stem, stem + ".gz", dotted, dotted + ".gz"]
    for name in candidates:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"IDX folder {folder!r} has no {stem!r}: expected one of {candidates}"
    )


def _load_split(folder: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads the images ``[N, H, W, C]`` uint8 and labels ``[N]`` int32 of a split."""
    image_stem, label_stem = _STEMS[split]
    image_path = _find_file(folder, image_stem)
    label_path = _find_file(folder, label_stem)
    images = read_idx(image_path)
    labels = read_idx(label_path)
    if images.dtype != np.uint8:
        raise ValueError(
            f"{image_path}: expected uint8 images (IDX type code 0x08), got "
            f"{images.dtype}"
        )
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"{image_path}: expected images of shape [N, H, W] or [N, H, W, C] with C "
            f"in (1, 3), got {images.shape}"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{label_path}: expected a 1-D array of integer labels, got shape "
            f"{labels.shape} of {labels.dtype}"
        )
    if len(labels) != len(images):
        raise ValueError(
            f"IDX folder {folder!r}, split {split!r}: {len(images)} images in "
            f"{os.path.basename(image_path)} but {len(labels)} labels in "
            f"{os.path.basename(label_path)}"
        )
    if len(labels) and labels.min() < 0:
        raise ValueError(f"{label_path}: negative label {int(labels.min())}")
    return images, labels.astype(np.int32)


def load_idx(
    path: str | os.PathLike,
    split: str = "test",
    *,
    class_names: Sequence[str] | None = None,
) -> Dataset:
    """Loads an MNIST / Fashion-MNIST style folder of IDX files.

    Args:
      path: the folder holding ``train-images-idx3-ubyte``,
        ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
        ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``; only the files of the
        requested split are needed).
      split: ``"train"``, ``"test"`` (the ``t10k`` files) or ``"all"`` (train then
        test).
      class_names: one name per class. By default: the Fashion-MNIST names when the
        folder's name contains "fashion" and the labels are < 10, the digits
        ``"0".."9"`` when the labels are < 10, else ``"0".."K-1"``.

    Returns:
      A :class:`Dataset` with images ``[N, H, W, C]`` uint8 (``[N, 28, 28, 1]`` for
      MNIST) and labels ``[N]`` int32, named ``"idx:{path}:{split}"``.

    Raises:
      ValueError: for an unknown ``split``, a malformed file, or mismatched counts.
      FileNotFoundError: when the folder or one of the needed files is missing (the
        message names the accepted file names).
    """
    folder = os.fspath(path)
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS} for IDX data, got {split!r}")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"IDX folder {folder!r} does not exist")
    parts = [
        _load_split(folder, s)
        for s in (("train", "test") if split == "all" else (split,))
    ]
    if len({p[0].shape[1:] for p in parts}) > 1:
        raise ValueError(
            f"IDX folder {folder!r}: train and test images differ in shape: "
            f"{[p[0].shape[1:] for p in parts]}"
        )
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
    labels = np.concatenate([p[1] for p in parts]) if len(parts) > 1 else parts[0][1]
    num_labels = int(labels.max()) + 1 if len(labels) else 0
    if class_names is None:
        fashion = "fashion" in os.path.basename(os.path.abspath(folder)).lower()
        if num_labels <= 10:
            class_names = FASHION_MNIST_CLASSES if fashion else DIGIT_CLASSES
        else:
            class_names = tuple(str(i) for i in range(num_labels))
    else:
        if isinstance(class_names, str) or not all(
            isinstance(c, str) for c in class_names
        ):
            raise ValueError(
                f"class_names: expected a sequence of str, got {class_names!r}"
            )
        class_names = tuple(class_names)
        if len(class_names) < num_labels:
            raise ValueError(
                f"class_names: {len(class_names)} names, but the labels go up to "
                f"{num_labels - 1}"
            )
    return Dataset(
        images=np.ascontiguousarray(images),
        labels=labels,
        class_names=tuple(class_names),
        name=f"idx:{folder}:{split}",
    )
