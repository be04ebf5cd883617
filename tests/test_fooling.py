"""`pixjax run fooling`: every study on the shipped models (smoke sizes), resume after
a lost chunk, any registered model as the target (the RBM pipeline, a zoo model on
random weights), 1 vs 8 devices, and bad input (one line, exit 2, nothing written)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from pixjax.experiments import cli


def _run(workdir, *overrides, preset="smoke"):
    argv = ["run", "fooling", "--workdir", str(workdir), "--preset", preset]
    return cli.main([*argv, "progress=false", *overrides])


def _results(workdir):
    return json.loads((workdir / "results.json").read_text())


def _drop_newest_checkpoint(folder):
    """What a kill between two chunks leaves: the newest checkpoint missing."""
    import shutil

    steps = [p for p in folder.iterdir() if p.name.isdigit()]
    shutil.rmtree(max(steps, key=lambda p: int(p.name)))


def _untimed(v):
    """A results value without its wall-clock measurements."""
    if isinstance(v, dict):
        return {k: _untimed(x) for k, x in v.items() if "seconds" not in k}
    if isinstance(v, list):
        return [_untimed(x) for x in v]
    return v


def _report_rebuilds(wd, capsys):
    """`pixjax report` writes the same report from results.json alone."""
    report = (wd / "report.md").read_bytes()
    (wd / "report.md").unlink()
    assert cli.main(["report", str(wd)]) == 0
    assert (wd / "report.md").read_bytes() == report
    capsys.readouterr()


def test_transfer_and_ensemble(tmp_path, capsys):
    wd = tmp_path / "run"
    assert _run(wd, "studies=direct,transfer,ensemble", "runs=1") == 0
    s = _results(wd)["studies"]
    # transfer: the target plus the other nets, scored by each: a square matrix whose
    # diagonal (the net the elites were evolved on) scores them highest
    t = s["transfer"]
    m = np.array(t["median_confidence"])
    assert m.shape == (2, 2) and t["nets"] == [
        "lenet5:lenet5-mnist",
        "lenet5:lenet5-mnist-seed1",
    ]
    assert np.all(np.diag(m) >= m.max(axis=0) - 1e-6)
    # the target's row reuses the direct study's elites (1 run x 10 classes)
    assert t["elites_per_source"] == [10, 10]
    e = s["ensemble"]
    members = np.array(e["member_confidence"])  # [nets, C]: the mean is the target
    np.testing.assert_allclose(members.mean(axis=0), np.array(e["final"]), atol=1e-5)
    assert e["classes_reached"] == sum(p >= 0.9999 for p in e["final"])
    text = (wd / "report.md").read_text()
    assert "## Transfer" in text and "## Ensemble target" in text
    _report_rebuilds(wd, capsys)


def test_direct_search_results_and_resume(tmp_path):
    wd = tmp_path / "run"
    assert _run(wd, "studies=direct") == 0
    doc = _results(wd)
    d = doc["studies"]["direct"]
    assert len(d["runs"]) == 2 and len(d["per_class"]) == 10
    for run in d["runs"]:
        curve = np.array(run["curve"], float)  # [K, 10]: never worse
        assert curve.shape == (len(d["curve_generations"]), 10)
        assert np.all(np.diff(curve, axis=0) >= 0)
        first = np.array(run["first_generation"])
        reached = np.array(run["final"]) >= doc["threshold"]
        np.testing.assert_array_equal(first >= 0, reached)
        timed = [t for g, t in zip(first, run["seconds_to"], strict=True) if g >= 0]
        assert all(t is not None and t >= 0 for t in timed)
    for name in ("results.csv", "report.md", "curves.png", "elites_direct.png"):
        assert (wd / name).is_file()
    # a run killed between chunks: drop the newest archive checkpoint of one search,
    # rerun the same command -> it resumes and ends with the same numbers
    _drop_newest_checkpoint(wd / "search" / "direct-run1")
    (wd / "results.json").unlink()
    assert _run(wd, "studies=direct") == 0
    again = _results(wd)["studies"]
    assert _untimed(again) == _untimed(doc["studies"])
    # the resumed runs' seconds are not made up: generations restored from a
    # checkpoint were timed by another process
    for run in again["direct"]["runs"]:
        for g, t in zip(run["first_generation"], run["seconds_to"], strict=True):
            assert t is None or g == 0


def test_retrain_with_a_fooling_class_and_resume(tmp_path, capsys):
    wd = tmp_path / "run"
    overrides = ("studies=retrain", "threshold=0.99")
    assert _run(wd, *overrides) == 0
    rt = _results(wd)["studies"]["retrain"]
    rounds = rt["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rt["fooling_class"] == 10
    assert rounds[0]["fooling_images_added"] == rounds[0]["fooling_images_found"] > 0
    assert rounds[0]["training_images"] == 300 + rounds[0]["fooling_images_added"]
    assert rounds[0]["clean_accuracy"] == pytest.approx(0.9755)
    assert 0 <= rounds[1]["clean_accuracy"] <= 1
    _drop_newest_checkpoint(wd / "search" / "retrain-round0")
    (wd / "results.json").unlink()
    assert _run(wd, *overrides) == 0
    assert _untimed(_results(wd)["studies"]) == _untimed({"retrain": rt})
    _report_rebuilds(wd, capsys)


@pytest.mark.parametrize(
    "override, message",
    [
        ("studies=direct,nope", "studies: expected one of"),
        ("pop_size=7", "pop_size: expected an even positive"),
        ("pop_size=0", "pop_size: expected an even positive"),
        ("mutation_rate=1.5", "mutation_rate: expected a probability"),
        ("eta_mutation=0", "eta_mutation: expected a positive"),
        ("rule=best", "rule: expected one of"),
        ("schedule=fast", "schedule: expected one of"),
        ("threshold=1.5", "threshold: expected a probability"),
        ("generations=0", "generations: expected a positive"),
        ("runs=0", "runs: expected a positive"),
        ("studies=transfer transfer_models=lenet5", "expected ARCH:CHECKPOINT"),
        ("studies=ensemble ensemble_models=lenet5:nowhere", "does not exist"),
        ("studies=transfer transfer_models=rbm_lr:lenet5-mnist", "rbm_lr"),
        ("studies=retrain model=rbm_lr checkpoint=rbm-lr-mnist", "retrain trains"),
        ("studies=retrain weight_decay=-1", "weight_decay: expected 0 or more"),
        ("studies=retrain augment_shift=28", "augment_shift: expected less than"),
        ("cppn_max_nodes=4", "cppn_max_nodes:"),
        ("ascent_decays=1.5", "ascent_decays: expected"),
        ("pop_size=4000000", "pop_size: 4000000 images"),
        ("pop_size=100000000000", "pop_size:"),
        ("key=99999999999999999999", "key: expected an integer"),
        ("studies=ensemble ensemble_models=lenet5:rbm-lr-mnist", "ensemble_models:"),
        ("ascent_steps=0", "ascent_steps: expected a positive"),
        ("model=rbm_lr", "checkpoint"),
        ("render_scale=0", "render_scale: expected a positive"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, override, message):
    wd = tmp_path / "run"
    capsys.readouterr()
    assert _run(wd, *override.split()) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pixjax: error: "), err
    assert message in err[0], err[0]
    assert not wd.exists()


def test_the_rbm_pipeline_is_a_target(tmp_path):
    """rbm_lr (RBM features -> logistic regression) is searched like any network."""
    wd = tmp_path / "run"
    assert (
        _run(wd, "model=rbm_lr", "checkpoint=rbm-lr-mnist", "studies=direct", "runs=1")
        == 0
    )
    d = _results(wd)["studies"]["direct"]
    curve = np.array(d["runs"][0]["curve"], float)
    assert curve[-1].mean() > curve[0].mean()  # the search made progress


SHARDED = textwrap.dedent(
    """
    import os, sys, functools
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax, numpy as np
    from pixjax import checkpoints, sharding
    from pixjax.search import cppn_encoding, direct_encoding, target_probs
    from pixjax.search.evolve import search
    m, v, _ = checkpoints.load_model({ck!r}, arch="lenet5")
    probs = target_probs(functools.partial(m.apply, v))
    assert jax.device_count() == 8
    split = sharding.batch_sharding(sharding.data_mesh())
    for enc in (direct_encoding((28, 28, 1)), cppn_encoding((28, 28, 1))):
        kw = dict(pop_size=16, num_cells=10, generations=6, chunk_size=3)
        one = search(jax.random.key(3), enc, probs, **kw)
        eight = search(jax.random.key(3), enc, probs, sharding=split, **kw)
        # the same elites, bit for bit; their probabilities equal up to the float
        # rounding of a smaller per-device batch
        for a, b in zip(
            jax.tree_util.tree_leaves(one.state.archive.genomes),
            jax.tree_util.tree_leaves(eight.state.archive.genomes),
        ):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(one.fitness, eight.fitness, rtol=1e-5, atol=1e-6)
        print(enc.name, "same")
    """
)


def test_same_key_same_archive_on_1_and_8_devices():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = SHARDED.format(ck=os.path.join(root, "checkpoints", "lenet5-mnist"))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["direct", "same", "cppn", "same"]


def test_a_zoo_model_on_random_weights_is_a_colour_target(tmp_path):
    """An ImageNet-layout model (SqueezeNet 1.1, 224 x 224 x 3, random weights saved
    as a model directory, as `pixjax convert` writes one): the CPPN search (HSL) runs
    on it without a dataset (the direct encoding is the same path as on LeNet-5; the
    ascent on colour images: tests/test_search_ascent.py)."""
    import jax

    from pixjax import checkpoints, models

    model = models.get_model("squeezenet1_1", num_classes=10)
    variables = models.init_variables(model, jax.random.key(0), (224, 224, 3))
    checkpoints.save_model(
        tmp_path / "sq",
        variables,
        {
            "arch": "squeezenet1_1",
            "model_kwargs": {"num_classes": 10},
            "input_shape": [224, 224, 3],
        },
    )
    wd = tmp_path / "run"
    assert (
        _run(
            wd,
            "model=squeezenet1_1",
            f"checkpoint={tmp_path / 'sq'}",
            "dataset=none",
            "studies=cppn",
            "runs=1",
            "pop_size=4",
            "cppn_generations=2",
            "chunk_size=2",
            "render_scale=1",
        )
        == 0
    )
    doc = _results(wd)
    assert doc["metadata"]["image_shape"] == [224, 224, 3]
    assert doc["clean_accuracy"] is None
    from pixjax.experiments import common

    elites = common.unpack_uint8(doc["studies"]["cppn"]["elites"])
    assert elites.shape == (4, 224, 224, 3)
    # colour CPPNs render HSL -> RGB: the smoke preset's colour encoding at this
    # size gives images whose channels differ (a given elite may be grey: an
    # unconnected saturation output is 0)
    from pixjax.search import CPPNSettings, cppn_encoding, render_population

    enc = cppn_encoding((224, 224, 3), CPPNSettings(max_nodes=8, max_connections=16))
    genomes = jax.vmap(enc.init)(jax.random.split(jax.random.key(0), 8))
    images = np.asarray(render_population(enc, genomes))
    assert np.abs(images[..., 0] - images[..., 1]).max() > 0.1


def test_the_second_shipped_lenet5_is_what_its_metadata_says(mnist_test):
    """checkpoints/lenet5-mnist-seed1: the shipped recipe from seed 1 (the transfer
    study's "same architecture, other seed"), with its accuracy measured here."""
    from pixjax.experiments import common

    from pixjax.evaluation import accuracy

    assert "lenet5-mnist-seed1" in common.shipped_checkpoints()
    module, variables, meta = common.load_checkpoint(
        "lenet5", "lenet5-mnist-seed1", (28, 28, 1)
    )
    _, v0, meta0 = common.load_checkpoint("lenet5", "lenet5-mnist", (28, 28, 1))
    assert meta["seed"] == 1 and meta0["seed"] == 0
    assert {
        k: v for k, v in meta["config"].items() if k not in ("seed", "progress")
    } == {k: v for k, v in meta0["config"].items() if k != "seed"}
    acc = accuracy(module.apply, variables, mnist_test.images, mnist_test.labels)
    assert acc == meta["test_accuracy"] == pytest.approx(0.982)
    kernel = lambda v: np.asarray(v["params"]["conv1"]["kernel"])  # noqa: E731
    assert not np.allclose(kernel(variables), kernel(v0))
