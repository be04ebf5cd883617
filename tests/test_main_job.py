"""Main-job overrides reaching the run (the rest of the CLI is in test_experiments.py)."""

import json

from pixjax.experiments import cli

from pixjax import models

SMOKE = ["--preset", "smoke"]


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


def test_shipped_lenet_parameter_count(lenet):
    # LeNet-5 with 10 classes: 156 + 2416 + 48120 + 10164 + 850
    assert models.count_params(lenet[1]) == 61706
