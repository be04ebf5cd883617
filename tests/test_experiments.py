"""The `pixjax` command: `list`, smoke runs of the main job and of `train`, override
parsing, and bad input (exit code 2, a message naming the argument, nothing written)."""

import json
import re

import jax
import pytest

from pixjax.experiments import cli, common
from pixjax.experiments.configs import pixel_change as pc_configs
from pixjax.experiments.configs import train as train_configs
from pixjax import checkpoints, models

SMOKE = ["--preset", "smoke"]
OUTPUTS = (
    "results.json",
    "results.csv",
    "report.md",
    "exp1.png",
    "exp2.png",
    "exp3.png",
    "examples.png",
)


def _run(experiment, workdir, *overrides):
    return cli.main(["run", experiment, "--workdir", str(workdir), *SMOKE, *overrides])


def test_list_prints_every_experiment(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(cli.EXPERIMENTS)
    assert all(len(line.split()) > 1 for line in lines)  # each with a description


# --- the main job ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """Runs `pixjax run pixel-change --preset smoke` once for the tests below."""
    wd = tmp_path_factory.mktemp("pixel-change") / "run"
    assert _run("pixel-change", wd) == 0
    return wd


def test_main_job_writes_every_output(main_job):
    for name in OUTPUTS:
        assert (main_job / name).is_file() and (main_job / name).stat().st_size > 0
    assert not list(main_job.glob(".*tmp*"))  # no leftovers of the atomic writes
    for name in OUTPUTS[3:]:
        assert (main_job / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_main_job_results(main_job):
    res = json.loads((main_job / "results.json").read_text())
    smoke = pc_configs.get_config("smoke")
    assert res["clean_accuracy"] > 0.9
    assert res["metadata"]["images"] == smoke.limit
    assert res["metadata"]["config"]["seeds"] == list(smoke.seeds)
    assert res["configs"]
    for c in res["configs"]:
        assert 0 <= c["flip_rate_mean"] <= 1
        assert 0 <= c["flip_rate_ci"][0] <= c["flip_rate_ci"][1] <= 1
        assert 0 <= c["accuracy_mean"] <= 1
    pi = res["pixel_index"]
    assert pi is not None and pi["num"] == max(smoke.nums)
    assert pi["pi"] >= 0 and pi["p"] == pytest.approx(max(smoke.nums) / 784)
    assert set(res["experiments"]) == {"1", "2", "3"}
    report = (main_job / "report.md").read_text()
    assert "Pixel-index" in report
    assert all(f"exp{e}.png" in report for e in (1, 2, 3))
    header = (main_job / "results.csv").read_text().splitlines()[0].split(",")
    assert header[:3] == ["experiment", "series", "num"]


def test_main_job_same_seed_same_results(main_job, tmp_path):
    assert _run("pixel-change", tmp_path / "again") == 0
    first = json.loads((main_job / "results.json").read_text())
    again = json.loads((tmp_path / "again" / "results.json").read_text())
    assert again["configs"] == first["configs"]
    assert again["per_seed"] == first["per_seed"]


# --- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        # the library's check names the PixelConfig field `num`, not the key `nums`
        ("nums=0", r"nums?: expected 1\.\.784"),
        ("nums=1000", r"nums?: expected 1\.\.784"),
        ("magnitudes=0", r"magnitudes: expected values in \(0, 255\]"),
        ("magnitudes=300", r"magnitudes: expected values in \(0, 255\]"),
        ("regions=40", r"regions: expected centred square sides 1\.\.28"),
        ("model=nope", r"model: unknown 'nope'; expected one of \[.*'lenet5'.*\]"),
        ("dataset=nope", r"dataset: expected one of .*'nope'"),
        ("checkpoint=/nonexistent", r"checkpoint: '/nonexistent' does not exist"),
        ("seeds=", r"seeds: expected at least one"),
        ("experiments=4", r"experiments: expected a non-empty subset of 1,2,3"),
        ("bogus=1", r"override: unknown key 'bogus'; expected one of \[.*'nums'"),
        ("nums=two", r"nums: expected an integer, got 'two'"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, override, message):
    wd = tmp_path / "never"
    assert _run("pixel-change", wd, override) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("pixjax: error: ")
    assert re.search(message, captured.err), captured.err
    assert not wd.exists()


def test_unknown_experiment(tmp_path, capsys):
    wd = tmp_path / "never"
    assert _run("nope", wd) == 2
    err = capsys.readouterr().err
    assert "experiment: unknown 'nope'" in err
    assert all(name in err for name in cli.EXPERIMENTS)
    assert not wd.exists()


def test_checkpoint_of_another_input_shape(tmp_path, capsys):
    module = models.get_model("lenet5", num_classes=10)
    init = jax.jit(models.init_variables, static_argnums=(0, 2))
    ck = tmp_path / "lenet-rgb"
    checkpoints.save_model(
        ck,
        init(module, jax.random.key(0), (32, 32, 3)),
        {
            "arch": "lenet5",
            "model_kwargs": {"num_classes": 10},
            "input_shape": [32, 32, 3],
        },
    )
    wd = tmp_path / "never"
    assert _run("pixel-change", wd, f"checkpoint={ck}") == 2
    err = capsys.readouterr().err
    assert "(28, 28, 1)" in err and "(32, 32, 3)" in err and str(ck) in err
    assert not wd.exists()


# --- overrides -------------------------------------------------------------------------


def test_apply_overrides_parses_types():
    base = pc_configs.get_config("default")
    c = common.apply_overrides(
        base,
        [
            "nums=1,2,4",
            "magnitudes=10.5,40",
            "per-channel=yes",
            "quantize=false",
            "limit=none",
            "checkpoint=none",
            "seeds=",
            "split=train",
        ],
    )
    assert c.nums == (1, 2, 4) and c.magnitudes == (10.5, 40.0)
    assert c.per_channel is True and c.quantize is False
    assert c.limit is None and c.checkpoint is None and c.seeds == ()
    assert c.split == "train"
    assert base.nums == (1, 2, 4, 8, 16, 32, 64)  # the original is untouched
    assert common.apply_overrides(base, ["limit=7"]).limit == 7
    t = common.apply_overrides(
        train_configs.get_config("smoke"), ["learning_rate=3e-4", "init_checkpoint=x"]
    )
    assert t.learning_rate == 3e-4 and t.init_checkpoint == "x"


@pytest.mark.parametrize(
    "override, message",
    [
        ("batch_size=big", "batch_size: expected an integer, got 'big'"),
        ("limit=1.5", "limit: expected an integer, got '1.5'"),
        ("nums=1,x", "nums: expected an integer, got 'x'"),
        ("magnitudes=lots", "magnitudes: expected a number, got 'lots'"),
        ("per_channel=maybe", "per_channel: expected true or false, got 'maybe'"),
        ("nope=1", "override: unknown key 'nope'"),
        ("nums", "override: expected KEY=VALUE, got 'nums'"),
    ],
)
def test_apply_overrides_errors_name_the_key(override, message):
    with pytest.raises(common.ConfigError) as err:
        common.apply_overrides(pc_configs.get_config("default"), [override])
    assert message in str(err.value)


# --- train -----------------------------------------------------------------------------


def test_train_smoke_writes_a_loadable_model(tmp_path):
    wd = tmp_path / "train"
    assert _run("train", wd) == 0
    module, variables, meta = checkpoints.load_model(wd / "model", arch="lenet5")
    on_disk = json.loads((wd / "model" / "metadata.json").read_text())
    assert on_disk == meta
    assert 0 <= meta["test_accuracy"] <= 1
    assert meta["input_shape"] == [28, 28, 1] and module.num_classes == 10
    assert json.loads((wd / "config.json").read_text()) == {
        "experiment": "train",
        "config": meta["config"],
    }
    assert meta["config"]["epochs"] == train_configs.get_config("smoke").epochs
    assert meta["command"].startswith("pixjax run train --workdir")
    results = json.loads((wd / "results.json").read_text())
    assert results["test_accuracy"] == meta["test_accuracy"]
    assert [h["epoch"] for h in results["history"]] == [1, 2]
