"""Run directories that never lose or mix results: one configuration per workdir
(resume or refuse; --overwrite starts afresh), a lock against concurrent runs that a
killed run does not leave behind, writability checked before any work, files with the
umask's mode, strict JSON."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from pixjax.experiments import cli, common

from pixjax.checkpoints import write_json_atomic

SMOKE = ["--preset", "smoke"]


def _run(experiment, workdir, *extra):
    return cli.main(["run", experiment, "--workdir", str(workdir), *SMOKE, *extra])


def test_rbm_nudge_rerun_with_another_config_is_refused(tmp_path, capsys):
    """The stale-stages fault: the second run used to report the first run's numbers
    under the new settings."""
    wd = tmp_path / "rbm"
    assert _run("rbm-nudge", wd) == 0
    before = {p: p.read_bytes() for p in wd.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert _run("rbm-nudge", wd, "n_components=32", "shift=2") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "holds a run with another configuration (differs in: " in err
    assert "n_components: 64 there, 32 now" in err and "shift: 1 there, 2 now" in err
    assert "--overwrite" in err
    after = {p: p.read_bytes() for p in wd.rglob("*") if p.is_file()}
    assert after == before  # nothing touched
    # a run of another experiment in the same workdir: refused too
    assert _run("pixel-change", wd) == 2
    assert "holds a 'rbm-nudge' run" in capsys.readouterr().err
    # the same settings resume (every stage reused) and give the same numbers
    res = json.loads((wd / "results.json").read_text())
    assert _run("rbm-nudge", wd) == 0
    res2 = json.loads((wd / "results.json").read_text())
    assert res2["seeds"] == res["seeds"] and res2["summary"] == res["summary"]


def test_overwrite_starts_afresh_without_the_old_files(tmp_path):
    wd = tmp_path / "pc"
    assert _run("pixel-change", wd, "experiments=1,2") == 0
    assert (wd / "exp2.png").exists()
    (wd / "notes-of-the-old-run.txt").write_text("old")
    # progress is not part of what a run computes: a rerun with it changed resumes
    assert _run("pixel-change", wd, "experiments=1,2", "progress=true") == 0
    assert _run("pixel-change", wd, "experiments=1") == 2
    assert _run("pixel-change", wd, "experiments=1", "--overwrite") == 0
    assert not (wd / "exp2.png").exists()
    assert not (wd / "notes-of-the-old-run.txt").exists()
    record = json.loads((wd / "config.json").read_text())
    assert record["experiment"] == "pixel-change"
    assert record["config"]["experiments"] == [1]
    res = json.loads((wd / "results.json").read_text())
    assert res["metadata"]["config"]["experiments"] == [1]


def test_a_locked_workdir_is_refused_and_a_killed_holder_does_not_block(
    tmp_path, capsys
):
    wd = tmp_path / "locked"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pixjax.experiments import common; "
            "common.prepare_workdir(sys.argv[1]); print('locked', flush=True); "
            "time.sleep(120)",
            str(wd),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert _run("pixel-change", wd) == 2
        err = capsys.readouterr().err
        assert f"is in use by another pixjax run (pid {holder.pid}" in err
        assert len(err.strip().splitlines()) == 1
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    t = time.monotonic()
    common.prepare_workdir(wd)  # the kernel dropped the dead process's lock
    assert time.monotonic() - t < 5


@pytest.mark.parametrize(
    "workdir, message",
    [
        ("", "workdir: expected a directory path, got ''"),
        ("{file}/sub", "is not a writable directory"),
        ("{file}", "exists and is not a directory"),
    ],
)
def test_unusable_workdir_is_one_line_before_any_work(
    tmp_path, capsys, workdir, message
):
    f = tmp_path / "a-file"
    f.write_text("x")
    assert _run("pixel-change", workdir.format(file=f)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_files_honour_the_umask_and_json_is_strict(tmp_path):
    old = os.umask(0o022)
    try:
        wd = tmp_path / "pc"
        assert _run("pixel-change", wd, "experiments=1") == 0
        for name in ("results.json", "config.json", "report.md", "exp1.png"):
            assert (wd / name).stat().st_mode & 0o777 == 0o644, name
        write_json_atomic(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, -1e999]})
        assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)

    def no_constants(token):
        raise AssertionError(f"not strict JSON: {token}")

    text = (tmp_path / "x.json").read_text()
    assert json.loads(text, parse_constant=no_constants) == {
        "a": None,
        "b": [1.0, None],
    }
    json.loads((wd / "results.json").read_text(), parse_constant=no_constants)


# ------------------------------------------------------------ labels meet a model


@pytest.fixture
def idx_label_200(tmp_path, mnist_test):
    """MNIST-layout IDX files (train and t10k) of 100 real digits, test label 7 -> 200."""
    from test_data import _write_idx_split

    folder = tmp_path / "idx"
    folder.mkdir()
    x = mnist_test.images[::20, :, :, 0]
    y = mnist_test.labels[::20].astype(np.uint8)
    _write_idx_split(folder, "train", x, y)
    y_bad = y.copy()
    y_bad[7] = 200
    _write_idx_split(folder, "t10k", x, y_bad)
    return folder


@pytest.mark.parametrize(
    "experiment, extra",
    [
        ("pixel-change", []),
        ("fgsm-recovery", []),
        ("augment-finetune", ["train_images=50", "batch_size=10"]),
        ("rbm-nudge", ["limit_train=100", "grid_search=false", "compare_checkpoints="]),
        ("rbm-nudge", ["limit_train=100", "grid_search=false"]),
    ],
)
def test_labels_outside_the_models_classes_exit_2(
    tmp_path, capsys, idx_label_200, experiment, extra
):
    wd = tmp_path / "never"
    assert _run(experiment, wd, f"dataset=idx:{idx_label_200}", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "expected classes in 0..9" in err and "got range [0, 200]" in err
    assert not wd.exists()


def test_labels_checked_by_sweep_logistic_and_metrics(lenet, mnist_test):
    import jax

    from pixjax.evaluation import classification_report, summarize, sweep
    from pixjax.perturb import PixelConfig
    from pixjax.training.logistic import fit_logistic

    module, variables, _ = lenet
    x, y = mnist_test.images[:8], mnist_test.labels[:8].astype(np.int32)
    for bad in (-1, 10):
        labels = y.copy()
        labels[3] = bad
        with pytest.raises(ValueError, match=r"labels: expected classes in 0..9 "):
            sweep(
                module.apply, variables, x, labels, [PixelConfig(1)], jax.random.key(0)
            )
        with pytest.raises(ValueError, match=r"labels: expected classes in 0..9"):
            summarize(labels, y, y, np.ones(8), 10)
        with pytest.raises(ValueError, match=r"y_true: expected classes in 0..9"):
            classification_report(labels, y, 10)
    feats = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"y: expected classes in 0..9 .* \[1, 10\]"):
        fit_logistic(feats, np.arange(20) % 10 + 1, num_classes=10)
    with pytest.raises(ValueError, match=r"y: expected classes in 0..9"):
        fit_logistic(feats, np.arange(20) % 10 - 1, num_classes=10)
    with pytest.raises(ValueError, match="y: expected integer classes"):
        fit_logistic(feats, np.zeros(20, np.float32), num_classes=10)


def test_dataset_labels_beyond_its_class_names(tmp_path, mnist_test):
    """A dataset with a class list refuses labels it does not name."""
    from test_data import _write_idx_split

    from pixjax import data

    folder = tmp_path / "fashion"
    folder.mkdir()
    y = mnist_test.labels[:10].astype(np.uint8)
    y[2] = 12
    _write_idx_split(folder, "t10k", mnist_test.images[:10, :, :, 0], y)
    with pytest.raises(ValueError, match="class_names: 10 names, but the labels go up"):
        data.load(f"idx:{folder}", "test", class_names=tuple("abcdefghij"))


def test_init_checkpoint_for_another_class_count_exit_2(tmp_path, capsys):
    import jax

    from pixjax import checkpoints, models

    module = models.get_model("lenet5", num_classes=5)
    v = models.init_variables(module, jax.random.key(0), (28, 28, 1))
    ck = tmp_path / "five"
    checkpoints.save_model(
        ck,
        v,
        {
            "arch": "lenet5",
            "model_kwargs": {"num_classes": 5},
            "input_shape": [28, 28, 1],
        },
    )
    wd = tmp_path / "never"
    assert _run("train", wd, f"init_checkpoint={ck}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "init_checkpoint:" in err and "for 10 classes" in err and "mis-shaped" in err
    assert not wd.exists()


# ------------------------------------------------------------ non-finite values


@pytest.mark.parametrize(
    "experiment, override",
    [
        ("train", "learning_rate=inf"),
        ("train", "weight_decay=nan"),
        ("augment-finetune", "learning_rate=nan"),
        ("augment-finetune", "noise_sigma=inf"),
        ("rbm-nudge", "c=inf"),
        ("rbm-nudge", "grid_cs=1,nan"),
        ("fgsm-recovery", "magnitudes=10,inf"),
        ("pixel-change", "magnitudes=nan"),
    ],
)
def test_non_finite_hyperparameters_exit_2_before_work(
    tmp_path, capsys, experiment, override
):
    wd = tmp_path / "never"
    assert _run(experiment, wd, override) == 2
    err = capsys.readouterr().err.strip()
    key = override.split("=")[0]
    assert err.startswith(f"pixjax: error: {key}: expected a finite number"), err
    assert not wd.exists()


def test_training_stops_at_the_first_non_finite_loss_and_saves_nothing(
    tmp_path, capsys
):
    """A learning rate that is finite but far too large: the loss diverges; the run
    stops naming the epoch and step, keeps no non-finite checkpoint, writes no model."""
    wd = tmp_path / "diverge"
    assert _run("train", wd, "learning_rate=1e30", "epochs=2") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar
    assert err.startswith("pixjax: error: training: the loss became nan at epoch 1")
    assert "stopped without saving" in err
    assert not (wd / "model").exists()
    steps = [p.name for p in (wd / "checkpoints").iterdir() if p.name.isdigit()]
    assert steps == []


def test_non_finite_models_are_neither_saved_nor_loaded(tmp_path, lenet):
    import jax

    from pixjax import checkpoints

    _, v, meta = lenet
    bad = jax.tree_util.tree_map(lambda a: np.array(a), v)
    bad["params"]["fc3"]["bias"][0] = np.nan
    with pytest.raises(ValueError, match=r"variables: non-finite values in .*fc3"):
        checkpoints.save_model(tmp_path / "m", bad, meta)
    # written by other means (e.g. a corrupt file): refused on load
    import orbax.checkpoint as ocp

    checkpoints.save_model(tmp_path / "m", v, meta)
    ck = ocp.StandardCheckpointer()
    ck.save(tmp_path / "m" / "variables", jax.device_get(bad), force=True)
    ck.wait_until_finished()
    with pytest.raises(ValueError, match="do not match the checksums"):
        checkpoints.load_model(tmp_path / "m")
    meta_file = tmp_path / "m" / "metadata.json"  # without checksums (older files)
    meta_file.write_text(
        json.dumps(
            {
                k: v
                for k, v in json.loads(meta_file.read_text()).items()
                if k != "checksums"
            }
        )
    )
    with pytest.raises(ValueError, match="holds non-finite values in .*fc3"):
        checkpoints.load_model(tmp_path / "m")


# ------------------------------------------------------------ integrity


def _flip_bytes(directory, n=64, seed=0):
    """Flips ``n`` bytes of the largest file below ``directory`` (the array data)."""
    files = [p for p in directory.rglob("*") if p.is_file()]
    big = max(files, key=lambda p: p.stat().st_size)
    raw = bytearray(big.read_bytes())
    rng = np.random.default_rng(seed)
    for i in rng.choice(len(raw) - 64, n, replace=False) + 32:
        raw[i] ^= 0xFF
    big.write_bytes(bytes(raw))


def test_corrupt_model_arrays_are_one_clear_error(tmp_path, capsys):
    import shutil

    from pixjax import checkpoints

    ck = tmp_path / "lenet"
    shutil.copytree(os.path.join(common.SHIPPED_CHECKPOINTS, "lenet5-mnist"), ck)
    assert "checksums" in checkpoints.read_metadata(ck)
    checkpoints.load_model(ck)  # intact
    _flip_bytes(ck / "variables")
    with pytest.raises(ValueError, match=r"checkpoint: .*lenet/variables"):
        checkpoints.load_model(ck)
    wd = tmp_path / "never"
    assert _run("pixel-change", wd, f"checkpoint={ck}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lenet/variables" in err
    assert not wd.exists()


@pytest.mark.parametrize(
    "text, match",
    [
        ("", "is not valid JSON"),
        ("{garbage", "is not valid JSON"),
        ("[]", "holds list, expected an object"),
        ("{}", "lacks 'arch'"),
        ('{"arch": "lenet5"}', "lacks 'input_shape'"),
        ('{"arch": "lenet5", "input_shape": [28, 28]}', "has input_shape"),
    ],
)
def test_damaged_metadata_is_one_line(tmp_path, capsys, text, match):
    import shutil

    ck = tmp_path / "lenet"
    shutil.copytree(os.path.join(common.SHIPPED_CHECKPOINTS, "lenet5-mnist"), ck)
    (ck / "metadata.json").write_text(text)
    wd = tmp_path / "never"
    assert _run("pixel-change", wd, f"checkpoint={ck}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and "metadata.json" in err
    assert not wd.exists()


def test_corrupt_latest_training_checkpoint_falls_back(tmp_path, capsys):
    import shutil

    import jax

    from pixjax import checkpoints

    a, b = tmp_path / "a", tmp_path / "b"
    assert _run("train", a, "epochs=3", "limit=200") == 0
    shutil.copytree(a, b)
    shutil.rmtree(b / "model")
    (b / "results.json").unlink()
    # keep epochs 2 and 3 (max_to_keep=2); corrupt the arrays of epoch 3
    _flip_bytes(b / "checkpoints" / "3" / "state")
    capsys.readouterr()
    assert _run("train", b, "epochs=3", "limit=200") == 0
    out = capsys.readouterr()
    assert "the checkpoint of epoch 3 is corrupt" in out.err
    assert "train: resuming after epoch 2 of 3" in out.out
    assert (b / "checkpoints" / "corrupt-epoch-3").is_dir()  # kept, not deleted
    _, va, _ = checkpoints.load_model(a / "model")
    _, vb, _ = checkpoints.load_model(b / "model")
    for x, y in zip(jax.tree.leaves(va), jax.tree.leaves(vb), strict=True):
        np.testing.assert_array_equal(x, y)
    ha = json.loads((a / "results.json").read_text())["history"]
    assert json.loads((b / "results.json").read_text())["history"] == ha


# ------------------------------------------------------------ BatchNorm batches


def test_batchnorm_with_one_value_per_channel_is_refused(tmp_path, capsys):
    """ResNet-18 on 32x32 images with batch size 1: layer4's BatchNorm sees a 1x1 map
    of one image; PyTorch refuses it, and so does pixjax (before any write)."""
    from PIL import Image

    from pixjax import models
    from pixjax.training import check_batchnorm_batch

    rng = np.random.default_rng(0)
    folder = tmp_path / "rgb32"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(
                folder / c / f"{i}.png"
            )
    wd = tmp_path / "never"
    args = ["model=resnet18", f"dataset=folder:{folder}", "batch_size=1", "epochs=1"]
    assert _run("train", wd, *args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "batch_size: 1 image(s) of 32x32 leave BatchNorm layer layer4_0/bn1" in err
    assert not wd.exists()
    import jax

    m = models.get_model("resnet18", num_classes=2)
    v = jax.eval_shape(lambda: models.init_variables(m, jax.random.key(0), (32, 32, 3)))
    check_batchnorm_batch(m, v, 2, (32, 32, 3))  # two images: 2 values per channel
    check_batchnorm_batch(m, v, 1, (64, 64, 3))  # a 2x2 map: 4 values


# ------------------------------------------------------------ late or missing checks


@pytest.mark.parametrize(
    "experiment, override, message",
    [
        ("fgsm-recovery", "nums=0", "nums: expected 1..784"),
        ("fgsm-recovery", "nums=785", "nums: expected 1..784"),
        ("fgsm-recovery", "examples=-1", "examples: expected 0 or more"),
        ("augment-finetune", "eval_nums=0", "eval_nums: expected 1..784"),
        ("augment-finetune", "max_shift=100", "max_shift: expected less than"),
        ("augment-finetune", "learning_rate=-1", "learning_rate: expected a positive"),
        ("train", "weight_decay=-1", "weight_decay: expected 0 or more"),
        ("pixel-change", "nums=0", "nums: expected 1..784"),
    ],
)
def test_values_checked_before_any_work(
    tmp_path, capsys, experiment, override, message
):
    wd = tmp_path / "never"
    extra = ["baselines=shift"] if override.startswith("max_shift") else []
    assert _run(experiment, wd, override, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not wd.exists()


@pytest.mark.parametrize(
    "experiment",
    ["pixel-change", "fgsm-recovery", "augment-finetune", "train", "rbm-nudge"],
)
def test_an_empty_dataset_is_one_clear_error(tmp_path, capsys, experiment):
    from test_data import _write_idx_split

    folder = tmp_path / "empty"
    folder.mkdir()
    for prefix in ("train", "t10k"):
        _write_idx_split(
            folder, prefix, np.zeros((0, 28, 28), np.uint8), np.zeros(0, np.uint8)
        )
    wd = tmp_path / "never"
    assert _run(experiment, wd, f"dataset=idx:{folder}") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds no images" in err, err
    assert not wd.exists()


def test_a_directory_that_is_not_a_pixjax_run_is_never_used_nor_emptied(
    tmp_path, capsys
):
    home = tmp_path / "home"
    (home / "docs").mkdir(parents=True)
    (home / "docs" / "thesis.tex").write_text("precious")
    (home / "notes.txt").write_text("x")
    for extra in ([], ["--overwrite"]):
        assert _run("pixel-change", home, *extra) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "holds files that are not a pixjax run (docs, notes.txt)" in err
    assert (home / "docs" / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in home.iterdir()) == ["docs", "notes.txt"]  # no lock
    # a config.json that is not a run record: refused, with and without --overwrite
    other = tmp_path / "other"
    other.mkdir()
    for text in ("[1, 2]", '{"experiment": "train", "config": null}', '{"a": 1}'):
        (other / "config.json").write_text(text)
        for extra in ([], ["--overwrite"]):
            assert _run("pixel-change", other, *extra) == 2
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "config.json" in err, err
        assert (other / "config.json").read_text() == text


@pytest.mark.parametrize(
    "change, match",
    [
        ({"checksums": "x"}, "'checksums' that are not an object of strings"),
        ({"model_kwargs": {"bogus": 1}}, "does not describe a model"),
        ({"model_kwargs": {"num_classes": "ten"}}, "does not describe a model"),
        ({"arch": "nonet"}, "holds a 'nonet' model, but model='lenet5'"),
    ],
)
def test_metadata_that_parses_but_is_wrong_is_one_line(tmp_path, capsys, change, match):
    import shutil

    ck = tmp_path / "lenet"
    shutil.copytree(os.path.join(common.SHIPPED_CHECKPOINTS, "lenet5-mnist"), ck)
    meta = json.loads((ck / "metadata.json").read_text())
    (ck / "metadata.json").write_text(json.dumps({**meta, **change}))
    wd = tmp_path / "never"
    assert _run("pixel-change", wd, f"checkpoint={ck}", "model=lenet5") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err
    assert not wd.exists()
