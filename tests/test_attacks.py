"""FGSM / PGD: parity with independent PyTorch autograd (float64 where float32
saturates), robust accuracy equal to a float64 reference on saturated images, the
margin loss invariant to scaling the logits, vanished gradients counted and warned
about, L2 steps that stay on the ball, eps sweep == single steps, determinism, and every
input checked before any work."""

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixjax.attacks import (
    VanishedGradientWarning,
    fgsm,
    fgsm_sweep,
    get_loss,
    loss_gradient,
    pgd,
)

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def setup(lenet, mnist_test):
    module, variables, _ = lenet
    from pixjax.models.torch_reference import lenet5_to_torch

    pick = np.arange(0, 2000, 31)[:64]  # the split is sorted by class: spread out
    x = np.asarray(mnist_test.images[pick], np.float32) / 255.0
    y = mnist_test.labels[pick]
    return functools.partial(module.apply, variables), lenet5_to_torch(variables), x, y


@pytest.fixture(scope="module")
def first500(lenet, mnist_test):
    module, variables, _ = lenet
    from pixjax.models.torch_reference import lenet5_to_torch

    x = np.asarray(mnist_test.images[:500], np.float32) / 255.0
    y = mnist_test.labels[:500]
    f = functools.partial(module.apply, variables)
    return f, lenet5_to_torch(variables), x, y


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _torch_grad(model, x, y, targets=None, model_dtype=torch.float32):
    """Reference input gradient by plain torch autograd, written independently of
    pixjax: the model in ``model_dtype``, the softmax cross-entropy and its logit
    gradient in float64 (where float32 rounds ``p_y`` to 1 and the gradient vanishes)."""
    model = model.to(model_dtype)
    xt = _nchw(x).to(model_dtype).requires_grad_(True)
    logits = model(xt).double()
    cls = torch.from_numpy(np.asarray(y if targets is None else targets)).long()
    loss = torch.nn.functional.cross_entropy(logits, cls, reduction="sum")
    (grad,) = torch.autograd.grad(loss, xt)
    model.float()
    return -grad if targets is not None else grad


def _torch_step(x, grad, eps, norm, clamp=True):
    if norm == "linf":
        step = grad.sign()
    else:
        n = grad.flatten(1).norm(dim=1).clamp_min(1e-300).view(-1, 1, 1, 1)
        step = grad / n
    out = _nchw(x).to(grad.dtype) + eps * step
    return out.clamp(0, 1) if clamp else out


def _torch_fgsm(model, x, y, eps, targets=None, norm="linf"):
    adv = _torch_step(x, _torch_grad(model, x, y, targets), eps, norm)
    return adv.detach().float().numpy().transpose(0, 2, 3, 1)


def _torch_pgd(model, x, y, eps, step_size, steps, norm):
    """PGD without random start, projected as Madry et al. and torchattacks do: step,
    clip (L-inf) or rescale (L2) the perturbation, then clip to [0, 1]."""
    x0 = _nchw(x)
    adv = x0.clone()
    for _ in range(steps):
        a = adv.numpy().transpose(0, 2, 3, 1)
        adv = _torch_step(a, _torch_grad(model, a, y), step_size, norm, False).float()
        d = adv - x0
        if norm == "linf":
            d = d.clamp(-eps, eps)
        else:
            n = d.double().flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            d = d * torch.where(n > eps, eps / n.clamp_min(1e-300), 1.0).float()
        adv = (x0 + d).clamp(0, 1)
    return adv.numpy().transpose(0, 2, 3, 1)


def _accuracy(f, images, y):
    return float(np.mean(np.argmax(np.asarray(f(jnp.asarray(images))), -1) == y))


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("linf", 0.25), ("l2", 2.0)])
def test_fgsm_matches_torch(setup, norm, eps):
    f, tm, x, y = setup
    with jax.default_matmul_precision("highest"):  # no TF32 on a GPU: float32 parity
        adv = fgsm(f, jnp.asarray(x), jnp.asarray(y), eps, norm=norm).images
    ours = np.asarray(adv)
    ref = _torch_fgsm(tm, x, y, eps, norm=norm)
    if norm == "linf":  # signs: identical
        np.testing.assert_array_equal(ours, ref)
    else:
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_targeted_fgsm_matches_torch(setup):
    f, tm, x, y = setup
    targets = (y + 1) % 10
    with jax.default_matmul_precision("highest"):
        ours = fgsm(
            f, jnp.asarray(x), jnp.asarray(y), 0.2, targeted=True, targets=targets
        ).images
    np.testing.assert_array_equal(
        np.asarray(ours), _torch_fgsm(tm, x, y, 0.2, targets=targets)
    )


@pytest.mark.parametrize("norm, eps, alpha", [("linf", 0.1, 0.025), ("l2", 1.5, 0.4)])
def test_pgd_matches_torch(setup, norm, eps, alpha):
    f, tm, x, y = setup
    x, y = x[:16], y[:16]
    with jax.default_matmul_precision("highest"):
        ours = pgd(
            f,
            None,
            jnp.asarray(x),
            jnp.asarray(y),
            eps,
            step_size=alpha,
            steps=5,
            random_start=False,
            norm=norm,
        ).images
    ref = _torch_pgd(tm, x, y, eps, alpha, 5, norm)
    # 5 steps of float32 rounding: a step's sign can flip where the gradient is ~0.
    close = np.abs(np.asarray(ours) - ref) <= 1e-4
    assert close.mean() > 0.999, close.mean()
    assert _accuracy(f, ours, y) == _accuracy(f, ref, y)


def test_saturated_images_match_float64_robust_accuracy(first500):
    """The first 500 bundled test images: many have p_y == 1.0 in float32 (their
    float32 cross-entropy gradient vanishes); FGSM's robust accuracy must equal that of
    FGSM with a float64 gradient (model and loss in float64) within 0.3 points."""
    f, tm, x, y = first500
    z = np.asarray(f(jnp.asarray(x)))
    p_y = np.asarray(jax.nn.softmax(z))[np.arange(len(y)), y]
    assert (p_y == 1.0).sum() >= 20  # the situation under test is present
    for eps in (0.1, 0.3):
        ours = fgsm(f, jnp.asarray(x), jnp.asarray(y), eps).images
        grad64 = _torch_grad(tm, x, y, model_dtype=torch.float64)
        ref = _torch_step(x, grad64, eps, "linf").float().numpy().transpose(0, 2, 3, 1)
        a, r = _accuracy(f, ours, y), _accuracy(f, ref, y)
        assert abs(a - r) <= 0.003, (eps, a, r)


def test_confident_model_keeps_its_gradient(setup):
    """Logits x10 (same predictions, as after defensive distillation): the float32
    softmax saturates on most images, but no input gradient is zero, and FGSM is as
    strong against it as against the original."""
    f, _, x, y = setup
    f10 = lambda im: 10.0 * f(im)
    g = loss_gradient(f10, jnp.asarray(x), jnp.asarray(y))
    assert not np.asarray(g.zero_gradient).any()
    adv = fgsm(f10, jnp.asarray(x), jnp.asarray(y), 0.1).images
    adv1 = fgsm(f, jnp.asarray(x), jnp.asarray(y), 0.1).images
    assert _accuracy(f, adv, y) <= _accuracy(f, adv1, y) + 0.05


@pytest.mark.parametrize("scale", [10.0, 1000.0])
def test_margin_loss_is_invariant_to_logit_scale(setup, scale):
    f, _, x, y = setup
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    fs = lambda im: scale * f(im)
    for norm, eps in (("linf", 0.1), ("l2", 2.0)):
        kw = dict(norm=norm, loss="margin")
        pairs = [
            (fgsm(f, xj, yj, eps, **kw), fgsm(fs, xj, yj, eps, **kw)),
            (
                pgd(
                    f, jax.random.key(3), xj, yj, eps, step_size=eps / 4, steps=8, **kw
                ),
                pgd(
                    fs, jax.random.key(3), xj, yj, eps, step_size=eps / 4, steps=8, **kw
                ),
            ),
        ]
        for a, b in pairs:
            if norm == "linf":
                np.testing.assert_array_equal(a.images, b.images)
            else:  # the same direction up to float rounding of the scaled gradient
                np.testing.assert_allclose(a.images, b.images, atol=1e-6, rtol=0)


def test_losses_against_hand_values():
    z = jnp.array([3.0, 1.0, -2.0, 0.5])
    lse_other = math.log(math.exp(1.0) + math.exp(-2.0) + math.exp(0.5))
    ce = get_loss("cross_entropy")
    np.testing.assert_allclose(
        ce.value(z, 0, 0), math.log1p(math.exp(lse_other - 3.0)), rtol=1e-6
    )
    np.testing.assert_allclose(ce.value(z, 0, 0), -jax.nn.log_softmax(z)[0], rtol=1e-5)
    # targeted cross-entropy ascends log p_t
    np.testing.assert_allclose(
        get_loss("cross_entropy", True).value(z, 0, 2),
        jax.nn.log_softmax(z)[2],
        rtol=1e-5,
    )
    assert float(get_loss("margin").value(z, 0, 0)) == 1.0 - 3.0
    assert float(get_loss("margin", True).value(z, 0, 2)) == -2.0 - 3.0
    # DLR: -(z_y - max_other) / (z_pi1 - z_pi3); sorted 3, 1, 0.5, -2
    np.testing.assert_allclose(get_loss("dlr").value(z, 0, 0), -2.0 / 2.5, rtol=1e-6)
    np.testing.assert_allclose(
        get_loss("dlr", True).value(z, 0, 2),
        -5.0 / (3.0 - 0.5 * (0.5 - 2.0)),
        rtol=1e-6,
    )
    # a saturated float32 example: the value underflows gracefully, the direction not
    big = jnp.array([200.0, 0.0, -5.0])
    d = get_loss("cross_entropy").logit_direction(big, 0, 0)
    assert float(d[0]) == -1.0 and float(d[1]) > 0 and float(d[2]) > 0


def _toy_relu(images):
    """Logits whose input gradient is exactly zero on images with no pixel > 0.5."""
    w = jax.random.normal(jax.random.key(7), (int(np.prod(images.shape[1:])), 10))
    h = jax.nn.relu(images.reshape(images.shape[0], -1) - 0.5)
    return h @ w + jnp.arange(10.0)


def test_zero_gradients_are_counted_and_warned(setup):
    _, _, x, y = setup
    x = x[:12].copy()
    x[[2, 5, 7]] = 0.3  # no pixel above 0.5: dead ReLUs, zero gradient
    xj = jnp.asarray(x)
    yj = jnp.argmax(_toy_relu(xj), -1)  # correctly classified: not yet won
    want = np.zeros(12, bool)
    want[[2, 5, 7]] = True
    with pytest.warns(VanishedGradientWarning, match="3 of 12 images"):
        r = fgsm(_toy_relu, xj, yj, 0.1)
    np.testing.assert_array_equal(r.zero_gradient, want)
    assert int(r.num_zero_gradient) == 3
    np.testing.assert_array_equal(r.images[2], x[2])  # not moved
    with pytest.warns(VanishedGradientWarning):
        s = fgsm_sweep(_toy_relu, xj, yj, [0.1, 0.2])
    np.testing.assert_array_equal(s.zero_gradient, want)
    with pytest.warns(VanishedGradientWarning):
        p = pgd(
            _toy_relu, None, xj, yj, 0.1, step_size=0.05, steps=3, random_start=False
        )
    assert np.asarray(p.zero_gradient)[[2, 5, 7]].all()
    # traced: no warning, but the mask comes back
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        jitted = jax.jit(lambda a, b: fgsm(_toy_relu, a, b, 0.1))(xj, yj)
    np.testing.assert_array_equal(jitted.zero_gradient, want)


@pytest.mark.parametrize("scale", [3.0, 30.0])
def test_l2_steps_stay_on_the_ball_and_move_every_image(lenet, mnist_test, scale):
    module, variables, _ = lenet
    f = functools.partial(module.apply, variables)
    fs = lambda im: scale * f(im)
    x = jnp.asarray(mnist_test.images[:200], jnp.float32) / 255.0
    y = jnp.asarray(mnist_test.labels[:200])
    eps = 2.0
    moved = lambda a: np.linalg.norm(np.asarray(a - x).reshape(200, -1), axis=1)
    r = fgsm(fs, x, y, eps, norm="l2")
    assert not np.asarray(r.zero_gradient).any()
    d = moved(r.images)
    assert d.max() <= eps * (1 + 1e-5), d.max()
    assert (d > 0).all()  # every image with a non-zero gradient moves
    # before clipping the step has length eps
    g = loss_gradient(fs, x, y).grad
    from pixjax.attacks.fgsm import _direction

    step = np.linalg.norm(np.asarray(_direction(g, "l2")).reshape(200, -1), axis=1)
    np.testing.assert_allclose(step, 1.0, rtol=1e-5)
    p = pgd(fs, jax.random.key(0), x, y, eps, step_size=0.5, steps=5, norm="l2")
    dp = moved(p.images)
    assert dp.max() <= eps * (1 + 1e-5) and (dp > 0).all()
    p0 = pgd(fs, None, x, y, eps, step_size=0.5, steps=5, norm="l2", random_start=False)
    assert (moved(p0.images) > 0).all()


def test_l2_direction_survives_tiny_gradients():
    """A gradient of 1e-30 per pixel: ||g||^2 underflows in float32, the direction must
    not (nor overshoot when ||g|| is denormal)."""
    from pixjax.attacks.fgsm import _direction

    for v in (1e-30, 1e-20, 1e30):
        g = jnp.full((2, 4, 4, 1), v, jnp.float32).at[1].multiply(-1)
        d = np.asarray(_direction(g, "l2"))
        np.testing.assert_allclose(np.linalg.norm(d.reshape(2, -1), axis=1), 1.0, 1e-6)
        assert (np.sign(d[0]) == 1).all() and (np.sign(d[1]) == -1).all()


def test_fgsm_hurts_and_targeted_reaches_targets(setup):
    f, _, x, y = setup
    clean = np.argmax(np.asarray(f(jnp.asarray(x))), -1)
    adv = fgsm(f, jnp.asarray(x), jnp.asarray(y), 0.3).images
    assert _accuracy(f, adv, y) < (clean == y).mean() - 0.3
    targets = jnp.asarray((y + 1) % 10)
    for loss in ("cross_entropy", "margin", "dlr"):
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
            loss=loss,
        ).images
        hit = np.argmax(np.asarray(f(adv_t)), -1) == np.asarray(targets)
        # targeted DLR only ranks z_t above z_y (Croce & Hein pick t among the top
        # classes); with t = y + 1 it reaches fewer targets than the other two
        assert hit.mean() > (0.3 if loss == "dlr" else 0.5), (loss, hit.mean())


def test_eps_sweep_equals_single_steps(setup):
    f, _, x, y = setup
    eps = [0.0, 0.05, 0.1, 0.3]
    for loss in ("cross_entropy", "margin"):
        out, imgs = fgsm_sweep(
            f, jnp.asarray(x), jnp.asarray(y), eps, loss=loss, return_images=True
        )
        for i, e in enumerate(eps):
            single = fgsm(f, jnp.asarray(x), jnp.asarray(y), e, loss=loss).images
            np.testing.assert_allclose(imgs[i], single, atol=1e-6)
            np.testing.assert_array_equal(
                out.pred[i], np.argmax(np.asarray(f(single)), -1)
            )
        np.testing.assert_array_equal(out.success, out.pred != y[None])
        np.testing.assert_array_equal(out.pred[0], out.clean_pred)  # eps 0 = clean


def test_constraints_linf_l2_and_range(setup):
    f, _, x, y = setup
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    adv = np.asarray(fgsm(f, xj, yj, 0.1).images)
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
            ).images
        )
        d = (a - x).reshape(len(x), -1)
        size = np.abs(d).max(1) if norm == "linf" else np.linalg.norm(d, axis=1)
        assert size.max() <= eps * (1 + 1e-5)
        assert a.min() >= 0 and a.max() <= 1


def test_pgd_deterministic_and_stronger_than_fgsm(setup):
    f, _, x, y = setup
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    a = pgd(f, jax.random.key(1), xj, yj, 0.1, step_size=0.02, steps=10).images
    b = pgd(f, jax.random.key(1), xj, yj, 0.1, step_size=0.02, steps=10).images
    np.testing.assert_array_equal(a, b)
    assert _accuracy(f, a, y) <= _accuracy(f, fgsm(f, xj, yj, 0.1).images, y)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"eps": -0.1}, r"eps: expected values in \[0, 1\]"),
        ({"eps": 1.5}, r"eps: expected values in \[0, 1\]"),
        ({"eps": float("nan")}, r"eps: expected values in \[0, 1\]"),
        ({"eps": 29.0, "norm": "l2"}, r"eps: expected L2 lengths in \[0, 28\]"),
        ({"eps": 0.1, "targeted": True}, "targets: a targeted attack needs"),
        ({"eps": 0.1, "norm": "l1"}, "norm: expected one of"),
        ({"eps": 0.1, "loss": "hinge"}, "loss: expected one of"),
        (
            {"eps": 0.1, "targeted": True, "targets": np.zeros(3, int)},
            "targets: expected shape",
        ),
        (
            {"eps": 0.1, "targeted": True, "targets": np.full(64, 12)},
            r"targets: expected classes in 0..9",
        ),
        (
            {"eps": 0.1, "targeted": True, "targets": np.full(64, 1.0)},
            "targets: expected integer classes",
        ),
        ({"eps": 0.1, "num_classes": 5}, r"num_classes: expected the model.s 10"),
    ],
)
def test_bad_arguments(setup, kwargs, match):
    f, _, x, y = setup
    with pytest.raises(ValueError, match=match):
        fgsm(f, jnp.asarray(x), jnp.asarray(y), **kwargs)


def _attacks(f):
    """Every attack entry point as ``(name, call(images, labels))``."""
    return [
        ("fgsm", lambda a, b: fgsm(f, a, b, 0.1)),
        ("fgsm_sweep", lambda a, b: fgsm_sweep(f, a, b, [0.1])),
        (
            "pgd",
            lambda a, b: pgd(
                f, None, a, b, 0.1, step_size=0.1, steps=1, random_start=False
            ),
        ),
        ("loss_gradient", lambda a, b: loss_gradient(f, a, b)),
    ]


@pytest.mark.parametrize("entry", ["fgsm", "fgsm_sweep", "pgd", "loss_gradient"])
def test_bad_images_and_labels_at_every_entry_point(setup, entry):
    f, _, x, y = setup
    call = dict(_attacks(f))[entry]
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    cases = [
        (
            xj * 255.0,
            r"images: expected values in \[0, 1\], got range \[0, 255\]; "
            "divide uint8 images by 255",
        ),
        (jnp.asarray((x * 255).astype(np.uint8)), "images: expected floating images"),
        (xj.at[3, 4, 4, 0].set(jnp.nan), "images: expected finite values"),
        (xj.at[0, 0, 0, 0].set(-jnp.inf), "images: expected finite values"),
        (xj[:0], "images: expected a non-empty batch"),
        (xj[0], r"images: expected shape \[N, H, W, C\]"),
    ]
    for images, match in cases:
        labels = yj[: images.shape[0]] if images.ndim == 4 else yj
        with pytest.raises(ValueError, match=match):
            call(images, labels)
    for labels, match in [
        (yj[:3], "labels: expected shape"),
        (yj + 10, r"labels: expected classes in 0..9"),
        (yj - 11, r"labels: expected classes in 0..9"),
        (yj.astype(jnp.float32), "labels: expected integer classes"),
    ]:
        with pytest.raises(ValueError, match=match):
            call(xj, labels)


def test_bad_pgd_and_sweep_arguments(setup):
    f, _, x, y = setup
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    run = functools.partial(pgd, f, None, xj, yj, 0.1, random_start=False)
    for kw, match in [
        ({"step_size": 0.1, "steps": 0}, "steps: expected a positive integer"),
        ({"step_size": 0.1, "steps": 2.5}, "steps: expected a positive integer"),
        ({"step_size": 0.0, "steps": 1}, r"step_size: expected a number in \(0, 1\]"),
        ({"step_size": float("inf"), "steps": 1}, "step_size: expected a number"),
    ]:
        with pytest.raises(ValueError, match=match):
            run(**kw)
    with pytest.raises(ValueError, match="key: random_start=True needs a PRNG key"):
        pgd(f, None, xj, yj, 0.1, step_size=0.1, steps=1)
    with pytest.raises(ValueError, match="eps: expected at least one"):
        fgsm_sweep(f, xj, yj, [])
    two = lambda im: f(im)[:, :2]
    with pytest.raises(ValueError, match="loss: 'dlr' .* at least 3 classes"):
        fgsm(two, xj, jnp.zeros_like(yj), 0.1, loss="dlr")


def test_array_likes_and_malformed_arguments(setup):
    """Lists work like arrays; anything that is not a real number, a PRNG key or one
    eps where one is expected is one ValueError naming the argument."""
    f, _, x, y = setup
    xj, yj = jnp.asarray(x[:8]), jnp.asarray(y[:8])
    ref = fgsm(f, xj, yj, 0.1).images
    np.testing.assert_array_equal(fgsm(f, xj.tolist(), yj.tolist(), 0.1).images, ref)
    t = ((np.asarray(yj) + 1) % 10).tolist()
    fgsm(f, xj, yj, 0.1, targeted=True, targets=t)
    cases = [
        (lambda: fgsm(f, xj, yj, np.full(8, 0.1)), "eps: expected one value"),
        (lambda: fgsm(f, xj, yj, [0.1, 0.2]), "eps: expected one value"),
        (lambda: fgsm(f, xj, yj, "0.1"), "eps: expected real numbers"),
        (lambda: fgsm(f, xj, yj, None), "eps: expected real numbers"),
        (lambda: fgsm(f, xj, yj, True), "eps: expected real numbers"),
        (lambda: fgsm(f, xj, yj, 0.1 + 0j), "eps: expected real numbers"),
        (lambda: fgsm_sweep(f, xj, yj, [[0.1, 0.2]]), "eps: expected a 1-D"),
        (lambda: fgsm_sweep(f, xj, yj, ["a"]), "eps: expected real numbers"),
        (lambda: fgsm(f, xj, yj, 0.1, num_classes=100), "num_classes: expected the"),
        (lambda: fgsm(f, xj, yj, 0.1, num_classes=2.5), "num_classes: expected a"),
        (lambda: fgsm(f, xj, yj, 0.1, num_classes=0), "num_classes: expected a"),
    ]
    run = functools.partial(pgd, f, jax.random.key(0), xj, yj, 0.1, steps=1)
    cases += [
        (lambda: run(step_size=[0.01]), "step_size: expected one number"),
        (lambda: run(step_size="0.1"), "step_size: expected real numbers"),
        (lambda: run(step_size=None), "step_size: expected a positive number"),
        (
            lambda: pgd(f, 0, xj, yj, 0.1, step_size=0.1, steps=1),
            "key: expected a PRNG key",
        ),
        (
            lambda: pgd(f, "k", xj, yj, 0.1, step_size=0.1, steps=1),
            "key: expected a PRNG key",
        ),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()
    pgd(f, jax.random.PRNGKey(0), xj, yj, 0.1, step_size=0.1, steps=1)  # raw key


def test_won_images_are_not_counted_and_nan_moves_nothing(first500):
    """DLR is flat where the label ranks third (the image is already misclassified):
    that is not a vanished gradient. A NaN gradient is counted and moves nothing."""
    f, _, x, y = first500
    xj, yj = jnp.asarray(x[:200]), jnp.asarray(y[:200])
    with warnings.catch_warnings():
        warnings.simplefilter("error", VanishedGradientWarning)
        r = pgd(f, jax.random.key(0), xj, yj, 0.3, step_size=0.05, steps=10, loss="dlr")
        fgsm(f, xj, yj, 0.3, loss="dlr")
    assert not np.asarray(r.zero_gradient).any()
    nan_logits = lambda im: f(im) * jnp.nan
    with pytest.warns(VanishedGradientWarning, match="8 of 8 images"):
        out = fgsm(nan_logits, xj[:8], yj[:8], 0.1)
    np.testing.assert_array_equal(out.images, xj[:8])
