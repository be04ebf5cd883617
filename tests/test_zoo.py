"""torchvision ports (AlexNet, VGG, ResNet, DenseNet, SqueezeNet) against torchvision.

* Structure: every port has exactly torchvision's ``state_dict`` names and shapes and its
  parameter count (torch models built on the ``meta`` device, Flax via ``eval_shape``).
* Parity: a torchvision model with random weights (``torch.manual_seed(0)``) is
  converted with ``pixjax.models.convert``; logits agree within 1e-4 (float32,
  ``jax.default_matmul_precision("highest")``) and top-1 is identical, on real photos
  and MNIST digits and on pixel-changed copies of them.

  Random weights need two adjustments, applied to the torch model before conversion
  (so both sides see the same weights): (1) BatchNorm running statistics are
  calibrated on the clean images (one train-mode pass with cumulative averaging) and
  BN scale / bias are randomised, otherwise eval-mode BN is the identity, activations
  of deep ResNets grow to ~1e7 and a port that ignored BN (or swapped mean and var)
  would still pass; (2) the final layer's weight and bias are multiplied by one
  positive factor so that the largest |logit| on the clean images is ``LOGIT_SCALE``
  (10, the magnitude of trained ImageNet models). Random-init logits range from ~0.03
  (AlexNet) to ~2e3 (ResNet-152); float32 error is relative, so this makes 1e-4 the
  same test (a relative 1e-5) for every architecture, and the factor leaves top-1
  unchanged.
* BatchNorm train mode matches PyTorch, including the unbiased running-variance
  update (``flax.linen.BatchNorm`` uses the biased one; see
  :class:`pixjax.models.resnet.BatchNorm`).
"""

import functools
import re
import sys
import time
import types

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image

from pixjax import checkpoints, data, models
from pixjax.models import convert
from pixjax.models.resnet import BatchNorm, adaptive_avg_pool, max_pool
from pixjax.perturb import PixelConfig, change_pixels

if "torchvision" not in sys.modules:  # its C extension is a CUDA build: skip its ops
    sys.modules["torchvision._meta_registrations"] = types.ModuleType(
        "torchvision._meta_registrations"
    )
import torchvision  # noqa: E402

ARCHS = convert.TORCHVISION_ARCHS
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
# Input size of the parity test: adaptive pooling lets every port take 112x112;
# ResNet-18 and AlexNet also run at the native 224x224.
PARITY_SIZE = {"resnet18": 224, "alexnet": 224}
LOGIT_SCALE = 10.0


def _family(arch):
    return next(
        f
        for f in ("alexnet", "vgg", "resnet", "densenet", "squeezenet")
        if arch.startswith(f)
    )


def _head(tm, arch):
    fam = _family(arch)
    if fam == "resnet":
        return tm.fc
    if fam == "densenet":
        return tm.classifier
    if fam == "squeezenet":
        return tm.classifier[1]
    return tm.classifier[6]


@functools.cache
def _clean_images(size):
    """4 real images ``[4, size, size, 3]`` float32 in [0, 1]: two views of
    matplotlib's Grace Hopper photo and two MNIST digits (grey -> RGB), resized."""
    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg"))
    photo = photo.convert("RGB")
    w, h = photo.size
    views = [
        photo.crop((0, (h - w) // 2, w, (h - w) // 2 + w)),
        photo.crop((130, 40, 390, 300)),
    ]
    mnist = data.load("mnist-sample", "test")
    for label in (3, 7):
        digit = mnist.images[int(np.flatnonzero(mnist.labels == label)[0])][..., 0]
        views.append(Image.fromarray(digit).convert("RGB"))
    arrays = [
        np.asarray(v.resize((size, size), Image.Resampling.BILINEAR), np.float32)
        / 255.0
        for v in views
    ]
    return np.stack(arrays)


@functools.cache
def _images(size):
    """The clean images followed by copies with 32 random pixels changed."""
    clean = _clean_images(size)
    changed = change_pixels(jax.random.key(7), jnp.asarray(clean), PixelConfig(num=32))
    return np.concatenate([clean, np.asarray(changed)])


def _to_torch(x):
    return torch.from_numpy(((x - MEAN) / STD).transpose(0, 3, 1, 2).copy())


def _torch_model(arch, size, **kwargs):
    """torchvision ``arch`` with seed-0 weights, calibrated BN and a rescaled head
    (see the module docstring), in eval mode."""
    torch.manual_seed(0)
    tm = getattr(torchvision.models, arch)(weights=None, **kwargs)
    bns = [m for m in tm.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        if bns:
            for bn in bns:
                bn.reset_running_stats()
                bn.momentum = None  # cumulative average: stats of the one batch
            tm.train()
            tm(_to_torch(_clean_images(size)))
            for bn in bns:
                bn.momentum = 0.1
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.25, 0.25)
        tm.eval()
        factor = LOGIT_SCALE / float(tm(_to_torch(_clean_images(size))).abs().max())
        head = _head(tm, arch)
        head.weight.mul_(factor)
        head.bias.mul_(factor)
    return tm


def test_registry_lists_every_port():
    for arch in ARCHS:
        assert arch in models.MODELS
        assert models.DEFAULT_INPUT_SHAPES[arch] == (224, 224, 3)


@pytest.mark.parametrize("arch", ARCHS)
def test_structure_and_param_count_match_torchvision(arch):
    with torch.device("meta"):
        tm = getattr(torchvision.models, arch)(weights=None)
    torch_shapes = {
        k: tuple(v.shape)
        for k, v in tm.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert convert.expected_shapes(arch) == torch_shapes
    module = models.get_model(arch)
    abstract = jax.eval_shape(
        lambda: models.init_variables(module, jax.random.key(0), (224, 224, 3))
    )
    n_flax = sum(
        int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(abstract["params"])
    )
    assert n_flax == sum(p.numel() for p in tm.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_parity_with_torchvision(arch):
    size = PARITY_SIZE.get(arch, 112)
    x = _images(size)
    tm = _torch_model(arch, size)
    t0 = time.perf_counter()
    with torch.no_grad():
        expected = tm(_to_torch(x)).numpy()
    t1 = time.perf_counter()
    variables = convert.torchvision_to_flax(arch, tm.state_dict())
    module = models.get_model(arch)
    with jax.default_matmul_precision("highest"):
        got = np.asarray(jax.jit(module.apply)(variables, jnp.asarray(x)))
    t2 = time.perf_counter()
    err = float(np.abs(got - expected).max())
    top = np.sort(expected, axis=1)
    print(
        f"{arch}@{size}: max|diff| {err:.2e}, max|logit| {np.abs(expected).max():.3g}, "
        f"min top-1 margin {np.min(top[:, -1] - top[:, -2]):.3g}, "
        f"top-1 {expected.argmax(1).tolist()}, torch {t1 - t0:.1f}s, jax {t2 - t1:.1f}s"
    )
    assert got.dtype == np.float32 and got.shape == (8, 1000)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))


# ---------------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    "kernel,stride,padding,ceil_mode",
    [
        (3, 2, 0, True),
        (3, 2, 1, False),
        (2, 2, 0, False),
        (3, 2, 1, True),
        (3, 1, 1, False),
    ],
)
def test_max_pool_matches_torch(kernel, stride, padding, ceil_mode):
    rng = np.random.default_rng(0)
    for h, w in [(7, 8), (13, 14), (55, 56), (6, 9)]:
        x = rng.normal(size=(2, h, w, 3)).astype(np.float32)
        expected = (
            torch.nn.functional.max_pool2d(
                torch.from_numpy(x.transpose(0, 3, 1, 2)),
                kernel,
                stride,
                padding,
                ceil_mode=ceil_mode,
            )
            .numpy()
            .transpose(0, 2, 3, 1)
        )
        got = np.asarray(max_pool(jnp.asarray(x), kernel, stride, padding, ceil_mode))
        np.testing.assert_array_equal(got, expected, err_msg=f"input {h}x{w}")


def test_adaptive_avg_pool_matches_torch():
    rng = np.random.default_rng(0)
    cases = [
        ((13, 5), (6, 3)),
        ((3, 3), (7, 7)),
        ((7, 7), (7, 7)),
        ((14, 12), (7, 6)),
        ((1, 2), (6, 6)),
        ((5, 11), (3, 7)),
    ]
    for (h, w), out in cases:
        x = rng.normal(size=(2, h, w, 4)).astype(np.float32)
        expected = (
            torch.nn.functional.adaptive_avg_pool2d(
                torch.from_numpy(x.transpose(0, 3, 1, 2)), out
            )
            .numpy()
            .transpose(0, 2, 3, 1)
        )
        got = np.asarray(adaptive_avg_pool(jnp.asarray(x), out))
        np.testing.assert_allclose(
            got, expected, rtol=1e-6, atol=1e-6, err_msg=f"{h}x{w}->{out}"
        )


# ------------------------------------------------------------------------- BatchNorm


def test_batchnorm_running_var_is_unbiased_as_in_torch_not_flax():
    """PyTorch updates the running variance with the unbiased batch variance, Flax's
    ``nn.BatchNorm`` with the biased one; pixjax's ``BatchNorm`` follows PyTorch."""
    x = np.random.default_rng(0).normal(1.0, 2.0, size=(2, 3, 3, 5)).astype(np.float32)
    n = 2 * 3 * 3
    tbn = torch.nn.BatchNorm2d(5).train()
    with torch.no_grad():
        t_out = (
            tbn(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
        )
    ours = BatchNorm(use_running_average=False)
    variables = ours.init(jax.random.key(0), x)
    out, upd = ours.apply(variables, x, mutable=["batch_stats"])
    np.testing.assert_allclose(out, t_out, atol=1e-5)
    np.testing.assert_allclose(
        upd["batch_stats"]["mean"], tbn.running_mean.numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        upd["batch_stats"]["var"], tbn.running_var.numpy(), rtol=1e-5
    )
    # The documented difference: flax.linen.BatchNorm (same momentum) uses var * (n-1)/n.
    flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=1e-5)
    _, flax_upd = flax_bn.apply(
        flax_bn.init(jax.random.key(0), x), x, mutable=["batch_stats"]
    )
    biased = x.reshape(-1, 5).var(axis=0)
    np.testing.assert_allclose(
        flax_upd["batch_stats"]["var"], 0.9 + 0.1 * biased, rtol=1e-5
    )
    np.testing.assert_allclose(
        upd["batch_stats"]["var"], 0.9 + 0.1 * biased * n / (n - 1), rtol=1e-5
    )


def test_batchnorm_axis_name_averages_over_shards():
    x = np.random.default_rng(1).normal(size=(8, 4, 4, 3)).astype(np.float32)
    bn = BatchNorm(use_running_average=False)
    variables = bn.init(jax.random.key(0), x)
    full, full_upd = bn.apply(variables, x, mutable=["batch_stats"])
    sharded = BatchNorm(use_running_average=False, axis_name="d")
    out, upd = jax.vmap(
        lambda xs: sharded.apply(variables, xs, mutable=["batch_stats"]), axis_name="d"
    )(x.reshape(2, 4, 4, 4, 3))
    np.testing.assert_allclose(out.reshape(x.shape), full, atol=1e-5)
    for name in ("mean", "var"):
        np.testing.assert_allclose(
            upd["batch_stats"][name][0],
            full_upd["batch_stats"][name],
            rtol=1e-5,
            atol=1e-7,
        )


def test_train_mode_forward_updates_running_stats_as_torch():
    """One train-mode forward of ResNet-18 (batch 8, 64x64): logits and every running
    mean / variance (momentum 0.1, unbiased variance) as in torchvision."""
    x = _images(64)
    torch.manual_seed(0)
    tm = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        for m in tm.modules():
            if isinstance(m, torch.nn.BatchNorm2d):  # non-trivial starting statistics
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    variables = convert.torchvision_to_flax("resnet18", tm.state_dict())
    tm.train()
    with torch.no_grad():
        expected = tm(_to_torch(x)).numpy()
    after = convert.torchvision_to_flax("resnet18", tm.state_dict())
    module = models.get_model("resnet18")
    with jax.default_matmul_precision("highest"):
        logits, updates = jax.jit(
            functools.partial(module.apply, train=True, mutable=["batch_stats"])
        )(variables, jnp.asarray(x))
    np.testing.assert_allclose(
        logits, expected, atol=1e-4 * max(1.0, np.abs(expected).max())
    )
    got = jax.tree_util.tree_leaves_with_path(updates["batch_stats"])
    want = dict(jax.tree_util.tree_leaves_with_path(after["batch_stats"]))
    assert len(got) == len(want) == 2 * 20
    for path, value in got:
        np.testing.assert_allclose(
            value, want[path], rtol=1e-4, atol=1e-5, err_msg=str(path)
        )
    # eval mode with the updated statistics matches torch's eval mode
    tm.eval()
    with torch.no_grad():
        expected = tm(_to_torch(x)).numpy()
    updated = {"params": variables["params"], "batch_stats": updates["batch_stats"]}
    with jax.default_matmul_precision("highest"):
        logits = jax.jit(module.apply)(updated, jnp.asarray(x))
    np.testing.assert_allclose(
        logits, expected, atol=1e-4 * max(1.0, np.abs(expected).max())
    )


def test_dropout_only_in_train_mode():
    module = models.get_model("squeezenet1_1", num_classes=10)
    x = jnp.asarray(_clean_images(64))
    torch.manual_seed(0)  # converted weights: jitting `init` costs ~7 s on 2 cores
    tm = torchvision.models.squeezenet1_1(weights=None, num_classes=10)
    variables = convert.torchvision_to_flax("squeezenet1_1", tm.state_dict())
    apply = jax.jit(module.apply, static_argnames="train")
    a = apply(variables, x)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    train = jax.jit(lambda v, x, k: module.apply(v, x, train=True, rngs={"dropout": k}))
    t1 = train(variables, x, k1)
    assert not np.allclose(t1, a)
    np.testing.assert_array_equal(t1, train(variables, x, k1))
    assert not np.allclose(t1, train(variables, x, k2))
    with pytest.raises(Exception, match="dropout"):  # train mode needs a dropout rng
        module.apply(variables, x, train=True)


# -------------------------------------------------------------------------- bfloat16


def test_bfloat16_compute_agrees_on_top1():
    """ResNet-18 with bfloat16 compute (float32 params and logits) on the 8 parity
    images at 112x112: finite, and top-1 equals float32's on at least 6 of 8."""
    x = jnp.asarray(_images(112))
    variables = convert.torchvision_to_flax(
        "resnet18", _torch_model("resnet18", 112).state_dict()
    )
    f32 = np.asarray(jax.jit(models.get_model("resnet18").apply)(variables, x))
    bf16_model = models.get_model("resnet18", dtype=jnp.bfloat16)
    bf16 = np.asarray(jax.jit(bf16_model.apply)(variables, x))
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    agree = int((bf16.argmax(1) == f32.argmax(1)).sum())
    print(
        f"bfloat16: top-1 agrees on {agree}/8, max|diff| {np.abs(bf16 - f32).max():.3g}"
    )
    assert agree >= 6
    # bf16 activations really are used (not silently float32)
    assert not np.allclose(bf16, f32, atol=1e-4)


# ------------------------------------------------------------------------ conversion


@pytest.fixture(scope="module")
def resnet18_state():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).state_dict()


def test_wrong_keys_are_listed_in_torch_naming(resnet18_state):
    sd = dict(resnet18_state)
    del sd["layer4.1.bn2.running_var"]
    sd["extra.weight"] = torch.zeros(3)
    sd["fc.bias"] = torch.zeros(7)
    with pytest.raises(ValueError) as e:
        convert.torchvision_to_flax("resnet18", sd)
    msg = str(e.value)
    assert "missing keys: layer4.1.bn2.running_var" in msg
    assert "unexpected keys: extra.weight" in msg
    assert "mis-shaped keys: fc.bias (expected (1000,), found (7,))" in msg


def test_state_dict_of_another_architecture_is_refused(resnet18_state):
    with pytest.raises(ValueError, match=r"missing keys: .*layer1\.2\.conv1\.weight"):
        convert.torchvision_to_flax("resnet34", resnet18_state)
    with pytest.raises(
        ValueError, match=r"mis-shaped keys: .*layer1\.0\.conv1\.weight"
    ):
        convert.torchvision_to_flax("resnet50", resnet18_state)
    with pytest.raises(
        ValueError,
        match=r"missing keys: .*features\.0\.weight.*unexpected keys: .*layer1",
    ):
        convert.torchvision_to_flax("vgg11", resnet18_state)


def test_unknown_arch_lists_valid_names(resnet18_state):
    with pytest.raises(ValueError, match=r"unknown 'resnet9'.*'resnet18'"):
        convert.torchvision_to_flax("resnet9", resnet18_state)
    with pytest.raises(ValueError, match=r"not a torchvision port.*'densenet121'"):
        convert.torchvision_to_flax("lenet5", resnet18_state)
    with pytest.raises(ValueError, match="unknown"):
        convert.convert_file("vgg", "x.pth", "out")


def test_num_classes_is_read_from_the_head():
    torch.manual_seed(0)
    tm = torchvision.models.squeezenet1_1(weights=None, num_classes=10).eval()
    variables = convert.torchvision_to_flax("squeezenet1_1", tm.state_dict())
    assert variables["params"]["classifier_1"]["kernel"].shape == (1, 1, 512, 10)
    with pytest.raises(
        ValueError, match=r"classifier\.1\.weight \(expected \(1000, 512, 1, 1\)"
    ):
        convert.torchvision_to_flax("squeezenet1_1", tm.state_dict(), num_classes=1000)


def test_legacy_densenet_keys_and_dataparallel_prefix():
    """Old torchvision DenseNet files say ``denselayer1.norm.1.weight``; ``DataParallel``
    prefixes ``module.``; both convert like the current naming."""
    torch.manual_seed(0)
    sd = torchvision.models.densenet121(weights=None).state_dict()
    legacy = {
        "module."
        + re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v
        for k, v in sd.items()
    }
    assert "module.features.denseblock1.denselayer1.norm.1.weight" in legacy
    a = convert.torchvision_to_flax("densenet121", sd)
    b = convert.torchvision_to_flax("densenet121", legacy)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, a, b))


def test_pth_files_that_are_not_state_dicts(tmp_path):
    torch.manual_seed(0)
    tm = torchvision.models.squeezenet1_1(weights=None, num_classes=10)
    cases = {
        "list.pth": ([torch.zeros(3), torch.ones(2)], "holds a list, not a state dict"),
        "tensor.pth": (torch.zeros(3, 3), "holds a Tensor, not a state dict"),
        "full_model.pth": (tm, "not a plain state dict"),
        "dict.pth": ({"epoch": 3, "lr": 0.1}, "not a state dict"),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ValueError, match=message):
            convert.load_torchvision_file("squeezenet1_1", tmp_path / name)
    (tmp_path / "text.pth").write_text("not a torch file")
    with pytest.raises(ValueError, match="or not a torch file"):
        convert.load_torchvision_file("squeezenet1_1", tmp_path / "text.pth")
    torch.save(tm.state_dict(), tmp_path / "whole.pth")
    blob = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    for name in ("truncated.pth", "empty.pth"):
        with pytest.raises(ValueError, match="not a readable torch file"):
            convert.load_torchvision_file("squeezenet1_1", tmp_path / name)
    with pytest.raises(FileNotFoundError):
        convert.load_torchvision_file("squeezenet1_1", tmp_path / "absent.pth")


def test_convert_file_round_trip_without_torch(tmp_path):
    torch.manual_seed(0)
    tm = torchvision.models.squeezenet1_1(weights=None, num_classes=10).eval()
    path = tmp_path / "squeezenet.pth"
    # a training checkpoint that nests the state dict is accepted too
    torch.save({"epoch": 5, "state_dict": tm.state_dict()}, path)
    names = [f"class {i}" for i in range(10)]
    out = convert.convert_file(
        "squeezenet1_1", path, tmp_path / "model", class_names=names
    )
    module, variables, meta = checkpoints.load_model(out, arch="squeezenet1_1")
    assert meta["arch"] == "squeezenet1_1"
    assert meta["model_kwargs"] == {"num_classes": 10}
    assert meta["input_shape"] == [224, 224, 3]
    assert meta["class_names"] == names and meta["source"].endswith("squeezenet.pth")
    x = _clean_images(112)
    with torch.no_grad():
        expected = tm(_to_torch(x)).numpy()
    with jax.default_matmul_precision("highest"):
        got = np.asarray(module.apply(variables, jnp.asarray(x)))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="3 names for a model with 10 classes"):
        convert.convert_file(
            "squeezenet1_1", path, tmp_path / "bad", class_names=["a", "b", "c"]
        )


def test_wrong_input_size_or_channels_is_a_clear_error():
    m = models.get_model("squeezenet1_1")
    v = models.init_variables(m, jax.random.key(0), (64, 64, 3))
    models.check_input(m, v, (224, 224, 3))  # any size the architecture takes
    with pytest.raises(ValueError, match=r"images: SqueezeNet .* takes 3-channel"):
        models.logits_fn(m, v, input_shape=(64, 64, 1))
    with pytest.raises(ValueError, match=r"images: shape .*\(8, 8, 3\) does not fit"):
        models.check_input(m, v, (8, 8, 3))
    lenet = models.get_model("lenet5")
    lv = models.init_variables(lenet, jax.random.key(0), (28, 28, 1))
    with pytest.raises(ValueError, match=r"does not fit LeNet5"):  # fc1 fixes the size
        models.check_input(lenet, lv, (32, 32, 1))
    with pytest.raises(ValueError, match=r"input_shape: expected \(H, W, C\)"):
        models.check_input(lenet, lv, (28, 28))
