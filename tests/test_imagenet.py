"""ImageNet preprocessing (pixjax.data.imagenet) and offline photos (pixjax.data.photos).

Parity: ``preprocess`` against ``torchvision.transforms`` ``Resize(256)``,
``CenterCrop(224)`` on a PIL image of a real photo: byte-identical for uint8 images
(the Pillow-exact resize), within about one 8-bit level for float images
(``jax.image.resize``; measured mean absolute difference about 0.0011, maximum 1/255).
"""

import sys
import types

if "torchvision" not in sys.modules:  # its C extension is a CUDA build: skip its ops
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations"
    )

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
import torchvision.transforms as T  # noqa: E402
from PIL import Image  # noqa: E402

from pixjax import data  # noqa: E402
from pixjax.data import imagenet, photos  # noqa: E402

TORCHVISION_EVAL = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor()])
TORCHVISION_PIXELS = T.Compose([T.Resize(256), T.CenterCrop(224)])  # PIL -> PIL


@pytest.fixture(scope="module")
def photo():
    """grace_hopper.jpg (always present: matplotlib is a dependency) as PIL RGB."""
    paths = photos.sample_photo_paths()
    assert paths and paths[0].name == "grace_hopper.jpg"
    with Image.open(paths[0]) as im:
        return im.convert("RGB")


def _reference(im: Image.Image, transform=TORCHVISION_EVAL) -> np.ndarray:
    return transform(im).numpy().transpose(1, 2, 0)


# ------------------------------------------------------------------ class names


def test_imagenet_classes():
    names = imagenet.IMAGENET_CLASSES
    assert isinstance(names, tuple) and len(names) == 1000
    assert len(set(names)) == 1000
    assert names[0] == "tench"
    assert names[1] == "goldfish"
    assert names[207] == "golden retriever"
    assert names[999] == "toilet tissue"
    assert all(n and n == n.strip() for n in names)


def test_imagenet_classes_match_torchvision():
    meta = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta
    assert imagenet.IMAGENET_CLASSES == tuple(meta["categories"])


# ------------------------------------------------------------------ shapes


@pytest.mark.parametrize(
    "height,width", [(512, 600), (600, 512), (300, 451), (256, 256), (100, 150), (7, 3)]
)
def test_resized_shape_matches_torchvision(height, width):
    expected_w, expected_h = T.Resize(256)(Image.new("RGB", (width, height))).size
    assert imagenet.resized_shape(height, width, 256) == (expected_h, expected_w)
    out = imagenet.resize_shorter(jnp.zeros((height, width, 3)), 256)
    assert out.shape == (expected_h, expected_w, 3) and out.dtype == jnp.float32


@pytest.mark.parametrize(
    "height,width,size",
    [
        (256, 341, 224),
        (257, 300, 224),
        (259, 258, 224),
        (224, 224, 224),
        (5, 8, (3, 4)),
    ],
)
def test_center_crop_matches_torchvision_exactly(height, width, size):
    x = np.random.default_rng(0).random((height, width, 3), dtype=np.float32)
    expected = T.CenterCrop(size)(torch.from_numpy(x).permute(2, 0, 1))
    ours = np.asarray(imagenet.center_crop(x, size))
    np.testing.assert_array_equal(ours, expected.permute(1, 2, 0).numpy())


@pytest.mark.parametrize("height,width", [(200, 230), (201, 300), (10, 10)])
def test_center_crop_pads_like_torchvision(height, width):
    x = np.random.default_rng(1).random((height, width, 2), dtype=np.float32)
    expected = T.CenterCrop(224)(torch.from_numpy(x).permute(2, 0, 1))
    ours = np.asarray(imagenet.center_crop(x, 224))
    np.testing.assert_array_equal(ours, expected.permute(1, 2, 0).numpy())


def test_preprocess_shapes_and_dtypes(photo):
    u8 = np.asarray(photo)
    out_u8 = imagenet.preprocess(u8)
    out_f = imagenet.preprocess(u8.astype(np.float32) / 255.0)
    assert out_u8.shape == out_f.shape == (224, 224, 3)
    assert out_u8.dtype == out_f.dtype == jnp.float32
    # uint8: Pillow's fixed point; float: jax.image.resize; about one level apart
    assert np.abs(np.asarray(out_u8) - np.asarray(out_f)).max() <= 1.5 / 255
    assert 0.0 <= float(out_u8.min()) and float(out_u8.max()) <= 1.0
    grey = imagenet.preprocess(u8[..., :1], resize=64, crop=32)
    assert grey.shape == (32, 32, 1)


def test_errors():
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        imagenet.preprocess(jnp.zeros((2, 300, 300, 3)))
    with pytest.raises(ValueError, match="uint8"):
        imagenet.resize_shorter(jnp.zeros((300, 300, 3), jnp.uint8), 256)
    with pytest.raises(ValueError, match="method"):
        imagenet.resize_shorter(jnp.zeros((300, 300, 3)), 256, method="box")
    with pytest.raises(ValueError, match="size"):
        imagenet.resize_shorter(jnp.zeros((300, 300, 3)), 0)
    with pytest.raises(ValueError, match="paths"):
        imagenet.load_photos([])


# ------------------------------------------------------------------ parity


def _bytes(preprocessed) -> np.ndarray:
    return np.round(np.asarray(preprocessed, np.float64) * 255).astype(np.uint8)


@pytest.mark.parametrize("downscale", [1, 3], ids=["downsample", "upsample"])
def test_preprocess_matches_torchvision(photo, downscale):
    im = photo
    if downscale > 1:  # 170x200: Resize(256) upsamples
        im = photo.resize((photo.width // downscale, photo.height // downscale))
    # uint8: exactly torchvision's pixels (Resize on the PIL image is Pillow's resize)
    ours = _bytes(imagenet.preprocess(np.asarray(im)))
    np.testing.assert_array_equal(ours, np.asarray(TORCHVISION_PIXELS(im)))
    # float: jax.image.resize, within about one level
    expected = _reference(im)
    floats = np.asarray(imagenet.preprocess(np.asarray(im, np.float32) / 255))
    diff = np.abs(floats - expected)
    assert diff.mean() < 0.005, diff.mean()
    assert diff.max() < 2.5 / 255, diff.max()


def test_all_sample_photos_match_torchvision():
    for path in photos.sample_photo_paths():
        with Image.open(path) as im:
            im = im.convert("RGB")
        ours = _bytes(imagenet.preprocess(np.asarray(im)))
        np.testing.assert_array_equal(ours, np.asarray(TORCHVISION_PIXELS(im)))


# ------------------------------------------------------------------ jit / vmap


def test_jit_and_vmap(photo):
    u8 = np.asarray(photo)
    batch = np.stack([u8, u8[:, ::-1], 255 - u8])
    traces = []

    def fn(image):
        traces.append(image.shape)
        return imagenet.preprocess(image, resize=128, crop=112)

    jitted = jax.jit(fn)
    loop = np.stack([np.asarray(jitted(x)) for x in batch])
    assert len(traces) == 1  # same shape: no recompilation
    vmapped = np.asarray(jax.jit(jax.vmap(fn))(batch))
    assert vmapped.shape == (3, 112, 112, 3)
    np.testing.assert_allclose(vmapped, loop, atol=1e-6)
    eager = np.asarray(imagenet.preprocess(batch[1], resize=128, crop=112))
    np.testing.assert_allclose(loop[1], eager, atol=1e-6)


# ------------------------------------------------------------------ photos


def test_load_photos(photo):
    paths = photos.sample_photo_paths()
    ds = imagenet.load_photos(paths)
    assert ds.images.shape == (len(paths), 224, 224, 3)
    assert ds.images.dtype == np.uint8
    assert ds.labels is None
    assert ds.class_names == imagenet.IMAGENET_CLASSES and ds.num_classes == 1000
    assert "grace_hopper.jpg" in ds.name
    np.testing.assert_array_equal(ds.images[0], np.asarray(TORCHVISION_PIXELS(photo)))
    small = imagenet.load_photos(paths[:1], resize=64, crop=56)
    assert small.images.shape == (1, 56, 56, 3)
    with pytest.raises(FileNotFoundError):
        imagenet.load_photos(["/nonexistent/photo.jpg"])


def test_sample_photo_paths():
    paths = photos.sample_photo_paths()
    assert len(paths) >= 1
    names = [p.name for p in paths]
    assert names[0] == "grace_hopper.jpg"
    assert set(names) <= set(photos.MATPLOTLIB_PHOTOS + photos.SKIMAGE_PHOTOS)
    for path in paths:
        with Image.open(path) as im:
            assert im.mode == "RGB" and min(im.size) >= 256


def test_make_photo_folder(tmp_path):
    dest = photos.make_photo_folder(tmp_path / "photos")
    names = sorted(p.name for p in dest.iterdir())
    assert names == sorted(p.name for p in photos.sample_photo_paths())
    ds = data.load(f"folder:{dest}", size=(224, 224))
    assert ds.images.shape == (len(names), 224, 224, 3) and ds.labels is None
