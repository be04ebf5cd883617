"""`pixjax check-pipeline` / `pixjax.check_pipeline`: train vs serve pipelines on real
bundled MNIST digits, checked against Pillow / OpenCV and the shipped LeNet-5 run
directly here."""

import io
import json
import math

import cv2
import jax
import numpy as np
import pytest
from PIL import Image
from pixjax.experiments import cli

import pixjax
from pixjax import data
from pixjax.evaluation.summary import wilson_interval
from pixjax.perturb import pipeline as pl

PILLOW = "resize:pillow:bilinear:20"
OPENCV = "resize:opencv:linear:20"


@pytest.fixture(scope="module")
def digits():
    return data.load("mnist-sample", "test", limit=32)


def _cli(tmp_path, capsys, *args):
    out = tmp_path / "out"
    rc = cli.main(["check-pipeline", *args, "--out", str(out)])
    return rc, out, capsys.readouterr()


def test_identical_pipelines_pass(tmp_path, capsys, digits):
    args = ["resize:pillow:bilinear:64", "resize:pixjax:bilinear:64"]
    rc, out, cap = _cli(
        tmp_path, capsys, *args, "--images", "mnist-sample", "--limit", "32"
    )
    assert rc == 0, cap.err
    assert "PASSED" in cap.out and cap.err == ""
    doc = json.loads((out / "check.json").read_text())
    s = doc["summary"]
    assert s["n"] == 32 and s["images_differing"] == 0 and s["passed"]
    assert s["exact"] and s["max_abs"] == 0 and s["psnr_db"] is None
    assert s["output_shape"] == [64, 64, 1] and not s["dtypes_differ"]
    assert doc["versions"] == pl.library_versions() == s["versions"]
    assert len(doc["per_image"]) == 32
    assert not any(r["differs"] for r in doc["per_image"])
    assert "PASSED" in (out / "check.md").read_text()
    # the API gives the same
    r = pixjax.check_pipeline(*args, digits)
    assert r.passed and r.summary["images_differing"] == 0


def test_pillow_vs_opencv_differ(tmp_path, capsys, digits):
    rc, out, cap = _cli(
        tmp_path, capsys, PILLOW, OPENCV, "--images", "mnist-sample", "--limit", "32"
    )
    assert rc == 1, cap.err
    assert "FAILED" in cap.out
    doc = json.loads((out / "check.json").read_text())
    s = doc["summary"]
    assert not s["passed"] and s["images_differing"] >= 1
    k, n = s["images_differing"], s["n"]
    assert s["share_differing"] == k / n
    lo, hi = s["share_differing_ci"]
    assert (lo, hi) == pytest.approx(wilson_interval(k, n))
    assert lo <= s["share_differing"] <= hi
    # hand check against Pillow and OpenCV called directly
    per = doc["per_image"]
    worst = max(range(n), key=lambda i: per[i]["max_abs"])
    diffs = []
    for i in range(n):
        img = digits.images[i, :, :, 0]
        a = np.asarray(Image.fromarray(img).resize((20, 20), Image.Resampling.BILINEAR))
        b = cv2.resize(img, (20, 20), interpolation=cv2.INTER_LINEAR)
        d = np.abs(a.astype(np.float64) - b.astype(np.float64))
        diffs.append(d)
        assert per[i]["max_abs"] == d.max()
        assert per[i]["mean_abs"] == pytest.approx(d.mean())
        assert per[i]["differs"] == bool(d.max() > 0)
    assert s["max_abs"] == diffs[worst].max() > 0
    all_d = np.stack(diffs)
    assert s["mean_abs"] == pytest.approx(all_d.mean())
    assert s["psnr_db"] == pytest.approx(10 * math.log10(255**2 / np.mean(all_d**2)))
    # a tolerance at the measured max passes, one level below fails
    tol = s["max_abs"]
    base = [PILLOW, OPENCV, "--images", "mnist-sample", "--limit", "32"]
    assert cli.main(["check-pipeline", *base, "--tolerance", str(tol)]) == 0
    assert "PASSED" in capsys.readouterr().out
    assert cli.main(["check-pipeline", *base, "--tolerance", str(tol - 1)]) == 1
    # chunks give the same numbers as one batch
    r = pixjax.check_pipeline(PILLOW, OPENCV, digits, batch_size=10)
    assert r.per_image == per
    assert r.summary["psnr_db"] == pytest.approx(s["psnr_db"])
    assert r.summary["mean_abs"] == pytest.approx(s["mean_abs"])


def test_callable_pipelines(digits):
    def pillow_bilinear_20(images):
        out = [
            np.asarray(Image.fromarray(x[:, :, 0]).resize((20, 20), Image.BILINEAR))
            for x in images
        ]
        return np.stack(out)[..., None]

    r = pixjax.check_pipeline(pillow_bilinear_20, PILLOW, digits)
    assert r.passed and r.summary["train"] == "pillow_bilinear_20"
    flipped = pixjax.check_pipeline(lambda x: x[:, :, ::-1], "identity", digits)
    assert not flipped.passed and flipped.summary["images_differing"] >= 30
    md = flipped.to_markdown()
    assert "FAILED" in md and "Most different images" in md


def test_float_outputs_differ_in_dtype(digits):
    # floats in [0, 1]: identity keeps float32 0..255, uint8:round quantises
    x = digits.images[:8].astype(np.float32) / 255 + np.float32(0.001)
    x = np.clip(x, 0, 1)
    r = pixjax.check_pipeline("identity", "uint8:round", x, value_range=(0, 1))
    s = r.summary
    assert s["dtypes"] == {"train": "float32", "serve": "uint8"}
    assert s["dtypes_differ"] and s["notes"] and "dtypes differ" in r.to_markdown()
    assert 0 < s["max_abs"] <= 0.5
    assert pixjax.check_pipeline(
        "identity", "uint8:round", x, value_range=(0, 1), tolerance=0.5
    ).passed


def test_lenet_flips_and_probability_shift(lenet):
    module, variables, _ = lenet
    ds = data.load("mnist-sample", "test", limit=64)
    r = pixjax.check_pipeline("identity", "jpeg:5", ds, (module.apply, variables))
    m = r.summary["model"]
    # independently: Pillow's JPEG round trip and the model's apply called here
    served = []
    for img in ds.images:
        buf = io.BytesIO()
        Image.fromarray(img[:, :, 0]).save(buf, format="JPEG", quality=5)
        buf.seek(0)
        served.append(np.asarray(Image.open(buf).convert("L"))[..., None])
    served = np.stack(served)

    def probs(x):
        logits = module.apply(variables, jax.numpy.asarray(x, np.float32) / 255.0)
        return np.asarray(jax.nn.softmax(logits, -1), np.float64)

    p_train, p_serve = probs(ds.images), probs(served)
    t_pred, s_pred = p_train.argmax(-1), p_serve.argmax(-1)
    flips = int(np.sum(t_pred != s_pred))
    assert flips >= 1
    assert m["flips"] == flips and m["flip_rate"] == flips / 64
    assert m["flip_rate_ci"] == pytest.approx(wilson_interval(flips, 64))
    rows = np.arange(64)
    shift = p_serve[rows, t_pred] - p_train[rows, t_pred]
    assert m["prob_shift_mean"] == pytest.approx(shift.mean(), abs=1e-5)
    assert m["prob_shift_median"] == pytest.approx(np.median(shift), abs=1e-5)
    assert m["prob_shift_max_abs"] == pytest.approx(np.abs(shift).max(), abs=1e-5)
    half = 1.959963984540054 * shift.std(ddof=1) / 8
    assert m["prob_shift_ci"] == pytest.approx(
        [shift.mean() - half, shift.mean() + half], abs=1e-5
    )
    for i, row in enumerate(r.per_image):
        assert row["train_pred"] == t_pred[i] and row["serve_pred"] == s_pred[i]
        assert row["prob_shift"] == pytest.approx(shift[i], abs=1e-5)
        assert row["label"] == ds.labels[i]
    # with labels: accuracies, flips among the correct ones, McNemar
    t_ok, s_ok = t_pred == ds.labels, s_pred == ds.labels
    assert m["train_accuracy"] == t_ok.mean() and m["serve_accuracy"] == s_ok.mean()
    assert m["flips_among_correct"] == int(np.sum(t_ok & (t_pred != s_pred)))
    assert m["mcnemar"]["b"] == int(np.sum(t_ok & ~s_ok))
    assert m["mcnemar"]["c"] == int(np.sum(~t_ok & s_ok))
    assert "Flipped images" in r.to_markdown()


def test_flip_rate_gate(lenet, tmp_path, capsys):
    """The flip-rate gate: JPEG quality 5 flips some of 64 digits (counted above by
    Pillow + the model called directly); a gate at that rate passes, one just below
    fails, and the pixel gate still applies on its own."""
    module, variables, _ = lenet
    ds = data.load("mnist-sample", "test", limit=64)
    model = (module.apply, variables)
    base = pixjax.check_pipeline("identity", "jpeg:5", ds, model, tolerance=255)
    flips = base.summary["model"]["flips"]
    assert flips >= 1 and base.passed and base.summary["passed_flips"] is None
    assert base.summary["max_flip_rate"] is None
    at = pixjax.check_pipeline(
        "identity", "jpeg:5", ds, model, tolerance=255, max_flip_rate=flips / 64
    )
    below = pixjax.check_pipeline(
        "identity", "jpeg:5", ds, model, tolerance=255, max_flip_rate=(flips - 1) / 64
    )
    assert at.passed and at.summary["passed_flips"] and at.summary["passed_pixels"]
    assert not below.passed and below.summary["passed_flips"] is False
    assert f"({flips} of 64), is beyond the allowed" in below.to_markdown()
    zero = pixjax.check_pipeline(
        "identity", "identity", ds, model, tolerance=-0.0, max_flip_rate=-0.0
    )
    assert zero.passed and str(zero.summary["max_flip_rate"]) == "0.0"
    assert str(zero.summary["tolerance"]) == "0.0" and "-0" not in zero.to_markdown()
    assert below.summary["passed_pixels"]
    assert "FAILED" in below.to_markdown() and "beyond the allowed" in (
        below.to_markdown()
    )
    # both gates: pixels beyond a tolerance of 0 fail even with flips allowed
    both = pixjax.check_pipeline(
        "identity", "jpeg:5", ds, model, tolerance=0, max_flip_rate=1.0
    )
    assert both.summary["passed_flips"] and not both.passed
    # the CLI: exit 1 below the measured rate, 0 at it
    args = ["identity", "jpeg:5", "--images", "mnist-sample", "--limit", "64"]
    args += ["--checkpoint", "lenet5-mnist", "--tolerance", "255"]
    rc, out, cap = _cli(tmp_path, capsys, *args, "--max-flip-rate", str(flips / 64))
    assert rc == 0, cap.err
    doc = json.loads((out / "check.json").read_text())
    assert doc["summary"]["passed_flips"] and doc["summary"]["max_flip_rate"] == (
        flips / 64
    )
    below_rate = str((flips - 1) / 64)
    rc = cli.main(["check-pipeline", *args, "--max-flip-rate", below_rate])
    assert rc == 1


BAD = {
    "unknown step": (["foo:1", "identity"], "train: pipeline step 1"),
    "missing folder": (
        ["identity", "identity", "--images", "/no/such/dir"],
        "--images",
    ),
    "negative tolerance": (
        ["identity", "identity", "--tolerance", "-1"],
        "--tolerance",
    ),
    "shapes differ": (
        ["resize:pillow:bilinear:64", "resize:pillow:bilinear:32"],
        "[64, 64, 1] from train 'resize:pillow:bilinear:64' and [32, 32, 1] from "
        "serve 'resize:pillow:bilinear:32'",
    ),
    "flip rate above 1": (
        [
            "identity",
            "identity",
            "--checkpoint",
            "lenet5-mnist",
            "--max-flip-rate",
            "2",
        ],
        "--max-flip-rate: expected a share of images in [0, 1], got '2'",
    ),
    "flip rate not a number": (
        [
            "identity",
            "identity",
            "--checkpoint",
            "lenet5-mnist",
            "--max-flip-rate",
            "x",
        ],
        "--max-flip-rate: expected a share of images in [0, 1]",
    ),
    "flip rate without a value": (
        ["identity", "identity", "--checkpoint", "lenet5-mnist", "--max-flip-rate"],
        "--max-flip-rate: expected one argument",
    ),
    "flip rate without a model": (
        ["identity", "identity", "--max-flip-rate", "0.1"],
        "--max-flip-rate: needs --checkpoint",
    ),
    "float output with a model": (
        ["identity", "resize:jax:linear:28", "--checkpoint", "lenet5-mnist"],
        "end the pipeline with 'uint8:round'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(tmp_path, capsys, case):
    args, expected = BAD[case]
    if "--images" not in args:
        args = [*args, "--images", "mnist-sample", "--limit", "4"]
    rc, out, cap = _cli(tmp_path, capsys, *args)
    assert rc == 2
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pixjax: error: "), cap.err
    assert expected in lines[0]
    assert not out.exists()


def test_api_rejects_bad_arguments(digits):
    x = digits.images[:4]
    for tol in (-1, math.nan, math.inf, "1", 10**400):
        with pytest.raises(ValueError, match="tolerance"):
            pixjax.check_pipeline("identity", "identity", x, tolerance=tol)
    with pytest.raises(ValueError, match="images: expected at least one"):
        pixjax.check_pipeline("identity", "identity", x[:0])
    with pytest.raises(ValueError, match="serve: pipeline step 2"):
        pixjax.check_pipeline("identity", "jpeg:75|resize:nope:linear:4", x)
    with pytest.raises(ValueError, match="model: expected"):
        pixjax.check_pipeline("identity", "identity", x, model=(1, 2, 3))
    with pytest.raises(ValueError, match="value_range"):
        pixjax.check_pipeline("identity", "identity", x / 255.0)
    for rate in (-0.1, 1.5, math.nan, "0.1", True, 10**400):
        with pytest.raises(ValueError, match="max_flip_rate: expected a share"):
            pixjax.check_pipeline(
                "identity", "identity", x, model=lambda v: v, max_flip_rate=rate
            )
    with pytest.raises(ValueError, match="max_flip_rate: needs a model"):
        pixjax.check_pipeline("identity", "identity", x, max_flip_rate=0.1)
