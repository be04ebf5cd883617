"""Multinomial logistic regression with scikit-learn's L2 convention, trained with optax.

The objective is scikit-learn's (``LogisticRegression(C=C)``, lbfgs, multinomial)::

    0.5 * ||W||^2 + C * sum_i cross_entropy(x_i W + b, y_i)      (b not penalised)

minimised full-batch with ``optax.lbfgs`` (zoom line search) inside one
``lax.while_loop``: pure, ``jit``-able and ``vmap``-able over ``C`` values and over
datasets (folds) of equal shape; padded rows are excluded with ``weights``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax

from pixjax.data.base import check_labels


class LogisticParams(NamedTuple):
    """Attributes: kernel ``[n_features, classes]`` (scikit-learn's ``coef_.T``),
    bias ``[classes]`` (``intercept_``)."""

    kernel: jax.Array
    bias: jax.Array


def check_c(c) -> None:
    values = np.atleast_1d(np.asarray(c, dtype=float))
    if not (np.isfinite(values) & (values > 0)).all():
        raise ValueError(f"C: expected a number > 0 (inverse L2 strength), got {c!r}")


def objective(
    params: LogisticParams,
    x: jax.Array,
    y: jax.Array,
    c: float | jax.Array,
    weights: jax.Array | None = None,
) -> jax.Array:
    """scikit-learn's penalised loss (see the module docstring), scaled by ``1 / C``
    so its magnitude does not depend on ``C`` (same minimiser)."""
    logits = x @ params.kernel + params.bias
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    if weights is not None:
        ce = ce * weights
    return jnp.sum(ce) + 0.5 / c * jnp.sum(params.kernel**2)


def fit_logistic(
    x: jax.Array,
    y: jax.Array,
    *,
    c: float | jax.Array = 1.0,
    num_classes: int,
    max_iter: int = 100,
    tol: float = 1e-4,
    weights: jax.Array | None = None,
) -> LogisticParams:
    """Fits ``LogisticRegression(C=c, max_iter=max_iter, tol=tol)``'s model.

    Args:
      x: ``[N, F]`` features.
      y: ``[N]`` int classes in ``[0, num_classes)``.
      c: inverse regularisation strength (may be traced: ``vmap`` over C values).
      num_classes: static.
      max_iter: L-BFGS iterations at most (scikit-learn's default 100).
      tol: stop when the largest gradient entry of the (sample-averaged) loss is below
        it, scikit-learn's ``pgtol`` criterion.
      weights: ``[N]`` 0/1 row weights (padding of a vmapped fold gets 0).

    Returns:
      :class:`LogisticParams`.

    Raises:
      ValueError: ``c`` not positive and finite; ``y`` not integer, of the wrong shape
        or (when not traced) outside ``0 .. num_classes - 1``.
    """
    if not isinstance(c, jax.core.Tracer):
        check_c(c)
    check_labels(y, num_classes, num_images=x.shape[0], argument="y")
    x = jnp.asarray(x, jnp.float32)
    n_rows = x.shape[0] if weights is None else jnp.sum(weights)
    init = LogisticParams(
        jnp.zeros((x.shape[1], num_classes), jnp.float32),
        jnp.zeros((num_classes,), jnp.float32),
    )

    def loss(p):
        return objective(p, x, y, c, weights) / n_rows

    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(loss)

    def cond(carry):
        _, _, it, gmax = carry
        return (it < max_iter) & (gmax > tol)

    def body(carry):
        params, state, it, _ = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(
            grad, state, params, value=value, grad=grad, value_fn=loss
        )
        params = optax.apply_updates(params, updates)
        gmax = jnp.max(jnp.abs(jax.flatten_util.ravel_pytree(grad)[0]))
        return params, state, it + 1, gmax

    carry = (init, opt.init(init), jnp.asarray(0), jnp.asarray(jnp.inf))
    params, *_ = jax.lax.while_loop(cond, body, carry)
    return params


def predict_proba(params: LogisticParams, x: jax.Array) -> jax.Array:
    """Class probabilities ``[N, classes]``."""
    return jax.nn.softmax(x @ params.kernel + params.bias, axis=-1)


def predict(params: LogisticParams, x: jax.Array) -> jax.Array:
    """Predicted classes ``[N]``."""
    return jnp.argmax(x @ params.kernel + params.bias, axis=-1)
