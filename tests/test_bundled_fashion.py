"""Tests for the bundled Fashion-MNIST sample (``"fashion-sample"``) and its rebuild tool.

The provenance check compares every bundled image with its claimed source image in the
full Fashion-MNIST when Debian's ``dataset-fashion-mnist`` is installed, and otherwise
(CI) with the SHA-256 of the arrays recorded in ``pixjax/data/_bundled/README.md``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.resources
import importlib.util
import os
import pathlib
import re
import struct

import numpy as np
import pytest

from pixjax import data
from pixjax.data import bundled
from pixjax.data.idx import FASHION_MNIST_CLASSES, read_idx

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
TOOL = (
    pathlib.Path(__file__).resolve().parents[1]
    / "experiments"
    / "tools"
    / "make_bundled_fashion.py"
)
KEYS = ("images", "labels", "train_index", "test_index", "train_source", "test_source")


def _have_fashion() -> bool:
    return all(
        os.path.isfile(os.path.join(FASHION_DIR, name))
        for name in (
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
        )
    )


@functools.cache
def _npz() -> dict[str, np.ndarray]:
    ref = importlib.resources.files("pixjax.data") / "_bundled" / "fashion_mnist_5k.npz"
    with importlib.resources.as_file(ref) as path, np.load(path) as f:
        return {k: f[k] for k in f.files}


@functools.cache
def _tool():
    spec = importlib.util.spec_from_file_location("make_bundled_fashion", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """The README's rule, written out independently of the tool."""
    h = hashlib.sha256()
    for key in KEYS:
        a = arrays[key]
        h.update(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes())
    return h.hexdigest()


def _readme_digest() -> str:
    ref = importlib.resources.files("pixjax.data") / "_bundled" / "README.md"
    text = ref.read_text(encoding="utf-8")
    section = text.split("## Fashion-MNIST sample", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"SHA-256 of the arrays.*?`([0-9a-f]{64})`", section, re.S)
    assert match, "README.md records no SHA-256 of the Fashion-MNIST arrays"
    return match.group(1)


# ------------------------------------------------------------------ file layout


def test_npz_layout():
    f = _npz()
    assert sorted(f) == sorted(KEYS)
    assert f["images"].shape == (5000, 28, 28) and f["images"].dtype == np.uint8
    assert f["labels"].shape == (5000,) and f["labels"].dtype == np.uint8
    assert f["train_index"].shape == (3000,) and f["train_index"].dtype == np.int16
    assert f["test_index"].shape == (2000,) and f["test_index"].dtype == np.int16
    assert f["train_source"].shape == (3000,) and f["train_source"].dtype == np.int32
    assert f["test_source"].shape == (2000,) and f["test_source"].dtype == np.int32
    # The split is a partition of the 5000 images.
    both = np.concatenate([f["train_index"], f["test_index"]]).astype(np.int64)
    np.testing.assert_array_equal(np.sort(both), np.arange(5000))
    # Sources are distinct images of the Fashion-MNIST train (60000) / t10k (10000).
    for key, n, total in (("train_source", 3000, 60000), ("test_source", 2000, 10000)):
        src = f[key]
        assert len(np.unique(src)) == n
        assert src.min() >= 0 and src.max() < total
    assert f["labels"].max() == 9
    assert len({im.tobytes() for im in f["images"]}) == 5000


def test_arrays_match_readme_digest():
    assert _digest(_npz()) == _readme_digest()


def test_images_are_real_fashion_mnist():
    """Each bundled image and label is the claimed Fashion-MNIST one (byte-identical);
    without the Debian folder, the arrays must match the README's SHA-256 instead."""
    f = _npz()
    if not _have_fashion():
        assert _digest(f) == _readme_digest()
        return
    for split, stem in (("train", "train"), ("test", "t10k")):
        src_images = read_idx(os.path.join(FASHION_DIR, f"{stem}-images-idx3-ubyte.gz"))
        src_labels = read_idx(os.path.join(FASHION_DIR, f"{stem}-labels-idx1-ubyte.gz"))
        index = f[f"{split}_index"].astype(np.int64)
        source = f[f"{split}_source"].astype(np.int64)
        mine = f["images"][index]
        theirs = src_images[source]
        assert mine.dtype == theirs.dtype == np.uint8
        assert [im.tobytes() for im in mine] == [im.tobytes() for im in theirs]
        np.testing.assert_array_equal(f["labels"][index], src_labels[source])


# ------------------------------------------------------------------ loader


def test_fashion_sample_splits():
    train = data.load("fashion-sample", split="train")
    test = data.load("fashion-sample", split="test")
    everything = data.load("fashion-sample", split="all")
    for ds, n, split in (
        (train, 3000, "train"),
        (test, 2000, "test"),
        (everything, 5000, "all"),
    ):
        assert ds.images.shape == (n, 28, 28, 1) and ds.images.dtype == np.uint8
        assert ds.labels.shape == (n,) and ds.labels.dtype == np.int32
        assert ds.class_names == FASHION_MNIST_CLASSES
        assert ds.name == f"fashion-sample:{split}"
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), [300] * 10)
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=10), [200] * 10)
    np.testing.assert_array_equal(
        np.bincount(everything.labels, minlength=10), [500] * 10
    )
    train_rows = {im.tobytes() for im in train.images}
    test_rows = {im.tobytes() for im in test.images}
    assert not train_rows & test_rows
    assert train_rows | test_rows == {im.tobytes() for im in everything.images}
    # The stored order mixes the classes: a short prefix already holds most of them.
    assert len(set(train.labels[:50].tolist())) >= 8
    assert len(set(test.labels[:50].tolist())) >= 8


def test_fashion_sample_default_and_direct_loader():
    direct = data.load_fashion_sample()
    via_load = data.load("fashion-sample")
    assert direct.name == via_load.name == "fashion-sample:test"
    np.testing.assert_array_equal(direct.images, via_load.images)
    np.testing.assert_array_equal(direct.labels, via_load.labels)
    assert "load_fashion_sample" in data.__all__
    assert "fashion-sample" in data.KINDS
    assert "fashion-sample" in data.__doc__


def test_fashion_sample_limit():
    few = data.load("fashion-sample", "train", limit=9)
    full = data.load("fashion-sample", "train")
    np.testing.assert_array_equal(few.images, full.images[:9])
    np.testing.assert_array_equal(few.labels, full.labels[:9])


@pytest.mark.parametrize("split", ["validation", "TEST", ""])
def test_fashion_sample_bad_split(split):
    for call in (
        lambda: data.load("fashion-sample", split=split),
        lambda: data.load_fashion_sample(split),
    ):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        for accepted in ("train", "test", "all"):
            assert repr(accepted) in message
        assert "fashion-sample" in message


def test_fashion_sample_rejects_options_and_args():
    with pytest.raises(ValueError, match="fashion-sample takes no options"):
        data.load("fashion-sample", size=32)
    with pytest.raises(ValueError, match="expected one of"):
        data.load("fashion-sample:extra")


def test_mnist_sample_unchanged():
    """The shared helper gives the MNIST sample exactly as before."""
    ref = importlib.resources.files("pixjax.data") / "_bundled" / "mnist_5k.npz"
    with importlib.resources.as_file(ref) as path, np.load(path) as f:
        raw = {k: f[k] for k in f.files}
    for split in ("train", "test", "all"):
        ds = data.load("mnist-sample", split)
        index = raw.get(f"{split}_index", np.arange(5000)).astype(np.int64)
        np.testing.assert_array_equal(ds.images, raw["images"][index][..., None])
        np.testing.assert_array_equal(ds.labels, raw["labels"][index].astype(np.int32))
        assert ds.labels.dtype == np.int32 and ds.images.dtype == np.uint8
        assert ds.class_names == tuple(str(i) for i in range(10))
        assert ds.name == f"mnist-sample:{split}"
    with pytest.raises(ValueError) as info:
        bundled.load_mnist_sample("nope")
    assert str(info.value) == (
        "split: expected one of ('train', 'test', 'all') for mnist-sample, got 'nope'"
    )
    with pytest.raises(ValueError, match="mnist-sample takes no options"):
        data.load("mnist-sample", size=32)


# ------------------------------------------------------------------ rebuild tool


def test_tool_permutation_is_a_permutation():
    tool = _tool()
    rng = np.random.default_rng(42)
    p = tool.permutation(rng, 1000)
    np.testing.assert_array_equal(np.sort(p), np.arange(1000))
    # Only the raw stream is used: the same words give the same permutation.
    keys = np.random.default_rng(42).bit_generator.random_raw(1000)
    np.testing.assert_array_equal(p, np.argsort(keys, kind="stable"))


def _write_idx_gz(path: pathlib.Path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_tool_rebuilds_shipped_arrays(tmp_path):
    """With the Debian folder, the tool reproduces the shipped arrays exactly; without
    it, the tool runs on a synthetic folder and keeps its documented invariants."""
    tool = _tool()
    if _have_fashion():
        rebuilt = tool.build(FASHION_DIR)
        shipped = _npz()
        assert sorted(rebuilt) == sorted(shipped)
        for key in shipped:
            assert rebuilt[key].dtype == shipped[key].dtype, key
            np.testing.assert_array_equal(rebuilt[key], shipped[key], err_msg=key)
        return
    rng = np.random.default_rng(0)
    sources = {}
    for stem, per_class in (("train", 320), ("t10k", 210)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        rng.shuffle(labels)
        images = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        _write_idx_gz(tmp_path / f"{stem}-images-idx3-ubyte.gz", images)
        _write_idx_gz(tmp_path / f"{stem}-labels-idx1-ubyte.gz", labels)
        sources[stem] = (images, labels)
    built = tool.build(tmp_path)
    for split, stem, n in (("train", "train", 3000), ("test", "t10k", 2000)):
        index = built[f"{split}_index"].astype(np.int64)
        source = built[f"{split}_source"].astype(np.int64)
        assert len(index) == len(set(source.tolist())) == n
        np.testing.assert_array_equal(built["images"][index], sources[stem][0][source])
        np.testing.assert_array_equal(built["labels"][index], sources[stem][1][source])
        np.testing.assert_array_equal(
            np.bincount(built["labels"][index], minlength=10), [n // 10] * 10
        )
    out = tmp_path / "out.npz"
    assert tool.main([str(tmp_path), "--out", str(out)]) == 0
    assert tool.main([str(tmp_path), "--out", str(out), "--check"]) == 0
