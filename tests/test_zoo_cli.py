"""`pixjax convert`, and every experiment on the torchvision ports: a converted ResNet-18
runs pixel-change, fgsm-recovery and augment-finetune on real photos (labels from its clean
predictions); one model per family runs the main job."""

import json
import sys
import types

if "torchvision" not in sys.modules:  # its C extension is a CUDA build: skip its ops
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations"
    )

import jax  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from pixjax.experiments import cli, common  # noqa: E402

from pixjax import checkpoints, data, models  # noqa: E402


def test_convert_cli_and_main_job_on_a_photo(tmp_path, capsys):
    torch.manual_seed(0)
    pth = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), pth)
    out = tmp_path / "r18"
    assert cli.main(["convert", "resnet18", str(pth), str(out)]) == 0
    module, variables, meta = checkpoints.load_model(out, arch="resnet18")
    assert meta["input_shape"] == [224, 224, 3] and "batch_stats" in variables
    # wrong architecture and a file that is not a state dict: clear errors, no output
    assert cli.main(["convert", "resnet34", str(pth), str(tmp_path / "x")]) == 2
    assert "missing keys" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    torch.save([1, 2, 3], bad)
    assert cli.main(["convert", "resnet18", str(bad), str(tmp_path / "y")]) == 2
    assert "not a state dict" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()

    photos = data.load("photos:sample")
    assert photos.images.shape[1:] == (224, 224, 3) and photos.labels is None
    wd = tmp_path / "run"
    args = [
        "run",
        "pixel-change",
        "--workdir",
        str(wd),
        "--preset",
        "smoke",
        "model=resnet18",
        f"checkpoint={out}",
        "dataset=photos:sample",
        "experiments=1",
        "nums=1,64",
        "seeds=0",
        "batch_size=4",
    ]
    assert cli.main(args) == 0
    res = json.loads((wd / "results.json").read_text())
    assert res["clean_accuracy"] == 1.0  # labels are the clean predictions
    assert [c["num"] for c in res["configs"]] == [1, 64]
    assert res["metadata"]["image_shape"] == [224, 224, 3]
    # results.json stays small with 1000 classes and photos: the flips as non-zero
    # cells (not a 1000x1000 confusion per row), the two rows of example photos of
    # examples.png as uint8 bytes (not nested lists: a line per value)
    shown = common.unpack_uint8(res["examples"]["rows"][0]["images"])
    assert shown.shape == (3, 224, 224, 3)
    assert (wd / "results.json").stat().st_size < 4 * shown.nbytes


@pytest.fixture(scope="module")
def resnet18_dir(tmp_path_factory):
    torch.manual_seed(1)
    tmp = tmp_path_factory.mktemp("r18")
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), tmp / "w.pth")
    assert cli.main(["convert", "resnet18", str(tmp / "w.pth"), str(tmp / "m")]) == 0
    return tmp / "m"


PHOTO_RUN = ["dataset=photos:sample", "labels_from_model=true"]


def test_fgsm_recovery_on_photos(resnet18_dir, tmp_path):
    wd = tmp_path / "fr"
    args = ["run", "fgsm-recovery", "--workdir", str(wd), "--preset", "smoke"]
    args += ["model=resnet18", f"checkpoint={resnet18_dir}", *PHOTO_RUN, "batch_size=6"]
    assert cli.main(args) == 0
    res = json.loads((wd / "results.json").read_text())
    n = len(data.load("photos:sample").images)
    assert res["clean_accuracy"] == 1.0
    assert res["fgsm"]["attacked"] == n and 0 <= res["fgsm"]["successful"] <= n


def test_augment_finetune_on_photos(resnet18_dir, tmp_path):
    wd = tmp_path / "af"
    args = ["run", "augment-finetune", "--workdir", str(wd), "--preset", "smoke"]
    args += ["model=resnet18", f"checkpoint={resnet18_dir}", *PHOTO_RUN, "batch_size=3"]
    # one fine-tuned model, one epoch (the baselines run in test_study): a ResNet-18
    # step is slow on 2 cores
    args += ["epochs=1", "eval_nums=16", "baselines="]
    assert cli.main(args) == 0
    res = json.loads((wd / "results.json").read_text())
    assert set(res["models"]) == {"original", "model-4"}
    assert res["models"]["original"]["clean_accuracy"] == 1.0
    assert "clean predictions" in (wd / "report.md").read_text()
    # the fine-tuned model is a complete ResNet-18 directory (BatchNorm statistics too)
    _, variables, meta = checkpoints.load_model(wd / "models" / "model-4" / "model")
    assert meta["arch"] == "resnet18" and "batch_stats" in variables


def test_few_pixel_attack_on_photos(resnet18_dir, tmp_path):
    wd = tmp_path / "fp"
    args = ["run", "few-pixel-attack", "--workdir", str(wd), "--preset", "smoke"]
    args += ["model=resnet18", f"checkpoint={resnet18_dir}", *PHOTO_RUN, "limit=2"]
    args += ["pixels=1", "pop_size=8", "iterations=1", "batch_size=1", "random_seeds=0"]
    assert cli.main(args) == 0
    res = json.loads((wd / "results.json").read_text())
    assert res["attacked"] == 2 and res["clean_accuracy"] == 1.0
    (row,) = res["per_k"]
    # 8 candidates, the initial population and at most one generation, per photo
    assert 2 * 8 <= row["queries_total"] <= 2 * 16
    assert len(res["class_names"]) == 1000
    assert (wd / "results.json").stat().st_size < 200_000


def test_pipeline_artefacts_jpeg_sweep_on_photos(resnet18_dir, tmp_path):
    """The JPEG sweep on a zoo model over the real photos (colour, 4:2:0 chroma
    subsampling by Pillow's default), beside the shipped LeNet-5."""
    import io

    import numpy as np
    from PIL import Image

    from pixjax.evaluation.predict import predict

    wd = tmp_path / "pa"
    args = ["run", "pipeline-artefacts", "--workdir", str(wd), "--preset", "smoke"]
    args += ["datasets=", "defence_pipelines=", "random_nums=", "limit=50"]
    args += ["zoo_model=resnet18", f"zoo_checkpoint={resnet18_dir}"]
    args += ["jpeg_qualities=90,10", "eval_batch_size=8"]
    assert cli.main(args) == 0
    res = json.loads((wd / "results.json").read_text())
    assert res["matrices"] == []
    lenet, zoo = res["jpeg"]
    assert zoo["labels_from_model"] and zoo["images"] == 6
    photos = data.load("photos:sample")
    module, variables, _ = checkpoints.load_model(resnet18_dir, arch="resnet18")
    clean, _ = predict(module.apply, variables, photos.images, 8)
    for cell in zoo["cells"]:
        jpeg = []
        for im in photos.images:
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="JPEG", quality=cell["quality"])
            jpeg.append(np.asarray(Image.open(io.BytesIO(buf.getvalue()))))
        pred, _ = predict(module.apply, variables, np.stack(jpeg), 8)
        assert cell["flips"] == int(np.sum(pred != clean))
        assert cell["clean_correct"] == 6 and cell["pixels"]["max_abs"] > 0


@pytest.mark.parametrize("arch", ["alexnet", "vgg11", "densenet121", "squeezenet1_1"])
def test_main_job_runs_one_model_per_family(arch, tmp_path):
    """ResNet is covered above; random weights suffice to run the whole pipeline."""
    module = models.get_model(arch)
    variables = models.init_variables(module, jax.random.key(0), (224, 224, 3))
    meta = {"arch": arch, "input_shape": [224, 224, 3], "model_kwargs": {}}
    checkpoints.save_model(tmp_path / "m", variables, meta)
    wd = tmp_path / "run"
    args = ["run", "pixel-change", "--workdir", str(wd), "--preset", "smoke"]
    args += [f"model={arch}", f"checkpoint={tmp_path / 'm'}", *PHOTO_RUN]
    args += ["limit=2", "experiments=1", "nums=1,64", "seeds=0", "batch_size=2"]
    assert cli.main(args) == 0
    res = json.loads((wd / "results.json").read_text())
    assert res["metadata"]["image_shape"] == [224, 224, 3]
    assert [c["num"] for c in res["configs"]] == [1, 64]


def test_converted_model_runs_on_the_size_it_was_trained_on(tmp_path, capsys):
    """A torchvision resnet18(num_classes=10) trained on 32x32 images: converted with
    --input-size it records 32x32; converted without, it still runs on 32x32 data
    (any size the architecture takes); a LeNet-5 on 32x32 is refused clearly."""
    import numpy as np
    from PIL import Image

    torch.manual_seed(2)
    pth = tmp_path / "r18c10.pth"
    torch.save(
        torchvision.models.resnet18(weights=None, num_classes=10).state_dict(), pth
    )
    folder = tmp_path / "rgb32"
    rng = np.random.default_rng(0)
    for c in range(10):
        (folder / f"c{c}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(
            folder / f"c{c}" / "0.png"
        )
    recorded, default = tmp_path / "rec", tmp_path / "def"
    args = ["convert", "resnet18", str(pth)]
    assert cli.main([*args, str(recorded), "--input-size", "32,32,3"]) == 0
    assert checkpoints.read_metadata(recorded)["input_shape"] == [32, 32, 3]
    assert cli.main([*args, str(default)]) == 0
    assert cli.main([*args, str(tmp_path / "bad"), "--input-size", "32,32"]) == 2
    assert "--input-size: expected H,W,C" in capsys.readouterr().err
    run = ["--preset", "smoke", "model=resnet18", f"dataset=folder:{folder}"]
    run += ["experiments=1", "nums=1", "seeds=0", "batch_size=10"]
    for ck in (recorded, default):
        wd = tmp_path / f"run-{ck.name}"
        cmd = ["run", "pixel-change", "--workdir", str(wd), f"checkpoint={ck}", *run]
        assert cli.main(cmd) == 0
        res = json.loads((wd / "results.json").read_text())
        assert res["metadata"]["image_shape"] == [32, 32, 3]
    wd = tmp_path / "never"
    cmd = ["run", "pixel-change", "--workdir", str(wd), "--preset", "smoke"]
    assert cli.main([*cmd, f"dataset=folder:{folder}"]) == 2  # LeNet-5, 1 channel
    assert "do not fit checkpoint" in capsys.readouterr().err
    assert not wd.exists()
