"""Tests for pixjax.data: the bundled sample, IDX folders, image folders and tfds.

Every file these tests read is written here, in ``tmp_path``; nothing needs network.
"""

from __future__ import annotations

import gzip
import os
import struct
import time

import numpy as np
import pytest
from PIL import Image

from pixjax import data
from pixjax.data.folder import load_folder
from pixjax.data.idx import FASHION_MNIST_CLASSES, load_idx, parse_idx

# ------------------------------------------------------------------ bundled sample


def _rows(images: np.ndarray) -> list[bytes]:
    return [im.tobytes() for im in images]


def test_mnist_sample_splits():
    train = data.load("mnist-sample", "train")
    test = data.load("mnist-sample", "test")
    everything = data.load("mnist-sample", "all")
    for ds, n in ((train, 3000), (test, 2000), (everything, 5000)):
        assert ds.images.shape == (n, 28, 28, 1)
        assert ds.images.dtype == np.uint8
        assert ds.labels.shape == (n,) and ds.labels.dtype == np.int32
        assert ds.class_names == tuple(str(i) for i in range(10))
    np.testing.assert_array_equal(np.bincount(train.labels, minlength=10), 300)
    np.testing.assert_array_equal(np.bincount(test.labels, minlength=10), 200)
    all_rows = _rows(everything.images)
    assert len(set(all_rows)) == 5000  # no duplicate images, so sets are meaningful
    train_rows, test_rows = set(_rows(train.images)), set(_rows(test.images))
    assert not train_rows & test_rows
    assert train_rows | test_rows == set(all_rows)
    # Labels travel with their images.
    label_of = dict(zip(all_rows, everything.labels.tolist(), strict=True))
    assert [label_of[r] for r in _rows(train.images)] == train.labels.tolist()


def test_load_unknown_spec_lists_kinds():
    with pytest.raises(ValueError) as info:
        data.load("nonsense")
    for kind in data.KINDS:
        assert kind in str(info.value)


def test_load_limit():
    full = data.load("mnist-sample", "test")
    few = data.load("mnist-sample", "test", limit=7)
    assert few.images.shape == (7, 28, 28, 1) and few.labels.shape == (7,)
    np.testing.assert_array_equal(few.images, full.images[:7])
    np.testing.assert_array_equal(few.labels, full.labels[:7])
    with pytest.raises(ValueError, match="limit"):
        data.load("mnist-sample", "test", limit=0)


# ---------------------------------------------------------------------------- IDX


def _idx_bytes(array: np.ndarray) -> bytes:
    """Encodes a uint8 array as an IDX file by hand (magic 0x000008DD)."""
    assert array.dtype == np.uint8
    header = struct.pack(">HBB", 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def _write_idx_split(
    folder, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = False
) -> None:
    for kind, stem, array in (
        ("images", "idx3", images),
        ("labels", "idx1", labels),
    ):
        raw = _idx_bytes(array)
        name = f"{prefix}-{kind}-{stem}-ubyte"
        if gz:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)


def _fake_mnist(seed: int, n: int, h: int = 5, w: int = 4):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
    labels = rng.integers(0, 10, (n,), dtype=np.uint8)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    train_x, train_y = _fake_mnist(0, 12)
    test_x, test_y = _fake_mnist(1, 7)
    _write_idx_split(tmp_path, "train", train_x, train_y, gz=gz)
    _write_idx_split(tmp_path, "t10k", test_x, test_y, gz=gz)
    for split, x, y in (
        ("train", train_x, train_y),
        ("test", test_x, test_y),
        ("all", np.concatenate([train_x, test_x]), np.concatenate([train_y, test_y])),
    ):
        ds = load_idx(tmp_path, split)
        assert ds.images.dtype == np.uint8 and ds.images.shape == (len(x), 5, 4, 1)
        np.testing.assert_array_equal(ds.images[..., 0], x)
        assert ds.labels.dtype == np.int32
        np.testing.assert_array_equal(ds.labels, y)
        assert ds.class_names == tuple(str(i) for i in range(10))
        assert ds.name == f"idx:{tmp_path}:{split}"
    via_load = data.load(f"idx:{tmp_path}", "train", limit=3)
    np.testing.assert_array_equal(via_load.images[..., 0], train_x[:3])


def test_idx_dotted_names_and_class_names(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    x, y = _fake_mnist(2, 4)
    (folder / "t10k-images.idx3-ubyte").write_bytes(_idx_bytes(x))
    (folder / "t10k-labels.idx1-ubyte").write_bytes(_idx_bytes(y))
    assert load_idx(folder).class_names == FASHION_MNIST_CLASSES
    names = tuple("abcdefghij")
    assert load_idx(folder, class_names=names).class_names == names
    with pytest.raises(ValueError, match="class_names"):
        load_idx(folder, class_names=("a", "b"))


def test_parse_idx_other_dtypes():
    array = np.arange(6, dtype=">i4").reshape(2, 3)
    raw = struct.pack(">HBB2I", 0, 0x0C, 2, 2, 3) + array.tobytes()
    parsed = parse_idx(raw)
    assert parsed.dtype == np.int32
    np.testing.assert_array_equal(parsed, np.arange(6).reshape(2, 3))


def test_idx_bad_magic(tmp_path):
    x, y = _fake_mnist(0, 3)
    _write_idx_split(tmp_path, "t10k", x, y)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"\x12\x34\x08\x03" + bytes(40))
    with pytest.raises(ValueError, match="magic"):
        load_idx(tmp_path, "test")


def test_idx_truncated(tmp_path):
    x, y = _fake_mnist(0, 3)
    _write_idx_split(tmp_path, "t10k", x, y)
    raw = _idx_bytes(x)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        load_idx(tmp_path, "test")


def test_idx_count_mismatch(tmp_path):
    x, y = _fake_mnist(0, 3)
    _write_idx_split(tmp_path, "t10k", x, y[:2])
    with pytest.raises(ValueError, match=r"3 images .* 2 labels"):
        load_idx(tmp_path, "test")


def test_idx_missing_file(tmp_path):
    x, y = _fake_mnist(0, 3)
    _write_idx_split(tmp_path, "t10k", x, y)
    with pytest.raises(FileNotFoundError) as info:
        load_idx(tmp_path, "train")
    message = str(info.value)
    assert str(tmp_path) in message
    assert "train-images-idx3-ubyte" in message
    assert "train-images-idx3-ubyte.gz" in message
    with pytest.raises(FileNotFoundError):
        load_idx(tmp_path / "absent")


def test_idx_unknown_split(tmp_path):
    with pytest.raises(ValueError, match=r"split.*'train', 'test', 'all'.*'val'"):
        load_idx(tmp_path, "val")


# ------------------------------------------------------------------ image folders


def _save(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _grey(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _rgb(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_folder_labelled(tmp_path):
    a0, a1, b0 = _grey(0), _grey(1), _grey(2)
    _save(tmp_path / "bee" / "x1.png", a1)
    _save(tmp_path / "bee" / "x0.PNG", a0)  # extensions are case-insensitive
    _save(tmp_path / "ant" / "deeper" / "y.bmp", b0)  # nested below its class
    (tmp_path / "bee" / "notes.txt").write_text("not an image")
    (tmp_path / "empty").mkdir()  # an empty class folder still counts as a class
    ds = load_folder(tmp_path)
    assert ds.class_names == ("ant", "bee", "empty")
    assert ds.images.shape == (3, 6, 5, 1) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, [0, 1, 1])
    assert ds.labels.dtype == np.int32
    # Sorted paths: ant/deeper/y.bmp, bee/x0.PNG, bee/x1.png.
    np.testing.assert_array_equal(ds.images[..., 0], np.stack([b0, a0, a1]))
    via_load = data.load(f"folder:{tmp_path}", "train")  # split ignored here
    np.testing.assert_array_equal(via_load.images, ds.images)
    with pytest.raises(ValueError, match="labelled"):
        load_folder(tmp_path, labelled="yes")


def test_folder_unlabelled(tmp_path):
    images = [_rgb(i) for i in range(3)]
    for i, im in enumerate(images):
        _save(tmp_path / f"img{i}.png", im)
    ds = load_folder(tmp_path)
    assert ds.labels is None and ds.class_names == ()
    assert ds.images.shape == (3, 6, 5, 3)
    np.testing.assert_array_equal(ds.images, np.stack(images))
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_folder(tmp_path, labelled=True)
    # Loose images next to class folders: ambiguous unless told.
    _save(tmp_path / "cls" / "z.png", _rgb(9))
    with pytest.raises(ValueError, match="labelled=True"):
        load_folder(tmp_path)
    assert load_folder(tmp_path, labelled=True).images.shape == (1, 6, 5, 3)
    forced = load_folder(tmp_path, labelled=False)
    assert forced.labels is None and forced.images.shape == (4, 6, 5, 3)


def test_folder_train_test(tmp_path):
    _save(tmp_path / "train" / "a" / "0.png", _grey(0))
    _save(tmp_path / "train" / "b" / "0.png", _grey(1))
    _save(tmp_path / "train" / "b" / "1.png", _grey(2))
    _save(tmp_path / "test" / "b" / "0.png", _grey(3))
    _save(tmp_path / "test" / "c" / "0.png", _grey(4))
    train = load_folder(tmp_path, "train")
    assert train.class_names == ("a", "b")
    np.testing.assert_array_equal(train.labels, [0, 1, 1])
    test = load_folder(tmp_path, "test")
    assert test.class_names == ("b", "c") and len(test.images) == 2
    both = load_folder(tmp_path, "all")
    assert both.class_names == ("a", "b", "c")
    np.testing.assert_array_equal(both.labels, [0, 1, 1, 1, 2])
    np.testing.assert_array_equal(both.images[3, ..., 0], _grey(3))
    with pytest.raises(ValueError, match="split"):
        load_folder(tmp_path, "validation")


def test_folder_size_and_channels(tmp_path):
    _save(tmp_path / "a.png", _grey(0, 6, 5))
    _save(tmp_path / "b.jpg", _rgb(1, 8, 8))
    with pytest.raises(ValueError, match=r"size=\(H, W\)"):
        load_folder(tmp_path)
    ds = load_folder(tmp_path, size=(4, 7))
    assert ds.images.shape == (2, 4, 7, 3)  # one colour image -> RGB for all
    expected = np.asarray(
        Image.fromarray(_grey(0, 6, 5))
        .convert("RGB")
        .resize((7, 4), Image.Resampling.BILINEAR)
    )
    np.testing.assert_array_equal(ds.images[0], expected)
    grey = load_folder(tmp_path, size=(4, 7), channels=1)
    assert grey.images.shape == (2, 4, 7, 1)
    with pytest.raises(ValueError, match="channels"):
        load_folder(tmp_path, size=(4, 7), channels=2)
    with pytest.raises(ValueError, match="size"):
        load_folder(tmp_path, size=(4,))


def test_folder_empty_and_missing(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images"):
        load_folder(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_folder(tmp_path / "absent")


# --------------------------------------------------------------------------- tfds

_TFDS_NAME = "pixjax_test_digits"
_TFDS_SPLITS = {"train": (0, 12), "test": (1, 5)}  # split -> (seed, size)


def _tfds_examples(seed: int, n: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, (n,)).astype(np.int32)
    return images, labels


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A tiny dataset prepared as array_record, without TensorFlow or network."""
    tfds = pytest.importorskip("tensorflow_datasets")

    class PixjaxTestDigits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(28, 28, 1)),
                        "label": tfds.features.ClassLabel(num_classes=10),
                    }
                ),
                disable_shuffling=True,  # keep the generated order
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {s: self._generate_examples(*a) for s, a in _TFDS_SPLITS.items()}

        def _generate_examples(self, seed, n):
            images, labels = _tfds_examples(seed, n)
            for i in range(n):
                # A PIL image is PNG-encoded by Pillow; a numpy array would need TF.
                pil = Image.fromarray(images[i, ..., 0])
                yield i, {"image": pil, "label": int(labels[i])}

    data_dir = tmp_path_factory.mktemp("tfds")
    builder = PixjaxTestDigits(data_dir=str(data_dir), file_format="array_record")
    assert builder.name == _TFDS_NAME
    builder.download_and_prepare(file_format="array_record")
    return data_dir


def test_tfds_round_trip(tfds_dir):
    from pixjax.data.tfds_source import load_tfds

    for split, (seed, n) in _TFDS_SPLITS.items():
        images, labels = _tfds_examples(seed, n)
        ds = load_tfds(_TFDS_NAME, split, data_dir=tfds_dir)
        assert ds.images.dtype == np.uint8 and ds.images.shape == (n, 28, 28, 1)
        np.testing.assert_array_equal(ds.images, images)
        np.testing.assert_array_equal(ds.labels, labels)
        assert ds.labels.dtype == np.int32
        assert ds.class_names == tuple(str(i) for i in range(10))
    both = load_tfds(_TFDS_NAME, "all", data_dir=tfds_dir)
    assert len(both.images) == sum(n for _, n in _TFDS_SPLITS.values())
    sliced = data.load(f"tfds:{_TFDS_NAME}:1.0.0", "test[:3]", data_dir=tfds_dir)
    np.testing.assert_array_equal(sliced.images, _tfds_examples(1, 5)[0][:3])
    small = load_tfds(_TFDS_NAME, "test", data_dir=tfds_dir, size=(14, 10))
    assert small.images.shape == (5, 14, 10, 1)


def test_tfds_unknown_split(tfds_dir):
    from pixjax.data.tfds_source import load_tfds

    with pytest.raises(ValueError, match=r"validation.*'test', 'train'"):
        load_tfds(_TFDS_NAME, "validation", data_dir=tfds_dir)


def test_tfds_absent_fails_fast(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets")
    from pixjax.data.tfds_source import load_tfds

    monkeypatch.setenv("TFDS_DATA_DIR", os.fspath(tmp_path))
    for kwargs in ({"data_dir": tmp_path / "nowhere"}, {}):  # explicit, then env
        start = time.monotonic()
        with pytest.raises(FileNotFoundError) as info:
            load_tfds("mnist", "test", **kwargs)
        assert time.monotonic() - start < 10
        assert "tfds build mnist" in str(info.value)
        assert "download_and_prepare" in str(info.value)
    assert str(tmp_path) in str(info.value)  # the env var's directory was used


@pytest.mark.parametrize("text", ["{garbage", "", "[]"])
def test_tfds_garbage_dataset_info_is_one_error(tfds_dir, tmp_path, text):
    import shutil

    from pixjax.data.tfds_source import load_tfds

    copy = tmp_path / "tfds"
    shutil.copytree(tfds_dir, copy)
    (info,) = copy.rglob("dataset_info.json")
    info.write_text(text)
    with pytest.raises(ValueError, match=r"dataset_info\.json' cannot be read"):
        load_tfds(_TFDS_NAME, "test", data_dir=copy)
