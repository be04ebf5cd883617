"""The full pixel-change study: Exp 4 (fgsm-recovery), small-distance augmentation
(augment-finetune) with its defence report, resume after kill -9, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pixjax.experiments import cli

from pixjax import checkpoints
from pixjax.evaluation import mcnemar
from pixjax.training import gaussian_noise, identity, random_shifts, small_distance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = ["--preset", "smoke"]


def test_small_distance_changes_exactly_n_pixels():
    aug = jax.jit(small_distance((28, 28, 1), 5))
    x = jnp.full((28, 28, 1), 0.5 + 1 / 1020)
    for i in range(5):
        y = aug(jax.random.key(i), x)
        assert int(jnp.sum(y != x)) == 5
    np.testing.assert_array_equal(aug(jax.random.key(0), x), aug(jax.random.key(0), x))


def test_baseline_augmentations():
    x = jnp.full((8, 8, 1), 0.5)
    k = jax.random.key(0)
    noisy = gaussian_noise(0.1)(k, x)
    assert 0.05 < float(jnp.std(noisy)) < 0.15
    np.testing.assert_array_equal(identity()(k, x), x)
    shifted = random_shifts(2)(k, jnp.ones((8, 8, 1)))
    assert float(shifted.sum()) >= 36  # at most 2 rows and 2 columns emptied
    with pytest.raises(ValueError, match="sigma: expected a positive"):
        gaussian_noise(0.0)
    with pytest.raises(ValueError, match="max_shift: expected a positive"):
        random_shifts(0)


def test_mcnemar_hand_computed():
    before = np.array([1, 1, 1, 1, 0, 0, 1], bool)
    after = np.array([0, 0, 0, 1, 0, 1, 1], bool)
    m = mcnemar(before, after)
    # b = 3, c = 1: exact p = 2 * P(X <= 1 | n=4, 1/2) = 2 * 5/16
    assert (m["b"], m["c"]) == (3, 1)
    assert m["p_value"] == pytest.approx(0.625)
    assert m["chi2"] == pytest.approx(0.25)
    assert mcnemar(before, before)["p_value"] == 1.0
    with pytest.raises(ValueError, match="after_correct: expected shape"):
        mcnemar(before, after[:3])


def test_fgsm_recovery_smoke(tmp_path, lenet):
    wd = tmp_path / "fr"
    assert cli.main(["run", "fgsm-recovery", "--workdir", str(wd), *SMOKE]) == 0
    res = json.loads((wd / "results.json").read_text())
    g = res["fgsm"]
    assert 0 < g["successful"] <= g["attacked"] <= 120
    assert len(res["recovery"]) == 2 + 2  # Num (1, 16) x {0..255, +-70}
    for r in res["recovery"]:
        assert 0 <= r["recovered_mean"] <= 1
        assert r["recovered_mean"] + r["still_adversarial_mean"] == pytest.approx(1)
        assert len(r["per_class_recovered"]) == 10
    # the log-space cross-entropy leaves no image without a gradient, and says so
    assert g["loss"] == "cross_entropy" and g["zero_gradient"] == 0
    curve = res["eps_curve"]
    assert curve["zero_gradient"] == 0
    report = (wd / "report.md").read_text()
    assert f"input gradient exactly zero: 0 of {g['attacked']} images" in report
    assert "input gradient exactly zero: 0 of 120 images" in report
    assert curve["success_rate"][0] == 0.0
    assert curve["success_rate"][-1] > curve["success_rate"][1] > 0
    for f in (
        "report.md",
        "results.csv",
        "recovery.png",
        "fgsm_eps.png",
        "examples.png",
    ):
        assert (wd / f).stat().st_size > 0
    # the config's expectation at the smoke size: recovery grows with Num, per series
    by = {(r["series"], r["num"]): r["recovered_mean"] for r in res["recovery"]}
    for series in ("0..255", "+-70"):
        assert by[series, 16] > by[series, 1], series
    _fgsm_examples_are_the_sweeps_images(res, lenet)
    _fgsm_figures_from_results_alone(wd, res, tmp_path / "redrawn")


def _fgsm_examples_are_the_sweeps_images(res, lenet):
    """examples.png's images are in results.json: clean, FGSM (uint8 as scored) and
    FGSM + the largest 0..255 change, with the predictions on them."""
    from pixjax.experiments import common
    from pixjax.experiments.configs import fgsm_recovery as configs

    from pixjax import data

    smoke = configs.get_config("smoke")
    module, variables, _ = lenet
    classify = lambda u8: np.argmax(module.apply(variables, data.to_float(u8)), -1)
    ex = res["examples"]
    ds = data.load("mnist-sample", "test", limit=smoke.limit)
    original = common.unpack_uint8(ex["original"])
    assert original.shape == (smoke.examples, 28, 28, 1)
    np.testing.assert_array_equal(original, ds.images[ex["index"]])
    assert ex["labels"] == ds.labels[ex["index"]].tolist()
    assert classify(original).tolist() == ex["clean_pred"] == ex["labels"]
    fgsm_row, changed_row = ex["rows"]
    adv = common.unpack_uint8(fgsm_row["images"])
    assert np.abs(adv.astype(int) - original).max() <= round(0.1 * 255)
    assert classify(adv).tolist() == fgsm_row["pred"]
    assert all(p != y for p, y in zip(fgsm_row["pred"], ex["labels"], strict=True))
    changed = common.unpack_uint8(changed_row["images"])
    moved = (changed != adv).any(-1).reshape(len(adv), -1).sum(1)
    assert (moved <= max(smoke.nums)).all() and moved.max() > 0
    assert classify(changed).tolist() == changed_row["pred"]


def _fgsm_figures_from_results_alone(wd, res, out):
    """plots / report / write read the results document only (no attack, sweep or
    perturbation re-run) and give the run's files byte for byte."""
    from unittest import mock

    from pixjax.experiments import fgsm_recovery as fr

    out.mkdir()

    def never(*args, **kwargs):
        raise AssertionError("a figure or the report re-ran a computation")

    names = ("change_batch", "run_sweep", "fgsm_dataset", "eps_curve", "predict")
    with mock.patch.multiple(fr, **{n: never for n in names}):
        files = fr.plots(out, res)
        text = fr.report(res)
        fr.write(out, res)
    assert files == ["recovery.png", "fgsm_eps.png", "examples.png"]
    for name in [*files, "results.csv"]:
        assert (out / name).read_bytes() == (wd / name).read_bytes(), name
    assert text == (wd / "report.md").read_text()
    assert "sample sd (ddof=1)" in text


def test_recovery_rows_hand_computed():
    """Two seeds x two configurations on three adversarial images (labels 0, 1, 1):
    recovered share = accuracy after the change; mean, sample sd (ddof=1), the Wilson
    interval of the counts pooled over seeds, per class pooled over seeds."""
    from pixjax.experiments.fgsm_recovery import recovery_rows

    from pixjax.evaluation import SweepOutputs
    from pixjax.perturb import PixelConfig

    labels = np.array([0, 1, 1])
    pred = np.array(
        [
            [0, 0, 1],  # seed 0, config 0: 2 of 3 back
            [1, 0, 0],  # seed 0, config 1: 0 of 3
            [0, 1, 1],  # seed 1, config 0: 3 of 3
            [0, 0, 0],  # seed 1, config 1: 1 of 3
        ],
        np.int32,
    )
    out = SweepOutputs(
        clean_pred=np.array([1, 0, 0], np.int32),
        pred=pred,
        confidence=np.ones(pred.shape, np.float32),
    )
    grid = [PixelConfig(1), PixelConfig(1, magnitude=10, relative=True)]
    series = {"0..255": [0], "+-10": [1]}
    a, b = recovery_rows(out, labels, grid, series, (0, 1), 2)
    approx = lambda v: pytest.approx(v, abs=1e-6)
    assert (a["series"], a["num"], a["magnitude"], a["relative"]) == (
        "0..255",
        1,
        255.0,
        False,
    )
    assert a["per_seed"] == [approx(2 / 3), approx(1.0)]
    assert a["recovered_mean"] == approx(5 / 6)
    assert a["recovered_std"] == approx(0.2357023)  # (1/3) / sqrt(2)
    assert a["recovered_ci"] == [approx(0.4364972), approx(0.9699466)]  # 5 of 6
    assert a["still_adversarial_mean"] == approx(1 / 6)
    assert a["per_class_recovered"] == [approx(1.0), approx(0.75)]  # 2/2, 3/4
    assert b["series"] == "+-10" and b["relative"] is True
    assert b["recovered_mean"] == approx(1 / 6)
    assert b["recovered_std"] == approx(0.2357023)
    assert b["recovered_ci"] == [approx(0.0300534), approx(0.5635028)]  # 1 of 6
    assert b["per_class_recovered"] == [approx(0.5), approx(0.0)]  # 1/2, 0/4


def test_augment_finetune_smoke_and_report(tmp_path):
    wd = tmp_path / "af"
    assert cli.main(["run", "augment-finetune", "--workdir", str(wd), *SMOKE]) == 0
    res = json.loads((wd / "results.json").read_text())
    assert set(res["models"]) == {"original", "model-4", "repeat"}
    for r in res["models"].values():
        assert (
            r["fgsm_zero_gradient"] == 0 and r["fgsm_eps_curve"]["zero_gradient"] == 0
        )
        assert 0 <= r["fgsm_transfer_still_adversarial"] <= 1
        assert set(r["pixel_changes"]) == {"1", "16"}
        assert set(r["mcnemar_vs_original"]) == {
            "clean",
            "changed",
            "transfer",
            "white_box",
        }
    assert res["models"]["original"]["fgsm_transfer_still_adversarial"] == 1.0
    assert "small_distance_beats_baselines_on_pixel_changes" in res["verdict"]
    _, v, meta = checkpoints.load_model(wd / "models" / "model-4" / "model")
    assert meta["variant"] == "model-4" and meta["fine_tuned_from"] == "lenet5-mnist"
    report = (wd / "report.md").read_text()
    assert "Table 10" in report and "Table 11" in report and "McNemar" in report
    assert "white-box zero gradient" in report
    assert "sample sd (ddof=1)" in report
    # one seed summary: mean, sample sd (0 for one seed), pooled Wilson interval
    for r in res["models"].values():
        for v in r["pixel_changes"].values():
            assert v["accuracy_std"] == 0.0 and v["flip_rate_std"] == 0.0
            lo, hi = v["accuracy_ci"]
            assert lo <= v["accuracy_mean"] <= hi
        assert r["pixel_index"] == r["pixel_changes"]["16"]["pixel_index_mean"]
    # the examples figure is drawn from the results alone (images stored as uint8)
    from pixjax.experiments import common

    ex = res["examples"]
    shown = common.unpack_uint8(ex["original"])
    assert shown.shape == (len(ex["index"]), 28, 28, 1)
    assert [r["title"].splitlines()[0] for r in ex["rows"]] == [
        "FGSM on original",
        "same images",
    ]
    _augment_finetune_files_from_results_alone(wd, res, tmp_path / "redrawn")
    # `pixjax report` rebuilds report.md and the figures from results.json
    for f in ("report.md", "robustness.png", "examples.png"):
        (wd / f).unlink()
    assert cli.main(["report", str(wd)]) == 0
    assert (wd / "report.md").read_text() == report
    assert (wd / "examples.png").stat().st_size > 0
    # a second run reuses the finished models and gives the same numbers
    assert cli.main(["run", "augment-finetune", "--workdir", str(wd), *SMOKE]) == 0
    res2 = json.loads((wd / "results.json").read_text())
    assert res2["models"] == res["models"] and res2["examples"] == res["examples"]


def _augment_finetune_files_from_results_alone(wd, res, out):
    """plots / report / write read the results document only (no training, sweep,
    attack or prediction re-run) and give the run's files byte for byte."""
    from unittest import mock

    from pixjax.experiments import augment_finetune as af

    out.mkdir()

    def never(*args, **kwargs):
        raise AssertionError("a figure or the report re-ran a computation")

    names = ("fit", "run_sweep", "fgsm_dataset", "eps_curve", "predict")
    with mock.patch.multiple(af, **{n: never for n in names}):
        files = af.plots(out, res)
        text = af.report(res)
        af.write(out, res)
    assert files == ["robustness.png", "examples.png"]
    for name in [*files, "results.csv"]:
        assert (out / name).read_bytes() == (wd / name).read_bytes(), name
    assert text == (wd / "report.md").read_text()


def _cmd(wd):
    return [
        sys.executable,
        "-m",
        "pixjax.experiments.cli",
        "run",
        "augment-finetune",
        "--workdir",
        str(wd),
        *SMOKE,
        "epochs=8",
        "nums=2,4",
        "baselines=repeat",
        "train_images=200",
        "batch_size=10",
        "eval_nums=1",
        "eval_limit=50",
    ]


def _finished(wd, name):
    d = wd / "models" / name / "checkpoints"
    return [p for p in d.iterdir() if p.name.isdigit()] if d.exists() else []


def test_augment_finetune_resume_after_kill_is_identical(tmp_path):
    # A persistent compilation cache shared by the three runs: the first compiles,
    # the others load the same executables.
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    a, b = tmp_path / "a", tmp_path / "b"
    subprocess.run(
        _cmd(a), cwd=ROOT, env=env, check=True, capture_output=True, timeout=600
    )
    proc = subprocess.Popen(
        _cmd(b), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    # kill in the middle of the second model (model-4), after model-2 has finished
    while (
        time.time() < deadline and proc.poll() is None and not _finished(b, "model-4")
    ):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (b / "models" / "model-4" / "model").exists()
    done = subprocess.run(
        _cmd(b),
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "resuming after epoch" in done.stdout
    for name in ("model-2", "model-4", "repeat"):
        _, va, _ = checkpoints.load_model(a / "models" / name / "model")
        _, vb, _ = checkpoints.load_model(b / "models" / name / "model")
        for x, y in zip(
            jax.tree_util.tree_leaves(va), jax.tree_util.tree_leaves(vb), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    ra = json.loads((a / "results.json").read_text())["models"]
    rb = json.loads((b / "results.json").read_text())["models"]
    assert ra == rb


@pytest.fixture(scope="module")
def other_arch_checkpoint(tmp_path_factory, lenet):
    d = tmp_path_factory.mktemp("ck") / "alex"
    _, v, meta = lenet
    checkpoints.save_model(d, v, {**meta, "arch": "alexnet"})
    return d


@pytest.mark.parametrize(
    "experiment, override, message",
    [
        ("augment-finetune", "nums=", "nums: expected at least one N"),
        ("augment-finetune", "nums=0", "nums: expected 1..784"),
        ("augment-finetune", "baselines=mixup", "baselines: expected a subset of"),
        ("augment-finetune", "optimizer=lion", "optimizer: expected one of"),
        ("augment-finetune", "learning_rate=0", "learning_rate: expected a positive"),
        ("augment-finetune", "eps=1.5", "eps: expected values in [0, 1]"),
        ("augment-finetune", "train_images=5", "train_images: expected at least one"),
        ("fgsm-recovery", "eps=-0.1", "eps: expected values in [0, 1]"),
        ("fgsm-recovery", "norm=l1", "norm: expected one of"),
        ("fgsm-recovery", "nums=", "nums: expected at least one"),
        ("fgsm-recovery", "magnitudes=256", "magnitudes: expected values in (0, 255]"),
        ("fgsm-recovery", "loss=hinge", "loss: expected one of"),
        ("augment-finetune", "loss=hinge", "loss: expected one of"),
    ],
)
def test_bad_input_before_any_write(tmp_path, capsys, experiment, override, message):
    wd = tmp_path / "never"
    assert cli.main(["run", experiment, "--workdir", str(wd), *SMOKE, override]) == 2
    assert message in capsys.readouterr().err
    assert not wd.exists()


@pytest.mark.parametrize("experiment", ["augment-finetune", "fgsm-recovery"])
def test_checkpoint_of_another_architecture(
    tmp_path, capsys, other_arch_checkpoint, experiment
):
    wd = tmp_path / "never"
    args = [
        "run",
        experiment,
        "--workdir",
        str(wd),
        *SMOKE,
        f"checkpoint={other_arch_checkpoint}",
    ]
    assert cli.main(args) == 2
    assert "holds a 'alexnet' model, but model='lenet5'" in capsys.readouterr().err
    assert not wd.exists()


def test_l2_eps_beyond_the_image_cube(tmp_path, capsys):
    wd = tmp_path / "never"
    args = ["run", "fgsm-recovery", "--workdir", str(wd), *SMOKE, "norm=l2", "eps=29"]
    assert cli.main(args) == 2
    assert "eps: expected L2 lengths in [0, 28]" in capsys.readouterr().err
    assert not wd.exists()


def test_fgsm_dataset_counts_and_warns_zero_gradients(mnist_test):
    """A model whose gradient is exactly zero on images with no pixel above 0.5: the
    dataset driver and the eps curve count them and warn."""
    from pixjax.experiments.adversarial import eps_curve, fgsm_dataset

    from pixjax.attacks import VanishedGradientWarning

    def apply_fn(variables, images):
        h = jax.nn.relu(images.reshape(images.shape[0], -1) - 0.5)
        return h @ variables["w"]

    v = {"w": jax.random.normal(jax.random.key(0), (784, 10))}
    x = mnist_test.images[::100].copy()
    y = mnist_test.labels[::100]
    x[[1, 4]] = 100  # 100 / 255 < 0.5 everywhere
    y = np.asarray(apply_fn(v, x.astype(np.float32) / 255).argmax(-1))  # all correct
    with pytest.warns(VanishedGradientWarning, match="2 of 20 images"):
        adv = fgsm_dataset(apply_fn, v, x, y, 0.1, batch_size=8)
    assert np.flatnonzero(adv.zero_gradient).tolist() == [1, 4]
    np.testing.assert_array_equal(adv.images[[1, 4]], x[[1, 4]])
    with pytest.warns(VanishedGradientWarning, match="2 images"):
        curve = eps_curve(apply_fn, v, x, y, [0.0, 0.1], batch_size=8)
    assert curve["zero_gradient"] == 2
    with pytest.raises(ValueError, match="images: expected dtype uint8"):
        fgsm_dataset(apply_fn, v, x.astype(np.float32), y, 0.1)
    with pytest.raises(ValueError, match="images: expected a non-empty dataset"):
        fgsm_dataset(apply_fn, v, x[:0], y[:0], 0.1)


def test_dataset_drivers_check_their_arguments_and_compile_once(lenet, mnist_test):
    from pixjax.experiments import adversarial

    module, v, _ = lenet
    x, y = mnist_test.images[:40], mnist_test.labels[:40]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size: expected a positive integer"):
            adversarial.fgsm_dataset(module.apply, v, x, y, 0.1, batch_size=bad)
    with pytest.raises(ValueError, match="eps: expected one value"):
        adversarial.fgsm_dataset(module.apply, v, x, y, [0.1, 0.2])
    with pytest.raises(ValueError, match="eps: expected a sequence"):
        adversarial.eps_curve(module.apply, v, x, y, 0.1)
    a = adversarial.fgsm_dataset(module.apply, v, x, list(y), 0.1, batch_size=16)
    b = adversarial.fgsm_dataset(module.apply, v, x, y, 0.1, batch_size=16)
    np.testing.assert_array_equal(a.images, b.images)
    adversarial._sweep_step.cache_clear()
    c1 = adversarial.eps_curve(module.apply, v, x, y, [0.0, 0.1], batch_size=16)
    c2 = adversarial.eps_curve(module.apply, v, x, y, [0.0, 0.1], batch_size=16)
    assert c1 == c2 and adversarial._sweep_step.cache_info().hits == 1
