"""The few-pixel attack (pixjax.attacks.few_pixel, Su, Vargas & Sakurai 2019) on toy
models with a planted one-pixel weakness: every image is fooled within the budget,
the adversarial images are real uint8 images that differ in at most k pixels and
survive a PNG round trip; the decoding and pixel setting against numpy loops written
here; results independent of the batch size and of the number of devices; kill -9
then resume == uninterrupted; bad arguments refused before any work."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from pixjax.attacks import few_pixel as fp
from pixjax.search.differential import DESettings

HERE = os.path.dirname(os.path.abspath(__file__))
H = W = 8
WEAK = (4, 3)  # the planted pixel of the two-class model
WEAK_B = (1, 4)  # the planted pixel of class 2 in the three-class model
THRESHOLD = 199.5 / 255  # a planted pixel >= 200 flips the prediction
SETTINGS = DESettings(32, 30, 0.5, None, 1.0, "rand1", "paper")


def _closeness(pixel):
    """[H, W]: exp(-d^2 / 2) of the distance to ``pixel``: 1 there, 0.61 next to it,
    so only the pixel itself, at >= 200, reaches the threshold (255 * 0.61 < 200)."""
    rr, cc = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    return np.exp(-((rr - pixel[0]) ** 2 + (cc - pixel[1]) ** 2) / 2.0).astype(
        np.float32
    )


def _score(images, pixel):
    """[P]: how close ``images`` come to a bright ``pixel`` (max over the image of
    the grey value times the closeness): a smooth signal for the search."""
    return jnp.max(images[..., 0] * jnp.asarray(_closeness(pixel)), axis=(1, 2))


def planted(images):
    """Two classes: 1 when pixel WEAK is >= 200, else 0."""
    g = _score(images, WEAK)
    logits = jnp.stack([jnp.zeros_like(g), 10.0 * (g - THRESHOLD)], -1)
    return jax.nn.softmax(logits, -1)


def planted3(images):
    """Three classes: 1 when pixel WEAK is >= 200, 2 when pixel WEAK_B is, else 0."""
    ga, gb = _score(images, WEAK), _score(images, WEAK_B)
    logits = jnp.stack(
        [jnp.zeros_like(ga), 10.0 * (ga - THRESHOLD), 10.0 * (gb - THRESHOLD)], -1
    )
    return jax.nn.softmax(logits, -1)


def dark_images(n, seed=0):
    """uint8 [n, H, W, 1] with values 0..99: classified 0 by both models."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 100, (n, H, W, 1), dtype=np.uint8)


def _predict(probs_fn, images_u8):
    """Class of uint8 images, computed here (float64 division, not pixjax's)."""
    x = jnp.asarray((np.asarray(images_u8, np.float64) / 255).astype(np.float32))
    return np.asarray(jnp.argmax(probs_fn(x), -1))


def _apply_loop(image, rows, cols, values):
    """One image with pixels set one tuple after the other (numpy, written here)."""
    out = np.array(image, np.uint8, copy=True)
    for r, c, v in zip(rows, cols, values, strict=True):
        out[int(r), int(c), :] = v
    return out


def _count_changed(a, b):
    """Pixel positions where two uint8 images differ in any channel (a loop)."""
    n = 0
    for r in range(a.shape[0]):
        for c in range(a.shape[1]):
            n += int(any(a[r, c, ch] != b[r, c, ch] for ch in range(a.shape[2])))
    return n


def _assert_outputs_equal(a, b):
    """Every field (the pixels' three arrays included) equal, bit for bit."""
    for name in fp.AttackOutputs._fields:
        x, y = getattr(a, name), getattr(b, name)
        if name == "pixels":
            for u, v in zip(x, y, strict=True):
                assert np.asarray(u).dtype == np.asarray(v).dtype
                np.testing.assert_array_equal(np.asarray(u), np.asarray(v), name)
        else:
            assert np.asarray(x).dtype == np.asarray(y).dtype, name
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), name)


# --- the planted weakness is found ---------------------------------------------------


def test_planted_one_pixel_weakness_is_always_found():
    images = dark_images(6)
    labels = np.zeros(6, np.int32)
    p, it = SETTINGS.pop_size, SETTINGS.iterations
    assert np.all(_predict(planted, images) == 0)
    for seed in range(3):
        out = fp.few_pixel_attack(
            jax.random.key(seed),
            planted,
            images,
            labels,
            settings=SETTINGS,
            batch_size=6,
        )
        assert out.attacked.all() and out.success.all(), seed
        # the returned candidate sets the planted pixel to a value >= 200
        np.testing.assert_array_equal(out.pixels.rows[:, 0], WEAK[0])
        np.testing.assert_array_equal(out.pixels.cols[:, 0], WEAK[1])
        assert out.pixels.values.dtype == np.uint8
        assert np.all(out.pixels.values[:, 0, 0] >= 200)
        np.testing.assert_array_equal(out.adv_pred, 1)
        np.testing.assert_array_equal(out.clean_pred, 0)
        assert np.all(out.label_prob < 0.5) and np.all(out.adv_confidence > 0.5)
        # budget: P per generation, the initial population included
        assert np.all(out.queries <= p * (it + 1))
        np.testing.assert_array_equal(out.queries, p * (out.generations + 1))
        assert np.all(out.generations < it)
        # the adversarial images, built here, are adversarial for the model
        adv = np.stack(
            [
                _apply_loop(
                    images[i],
                    out.pixels.rows[i],
                    out.pixels.cols[i],
                    out.pixels.values[i],
                )
                for i in range(6)
            ]
        )
        np.testing.assert_array_equal(_predict(planted, adv), 1)
        np.testing.assert_array_equal(fp.adversarial_images(images, out), adv)
        assert [_count_changed(images[i], adv[i]) for i in range(6)] == [1] * 6
        confirmed, reloaded = fp.recheck(planted, images, out, labels)
        assert confirmed.all()
        np.testing.assert_array_equal(reloaded, adv)


def test_targeted_attack_on_a_three_class_model_in_a_region():
    """Two pixels inside the centred 6 x 3 region (rows 1..6, columns 2..4, both
    planted pixels inside it), targeted at class 1 or 2."""
    images = dark_images(6, seed=1)
    labels = np.zeros(6, np.int32)
    targets = np.array([1, 2, 2, 1, 2, 1])
    settings = DESettings(32, 40, 0.5, 1.0, 1.0, "best1", "latinhypercube")
    out = fp.few_pixel_attack(
        jax.random.key(0),
        planted3,
        images,
        labels,
        pixels=2,
        region=(6, 3),
        settings=settings,
        targets=targets,
        batch_size=6,
    )
    assert out.success.all()
    np.testing.assert_array_equal(out.adv_pred, targets)
    assert out.pixels.rows.shape == (6, 2) and out.pixels.values.shape == (6, 2, 1)
    rows, cols = out.pixels.rows, out.pixels.cols
    assert rows.min() >= 1 and rows.max() <= 6 and cols.min() >= 2 and cols.max() <= 4
    assert np.all(out.queries <= 32 * 41)
    np.testing.assert_array_equal(out.queries, 32 * (out.generations + 1))
    adv = fp.adversarial_images(images, out)
    assert adv.dtype == np.uint8
    changed = adv != images
    assert not changed[:, [0, 7]].any() and not changed[:, :, [0, 1, 5, 6, 7]].any()
    for i in range(6):
        want = _apply_loop(
            images[i], out.pixels.rows[i], out.pixels.cols[i], out.pixels.values[i]
        )
        np.testing.assert_array_equal(adv[i], want)
        assert 1 <= _count_changed(images[i], adv[i]) <= 2
        weak = WEAK if targets[i] == 1 else WEAK_B
        assert adv[i, weak[0], weak[1], 0] >= 200
    np.testing.assert_array_equal(_predict(planted3, adv), targets)
    np.testing.assert_array_equal(
        fp.changed_pixels(images, adv),
        [_count_changed(images[i], adv[i]) for i in range(6)],
    )
    confirmed, _ = fp.recheck(planted3, images, out, labels, targets)
    assert confirmed.all()
    # the same outputs re-checked against the other targets are not confirmed
    other = np.where(targets == 1, 2, 1)
    assert not fp.recheck(planted3, images, out, labels, other)[0].any()


def decoy3(images):
    """Three classes; class 2 is never predicted (its logit is at most -2), but its
    probability grows with pixel WEAK_B; a bright WEAK makes class 1."""
    ga, gb = _score(images, WEAK), _score(images, WEAK_B)
    logits = jnp.stack(
        [jnp.zeros_like(ga), 10.0 * (ga - THRESHOLD), 4.0 * gb - 6.0], -1
    )
    return jax.nn.softmax(logits, -1)


def test_targeted_fitness_is_the_target_probability():
    """Targeted at the unreachable class 2: no success, the whole budget spent, and
    the returned candidate maximises the target's probability (pixel WEAK_B at a
    high value), not the one that lowers the true class most (pixel WEAK)."""
    images = dark_images(2, seed=8)
    labels = np.zeros(2, np.int32)
    out = fp.few_pixel_attack(
        jax.random.key(0),
        decoy3,
        images,
        labels,
        settings=SETTINGS._replace(iterations=20),
        targets=np.array([2, 2]),
        batch_size=2,
    )
    assert out.attacked.all() and not out.success.any()
    np.testing.assert_array_equal(out.generations, 20)
    np.testing.assert_array_equal(out.queries, 32 * 21)
    np.testing.assert_array_equal(out.pixels.rows[:, 0], WEAK_B[0])
    np.testing.assert_array_equal(out.pixels.cols[:, 0], WEAK_B[1])
    assert np.all(out.pixels.values[:, 0, 0] >= 240)
    # label_prob / adv_pred are those of the returned candidate, computed here
    adv = np.stack(
        [
            _apply_loop(im, r, c, v)
            for im, r, c, v in zip(images, *out.pixels, strict=True)
        ]
    )
    x = (adv.astype(np.float64) / 255).astype(np.float32)
    probs = np.asarray(decoy3(jnp.asarray(x)))
    np.testing.assert_allclose(out.label_prob, probs[:, 0], rtol=1e-5)
    np.testing.assert_array_equal(out.adv_pred, 0)


@pytest.mark.parametrize("per_call", [1, 3])  # a lax.cond per image; masked vmap
def test_only_correctly_classified_images_are_attacked(per_call):
    images = dark_images(6, seed=2)
    images[5, WEAK[0], WEAK[1], 0] = 255  # the model says 1
    labels = np.array([0, 0, 0, 0, 1, 0], np.int32)  # image 4: dark, labelled 1
    out = fp.few_pixel_attack(
        jax.random.key(0),
        planted,
        images,
        labels,
        settings=SETTINGS,
        batch_size=6,
        images_per_call=per_call,
    )
    # the images not attacked come back unchanged
    np.testing.assert_array_equal(fp.adversarial_images(images, out)[4:], images[4:])
    np.testing.assert_array_equal(out.clean_pred, [0, 0, 0, 0, 0, 1])
    np.testing.assert_array_equal(out.attacked, [True] * 4 + [False] * 2)
    np.testing.assert_array_equal(out.success, [True] * 4 + [False] * 2)
    np.testing.assert_array_equal(out.queries[4:], 0)
    np.testing.assert_array_equal(out.generations[4:], 0)
    assert np.all(out.queries[:4] > 0)
    confirmed, _ = fp.recheck(planted, images, out, labels)
    np.testing.assert_array_equal(confirmed, out.success)


# --- encoding, decoding, setting pixels ----------------------------------------------


def test_genome_bounds_by_hand():
    space = fp.pixel_space((8, 8, 3), 2, (3, 4))
    assert space.offset == (2, 2) and space.genes == 10
    lo, hi = fp.genome_bounds(space)
    np.testing.assert_array_equal(lo, [2, 2, 0, 0, 0] * 2)
    np.testing.assert_array_equal(hi, [5, 6, 256, 256, 256] * 2)
    assert lo.dtype == hi.dtype == np.float32
    whole = fp.pixel_space((28, 28, 1), 1)
    assert whole.region == (28, 28) and whole.offset == (0, 0)
    np.testing.assert_array_equal(fp.genome_bounds(whole)[1], [28, 28, 256])
    wide = fp.pixel_space((8, 8, 1), 1, (2, 5))  # (8 - 2) // 2, (8 - 5) // 2
    assert wide.offset == (3, 1)
    np.testing.assert_array_equal(fp.genome_bounds(wide)[0], [3, 1, 0])
    np.testing.assert_array_equal(fp.genome_bounds(wide)[1], [5, 6, 256])
    odd = fp.pixel_space((7, 10, 1), 1, 4)  # (7 - 4) // 2, (10 - 4) // 2
    assert odd.offset == (1, 3)
    np.testing.assert_array_equal(fp.genome_bounds(odd)[0], [1, 3, 0])


def test_decode_floors_and_clips():
    space = fp.pixel_space((8, 8, 3), 3, (3, 4))
    genome = jnp.array(
        [
            [2.0, 5.999, 0.0, 127.5, 255.999],
            [4.999, 2.3, 1.2, 256.0, 300.0],  # 256+ clipped to 255
            [1.5, 7.0, -3.0, 99.99, 12.0],  # outside the region: clipped into it
        ],
        jnp.float32,
    ).reshape(-1)
    px = fp.decode(genome, space)
    np.testing.assert_array_equal(np.asarray(px.rows), [2, 4, 2])
    np.testing.assert_array_equal(np.asarray(px.cols), [5, 2, 5])
    np.testing.assert_array_equal(
        np.asarray(px.values), [[0, 127, 255], [1, 255, 255], [0, 99, 12]]
    )
    assert px.values.dtype == jnp.uint8 and px.rows.dtype == jnp.int32
    # random genomes inside the bounds: numpy's floor
    lo, hi = fp.genome_bounds(space)
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = rng.uniform(lo, hi).astype(np.float32)
        px = fp.decode(jnp.asarray(g), space)
        want = np.floor(g.astype(np.float64)).reshape(3, 5)
        np.testing.assert_array_equal(np.asarray(px.rows), want[:, 0])
        np.testing.assert_array_equal(np.asarray(px.cols), want[:, 1])
        np.testing.assert_array_equal(np.asarray(px.values), want[:, 2:])


def test_apply_pixels_equals_a_loop_last_tuple_wins():
    rng = np.random.default_rng(1)
    for c in (1, 3):
        images = rng.integers(0, 256, (4, 6, 5, c), dtype=np.uint8)
        rows = rng.integers(0, 6, (4, 5)).astype(np.int32)
        cols = rng.integers(0, 5, (4, 5)).astype(np.int32)
        rows[:, 3], cols[:, 3] = rows[:, 0], cols[:, 0]  # duplicate positions
        rows[0, :] = 2
        cols[0, :] = 1  # image 0: five tuples at one pixel
        values = rng.integers(0, 256, (4, 5, c), dtype=np.uint8)
        original = images.copy()
        want = np.stack(
            [_apply_loop(images[i], rows[i], cols[i], values[i]) for i in range(4)]
        )
        np.testing.assert_array_equal(want[0, 2, 1], values[0, 4])
        batch = fp.apply_pixels_np(images, fp.Pixels(rows, cols, values))
        np.testing.assert_array_equal(batch, want)
        assert batch.dtype == np.uint8
        for i in range(4):
            one = fp.apply_pixels(
                jnp.asarray(images[i]),
                fp.Pixels(
                    jnp.asarray(rows[i]), jnp.asarray(cols[i]), jnp.asarray(values[i])
                ),
            )
            np.testing.assert_array_equal(np.asarray(one), want[i])
        np.testing.assert_array_equal(
            fp.changed_pixels(images, want),
            [_count_changed(images[i], want[i]) for i in range(4)],
        )
        np.testing.assert_array_equal(images, original)  # the input is not modified


def test_png_round_trip_is_identity():
    rng = np.random.default_rng(2)
    for shape in ((3, 7, 5, 1), (2, 4, 9, 3)):
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        images[0, 0, 0] = 0
        images[0, 0, 1] = 255
        back = fp.png_round_trip(images)
        assert back.dtype == np.uint8 and back.shape == images.shape
        np.testing.assert_array_equal(back, images)
    # and the PNG written is one Pillow reads as such (done here without pixjax)
    import io

    buf = io.BytesIO()
    Image.fromarray(images[0]).save(buf, "PNG")
    buf.seek(0)
    reread = Image.open(buf)
    assert reread.format == "PNG"
    np.testing.assert_array_equal(np.asarray(reread), images[0])


def test_changed_pixels_counts_positions_not_channels():
    a = np.zeros((2, 4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 1, 1] = [1, 1, 1]  # one pixel, three channels
    b[0, 2, 3, 2] = 9  # one channel of another
    b[1, 0, 0, 0] = 1
    b[1, 3, 3, 1] = 1
    b[1, 3, 2] = [0, 0, 0]  # unchanged
    assert fp.changed_pixels(a, b).tolist() == [2, 2]
    assert fp.changed_pixels(a, a).tolist() == [0, 0]


def test_recheck_of_hand_made_outputs():
    """recheck confirms only successes that still fool the model after the PNG."""
    images = dark_images(3, seed=4)
    labels = np.zeros(3, np.int32)
    px = fp.Pixels(
        np.array([[WEAK[0]], [0], [WEAK[0]]], np.int32),
        np.array([[WEAK[1]], [0], [WEAK[1]]], np.int32),
        np.array([[[250]], [[250]], [[199]]], np.uint8),
    )
    n = 3
    out = fp.AttackOutputs(
        attacked=np.ones(n, bool),
        success=np.array([True, True, True]),  # claimed; only image 0 is real
        queries=np.zeros(n, np.int32),
        generations=np.zeros(n, np.int32),
        clean_pred=np.zeros(n, np.int32),
        clean_confidence=np.ones(n, np.float32),
        adv_pred=np.ones(n, np.int32),
        adv_confidence=np.ones(n, np.float32),
        label_prob=np.zeros(n, np.float32),
        pixels=px,
    )
    confirmed, reloaded = fp.recheck(planted, images, out, labels)
    np.testing.assert_array_equal(confirmed, [True, False, False])
    want = images.copy()
    want[0, WEAK[0], WEAK[1]] = 250
    want[1, 0, 0] = 250
    want[2, WEAK[0], WEAK[1]] = 199
    np.testing.assert_array_equal(reloaded, want)
    # a success not claimed is not confirmed
    not_claimed = out._replace(success=np.zeros(n, bool))
    assert not fp.recheck(planted, images, not_claimed, labels)[0].any()


def test_minimal_pixels_by_hand():
    got = fp.minimal_pixels(
        {
            5: np.array([False, True, False]),
            1: np.array([True, False, False]),
            3: np.array([True, True, False]),
        }
    )
    assert got.tolist() == [1, 3, -1]
    assert fp.minimal_pixels({2: [False, True]}).tolist() == [-1, 2]
    with pytest.raises(ValueError, match="success_by_k: expected at least one"):
        fp.minimal_pixels({})


# --- settings --------------------------------------------------------------------------


def test_preset_settings_by_hand():
    grey1 = fp.pixel_space((28, 28, 1), 1)  # D = 3
    rgb1 = fp.pixel_space((32, 32, 3), 1)  # D = 5
    rgb3 = fp.pixel_space((32, 32, 3), 3)  # D = 15
    paper = fp.preset_settings("paper", grey1)
    assert paper == DESettings(400, 100, 0.5, None, 1.0, "rand1", "paper")
    assert fp.preset_settings("paper", rgb3) == paper
    art = fp.preset_settings("art", grey1)
    assert (art.pop_size, art.iterations) == (399, 100)  # 133 * 3
    assert (art.strategy, art.F, art.F_max, art.CR) == ("best1", 0.5, 1.0, 1.0)
    assert art.init == "latinhypercube"
    hyper = fp.preset_settings("hyperparticle", grey1)
    assert hyper == art._replace(iterations=75)
    assert fp.preset_settings("art", rgb1).pop_size == 400  # 80 * 5
    assert fp.preset_settings("hyperparticle", rgb3).pop_size == 390  # 26 * 15
    big = fp.pixel_space((32, 32, 3), 100)  # D = 500 > 400: max(1, 0) * 500
    assert fp.preset_settings("art", big).pop_size == 500
    for preset in fp.PRESETS:
        assert fp.check_settings(fp.preset_settings(preset, grey1))
    with pytest.raises(ValueError, match="preset: expected one of"):
        fp.preset_settings("scipy", grey1)


def test_attack_check_settings():
    s = fp.check_settings(DESettings(4, 1, 1, None, 1, "rand1", "paper"))
    assert s.init == "paper" and isinstance(s.F, float) and isinstance(s.CR, float)
    for change, field in [
        (dict(init="sobol"), "init"),
        (dict(pop_size=3, init="paper"), "pop_size"),
        (dict(F=0, init="paper"), "F"),
        (dict(CR=2.0, init="paper"), "CR"),
        (dict(iterations=0), "iterations"),
        (dict(strategy="rand2", init="paper"), "strategy"),
    ]:
        with pytest.raises(ValueError, match=rf"^{field}: expected"):
            fp.check_settings(DESettings(**change))


# --- bad arguments -------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, match",
    [
        (((8, 8, 1), 0), "pixels: expected"),
        (((8, 8, 1), -1), "pixels: expected"),
        (((8, 8, 1), True), "pixels: expected"),
        (((8, 8, 1), 1.0), "pixels: expected"),
        (((8, 8, 1), 65), r"pixels: expected 1\.\.64"),
        (((8, 8, 1), 10, 3), r"pixels: expected 1\.\.9 \(the pixels of the 3x3"),
        (((8, 8, 1), 7, (2, 3)), r"pixels: expected 1\.\.6"),
        (((8, 8, 1), 1, 0), "region: expected"),
        (((8, 8, 1), 1, 9), "region: expected"),
        (((8, 8, 1), 1, (2, 9)), "region: expected"),
        (((8, 8, 1), 1, (3,)), "region: expected"),
        (((8, 8, 1), 1, "3"), "region: expected"),
        (((8, 8, 1), 1, True), "region: expected"),
        (((8, 8, 1), 1, 2.0), "region: expected"),
        (((8, 8, 2), 1), "image_shape: expected"),
        (((8, 8), 1), "image_shape: expected"),
    ],
)
def test_bad_pixel_space(args, match):
    with pytest.raises(ValueError, match=match):
        fp.pixel_space(*args)


def test_check_targets():
    labels = np.array([0, 1, 2])
    np.testing.assert_array_equal(fp.check_targets(None, labels, 3), [-1, -1, -1])
    got = fp.check_targets([1, 2, 0], labels, 3)
    assert got.dtype == np.int32 and got.tolist() == [1, 2, 0]
    for bad, match in [
        ([1, 2, 3], r"targets: expected classes in 0\.\.2, got 3 for image 2"),
        ([-1, 2, 0], r"targets: expected classes in 0\.\.2, got -1 for image 0"),
        ([1, 1, 0], "targets: a target must differ .* image 1"),
        ([1, 2], "targets: expected None or 3 integer"),
        ([1.0, 2.0, 0.0], "targets: expected None or 3 integer"),
    ]:
        with pytest.raises(ValueError, match=match):
            fp.check_targets(bad, labels, 3)


def _recording(calls):
    def probs(images):
        calls.append(tuple(images.shape))
        return planted(images)

    return probs


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pixels=0), "pixels: expected"),
        (dict(pixels=10, region=3), r"pixels: expected 1\.\.9"),
        (dict(region=(9, 2)), "region: expected"),
        (dict(region=-1), "region: expected"),
        (dict(settings="scipy"), "preset: expected one of"),
        (dict(settings=DESettings(pop_size=3)), "pop_size: expected"),
        (dict(settings=DESettings(F=0)), "F: expected"),
        (dict(settings=DESettings(F=-1)), "F: expected"),
        (dict(settings=DESettings(F=2.5)), "F: expected"),
        (dict(settings=DESettings(F=True)), "F: expected"),
        (dict(settings=DESettings(F=0.8, F_max=0.6)), "F_max: expected"),
        (dict(settings=DESettings(CR=1.01)), "CR: expected"),
        (dict(settings=DESettings(CR=-0.5)), "CR: expected"),
        (dict(settings=DESettings(iterations=0)), "iterations: expected"),
        (dict(settings=DESettings(strategy="best2")), "strategy: expected"),
        (dict(settings=DESettings(init="sobol")), "init: expected"),
        (dict(key=jax.random.PRNGKey(0)), "key: expected one typed PRNG key"),
        (dict(key=0), "key: expected one typed PRNG key"),
        (dict(key="k"), "key: expected one typed PRNG key"),
        (dict(images=np.zeros((3, 8, 8, 1), np.float32)), "images: expected dtype"),
        (dict(images=np.zeros((8, 8, 1), np.uint8)), "images: expected a 4-D"),
    ],
)
def test_bad_arguments_fail_before_the_model_is_called(kwargs, match):
    calls = []
    args = dict(
        key=jax.random.key(0),
        images=dark_images(3),
        labels=np.zeros(3, np.int32),
    )
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fp.few_pixel_attack(
            args.pop("key"),
            _recording(calls),
            args.pop("images"),
            args.pop("labels"),
            **args,
        )
    assert calls == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(targets=np.array([1, 2, 1])), r"targets: expected classes in 0\.\.1"),
        (dict(targets=np.array([1, 0, 1])), "targets: a target must differ"),
        (dict(targets=np.array([-1, 1, 1])), "targets: expected classes"),
        (dict(targets=np.array([1, 1])), "targets: expected None or 3"),
        (dict(labels=np.array([0, 2, 0])), "labels"),
        (dict(labels=np.array([0, 0])), "labels"),
        (dict(batch_size=0), "batch_size: expected a positive integer"),
        (dict(batch_size=2.0), "batch_size: expected a positive integer"),
        (dict(chunk_size=0), "chunk_size: expected a positive integer"),
        (dict(key=jax.random.split(jax.random.key(0), 2)), "key: expected one"),
    ],
)
def test_bad_arguments_fail_before_the_search(kwargs, match):
    """Errors found once the number of classes is known: the model is only traced
    for its output shape (one image), never run on a population."""
    calls = []
    args = dict(
        key=jax.random.key(0),
        images=dark_images(3),
        labels=np.zeros(3, np.int32),
        settings=SETTINGS,
    )
    args.update(kwargs)
    start = time.monotonic()
    with pytest.raises(ValueError, match=match):
        fp.few_pixel_attack(
            args.pop("key"),
            _recording(calls),
            args.pop("images"),
            args.pop("labels"),
            **args,
        )
    assert all(shape[0] == 1 for shape in calls), calls
    assert time.monotonic() - start < 5.0


# --- reproducibility -------------------------------------------------------------------


def test_same_key_same_result_any_batch_size():
    images = dark_images(6, seed=5)
    images[2, WEAK[0], WEAK[1], 0] = 255  # one misclassified image
    images[3] = images[0]  # the same image twice: two draws (fold_in(key, index))
    labels = np.zeros(6, np.int32)
    runs = [
        fp.few_pixel_attack(
            jax.random.key(4),
            planted,
            images,
            labels,
            settings=SETTINGS,
            batch_size=b,
        )
        for b in (2, 5, 6)
    ]
    assert runs[0].success.sum() == 5 and not runs[0].attacked[2]
    assert not np.array_equal(runs[0].pixels.values[0], runs[0].pixels.values[3])
    for other in runs[1:]:
        _assert_outputs_equal(runs[0], other)
    again = fp.few_pixel_attack(
        jax.random.key(4), planted, images, labels, settings=SETTINGS, batch_size=6
    )
    _assert_outputs_equal(runs[2], again)
    different = fp.few_pixel_attack(
        jax.random.key(5), planted, images, labels, settings=SETTINGS, batch_size=6
    )
    assert not np.array_equal(different.pixels.values, runs[2].pixels.values)


DEVICES = textwrap.dedent(
    """
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    os.environ["JAX_PLATFORMS"] = "cpu"
    sys.path.insert(0, sys.argv[2])
    import jax, numpy as np
    assert jax.device_count() == 8, jax.devices()
    import test_few_pixel as t
    from pixjax.attacks import few_pixel as fp
    images, labels = t.device_images()
    out = fp.few_pixel_attack(jax.random.key(11), t.planted, images, labels,
                              settings=t.SETTINGS, batch_size=2)
    fields = {k: v for k, v in out._asdict().items() if k != "pixels"}
    np.savez(sys.argv[1], rows=out.pixels.rows, cols=out.pixels.cols,
             values=out.pixels.values, **fields)
    """
)


def device_images():
    """6 images (two misclassified) for the 1 vs 8 devices run."""
    images = dark_images(6, seed=6)
    images[4, WEAK[0], WEAK[1], 0] = 230
    labels = np.zeros(6, np.int32)
    labels[1] = 1
    return images, labels


def test_same_key_same_result_on_1_and_8_devices(tmp_path):
    """8 devices (a subprocess; shard_map): one batch of 8 (2 rounded up to the
    device count, 2 padding images); 1 device (a 1-device mesh here): 3 batches of
    2. The same numbers."""
    from pixjax import sharding

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    proc = subprocess.Popen(
        [sys.executable, "-c", DEVICES, str(tmp_path / "8.npz"), HERE],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        images, labels = device_images()
        one = fp.few_pixel_attack(
            jax.random.key(11),
            planted,
            images,
            labels,
            settings=SETTINGS,
            batch_size=2,
            mesh=sharding.data_mesh(jax.devices()[:1]),
        )
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    eight = np.load(tmp_path / "8.npz")
    assert len(eight.files) == len(fp.AttackOutputs._fields) - 1 + 3
    for name in eight.files:
        if name in ("rows", "cols", "values"):
            mine = getattr(one.pixels, name)
        else:
            mine = getattr(one, name)
        assert mine.dtype == eight[name].dtype and mine.shape == eight[name].shape
        if mine.dtype.kind == "f":
            np.testing.assert_allclose(mine, eight[name], atol=1e-6, rtol=0)
        else:
            np.testing.assert_array_equal(mine, eight[name], name)
    assert one.success.tolist() == [True, False, True, True, False, True]
    np.testing.assert_array_equal(one.pixels.rows[one.success, 0], WEAK[0])
    np.testing.assert_array_equal(one.pixels.cols[one.success, 0], WEAK[1])


RESUMED = """
import functools, sys, time
sys.path.insert(0, {here!r})
import jax
import test_few_pixel as t
from pixjax import driver
from pixjax.attacks import few_pixel as fp
# slow the chunks down (a pause before each checkpoint) so that the kill lands
# between two of them
driver.run = functools.partial(driver.run, on_chunk=lambda *a: time.sleep(0.5))
images, labels = t.resume_images()
fp.few_pixel_attack(jax.random.key(2), t.planted, images, labels, settings=t.SETTINGS,
                    batch_size=2, chunk_size=1, checkpoint_dir={ck!r})
print("finished")
"""


def resume_images():
    images = dark_images(6, seed=7)
    images[4, WEAK[0], WEAK[1], 0] = 201  # misclassified
    return images, np.zeros(6, np.int32)


def _steps(directory):
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def test_resume_after_kill_equals_uninterrupted(tmp_path, capsys):
    ck = tmp_path / "ck"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", RESUMED.format(here=HERE, ck=str(ck))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if _steps(ck):
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killed_at = max(_steps(ck))
    assert 1 <= killed_at < 3

    images, labels = resume_images()
    capsys.readouterr()
    resumed = fp.few_pixel_attack(
        jax.random.key(2),
        planted,
        images,
        labels,
        settings=SETTINGS,
        batch_size=2,
        chunk_size=1,
        checkpoint_dir=ck,
    )
    assert f"resuming after batch {killed_at} of 3" in capsys.readouterr().out
    assert _steps(ck)[-1] == 3
    uninterrupted = fp.few_pixel_attack(
        jax.random.key(2), planted, images, labels, settings=SETTINGS, batch_size=2
    )
    _assert_outputs_equal(resumed, uninterrupted)
    assert uninterrupted.success.tolist() == [True] * 4 + [False, True]
    # the checkpoints of this run are refused to another key (nothing overwritten)
    before = sorted(p.name for p in ck.iterdir())
    with pytest.raises(ValueError, match="other data"):
        fp.few_pixel_attack(
            jax.random.key(3),
            planted,
            images,
            labels,
            settings=SETTINGS,
            batch_size=2,
            chunk_size=1,
            checkpoint_dir=ck,
        )
    assert sorted(p.name for p in ck.iterdir()) == before


def planted_elsewhere(images):
    """Another two-class model (its planted pixel at (0, 0))."""
    g = jnp.max(images[..., 0] * jnp.asarray(_closeness((0, 0))), axis=(1, 2))
    return jax.nn.softmax(jnp.stack([jnp.zeros_like(g), 10.0 * (g - THRESHOLD)], -1))


@pytest.fixture(scope="module")
def finished_checkpoint(tmp_path_factory):
    """The checkpoints of a finished run (resume_images, key 2, SETTINGS)."""
    ck = tmp_path_factory.mktemp("finished") / "ck"
    images, labels = resume_images()
    out = fp.few_pixel_attack(
        jax.random.key(2),
        planted,
        images,
        labels,
        settings=SETTINGS,
        batch_size=2,
        checkpoint_dir=ck,
    )
    return ck, out


@pytest.mark.parametrize(
    "change",
    [
        dict(settings=SETTINGS._replace(pop_size=8, iterations=1)),
        dict(settings=SETTINGS._replace(strategy="best1", init="uniform")),
        dict(region=(3, 3)),
        dict(probs_fn=planted_elsewhere),
    ],
    ids=["population", "strategy", "region", "model"],
)
def test_a_checkpoint_of_other_settings_is_refused(finished_checkpoint, change):
    """Same key and images, another search (population, strategy, region or model):
    the checkpoints hold another run's results and must not be returned as this
    run's (the docstring: "a checkpoint_dir of another run" raises ValueError)."""
    ck, _ = finished_checkpoint
    images, labels = resume_images()
    args = dict(probs_fn=planted, settings=SETTINGS, batch_size=2)
    args.update(change)
    before = sorted(p.name for p in ck.iterdir())
    with pytest.raises(ValueError):
        fp.few_pixel_attack(
            jax.random.key(2),
            args.pop("probs_fn"),
            images,
            labels,
            checkpoint_dir=ck,
            **args,
        )
    assert sorted(p.name for p in ck.iterdir()) == before


def test_shipped_lenet_outcomes_do_not_depend_on_the_batch_size(lenet, mnist_test):
    # every model call scores one image's population (images_per_call=1 on the
    # CPU), so larger batches (once: 14 images x 100 candidates in one call) do not
    # change the float rounding of the fitness, nor the near-ties of the selection
    from pixjax import models
    from pixjax.search import target_probs

    module, variables, _ = lenet
    probs = target_probs(models.logits_fn(module, variables))
    images, labels = mnist_test.images[:14], mnist_test.labels[:14]
    s = DESettings(pop_size=100, iterations=30, init="paper")
    runs = [
        fp.few_pixel_attack(
            jax.random.key(5), probs, images, labels, pixels=3, settings=s, batch_size=b
        )
        for b in (1, 14)
    ]
    for field, a, b in zip(fp.AttackOutputs._fields, *runs, strict=True):
        for x, y in zip(
            jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True
        ):
            np.testing.assert_array_equal(x, y, err_msg=field)


def test_several_images_per_call_same_result_any_batch_size():
    images, labels = dark_images(6, seed=4), np.zeros(6, np.int32)
    runs = [
        fp.few_pixel_attack(
            jax.random.key(3),
            planted,
            images,
            labels,
            settings=SETTINGS,
            batch_size=b,
            images_per_call=3,
        )
        for b in (3, 6)
    ]
    _assert_outputs_equal(*runs)
    assert runs[0].success.all()  # the planted pixel, found by the masked path too
