"""The CPU fast paths in ``pixjax.models.layers`` equal XLA's generic kernels."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from pixjax.models import layers

DN = ("NHWC", "HWIO", "NHWC")


@pytest.mark.parametrize(
    "cin, padding",
    [(1, ((2, 2), (2, 2))), (2, "SAME"), (1, "VALID"), (1, ((0, 1), (3, 0)))],
)
def test_conv_matches_lax(cin, padding):
    kx, kk, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.uniform(kx, (3, 11, 9, cin))
    k = jax.random.normal(kk, (5, 3, cin, 4))
    ref = lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=DN)
    out = layers.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=DN)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert layers._fast_path(x, k, (1, 1), padding, None, None, DN, 1, 1)
    # Gradients in both arguments are the convolution's.
    g = jax.random.normal(kg, ref.shape)

    def loss(conv):
        return lambda x, k: jnp.sum(
            conv(x, k, (1, 1), padding, dimension_numbers=DN) * g
        )

    gx, gk = jax.grad(loss(layers.conv_general_dilated), (0, 1))(x, k)
    rx, rk = jax.grad(loss(lax.conv_general_dilated), (0, 1))(x, k)
    np.testing.assert_allclose(gx, rx, atol=1e-5)
    np.testing.assert_allclose(gk, rk, atol=1e-4)


def test_conv_falls_back_outside_the_fast_path():
    x = jnp.ones((2, 8, 8, 3))
    k = jnp.ones((3, 3, 3, 2))
    assert not layers._fast_path(x, k, (1, 1), "SAME", None, None, DN, 1, 1)
    assert not layers._fast_path(
        x[..., :1], k[:, :, :1], (2, 2), "SAME", None, None, DN, 1, 1
    )
    out = layers.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=DN)
    ref = lax.conv_general_dilated(x, k, (2, 2), "SAME", dimension_numbers=DN)
    np.testing.assert_array_equal(out, ref)


def test_conv_in_flax_module_is_the_same_layer():
    x = jax.random.uniform(jax.random.key(1), (2, 12, 12, 1))
    plain = nn.Conv(6, (5, 5), padding=2)
    fast = nn.Conv(
        6, (5, 5), padding=2, conv_general_dilated=layers.conv_general_dilated
    )
    params = plain.init(jax.random.key(2), x)
    np.testing.assert_allclose(fast.apply(params, x), plain.apply(params, x), atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 7, 9, 2)])
def test_max_pool_matches_reduce_window_with_ties(shape):
    # Quantised values: windows often hold equal maxima (as flat backgrounds do).
    x = jnp.round(jax.random.uniform(jax.random.key(3), shape) * 3)
    ref_fn = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))  # noqa: E731
    np.testing.assert_array_equal(layers.max_pool_2x2(x), ref_fn(x))
    g = jax.random.normal(jax.random.key(4), ref_fn(x).shape)
    ours = jax.grad(lambda x: jnp.sum(layers.max_pool_2x2(x) * g))(x)
    ref = jax.grad(lambda x: jnp.sum(ref_fn(x) * g))(x)
    # The whole gradient goes to one maximum per window, the first, as in reduce_window.
    np.testing.assert_allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("shape, cin", [((4, 32, 32), 1), ((3, 15, 12), 2)])
def test_conv_relu_pool_equals_the_composition(shape, cin):
    kx, kk, kb, kg = jax.random.split(jax.random.key(5), 4)
    # quantised input: flat regions, so pooling windows hold ties
    x = jnp.round(jax.random.uniform(kx, (*shape, cin)) * 2)
    k = 0.3 * jax.random.normal(kk, (5, 5, cin, 6))
    b = 0.1 * jax.random.normal(kb, (6,))

    def ref(x, k, b):
        y = lax.conv_general_dilated(x, k, (1, 1), "VALID", dimension_numbers=DN)
        return nn.max_pool(jax.nn.relu(y + b), (2, 2), strides=(2, 2))

    out = layers.conv_relu_pool(x, k, b)
    np.testing.assert_allclose(out, ref(x, k, b), atol=1e-5)
    g = jax.random.normal(kg, out.shape)
    ours = jax.grad(lambda *a: jnp.sum(layers.conv_relu_pool(*a) * g), (0, 1, 2))(
        x, k, b
    )
    theirs = jax.grad(lambda *a: jnp.sum(ref(*a) * g), (0, 1, 2))(x, k, b)
    for o, t in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(o, t, atol=2e-4 * float(jnp.abs(t).max()))


def test_conv_relu_pool_module_has_nn_conv_parameters():
    x = jax.random.uniform(jax.random.key(6), (2, 28, 28, 1))
    fused = layers.ConvReluPool(6, (5, 5), padding=2)
    params = fused.init(jax.random.key(7), x)
    plain = nn.Conv(6, (5, 5), padding=2)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, plain.init(jax.random.key(7), x)
    )
    expected = nn.max_pool(jax.nn.relu(plain.apply(params, x)), (2, 2), strides=(2, 2))
    np.testing.assert_allclose(fused.apply(params, x), expected, atol=1e-5)
