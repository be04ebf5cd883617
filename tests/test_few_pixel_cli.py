"""`pixjax run few-pixel-attack`: the experiment's outputs against the data and the model
(recomputed here with numpy / Pillow), targeted mode, bad input, and a kill -9 resume."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from pixjax.experiments import cli, common

from pixjax import data
from pixjax.evaluation.predict import predict

SMALL = ["pixels=1,3", "limit=14", "pop_size=100", "iterations=30", "random_seeds=0,1"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    wd = tmp_path_factory.mktemp("fp") / "run"
    assert (
        cli.main(["run", "few-pixel-attack", "--workdir", str(wd), "--preset", "smoke"])
        == 0
    )
    return wd, json.loads((wd / "results.json").read_text())


def test_outputs_agree_with_the_images_and_the_model(smoke_run, lenet):
    wd, doc = smoke_run
    module, variables, _ = lenet
    ds = data.load("mnist-sample", "test", limit=14)
    pred, _ = predict(module.apply, variables, ds.images)
    correct = int(np.sum(pred == ds.labels))
    assert doc["attacked"] == correct
    ks = [r["pixels"] for r in doc["per_k"]]
    assert ks == [1, 3]
    counts = doc["minimal_pixels"]["counts"]
    assert sum(counts.values()) == correct
    fooled_total = 0
    for group, row in zip(doc["fooled"], doc["per_k"], strict=True):
        k = group["pixels"]
        assert len(group["image"]) == row["fooled"]
        fooled_total += row["fooled"]
        for j, i in enumerate(group["image"]):
            stem = f"k{k}_{i:05d}_{group['label'][j]}to{group['new_class'][j]}"
            png = np.asarray(Image.open(wd / "fooled" / f"{stem}.png"))
            png = png.reshape(28, 28, 1)
            # a real uint8 image that differs from the dataset image in at most k pixels
            diff = np.any(png != ds.images[i], axis=-1)
            assert 1 <= diff.sum() <= k
            assert set(zip(*np.nonzero(diff), strict=True)) <= set(
                zip(group["rows"][j], group["cols"][j], strict=True)
            )
            # the saved file is still misclassified, as the results say
            p, conf = predict(module.apply, variables, png[None])
            assert p[0] == group["new_class"][j] != ds.labels[i]
            assert abs(conf[0] - group["confidence"][j]) < 1e-5
            assert (wd / "fooled" / f"{stem}_marked.png").exists()
    assert fooled_total >= 1  # the smoke preset keeps a weak digit (image 12)
    assert counts["3"] + counts["1"] == len(
        set(doc["fooled"][0]["image"]) | set(doc["fooled"][1]["image"])
    )
    rows = (wd / "per_image.csv").read_text().splitlines()
    assert len(rows) == 1 + correct
    for r in doc["per_k"]:
        assert 0 <= r["random"]["flip_rate_mean"] <= 1
        assert r["random"]["seeds"] == 2
    text = (wd / "report.md").read_text()
    assert "Minimal-pixels" in text and "ddof=1" in text


def test_targeted_next_class(tmp_path):
    wd = tmp_path / "t"
    args = ["run", "few-pixel-attack", "--workdir", str(wd), "--preset", "smoke"]
    assert cli.main([*args, "targets=next", "pixels=3", "limit=14"]) == 0
    doc = json.loads((wd / "results.json").read_text())
    assert doc["targets"] == "next"
    for row in doc["per_image"]:
        assert row["target"] == (row["label"] + 1) % 10
        if row["k3_fooled"]:
            assert row["k3_new_class"] == row["target"]
    g = doc["fooled"][0]
    for j in range(len(g["image"])):
        assert g["new_class"][j] == (g["label"][j] + 1) % 10


@pytest.mark.parametrize(
    "override, field",
    [
        ("pixels=0", "pixels"),
        ("pixels=10 region=3", "pixels"),
        ("region=40", "region"),
        ("pop_size=3", "pop_size"),
        ("F=0", "F"),
        ("F=2.5", "F"),
        ("F_max=0.1", "F_max"),
        ("CR=1.5", "CR"),
        ("CR=-0.1", "CR"),
        ("iterations=0", "iterations"),
        ("targets=some", "targets"),
        ("de_preset=scipy", "de_preset"),
        ("key=-1", "key"),
        ("pixels=1,1", "pixels"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, override, field):
    wd = tmp_path / "bad"
    code = cli.main(
        ["run", "few-pixel-attack", "--workdir", str(wd), "--preset", "smoke"]
        + override.split()
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and field in err[0], err
    assert not wd.exists()


def _run(wd, extra=()):
    cmd = [
        sys.executable,
        "-m",
        "pixjax.experiments.cli",
        "run",
        "few-pixel-attack",
        "--workdir",
        str(wd),
        "--preset",
        "smoke",
        "pixels=1",
        "limit=8",
        "pop_size=40",
        "iterations=20",
        "batch_size=2",
        "chunk_size=1",
        "random_seeds=0",
        *extra,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def _steps(wd: pathlib.Path) -> list[int]:
    where = wd / "attack" / "k1"
    if not where.exists():
        return []
    return [int(p.name) for p in where.iterdir() if p.name.isdigit()]


def _same(a, b):
    for k in ("per_image", "per_k", "fooled", "minimal_pixels"):
        x, y = a[k], b[k]
        if k == "per_k":
            drop = ("seconds", "evaluations_per_second", "queries_computed", "resumed")
            x = [{f: v for f, v in r.items() if f not in drop} for r in x]
            y = [{f: v for f, v in r.items() if f not in drop} for r in y]
        assert x == y, k


def test_killed_run_resumes_to_identical_results(tmp_path):
    ref = tmp_path / "ref"
    assert _run(ref).wait(timeout=120) == 0
    wd = tmp_path / "killed"
    proc = _run(wd)
    deadline = time.time() + 100
    while time.time() < deadline and not _steps(wd) and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before a checkpoint could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (wd / "results.json").exists()
    resumed = _run(wd)
    out = resumed.communicate(timeout=120)[0].decode()
    assert resumed.returncode == 0, out
    a = json.loads((ref / "results.json").read_text())
    b = json.loads((wd / "results.json").read_text())
    _same(a, b)
    # the resumed run says so, and times only what it computed
    (ra,), (rb,) = a["per_k"], b["per_k"]
    assert not ra["resumed"] and ra["queries_computed"] == ra["queries_total"]
    assert rb["resumed"] and 0 <= rb["queries_computed"] < rb["queries_total"]
    assert "resumed from checkpoints for k = 1" in (wd / "report.md").read_text()


def test_png_bytes_in_results_are_the_written_files(smoke_run):
    wd, doc = smoke_run
    g = next(g for g in doc["fooled"] if g["image"])
    adv = common.unpack_uint8(g["adversarial"])
    stem = f"k{g['pixels']}_{g['image'][0]:05d}_{g['label'][0]}to{g['new_class'][0]}"
    png = np.asarray(Image.open(wd / "fooled" / f"{stem}.png")).reshape(adv[0].shape)
    np.testing.assert_array_equal(png, adv[0])


def test_targeted_every_other_class(tmp_path):
    wd = tmp_path / "all"
    args = ["run", "few-pixel-attack", "--workdir", str(wd), "--preset", "smoke"]
    args += ["targets=all", "pixels=1", "limit=3", "pop_size=8", "iterations=2"]
    assert cli.main([*args, "random_seeds=0"]) == 0
    doc = json.loads((wd / "results.json").read_text())
    assert doc["problems"] == 27 and doc["attacked"] == 27  # 3 digits x 9 targets
    pairs = {(r["image"], r["target"]) for r in doc["per_image"]}
    assert len(pairs) == 27
    assert all(r["target"] != r["label"] for r in doc["per_image"])
    assert {t for i, t in pairs if i == 0} == set(range(10)) - {
        doc["per_image"][0]["label"]
    }


def test_overriding_F_alone_gives_a_constant_factor():
    import dataclasses

    from pixjax.experiments import few_pixel_attack as fpa
    from pixjax.experiments.configs.few_pixel_attack import get_config

    art = get_config("art")
    (s,) = fpa.validate(
        dataclasses.replace(art, pixels=(1,), limit=2)
    ).settings.values()
    assert (s.F, s.F_max, s.strategy, s.pop_size) == (0.5, 1.0, "best1", 399)
    c = dataclasses.replace(art, pixels=(1,), limit=2, F=0.9)
    (s,) = fpa.validate(c).settings.values()
    assert (s.F, s.F_max) == (0.9, None)
    c = dataclasses.replace(art, pixels=(1,), limit=2, F=0.6, F_max=0.8)
    (s,) = fpa.validate(c).settings.values()
    assert (s.F, s.F_max) == (0.6, 0.8)
