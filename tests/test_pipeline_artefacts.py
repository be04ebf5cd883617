"""`pixjax run pipeline-artefacts`: every number of the smoke run recomputed here
with Pillow / OpenCV called directly and the model called directly; resume; bad input."""

import io
import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image
from pixjax.experiments import cli, common
from pixjax.experiments.adversarial import fgsm_dataset

from pixjax import checkpoints, data
from pixjax.evaluation.predict import predict

SMALL = ["progress=false"]  # the smoke preset: 128 / 100 digits, 1 epoch


def _pillow_resize(images, size, method):
    f = getattr(Image.Resampling, method.upper())
    return np.stack(
        [
            np.asarray(Image.fromarray(im[..., 0]).resize((size, size), f))
            for im in images
        ]
    )[..., None]


def _jpeg(images, quality):
    out = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im[..., 0]).save(buf, format="JPEG", quality=quality)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))))
    return np.stack(out)[..., None]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("pa") / "run"
    args = ["run", "pipeline-artefacts", "--workdir", str(wd), "--preset", "smoke"]
    assert cli.main(args + SMALL) == 0
    return wd, json.loads((wd / "results.json").read_text())


def test_smoke_run_writes_everything(smoke_run):
    wd, doc = smoke_run
    for name in ("report.md", "results.csv", "matrix.png", "differences.png"):
        assert (wd / name).stat().st_size > 0
    for name in ("jpeg.png", "defences.png"):
        assert (wd / name).stat().st_size > 0
    versions = doc["metadata"]["versions"]
    assert {"pillow", "opencv", "jax"} <= set(versions) and versions["pillow"]
    report = (wd / "report.md").read_text()
    assert "Train/serve matrix" in report and "JPEG" in report and "FGSM" in report


def test_matrix_cells_equal_direct_library_calls(smoke_run):
    wd, doc = smoke_run
    (m,) = doc["matrices"]
    test = data.load("mnist-sample", "test", limit=100)
    labels = test.labels
    served = {
        "resize:pillow:bilinear:20": _pillow_resize(test.images, 20, "bilinear"),
        "resize:opencv:linear:20": np.stack(
            [
                cv2.resize(im[..., 0], (20, 20), interpolation=cv2.INTER_LINEAR)
                for im in test.images
            ]
        )[..., None],
    }
    # The pixel statistics, by hand.
    (d,) = m["differences"]
    a, b = (served[d[k]].astype(np.int64) for k in ("a", "b"))
    assert d["max_abs"] == np.abs(a - b).max() > 0
    assert d["mean_abs"] == pytest.approx(np.abs(a - b).mean())
    assert d["share_images_differing"] == pytest.approx(
        np.mean((a != b).reshape(len(a), -1).any(1))
    )
    for i, row in enumerate(m["matrix"]):
        module, variables, meta = checkpoints.load_model(
            wd / "models" / "0-mnist-sample-20" / str(i) / "model", arch="lenet5"
        )
        assert meta["input_shape"] == [20, 20, 1]
        assert meta["dataset"]["pipeline"] == row["train"]
        matched, _ = predict(module.apply, variables, served[row["train"]])
        for cell in row["cells"]:
            pred, _ = predict(module.apply, variables, served[cell["serve"]])
            assert cell["correct"] == int(np.sum(pred == labels))
            ok = matched == labels
            assert cell["flips"] == int(np.sum(ok & (pred != matched)))
            assert cell["mcnemar"]["b"] == int(np.sum(ok & (pred != labels)))
            assert cell["mcnemar"]["c"] == int(np.sum(~ok & (pred == labels)))
        diagonal = row["cells"][i]
        assert diagonal["serve"] == row["train"] and diagonal["flips"] == 0


def test_jpeg_and_defence_cells_equal_direct_computation(smoke_run):
    _, doc = smoke_run
    test = data.load("mnist-sample", "test", limit=100)
    module, variables, _ = common.load_checkpoint("lenet5", "lenet5-mnist", (28, 28, 1))
    clean, _ = predict(module.apply, variables, test.images)
    ok = clean == test.labels
    (j,) = doc["jpeg"]
    for cell in j["cells"]:
        pred, _ = predict(module.apply, variables, _jpeg(test.images, cell["quality"]))
        assert cell["flips"] == int(np.sum(ok & (pred != clean)))
        assert cell["clean_correct"] == int(ok.sum())
    d = doc["defences"]
    adv = fgsm_dataset(module.apply, variables, test.images, test.labels, 0.1)
    idx = np.flatnonzero(ok & (adv.pred != test.labels))
    assert d["successful"] == len(idx) > 0
    jpeg50, resize = d["pipelines"]
    assert jpeg50["pipeline"] == "jpeg:50"
    pred, _ = predict(module.apply, variables, _jpeg(adv.images[idx], 50))
    assert jpeg50["recovered"] == int(np.sum(pred == test.labels[idx]))
    round_trip = _pillow_resize(
        _pillow_resize(adv.images[idx], 14, "bilinear"), 28, "bilinear"
    )
    pred, _ = predict(module.apply, variables, round_trip)
    assert resize["recovered"] == int(np.sum(pred == test.labels[idx]))
    assert [r["num"] for r in d["random"]] == [16]


def test_rerun_after_a_lost_epoch_is_identical(smoke_run, tmp_path):
    wd, doc = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(wd, copy)
    # Lose the trained state of one model (as a kill mid-training would): it is
    # retrained from the same key; everything else is recomputed.
    shutil.rmtree(copy / "models" / "0-mnist-sample-20" / "1")
    args = ["run", "pipeline-artefacts", "--workdir", str(copy), "--preset", "smoke"]
    assert cli.main(args + SMALL) == 0
    again = json.loads((copy / "results.json").read_text())
    strip = lambda d: {k: v for k, v in d.items() if k != "metadata"}  # noqa: E731
    assert strip(again) == strip(doc)


@pytest.mark.parametrize(
    "override, message",
    [
        ("pipelines=resize:pillow:bilinear:20,jpeg:75", "has no {size}"),
        (
            "pipelines=resize:pillow:bilnear:{size},resize:opencv:linear:{size}",
            "bilnear",
        ),
        ("pipelines=resize:jax:linear:{size},resize:opencv:linear:{size}", "float32"),
        ("pipelines=resize:pillow:bilinear:{size}", "2 or more"),
        ("jpeg_qualities=0", "quality"),
        ("jpeg_qualities=101", "quality"),
        ("jpeg_subsampling=411", "jpeg_subsampling"),
        ("sizes=0", "sizes"),
        ("sizes=100000", "1..1024"),
        (
            "pipelines=resize:pillow:bilinear:{size},RESIZE:Pillow:bilinear:{size}",
            "same",
        ),
        ("datasets=mnist-sample,mnist-sample", "repeated"),
        ("jpeg_qualities=50,50", "repeated"),
        ("zoo_model=resnet18", "zoo_checkpoint"),
        ("defence_pipelines=resize:pillow:bilinear:14", "expected (28, 28, 1)"),
        ("eps=-1", "eps"),
        ("epochs=0", "epochs"),
        ("datasets=nosuch", "nosuch"),
        ("random_nums=0", "random_nums"),
    ],
)
def test_bad_config_is_one_line_exit_2_nothing_written(
    override, message, tmp_path, capsys
):
    wd = tmp_path / "run"
    args = ["run", "pipeline-artefacts", "--workdir", str(wd), "--preset", "smoke"]
    assert cli.main(args + [override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not wd.exists()
