"""The `pixjax` command and the main job: list, smoke runs, outputs, bad input (a clear
error naming the argument, exit code 2, and no file written)."""

import json

import pytest

from experiments import cli, common
from experiments.configs.pixel_change import Config
from pixjax import checkpoints, models

SMOKE = ["--preset", "smoke"]


def test_list_names_every_experiment(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in cli.EXPERIMENTS:
        assert name in out


def test_main_job_smoke(tmp_path):
    wd = tmp_path / "run"
    assert cli.main(["run", "pixel-change", "--workdir", str(wd), *SMOKE]) == 0
    for f in (
        "results.json",
        "results.csv",
        "report.md",
        "exp1.png",
        "exp2.png",
        "exp3.png",
        "examples.png",
    ):
        assert (wd / f).stat().st_size > 0, f
    res = json.loads((wd / "results.json").read_text())
    assert res["clean_accuracy"] > 0.9
    assert res["metadata"]["config"]["seeds"] == [0, 1]
    # smoke grid: Exp 1 nums (1, 8); Exp 2 +-40 x nums; Exp 3 regions 28 (= Exp 1), 14
    assert len(res["configs"]) == 2 + 2 + 2
    for c in res["configs"]:
        assert 0 <= c["flip_rate_mean"] <= 1
        lo, hi = c["flip_rate_ci"]
        assert 0 <= lo <= hi <= 1
    assert len(res["per_seed"]) == 2 * len(res["configs"])
    assert res["pixel_index"]["num"] == 8
    report = (wd / "report.md").read_text()
    assert "Pixel-index" in report and "Exp 3" in report
    csv_lines = (wd / "results.csv").read_text().strip().splitlines()
    assert csv_lines[0].startswith("experiment,series,num")
    assert len(csv_lines) == 1 + 2 + 2 + 4  # Exp 3 lists the full region again
    # same seeds -> same numbers
    wd2 = tmp_path / "run2"
    assert cli.main(["run", "pixel-change", "--workdir", str(wd2), *SMOKE]) == 0
    res2 = json.loads((wd2 / "results.json").read_text())
    assert res2["configs"] == res["configs"]


def test_overrides_reach_the_run(tmp_path):
    wd = tmp_path / "o"
    args = [
        "run",
        "pixel-change",
        "--workdir",
        str(wd),
        *SMOKE,
        "experiments=1",
        "nums=2,4,6",
        "seeds=3",
        "per_channel=true",
    ]
    assert cli.main(args) == 0
    res = json.loads((wd / "results.json").read_text())
    assert [c["num"] for c in res["configs"]] == [2, 4, 6]
    assert res["metadata"]["config"]["per_channel"] is True
    assert not (wd / "exp2.png").exists()


@pytest.fixture(scope="module")
def wrong_shape_checkpoint(tmp_path_factory):
    d = tmp_path_factory.mktemp("ck") / "lenet-rgb"
    m = models.get_model("lenet5")
    v = models.init_variables(m, __import__("jax").random.key(0), (32, 32, 3))
    checkpoints.save_model(
        d,
        v,
        {
            "arch": "lenet5",
            "model_kwargs": {"num_classes": 10},
            "input_shape": [32, 32, 3],
        },
    )
    return d


@pytest.mark.parametrize(
    "override, message",
    [
        ("nums=0", "num: expected 1..784"),
        ("nums=1000", "num: expected 1..784"),
        ("magnitudes=0", r"magnitudes: expected values in (0, 255]"),
        ("magnitudes=300", r"magnitudes: expected values in (0, 255]"),
        ("regions=40", "regions: expected centred square sides 1..28"),
        ("model=nope", "model: unknown 'nope'; expected one of ['lenet5']"),
        ("dataset=nope", "dataset: expected one of"),
        ("dataset=tfds:mnist", "pixjax never downloads"),
        (
            "checkpoint=/nonexistent/dir",
            "checkpoint: '/nonexistent/dir' does not exist",
        ),
        ("checkpoint=none", "checkpoint: required"),
        ("seeds=", "seeds: expected at least one value"),
        ("experiments=4", "experiments: expected a non-empty subset of 1,2,3"),
        ("batch_size=0", "batch_size: expected a positive number"),
        ("bogus=1", "override: unknown key 'bogus'"),
        ("nums=a", "nums: expected an integer"),
    ],
)
def test_bad_input_fails_before_any_write(tmp_path, capsys, override, message):
    wd = tmp_path / "never"
    assert (
        cli.main(["run", "pixel-change", "--workdir", str(wd), *SMOKE, override]) == 2
    )
    assert message in capsys.readouterr().err
    assert not wd.exists()


def test_mismatched_checkpoint_and_unknown_experiment(
    tmp_path, capsys, wrong_shape_checkpoint
):
    wd = tmp_path / "never"
    ck = f"checkpoint={wrong_shape_checkpoint}"
    assert cli.main(["run", "pixel-change", "--workdir", str(wd), *SMOKE, ck]) == 2
    err = capsys.readouterr().err
    assert "(28, 28, 1)" in err and "(32, 32, 3)" in err
    assert cli.main(["run", "nope", "--workdir", str(wd)]) == 2
    assert "experiment: unknown 'nope'" in capsys.readouterr().err
    assert not wd.exists()


def test_apply_overrides_types():
    c = common.apply_overrides(
        Config(), ["nums=1,2,4", "per_channel=yes", "limit=none", "magnitudes=10.5"]
    )
    assert c.nums == (1, 2, 4) and c.per_channel is True and c.limit is None
    assert c.magnitudes == (10.5,)
    with pytest.raises(common.ConfigError, match="batch_size: expected an integer"):
        common.apply_overrides(Config(), ["batch_size=big"])
    with pytest.raises(common.ConfigError, match="expected KEY=VALUE"):
        common.apply_overrides(Config(), ["nums"])


def test_train_smoke_writes_a_loadable_model(tmp_path):
    wd = tmp_path / "t"
    assert cli.main(["run", "train", "--workdir", str(wd), *SMOKE]) == 0
    module, variables, meta = checkpoints.load_model(wd / "model", arch="lenet5")
    assert 0 <= meta["test_accuracy"] <= 1
    assert meta["dataset"]["train"] == "mnist-sample:train"
    assert meta["command"].startswith("pixjax run train --workdir")
