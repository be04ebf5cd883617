"""`pixjax convert` and a converted ResNet-18 running the main job on a real photo."""

import json
import sys
import types

if "torchvision" not in sys.modules:  # its C extension is a CUDA build: skip its ops
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations"
    )

import torch  # noqa: E402
import torchvision  # noqa: E402

from experiments import cli  # noqa: E402
from pixjax import checkpoints, data  # noqa: E402


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
