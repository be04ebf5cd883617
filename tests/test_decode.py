"""Every Pillow mode decodes by the documented rule (pixjax/data/decode.py), the same
for ``folder:`` and ``photos:``; a file that cannot be decoded is one error naming it."""

import numpy as np
import pytest
from PIL import Image
from pixjax.experiments import cli

from pixjax import data
from pixjax.data.decode import decode_image


def _gradient16():
    """16 x 16 greyscale, 16-bit: every 8-bit level once, as v * 257 (exact)."""
    return (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)


def test_16_bit_grey_keeps_its_256_levels_in_folder_and_photos(tmp_path):
    folder = tmp_path / "grey16"
    folder.mkdir()
    Image.fromarray(_gradient16()).save(folder / "a.png")
    with Image.open(folder / "a.png") as im:
        assert im.mode in ("I;16", "I")  # the situation under test
    ds = data.load(f"folder:{folder}", "test")
    assert ds.images.shape == (1, 16, 16, 1)
    np.testing.assert_array_equal(ds.images[0, :, :, 0].ravel(), np.arange(256))
    photos = data.load(f"photos:{folder}", resize=16, crop=16)
    # RGB, the grey level repeated; resize 16 -> 16 is the identity
    np.testing.assert_array_equal(photos.images[0, :, :, 0].ravel(), np.arange(256))
    np.testing.assert_array_equal(photos.images[0, :, :, 1], photos.images[0, :, :, 2])


@pytest.mark.parametrize(
    "make, want",
    [
        # bilevel: 0 / 255
        (
            lambda: Image.fromarray(np.array([[0, 1], [1, 0]], bool)),
            [[0, 255], [255, 0]],
        ),
        # 32-bit integers read as 16-bit levels, scaled
        (
            lambda: Image.fromarray(
                np.array([[0, 257], [32896, 65535]], np.int32), "I"
            ),
            [[0, 1], [128, 255]],
        ),
        # float in [0, 1]
        (
            lambda: Image.fromarray(
                np.array([[0.0, 0.5], [0.25, 1.0]], np.float32), "F"
            ),
            [[0, 128], [64, 255]],
        ),
        # grey + alpha: alpha dropped
        (
            lambda: Image.fromarray(
                np.array([[[10, 0], [20, 255]], [[30, 128], [40, 7]]], np.uint8), "LA"
            ),
            [[10, 20], [30, 40]],
        ),
    ],
)
def test_grey_modes(tmp_path, make, want):
    im = make()
    path = tmp_path / ("x.tif" if im.mode in ("I", "F") else "x.png")
    im.save(path)
    np.testing.assert_array_equal(decode_image(path)[..., 0], np.array(want, np.uint8))


def test_colour_modes(tmp_path):
    rgba = np.array([[[255, 0, 0, 0], [0, 255, 0, 128]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "rgba.png"), rgba[..., :3])
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(
        decode_image(tmp_path / "p.png"), [[[0, 0, 0], [10, 20, 30]]]
    )
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # pure red
    cmyk.save(tmp_path / "c.jpg", quality=100)
    r, g, b = decode_image(tmp_path / "c.jpg")[0, 0].astype(int)
    assert r > 240 and g < 15 and b < 15
    # colour -> grey: ITU-R 601-2 luma; grey -> colour: repeated
    rgb = np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(
        decode_image(tmp_path / "rgb.png", 1)[..., 0], [[76, 29]]
    )
    Image.fromarray(np.array([[5, 9]], np.uint8)).save(tmp_path / "l.png")
    np.testing.assert_array_equal(
        decode_image(tmp_path / "l.png", 3), [[[5, 5, 5], [9, 9, 9]]]
    )


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 3), np.uint8)
    pixels[0, 0] = 255  # top-left
    im = Image.fromarray(pixels)
    exif = im.getexif()
    exif[0x0112] = 6  # stored rotated: display = rotate 90 degrees clockwise
    im.save(tmp_path / "o.jpg", exif=exif, quality=100)
    out = decode_image(tmp_path / "o.jpg")[..., 0]
    assert out.shape == (3, 2)
    assert out[0, 1] > 200 and out[2, 0] < 50  # the bright corner is now top-right
    ds = data.load(f"folder:{tmp_path}", "test", labelled=False)
    assert ds.images.shape == (1, 3, 2, 1)


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda: Image.fromarray(np.array([[70000]], np.int32), "I"),
            "not 16-bit levels",
        ),
        (lambda: Image.fromarray(np.array([[2.0]], np.float32), "F"), "must lie in"),
    ],
)
def test_values_outside_the_rule_are_refused(tmp_path, make, match):
    make().save(tmp_path / "x.tif")
    with pytest.raises(ValueError, match=rf"image '.*x\.tif': .*{match}"):
        decode_image(tmp_path / "x.tif")


def test_truncated_file_is_one_line_naming_it(tmp_path, capsys, mnist_test):
    folder = tmp_path / "digits"
    for c in ("0", "1"):
        (folder / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(mnist_test.images[i, :, :, 0]).save(folder / c / f"{i}.png")
    whole = (folder / "1" / "2.png").read_bytes()
    (folder / "1" / "2.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"image '.*1/2\.png': cannot decode"):
        data.load(f"folder:{folder}", "test")
    wd = tmp_path / "never"
    args = ["run", "pixel-change", "--workdir", str(wd), "--preset", "smoke"]
    assert cli.main([*args, f"dataset=folder:{folder}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "1/2.png" in err
    assert not wd.exists()
