"""`pixjax run rbm-nudge`: smoke run end to end, resume from finished stages, the saved
RBM + LR model directory, and bad input (exit 2, nothing written)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from pixjax.experiments import cli
from pixjax import checkpoints, data

SMOKE = ["--preset", "smoke"]


def _run(workdir, *overrides):
    return cli.main(["run", "rbm-nudge", "--workdir", str(workdir), *SMOKE, *overrides])


def test_smoke_run_resume_and_model(tmp_path, capsys):
    wd = tmp_path / "rn"
    assert _run(wd) == 0
    for name in ("results.json", "report.md", "filters.png", "nudged.png"):
        assert (wd / name).is_file(), name
    res = json.loads((wd / "results.json").read_text())
    s = res["summary"]
    # real digits: both pipelines far above chance; one-pixel shifts hurt raw pixels
    assert s["raw_lr"]["accuracy"] > 0.8
    assert s["raw_lr"]["nudged_accuracy"] < s["raw_lr"]["accuracy"]
    assert s["rbm_lr"]["accuracy_mean"] > 0.5
    assert 0 <= s["remedy"]["nudged_accuracy_mean"] <= 1
    seed0 = res["seeds"]["0"]
    assert set(seed0["per_direction"]) == {"up", "down", "left", "right"}
    assert seed0["report"]["macro avg"]["support"] == 200
    assert seed0["nudged_report"]["macro avg"]["support"] == 800
    g = res["grid_search"]
    assert len(g["params"]) == 8 and g["compiled_calls"] == 2
    report = (wd / "report.md").read_text()
    assert "precision" in report and "Grid search" in report
    # the shipped LeNet-5 on the same nudges: its own accuracy, recomputed here
    cnn = res["compared"]["lenet5-mnist"]
    assert cnn["arch"] == "lenet5" and "lenet5-mnist" in report
    module, variables, _ = checkpoints.load_model(
        checkpoints_dir() / "lenet5-mnist", arch="lenet5"
    )
    test = data.load("mnist-sample", "test", limit=200)
    pred = np.asarray(module.apply(variables, test.images / np.float32(255))).argmax(-1)
    assert cnn["accuracy"] == pytest.approx(np.mean(pred == test.labels), abs=1e-9)
    assert 0.5 < cnn["nudged_accuracy"] <= 1

    # the saved model is the pipeline: its logits reproduce the reported accuracy
    module, variables, meta = checkpoints.load_model(wd / "model", arch="rbm_lr")
    assert meta["hyperparameters"]["n_components"] == 64
    logits = module.apply(variables, jnp.asarray(test.images, jnp.float32) / 255.0)
    acc = float(np.mean(np.asarray(logits).argmax(-1) == test.labels))
    assert acc == pytest.approx(seed0["accuracy"], abs=1e-9)

    # a second run reuses every finished stage: same numbers, nothing recomputed
    stamps = {p.name: p.stat().st_mtime_ns for p in (wd / "stages").iterdir()}
    capsys.readouterr()
    assert _run(wd) == 0
    again = json.loads((wd / "results.json").read_text())
    assert again["summary"] == s
    assert {p.name: p.stat().st_mtime_ns for p in (wd / "stages").iterdir()} == stamps


@pytest.mark.parametrize(
    "override, message",
    [
        ("n_components=0", "n_components"),
        ("learning_rate=-0.1", "learning_rate"),
        ("c=0", "c: expected"),
        ("folds=1000", "folds: expected at most"),
        ("shift=28", "shift: expected 1..27"),
        ("seeds=", "seeds"),
        ("grid_cs=0", "C: expected a number > 0"),
        ("compare_checkpoints=nope", "compare_checkpoints: 'nope' is not a shipped"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, override, message):
    wd = tmp_path / "bad"
    assert _run(wd, override) == 2
    assert message in capsys.readouterr().err
    assert not wd.exists()


def test_shipped_rbm_lr_checkpoint():
    """checkpoints/rbm-lr-mnist: seed 0 of the default run, as its metadata says."""
    module, variables, meta = checkpoints.load_model(
        checkpoints_dir() / "rbm-lr-mnist", arch="rbm_lr"
    )
    test = data.load("mnist-sample", "test")
    x = jnp.asarray(test.images, jnp.float32) / 255.0
    acc = float(
        np.mean(np.asarray(module.apply(variables, x)).argmax(-1) == test.labels)
    )
    assert acc == pytest.approx(meta["results"]["test_accuracy"], abs=1e-9)
    assert acc > 0.92
    assert meta["hyperparameters"] == {
        "learning_rate": 0.01,
        "n_iter": 40,
        "n_components": 200,
        "C": 1.0,
        "batch_size": 10,
    }


def checkpoints_dir():
    import pathlib

    return pathlib.Path(__file__).resolve().parent.parent / "checkpoints"
