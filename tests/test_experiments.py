"""The `pixjax` command: `list`, smoke runs of the main job and of `train`, override
parsing, and bad input (exit code 2, a message naming the argument, nothing written)."""

import json
import math
import re

import jax
import numpy as np
import pytest
from pixjax.experiments import cli, common
from pixjax.experiments import pixel_change as pc
from pixjax.experiments.configs import pixel_change as pc_configs
from pixjax.experiments.configs import train as train_configs

from pixjax import checkpoints, data, models

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


def _flip_rates(res):
    """(series, Num) -> flip rate, mean over seeds."""
    return {
        (m["series"], m["num"]): res["configs"][m["config"]]["flip_rate_mean"]
        for members in res["experiments"].values()
        for m in members
    }


def test_main_job_shows_the_expected_findings(main_job):
    """The config docstring's expectation, at the smoke size (Num 1 and 64, +-40, the
    whole image and its 14x14 centre; too small to order several R or regions)."""
    flip = _flip_rates(json.loads((main_job / "results.json").read_text()))
    assert flip["0..255", 64] > flip["0..255", 1]  # grows with Num
    assert flip["+-40", 64] < flip["0..255", 64]  # a smaller change flips fewer
    assert flip["14x14", 64] > flip["28x28", 64]  # the centre, where the strokes are


def test_main_job_examples_are_the_images_the_sweep_classified(main_job, lenet):
    """examples.png is drawn from results.json: the originals, the changed images
    (uint8) and the sweep's predictions on them."""
    res = json.loads((main_job / "results.json").read_text())
    smoke = pc_configs.get_config("smoke")
    ex = res["examples"]
    ds = data.load("mnist-sample", "test", limit=smoke.limit)
    original = common.unpack_uint8(ex["original"])
    assert original.shape == (smoke.examples, 28, 28, 1)
    np.testing.assert_array_equal(original, ds.images[ex["index"]])
    assert ex["labels"] == ds.labels[ex["index"]].tolist()
    module, variables, _ = lenet
    classify = lambda u8: np.argmax(module.apply(variables, data.to_float(u8)), -1)
    assert classify(original).tolist() == ex["clean_pred"]
    # one row per experiment: its most damaging setting
    assert len(ex["rows"]) == 3
    for row in ex["rows"]:
        cfg = res["configs"][row["config"]]
        changed = common.unpack_uint8(row["images"])
        moved = (changed != original).any(-1).reshape(len(changed), -1).sum(1)
        assert 0 < moved.max() and (moved <= cfg["num"]).all()
        assert classify(changed).tolist() == row["pred"]
    # half of them (rounded up) flipped under the first row's setting, if any did
    first = ex["rows"][0]
    flipped = [p != c for p, c in zip(first["pred"], ex["clean_pred"], strict=True)]
    assert sum(flipped) == math.ceil(smoke.examples / 2)


def test_figures_and_report_come_from_the_results_alone(
    main_job, tmp_path, monkeypatch
):
    """plots / report / write read the results document only: no model, sweep or
    perturbation runs, and they give the run's files byte for byte."""
    doc = json.loads((main_job / "results.json").read_text())

    def never(*args, **kwargs):
        raise AssertionError("a figure or the report re-ran a computation")

    for name in ("change_batch", "run_sweep", "make_sweeper", "pixel_change"):
        monkeypatch.setattr(pc, name, never)
    files = pc.plots(tmp_path, doc)
    assert files == ["exp1.png", "exp2.png", "exp3.png", "examples.png"]
    for name in files:
        assert (tmp_path / name).read_bytes() == (main_job / name).read_bytes(), name
    assert pc.report(doc) == (main_job / "report.md").read_text()
    assert "sample sd (ddof=1)" in pc.report(doc)
    pc.write(tmp_path, doc)
    assert (tmp_path / "results.csv").read_bytes() == (
        main_job / "results.csv"
    ).read_bytes()


def test_report_of_a_run_without_flips_or_examples():
    """Non-finite values are None in results.json: the report says n/a."""
    cfg = {"num": 1, "magnitude": 255.0, "relative": False, "region": [28, 28]}
    nan_cfg = {
        **cfg,
        "flip_rate_mean": None,
        "flip_rate_std": None,
        "flip_rate_ci": [0.0, 1.0],
        "accuracy_mean": 0.0,
        "accuracy_std": 0.0,
        "accuracy_ci": [0.0, 0.8],
        "pixel_index_mean": None,
        "pixel_index_std": None,
        "flipped_confidence_mean": None,
    }
    doc = {
        "metadata": {
            "command": "pixjax run pixel-change",
            "config": {
                "model": "lenet5",
                "checkpoint": "x",
                "seeds": [0],
                "per_channel": False,
            },
            "dataset": "d",
            "images": 2,
            "image_shape": [28, 28, 1],
            "devices": ["cpu:0"],
            "evaluations": 2,
            "sweep_seconds": 0.5,
            "compute_seconds": 1.0,
        },
        "class_names": ["0", "1"],
        "clean_accuracy": 0.0,
        "clean_correct": 0,
        "configs": [nan_cfg],
        "experiments": {"1": [{"series": "0..255", "num": 1, "config": 0}]},
        "per_seed": [
            {
                "per_class_correct": [0, 0],
                "per_class_flips": [0, 0],
                "per_class_flip_rate": [None, None],
                "flip_destinations": [],
            }
        ],
        "pixel_index": {
            "num": 1,
            "pi": None,
            "pi_std": None,
            "w": None,
            "p": 1 / 784,
            "r": 1.0,
            "a": 1.0,
        },
        "examples": None,
    }
    text = pc.report(doc)
    assert "| 1 | 0.128 | n/a +- n/a | [0.00, 100.00] | 0.00 | n/a | n/a |" in text
    assert "**Pi = n/a**" in text and "examples.png" not in text
    assert pc.summary_lines(doc)[-1].endswith("whole image): n/a")


def test_aggregate_hand_computed():
    """Two seeds of one configuration: mean, sample sd (ddof=1), the Wilson interval
    of the counts pooled over the seeds, the confidence of the flipped images skipping
    a seed without flips."""
    config = {"num": 4, "magnitude": 255.0, "relative": False, "region": [28, 28]}
    common_fields = {"config": config, "n": 5, "clean_correct": 4}
    rows = [
        {
            **common_fields,
            "flips": 1,
            "flip_rate": 0.25,
            "correct": 3,
            "accuracy": 0.6,
            "pixel_index": 0.5,
            "flipped_confidence": 0.9,
        },
        {
            **common_fields,
            "flips": 3,
            "flip_rate": 0.75,
            "correct": 1,
            "accuracy": 0.2,
            "pixel_index": 1.5,
            "flipped_confidence": float("nan"),
        },
    ]
    (a,) = pc.aggregate(rows, 1, 2)
    approx = lambda v: pytest.approx(v, abs=1e-6)
    assert {k: a[k] for k in config} == config
    assert a["flip_rate_mean"] == approx(0.5)
    assert a["flip_rate_std"] == approx(0.3535534)  # sqrt(2 * 0.25^2 / (2 - 1))
    assert a["flip_rate_ci"] == [approx(0.2152161), approx(0.7847839)]  # 4 of 8
    assert a["accuracy_mean"] == approx(0.4)
    assert a["accuracy_std"] == approx(0.2828427)
    assert a["accuracy_ci"] == [approx(0.1681803), approx(0.6873262)]  # 4 of 10
    assert a["pixel_index_mean"] == approx(1.0)
    assert a["pixel_index_std"] == approx(0.7071068)
    assert "pixel_index_ci" not in a
    assert a["flipped_confidence_mean"] == approx(0.9)
    assert (a["flips_total"], a["clean_correct_total"]) == (4, 8)


def test_sweep_keys_of_two_seeds_share_nothing():
    """The experiment's only random stream: key(config.key), the seed folded in, then
    the configuration and the image (pixjax.evaluation.change_batch)."""
    root = jax.random.key(pc_configs.get_config("default").key)
    seen = set()
    for seed in range(4):
        for k in range(3):
            for i in range(5):
                key = jax.random.fold_in(
                    jax.random.fold_in(jax.random.fold_in(root, seed), k), i
                )
                seen.add(tuple(np.asarray(jax.random.key_data(key)).ravel().tolist()))
    assert len(seen) == 4 * 3 * 5


# --- the checkpoint loader -------------------------------------------------------------


def test_load_checkpoint_shipped_and_errors(tmp_path):
    module, variables, meta = common.load_checkpoint(
        "lenet5", "lenet5-mnist", (28, 28, 1)
    )
    assert meta["arch"] == "lenet5" and models.count_params(variables) == 61706
    assert "lenet5-mnist" in common.shipped_checkpoints()
    missing = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError) as err:
        common.load_checkpoint("lenet5", missing, (28, 28, 1))
    assert f"checkpoint: {missing!r} does not exist; shipped checkpoints: [" in str(
        err.value
    ) and "'lenet5-mnist'" in str(err.value)
    with pytest.raises(common.ConfigError, match="checkpoint: required"):
        common.load_checkpoint("lenet5", None, (28, 28, 1))
    with pytest.raises(ValueError, match="model: unknown 'nope'"):
        common.load_checkpoint("nope", "lenet5-mnist", (28, 28, 1))
    with pytest.raises(common.ConfigError, match=r"do not fit checkpoint"):
        common.load_checkpoint("lenet5", "lenet5-mnist", (28, 28, 3))


def test_pack_uint8_round_trip_and_errors():
    a = np.arange(2 * 3 * 4 * 1, dtype=np.uint8).reshape(2, 3, 4, 1)
    packed = common.pack_uint8(a)
    assert json.loads(json.dumps(packed)) == packed  # a plain JSON value
    np.testing.assert_array_equal(common.unpack_uint8(packed), a)
    np.testing.assert_array_equal(common.float_to_uint8(a / 255.0), a)
    with pytest.raises(ValueError, match="images: expected dtype uint8"):
        common.pack_uint8(a.astype(np.float32))
    with pytest.raises(ValueError, match="do not fill the shape"):
        common.unpack_uint8({**packed, "shape": [2, 3, 4, 2]})
    with pytest.raises(ValueError, match="expected a packed uint8 array"):
        common.unpack_uint8(a.tolist())


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
    # the config's expectation at smoke size: the loss falls, accuracy beats chance
    losses = [h["loss"] for h in results["history"]]
    assert losses[1] < losses[0] and results["test_accuracy"] > 0.1
    # the report, rebuilt from results.json alone, is byte-identical
    report = (wd / "report.md").read_text()
    assert "| epoch | loss |" in report and meta["command"] in report
    (wd / "report.md").unlink()
    assert cli.main(["report", str(wd)]) == 0
    assert (wd / "report.md").read_text() == report
    # progress is no configuration difference: the finished run is reused
    assert _run("train", wd, "progress=true") == 0
    again = json.loads((wd / "results.json").read_text())
    assert again["history"] == results["history"]
    assert again["test_accuracy"] == results["test_accuracy"]


def test_train_and_augment_finetune_keys_share_nothing_across_seeds():
    """train used key(seed) to initialise and key(seed + 1) to train (seed 1's init
    key was seed 0's training key), augment-finetune one key to fine-tune and to
    evaluate: now key(seed) is split by purpose, and no subkey (nor the order /
    augmentation split fit makes of the "train" key) is another seed's or a root."""
    from pixjax.experiments import augment_finetune, train

    from pixjax.keys import purpose_keys

    data = lambda k: jax.random.key_data(k).tobytes()  # noqa: E731
    for module in (train, augment_finetune):
        keys = []
        for seed in range(4):
            subkeys = purpose_keys(jax.random.key(seed), *module.PURPOSES)
            keys += [data(k) for k in subkeys.values()]
            keys += [data(k) for k in jax.random.split(subkeys["train"])]
        roots = {data(jax.random.key(s)) for s in range(5)}
        assert len(set(keys)) == len(keys) == 4 * (len(module.PURPOSES) + 2)
        assert not roots & set(keys)


def test_train_labels_outside_the_training_classes_exit_2(tmp_path, capsys, mnist_test):
    """The model gets one output per class of the training split: a test label beyond
    them (here 200, where the old code silently built 201 outputs) is one clear error
    before any write."""
    from test_data import _write_idx_split

    folder = tmp_path / "idx"
    folder.mkdir()
    x, y = mnist_test.images[:40, :, :, 0], mnist_test.labels[:40].astype("uint8")
    _write_idx_split(folder, "train", x, y)
    y_bad = y.copy()
    y_bad[3] = 200
    _write_idx_split(folder, "t10k", x, y_bad)
    wd = tmp_path / "never"
    assert _run("train", wd, f"dataset=idx:{folder}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "expected classes in 0..9 (the 10 classes of the training split)" in err
    assert "got range [0, 200]" in err
    assert not wd.exists()
