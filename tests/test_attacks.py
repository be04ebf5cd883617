"""FGSM / PGD: parity with an independent PyTorch autograd implementation on the same
weights, eps sweep == single steps, constraints, determinism, bad input."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixjax.attacks import fgsm, fgsm_sweep, pgd

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def setup(lenet, mnist_test):
    module, variables, _ = lenet
    from pixjax.models.torch_reference import lenet5_to_torch

    pick = np.arange(0, 2000, 31)[:64]  # the split is sorted by class: spread out
    x = np.asarray(mnist_test.images[pick], np.float32) / 255.0
    y = mnist_test.labels[pick]
    return functools.partial(module.apply, variables), lenet5_to_torch(variables), x, y


def _torch_fgsm(model, x, y, eps, targets=None, norm="linf"):
    """Reference: plain torch autograd, written independently of pixjax."""
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).clone().requires_grad_(True)
    logits = model(xt)
    cls = torch.from_numpy(np.asarray(y if targets is None else targets)).long()
    loss = torch.nn.functional.cross_entropy(logits, cls, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xt)
    if targets is not None:
        grad = -grad
    if norm == "linf":
        step = grad.sign()
    else:
        n = grad.flatten(1).norm(dim=1).clamp_min(1e-30).view(-1, 1, 1, 1)
        step = grad / n
    adv = (xt + eps * step).clamp(0, 1)
    return adv.detach().numpy().transpose(0, 2, 3, 1)


def _meaningful(model, x, y):
    """Images whose float32 loss gradient is not rounding noise: the model's loss on
    them is >= 1e-4 (at loss ~1e-7 the gradient's norm is ~1e-6 and the two frameworks
    disagree in its leading digits, which the L2 step normalises away)."""
    with torch.no_grad():
        logits = model(torch.from_numpy(x.transpose(0, 3, 1, 2)))
        loss = torch.nn.functional.cross_entropy(
            logits, torch.from_numpy(np.asarray(y)).long(), reduction="none"
        )
    return loss.numpy() >= 1e-4


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("linf", 0.25), ("l2", 2.0)])
def test_fgsm_matches_torch(setup, norm, eps):
    f, tm, x, y = setup
    keep = _meaningful(tm, x, y)
    assert keep.sum() >= 16, keep.sum()
    with jax.default_matmul_precision("highest"):  # no TF32 on a GPU: float32 parity
        adv = fgsm(f, jnp.asarray(x), jnp.asarray(y), eps, norm=norm)
    ours = np.asarray(adv)[keep]
    ref = _torch_fgsm(tm, x, y, eps, norm=norm)[keep]
    # sign() of a gradient that is ~0 may differ in float rounding: allow a few entries.
    # The L2 step keeps the gradient's values, whose float32 error is relative to the
    # loss (1 - p rounds at ~1e-7 / loss): at loss 1e-4 and eps 2, ~1e-4 per pixel.
    tol = 1e-5 if norm == "linf" else 2e-4
    mismatch = np.abs(ours - ref) > tol
    assert mismatch.mean() < 1e-3, mismatch.mean()
    np.testing.assert_allclose(ours[~mismatch], ref[~mismatch], atol=tol)


def test_targeted_fgsm_matches_torch(setup):
    f, tm, x, y = setup
    targets = (y + 1) % 10
    ours = np.asarray(
        fgsm(
            f,
            jnp.asarray(x),
            jnp.asarray(y),
            0.2,
            targeted=True,
            targets=jnp.asarray(targets),
        )
    )
    ref = _torch_fgsm(tm, x, y, 0.2, targets=targets)
    mismatch = np.abs(ours - ref) > 1e-5
    assert mismatch.mean() < 1e-3


def test_fgsm_hurts_and_targeted_reaches_targets(setup):
    f, _, x, y = setup
    clean = np.argmax(np.asarray(f(jnp.asarray(x))), -1)
    adv = fgsm(f, jnp.asarray(x), jnp.asarray(y), 0.3)
    assert (np.argmax(np.asarray(f(adv)), -1) == y).mean() < (clean == y).mean() - 0.3
    targets = jnp.asarray((y + 1) % 10)
    adv_t = pgd(
        f,
        None,
        jnp.asarray(x),
        jnp.asarray(y),
        0.3,
        step_size=0.02,
        steps=40,
        random_start=False,
        targeted=True,
        targets=targets,
    )
    assert (np.argmax(np.asarray(f(adv_t)), -1) == np.asarray(targets)).mean() > 0.5


def test_eps_sweep_equals_single_steps(setup):
    f, _, x, y = setup
    eps = [0.0, 0.05, 0.1, 0.3]
    out, imgs = fgsm_sweep(f, jnp.asarray(x), jnp.asarray(y), eps, return_images=True)
    for i, e in enumerate(eps):
        single = fgsm(f, jnp.asarray(x), jnp.asarray(y), e)
        np.testing.assert_allclose(imgs[i], single, atol=1e-6)
        np.testing.assert_array_equal(out.pred[i], np.argmax(np.asarray(f(single)), -1))
    np.testing.assert_array_equal(out.success, out.pred != y[None])
    np.testing.assert_array_equal(out.pred[0], out.clean_pred)  # eps 0 = clean


def test_constraints_linf_l2_and_range(setup):
    f, _, x, y = setup
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    adv = np.asarray(fgsm(f, xj, yj, 0.1))
    assert np.abs(adv - x).max() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    for norm, eps in (("linf", 0.1), ("l2", 1.5)):
        a = np.asarray(
            pgd(
                f,
                jax.random.key(0),
                xj,
                yj,
                eps,
                step_size=eps / 4,
                steps=10,
                norm=norm,
            )
        )
        d = (a - x).reshape(len(x), -1)
        size = np.abs(d).max(1) if norm == "linf" else np.linalg.norm(d, axis=1)
        assert size.max() <= eps + 1e-5
        assert a.min() >= 0 and a.max() <= 1


def test_pgd_deterministic_and_stronger_than_fgsm(setup):
    f, _, x, y = setup
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    a = pgd(f, jax.random.key(1), xj, yj, 0.1, step_size=0.02, steps=10)
    b = pgd(f, jax.random.key(1), xj, yj, 0.1, step_size=0.02, steps=10)
    np.testing.assert_array_equal(a, b)
    acc = lambda z: float(np.mean(np.argmax(np.asarray(f(z)), -1) == y))
    assert acc(a) <= acc(fgsm(f, xj, yj, 0.1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"eps": -0.1}, r"eps: expected values in \[0, 1\]"),
        ({"eps": 1.5}, r"eps: expected values in \[0, 1\]"),
        ({"eps": 0.1, "targeted": True}, "targets: a targeted attack needs"),
        ({"eps": 0.1, "norm": "l1"}, "norm: expected one of"),
        (
            {"eps": 0.1, "targeted": True, "targets": np.zeros(3, int)},
            "targets: expected shape",
        ),
        (
            {
                "eps": 0.1,
                "targeted": True,
                "targets": np.full(64, 12),
                "num_classes": 10,
            },
            r"targets: expected classes in 0..9",
        ),
        ({"eps": 0.1, "num_classes": 5}, r"labels: expected classes in 0..4"),
    ],
)
def test_bad_input(setup, kwargs, match):
    f, _, x, y = setup
    with pytest.raises(ValueError, match=match):
        fgsm(f, jnp.asarray(x), jnp.asarray(y), **kwargs)


def test_bad_shapes(setup):
    f, _, x, y = setup
    with pytest.raises(ValueError, match="labels: expected shape"):
        fgsm(f, jnp.asarray(x), jnp.asarray(y[:3]), 0.1)
    with pytest.raises(ValueError, match="eps: expected at least one"):
        fgsm_sweep(f, jnp.asarray(x), jnp.asarray(y), [])
    with pytest.raises(ValueError, match=r"targets: expected classes in 0..9"):
        fgsm_sweep(
            f,
            jnp.asarray(x),
            jnp.asarray(y),
            [0.1],
            targeted=True,
            targets=jnp.full(len(y), 10),
        )
    with pytest.raises(ValueError, match=r"labels: expected classes in 0..9"):
        pgd(
            f,
            None,
            jnp.asarray(x),
            jnp.asarray(y) + 10,
            0.1,
            step_size=0.1,
            steps=1,
            random_start=False,
        )
    with pytest.raises(ValueError, match="steps: expected a positive"):
        pgd(
            f,
            None,
            jnp.asarray(x),
            jnp.asarray(y),
            0.1,
            step_size=0.1,
            steps=0,
            random_start=False,
        )
