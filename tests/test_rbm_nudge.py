"""`pixjax run rbm-nudge`: smoke run end to end (the config's expectations, the seed
summary, the report rebuilt from results.json alone), resume from finished stages, the
saved RBM + LR model directory, keys split by purpose, and bad input (exit 2, nothing
written)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pixjax.experiments import cli, common, rbm_nudge

from pixjax import checkpoints, data
from pixjax.evaluation import wilson_interval
from pixjax.keys import purpose_keys
from pixjax.perturb import nudge

SMOKE = ["--preset", "smoke"]


def _run(workdir, *overrides):
    return cli.main(["run", "rbm-nudge", "--workdir", str(workdir), *SMOKE, *overrides])


def test_smoke_run_resume_and_model(tmp_path, capsys):
    wd = tmp_path / "rn"
    assert _run(wd) == 0
    files = ("results.json", "report.md", "filters.png", "nudged.png", "seeds.csv")
    for name in (*files, "grid.csv"):
        assert (wd / name).is_file(), name
    res = json.loads((wd / "results.json").read_text())
    assert res["experiment"] == "rbm-nudge"
    s = res["summary"]
    seeds = res["seeds"]
    # the config's expectations at smoke size (600 / 200 real digits): both logistic
    # pipelines far above chance and hurt by the one-pixel nudges, on every seed;
    # the remedy raises the nudged accuracy (the levels need the default size)
    assert s["raw_lr"]["accuracy"] > 0.8
    assert s["raw_lr"]["nudged_accuracy"] < s["raw_lr"]["accuracy"]
    assert s["rbm_lr"]["accuracy_mean"] > 0.5
    for r in seeds.values():
        assert r["nudged_accuracy"] < r["accuracy"]
        assert r["remedy"]["nudged_accuracy"] > r["nudged_accuracy"]
    assert s["remedy"]["nudged_accuracy_mean"] > s["rbm_lr"]["nudged_accuracy_mean"]
    # the spread over seeds is the sample sd (ddof=1); the interval is the Wilson
    # interval of the correct images pooled over the seeds
    nudged = [r["nudged_accuracy"] for r in seeds.values()]
    assert np.std(nudged, ddof=1) != pytest.approx(np.std(nudged), abs=1e-6)
    assert s["rbm_lr"]["nudged_accuracy_std"] == pytest.approx(
        np.std(nudged, ddof=1), abs=1e-12
    )
    pooled = [sum(r["remedy"][k] for r in seeds.values()) for k in ("correct", "n")]
    assert s["remedy"]["accuracy_ci"] == pytest.approx(wilson_interval(*pooled))
    seed0 = seeds["0"]
    assert set(seed0["per_direction"]) == {"up", "down", "left", "right"}
    assert seed0["report"]["macro avg"]["support"] == 200
    assert seed0["nudged_report"]["macro avg"]["support"] == 800
    assert seed0["nudged_n"] == 800
    assert seed0["nudged_accuracy"] == pytest.approx(
        np.mean(list(seed0["per_direction"].values())), abs=1e-12
    )
    g = res["grid_search"]
    assert len(g["params"]) == 8 and g["compiled_calls"] == 2
    report = (wd / "report.md").read_text()
    assert "precision" in report and "Grid search" in report
    assert "sample sd (ddof=1)" in report
    # the shipped LeNet-5 on the same nudges: its own accuracy, recomputed here; a
    # convolutional net loses at most a couple of points to one-pixel shifts
    cnn = res["compared"]["lenet5-mnist"]
    assert cnn["arch"] == "lenet5" and "lenet5-mnist" in report
    module, variables, _ = checkpoints.load_model(
        checkpoints_dir() / "lenet5-mnist", arch="lenet5"
    )
    test = data.load("mnist-sample", "test", limit=200)
    pred = np.asarray(module.apply(variables, test.images / np.float32(255))).argmax(-1)
    assert cnn["accuracy"] == pytest.approx(np.mean(pred == test.labels), abs=1e-9)
    assert abs(cnn["nudged_accuracy"] - cnn["accuracy"]) < 0.02

    # the figures' images are in the results: filters and nudged test digits
    figs = res["figures"]
    assert common.unpack_uint8(figs["filters"]["pixels"]).shape == (16, 28, 28, 1)
    ex = figs["nudged"]
    views = common.unpack_uint8(ex["images"])
    assert views.shape == (3, 5, 28, 28, 1) and ex["index"] == [0, 66, 133]
    np.testing.assert_array_equal(views[:, 0], test.images[ex["index"]])
    np.testing.assert_array_equal(
        views[:, 1:], np.asarray(nudge(test.images[ex["index"]])).swapaxes(0, 1)
    )

    # report.md and the figures are rebuilt from results.json alone, byte for byte
    before = (wd / "report.md").read_bytes()
    for name in ("report.md", "filters.png", "nudged.png"):
        (wd / name).unlink()
    assert cli.main(["report", str(wd)]) == 0
    assert (wd / "report.md").read_bytes() == before
    assert (wd / "filters.png").is_file() and (wd / "nudged.png").is_file()

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
    assert again["summary"] == s and again["seeds"] == seeds
    assert {p.name: p.stat().st_mtime_ns for p in (wd / "stages").iterdir()} == stamps


def test_keys_split_by_purpose_share_nothing_across_seeds():
    """The grid search used key(seeds[0]), the fit of seed 0 key(seed) too and the
    remedy fold_in(key(seed), 1): now every seed's root key is split by purpose, and no
    subkey of one seed is a subkey (or the root) of another."""
    keys = [
        jax.random.key_data(k).tobytes()
        for seed in range(4)
        for k in purpose_keys(jax.random.key(seed), *rbm_nudge.PURPOSES).values()
    ]
    roots = {jax.random.key_data(jax.random.key(s)).tobytes() for s in range(4)}
    assert len(set(keys)) == len(keys) == 4 * len(rbm_nudge.PURPOSES)
    assert not roots & set(keys)


def test_stages_of_another_format_are_recomputed(tmp_path):
    """A stage left by a pixjax that computed it differently (e.g. with the keys of
    before) is recomputed, never mixed into this run's results."""
    stages = tmp_path / "stages"
    stages.mkdir()
    (stages / "seed-0.json").write_text(json.dumps({"accuracy": 0.5}))  # old: bare
    calls = []

    def fresh():
        calls.append(1)
        return {"accuracy": 0.75}

    assert rbm_nudge._stage(tmp_path, "seed-0", fresh) == {"accuracy": 0.75}
    assert rbm_nudge._stage(tmp_path, "seed-0", fresh) == {"accuracy": 0.75}
    assert len(calls) == 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("n_components=0", "n_components"),
        ("learning_rate=-0.1", "learning_rate"),
        ("c=0", "c: expected"),
        ("folds=1000", "folds: expected at most"),
        ("shift=28", "shift: expected 1..27"),
        ("seeds=", "seeds"),
        ("seeds=1,1", "seeds: expected distinct seeds, got [1, 1]"),
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
    """checkpoints/rbm-lr-mnist: seed 0 of the default run as it was before the keys
    were split by purpose (its metadata records its own numbers, checked here)."""
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
