"""The padded batched predictor (pixjax.evaluation.predict): parity with one unbatched
call for N not a multiple of the batch size, one trace for several calls (short last
batch included), uint8 and float images giving the same predictions, map_batches'
output axes / empty input / errors, and the same numbers split over 8 devices."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pixjax import data
from pixjax.evaluation import accuracy, map_batches, predict

TRACES = {"linear": 0}


def linear(variables, x):
    """A toy classifier ``[B, 4, 4, 1] -> [B, 3]``; counts its traces."""
    TRACES["linear"] += 1
    return x.reshape(x.shape[0], -1) @ variables["w"] + variables["b"]


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(0)
    variables = {
        "w": jnp.asarray(rng.normal(size=(16, 3)), jnp.float32),
        "b": jnp.asarray([0.1, -0.2, 0.0], jnp.float32),
    }
    images = rng.integers(0, 256, size=(23, 4, 4, 1), dtype=np.uint8)
    return variables, images


def test_parity_with_one_unbatched_call(toy, lenet, mnist_test):
    variables, images = toy
    logits = linear(variables, data.to_float(jnp.asarray(images)))
    labels, conf = predict(linear, variables, images, batch_size=5)  # 5+5+5+5+3
    assert labels.shape == conf.shape == (23,)
    assert labels.dtype == np.int32 and conf.dtype == np.float32
    np.testing.assert_array_equal(labels, np.argmax(logits, -1))
    np.testing.assert_allclose(conf, jax.nn.softmax(logits).max(-1), rtol=1e-6)

    module, lv, _ = lenet
    x = mnist_test.images[:250]
    logits = module.apply(lv, data.to_float(jnp.asarray(x)))
    labels, conf = predict(module.apply, lv, x, batch_size=64)  # 3 x 64 + 58
    np.testing.assert_array_equal(labels, np.argmax(logits, -1))
    np.testing.assert_allclose(conf, jax.nn.softmax(logits).max(-1), rtol=1e-5)
    acc = accuracy(module.apply, lv, x, mnist_test.labels[:250], batch_size=64)
    assert acc == float(np.mean(labels == mnist_test.labels[:250]))


def test_one_trace_for_every_call_of_one_batch_shape(toy):
    variables, images = toy
    predict(linear, variables, images, batch_size=5)  # compiles for [5, 4, 4, 1]
    traces = TRACES["linear"]
    for n in (23, 17, 12, 6):  # short last batches of 3, 2, 2 and 1 images
        labels, _ = predict(linear, variables, images[:n], batch_size=5)
        assert labels.shape == (n,)
    assert TRACES["linear"] == traces


def test_uint8_and_float_images_give_the_same_predictions(lenet, mnist_test):
    module, variables, _ = lenet
    u8 = mnist_test.images[:300]
    labels, conf = predict(module.apply, variables, u8, batch_size=128)
    # confidences agree to float rounding: XLA may move the scaling of uint8 images
    # through the first layer, and numpy's exact division differs from XLA's
    # multiplication by 1/255 by one unit in the last place for some pixels
    for floats in (data.to_float(jnp.asarray(u8)), u8.astype(np.float64) / 255):
        same = predict(module.apply, variables, floats, 128)
        np.testing.assert_array_equal(same[0], labels)
        np.testing.assert_allclose(same[1], conf, rtol=1e-5)


def test_map_batches_axes_and_empty_input():
    x = np.arange(7 * 2, dtype=np.float32).reshape(7, 2)
    y = np.arange(7, dtype=np.int32)

    @jax.jit
    def fn(scale, xb, yb):  # outputs [B, 2] and [3, B]
        return xb * scale, jnp.stack([yb, yb + 1, yb + 2])

    a, b = map_batches(fn, [x, y], batch_size=3, broadcast=(2.0,), out_axes=(0, 1))
    np.testing.assert_array_equal(a, x * 2)
    np.testing.assert_array_equal(b, np.stack([y, y + 1, y + 2]))
    a, b = map_batches(
        fn, [x[:0], y[:0]], batch_size=3, broadcast=(2.0,), out_axes=(0, 1)
    )
    assert a.shape == (0, 2) and b.shape == (3, 0) and b.dtype == np.int32


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda v, x: predict(linear, v, x[0]), "images: expected a 4-D array"),
        (
            lambda v, x: predict(linear, v, x.astype(np.int32)),
            "images: expected uint8 values 0..255 or floating",
        ),
        (
            lambda v, x: predict(linear, v, x.astype(np.float32)),
            r"images: expected values in \[0, 1\]",
        ),
        (
            lambda v, x: predict(linear, v, x, batch_size=0),
            "batch_size: expected a positive integer",
        ),
        (
            lambda v, x: accuracy(linear, v, x, np.zeros(5, np.int32)),
            r"labels: expected shape \(23,\)",
        ),
        (
            lambda v, x: map_batches(linear, [x, x[:5]], batch_size=4),
            "batched: expected arrays sharing their leading axis",
        ),
    ],
)
def test_bad_input_is_one_clear_error(toy, call, match):
    with pytest.raises(ValueError, match=match):
        call(*toy)


SHARDED = """
import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ["JAX_PLATFORMS"] = "cpu"
import jax, numpy as np
from pixjax import checkpoints, data, sharding
from pixjax.evaluation import predict
module, v, _ = checkpoints.load_model({ck!r})
x = data.load("mnist-sample", "test").images[:203]
assert jax.device_count() == 8
one = predict(module.apply, v, x, batch_size=64)
eight = predict(module.apply, v, x, batch_size=64, mesh=sharding.data_mesh())
np.testing.assert_array_equal(one[0], eight[0])
np.testing.assert_allclose(one[1], eight[1], rtol=1e-6)
print("ok", len(eight[0]))
"""


def test_sharded_over_8_devices_equals_one_device():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = SHARDED.format(ck=os.path.join(root, "checkpoints", "lenet5-mnist"))
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "XLA_FLAGS"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok 203"
