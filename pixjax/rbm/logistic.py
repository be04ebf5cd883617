"""Multinomial logistic regression (L2, scikit-learn's ``C``) and the RBM pipeline.

The classifier of the RBM nudge study: scikit-learn's ``LogisticRegression`` with its
default ``lbfgs`` solver, which for more than two classes fits the multinomial
(softmax) model with an L2 penalty on the coefficients only::

    minimise  0.5 * ||W||^2 + C * sum_i w_i CE(softmax(x_i W^T + b), y_i)

(``w_i`` sample weights, 1 by default). Like scikit-learn, the optimiser works on the
same objective divided by ``C * sum_i w_i`` (a weighted mean cross-entropy plus
``||W||^2 / (2 C sum_i w_i)``), which has the same minimiser, and stops when the
largest absolute gradient entry of that objective is ``<= tol`` (scipy's ``gtol``;
default ``1e-4``) or after ``max_iter`` iterations (default 100), or when an iteration
no longer lowers it. The solver is ``optax.lbfgs`` (memory 10, zoom line search with
strong Wolfe conditions), full batch, from zeros, inside one ``lax.while_loop``: the
fit is pure, jit-able and vmap-able over ``C``, folds (through ``sample_weight``
masks) and feature sets. Computation is float32 where scikit-learn uses float64;
well-converged fits agree to ~1e-3 in the coefficients.

Orientation: ``LogisticParams.coef`` is ``[num_classes, n_features]`` as
scikit-learn's ``coef_``. Labels are integers ``0..num_classes-1``.

The pipeline (:func:`fit_pipeline`, :func:`pipeline_predict`) is scikit-learn's
``Pipeline([("rbm", BernoulliRBM(...)), ("logistic", LogisticRegression(C=...))])``:
the classifier is trained on the RBM's ``transform`` of the training data.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pixjax.rbm import rbm
from pixjax.types import PRNGKey


class LogisticParams(NamedTuple):
    """Parameters of a multinomial logistic regression (a pytree).

    Attributes:
      coef: float32 ``[num_classes, n_features]`` (scikit-learn's ``coef_``).
      intercept: float32 ``[num_classes]`` (scikit-learn's ``intercept_``).
    """

    coef: jax.Array
    intercept: jax.Array


class LogisticInfo(NamedTuple):
    """How a fit ended (arrays; one value per fit under ``vmap``).

    Attributes:
      n_iter: int32, L-BFGS iterations done.
      grad_max: float32, largest absolute gradient entry at the end (``<= tol``:
        converged).
      loss: float32, the scaled objective at the end.
    """

    n_iter: jax.Array
    grad_max: jax.Array
    loss: jax.Array


def decision_function(params: LogisticParams, X: jax.Array) -> jax.Array:
    """Class scores (logits) ``[N, num_classes]`` of features ``X`` ``[N,
    n_features]``."""
    return X @ params.coef.T + params.intercept


def predict_proba(params: LogisticParams, X: jax.Array) -> jax.Array:
    """Class probabilities ``[N, num_classes]`` (softmax of the scores)."""
    return jax.nn.softmax(decision_function(params, X), axis=-1)


def predict(params: LogisticParams, X: jax.Array) -> jax.Array:
    """Predicted classes ``[N]`` int32 (the first of tied maxima, as numpy)."""
    return jnp.argmax(decision_function(params, X), axis=-1).astype(jnp.int32)


def scaled_objective(
    params: LogisticParams,
    X: jax.Array,
    y: jax.Array,
    C: jax.Array | float,
    sample_weight: jax.Array | None = None,
) -> jax.Array:
    """``(0.5 ||coef||^2 + C sum_i w_i CE_i) / (C sum_i w_i)``, the function the
    solver minimises (intercept not penalised)."""
    logits = decision_function(params, X)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    if sample_weight is None:
        total, mean_ce = X.shape[0], jnp.mean(ce)
    else:
        total = jnp.sum(sample_weight)
        mean_ce = jnp.sum(sample_weight * ce) / total
    return mean_ce + 0.5 * jnp.sum(params.coef**2) / (C * total)


def make_fit_logistic(
    num_classes: int, *, max_iter: int = 100, tol: float = 1e-4, memory_size: int = 10
) -> Callable[..., tuple[LogisticParams, LogisticInfo]]:
    """Builds the pure fit ``fit_fn(X, y, C, sample_weight=None) -> (params, info)``.

    ``X`` ``[N, n_features]`` float, ``y`` ``[N]`` int in ``0..num_classes-1``, ``C``
    a (traceable) positive scalar, ``sample_weight`` optional ``[N]`` (e.g. a 0 / 1
    fold mask). ``jax.vmap`` it over ``C`` and over masks / feature sets.

    Args:
      num_classes: classes (static).
      max_iter: L-BFGS iterations at most (scikit-learn default 100).
      tol: stop when the largest absolute gradient entry is ``<= tol``.
      memory_size: L-BFGS history (scipy's ``maxcor``, 10).
    """
    rbm.check_positive_int(num_classes, "num_classes")
    rbm.check_positive_int(max_iter, "max_iter")
    rbm.check_positive_float(tol, "tol")
    opt = optax.lbfgs(
        memory_size=memory_size,
        linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=50),
    )

    def fit_fn(X, y, C, sample_weight=None):
        X = jnp.asarray(X, jnp.float32)
        y = jnp.asarray(y, jnp.int32)
        C = jnp.asarray(C, jnp.float32)
        params = LogisticParams(
            coef=jnp.zeros((num_classes, X.shape[1]), jnp.float32),
            intercept=jnp.zeros((num_classes,), jnp.float32),
        )
        loss = functools.partial(
            scaled_objective, X=X, y=y, C=C, sample_weight=sample_weight
        )
        value_and_grad = optax.value_and_grad_from_state(loss)
        state = opt.init(params)
        value0, grad0 = jax.value_and_grad(loss)(params)

        def grad_max(g):
            return jnp.maximum(jnp.max(jnp.abs(g.coef)), jnp.max(jnp.abs(g.intercept)))

        def cond(carry):
            _, _, it, gmax, decreased, _ = carry
            return (it < max_iter) & (gmax > tol) & decreased

        def body(carry):
            params, state, it, _, _, value = carry
            v, g = value_and_grad(params, state=state)
            updates, state = opt.update(
                g, state, params, value=v, grad=g, value_fn=loss
            )
            params = optax.apply_updates(params, updates)
            new_value = optax.tree.get(state, "value")
            new_grad = optax.tree.get(state, "grad")
            return (
                params,
                state,
                it + 1,
                grad_max(new_grad),
                new_value < value,
                new_value,
            )

        carry = (params, state, jnp.int32(0), grad_max(grad0), jnp.bool_(True), value0)
        params, state, it, gmax, _, value = jax.lax.while_loop(cond, body, carry)
        return params, LogisticInfo(n_iter=it, grad_max=gmax, loss=value)

    return fit_fn


@functools.lru_cache(maxsize=32)
def _jitted_fit_logistic(num_classes, max_iter, tol):
    return jax.jit(make_fit_logistic(num_classes, max_iter=max_iter, tol=tol))


def fit_logistic(
    X: jax.Array | np.ndarray,
    y: jax.Array | np.ndarray,
    *,
    C: float = 1.0,
    num_classes: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
    sample_weight: jax.Array | np.ndarray | None = None,
) -> LogisticParams:
    """Fits scikit-learn's ``LogisticRegression(C=C)`` (multinomial, lbfgs).

    Args:
      X: ``[N, n_features]`` finite features.
      y: ``[N]`` integer labels in ``0..num_classes-1``.
      C: inverse regularisation strength (> 0).
      num_classes: classes; default ``max(y) + 1``.
      max_iter: L-BFGS iterations at most.
      tol: gradient tolerance (see the module docstring).
      sample_weight: optional ``[N]`` non-negative weights.

    Returns:
      The fitted :class:`LogisticParams` (see :func:`make_fit_logistic` for the
      convergence info).

    Raises:
      ValueError: naming the bad argument, before any work.
    """
    X, y = check_features_labels(X, y)
    num_classes = check_num_classes(num_classes, y)
    rbm.check_positive_float(C, "C")
    rbm.check_positive_int(max_iter, "max_iter")
    rbm.check_positive_float(tol, "tol")
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, np.float32)
        if sample_weight.shape != y.shape or np.any(sample_weight < 0):
            raise ValueError(
                f"sample_weight: expected {y.shape[0]} non-negative weights, got "
                f"shape {sample_weight.shape}"
            )
    fit_fn = _jitted_fit_logistic(num_classes, int(max_iter), float(tol))
    params, _ = fit_fn(X, y, jnp.float32(C), sample_weight)
    return params


# --------------------------------------------------------------------------- pipeline


class PipelineParams(NamedTuple):
    """An RBM feature extractor and the logistic regression on its features."""

    rbm: rbm.RBMParams
    logistic: LogisticParams


def pipeline_predict_proba(params: PipelineParams, X: jax.Array) -> jax.Array:
    """Class probabilities ``[N, num_classes]`` of visible vectors ``X`` ``[N,
    n_visible]`` in ``[0, 1]``."""
    return predict_proba(params.logistic, rbm.transform(params.rbm, X))


def pipeline_predict(params: PipelineParams, X: jax.Array) -> jax.Array:
    """Predicted classes ``[N]`` int32 of ``X`` ``[N, n_visible]`` in ``[0, 1]``."""
    return predict(params.logistic, rbm.transform(params.rbm, X))


def fit_pipeline(
    key: PRNGKey,
    X: jax.Array | np.ndarray,
    y: jax.Array | np.ndarray,
    *,
    n_components: int = 256,
    learning_rate: float = 0.1,
    batch_size: int = 10,
    n_iter: int = 10,
    C: float = 1.0,
    num_classes: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> PipelineParams:
    """Fits the RBM on ``X``, then the logistic regression on its features.

    Args:
      key: PRNG key of the RBM.
      X: ``[N, n_visible]`` in ``[0, 1]``.
      y: ``[N]`` integer labels.
      n_components, learning_rate, batch_size, n_iter: the RBM's (:func:`rbm.fit`).
      C, num_classes, max_iter, tol: the classifier's (:func:`fit_logistic`).

    Returns:
      :class:`PipelineParams`.

    Raises:
      ValueError: naming the bad argument, before any work.
    """
    X = rbm.check_visible(X, "X")
    _, y = check_features_labels(X, y)
    num_classes = check_num_classes(num_classes, y)
    rbm.check_hyperparameters(
        n_components=n_components,
        learning_rate=learning_rate,
        batch_size=batch_size,
        n_iter=n_iter,
    )
    rbm.check_positive_float(C, "C")
    rbm.check_positive_int(max_iter, "max_iter")
    rbm.check_positive_float(tol, "tol")
    rbm_params = rbm.fit(
        key,
        X,
        n_components=n_components,
        learning_rate=learning_rate,
        batch_size=batch_size,
        n_iter=n_iter,
    )
    features = _jitted_transform(rbm_params, X)
    clf = fit_logistic(
        features, y, C=C, num_classes=num_classes, max_iter=max_iter, tol=tol
    )
    return PipelineParams(rbm=rbm_params, logistic=clf)


_jitted_transform = jax.jit(rbm.transform)


# --------------------------------------------------------------------------- checks


def check_features_labels(X, y) -> tuple[jax.Array, np.ndarray]:
    """``X`` ``[N, F]`` finite floats and ``y`` ``[N]`` non-negative ints.

    Raises:
      ValueError: naming ``X`` or ``y`` and what was expected.
    """
    if isinstance(X, jax.core.Tracer):
        raise ValueError(
            "X: expected a concrete array (call the make_* functions inside jit)"
        )
    arr = np.asarray(X)
    if arr.ndim != 2 or 0 in arr.shape:
        raise ValueError(
            f"X: expected a non-empty 2-D array [n_samples, n_features], got shape "
            f"{arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError("X: expected finite values, got NaN or inf")
    labels = np.asarray(y)
    if labels.shape != (arr.shape[0],):
        raise ValueError(
            f"y: expected {arr.shape[0]} labels (one per row of X), got shape "
            f"{labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise ValueError(
            f"y: expected integer class labels 0..num_classes-1, got dtype "
            f"{labels.dtype} with minimum {labels.min()}"
        )
    return jnp.asarray(arr, jnp.float32), labels.astype(np.int32)


def check_num_classes(num_classes, y: np.ndarray) -> int:
    """``num_classes`` (default ``max(y) + 1``), at least 2 and above every label."""
    top = int(y.max()) + 1
    if num_classes is None:
        num_classes = top
    num_classes = rbm.check_positive_int(num_classes, "num_classes")
    if num_classes < 2 or num_classes < top:
        raise ValueError(
            f"num_classes: expected an integer >= 2 and > every label (max label "
            f"{top - 1}), got {num_classes}"
        )
    return num_classes
