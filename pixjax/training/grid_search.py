"""Vectorised grid search with k-fold cross-validation for the RBM -> logistic
regression pipeline (the protocol of the RBM nudge study; scikit-learn's
``GridSearchCV(Pipeline([("rbm", BernoulliRBM), ("logistic", LogisticRegression)]))``).

How the grid becomes a handful of compiled calls:

* the logistic regression's ``C`` does not change the RBM: each (learning rate,
  ``n_iter``, ``n_components``, fold) RBM is fitted once and its features serve every C;
* ``n_iter`` values are epochs of one run: one scan to the largest returns snapshots at
  the others (:func:`pixjax.models.rbm.fit` ``snapshots``);
* learning rates and folds share one compiled call (folds padded to equal length, the
  padding masked); ``n_components`` changes shapes, so there is one RBM call and one
  logistic regression call (over learning rates x folds x snapshots x C) per value.
  Inside a call the models are ``vmap``-ped on an accelerator and looped over with
  ``jax.lax.map`` on the CPU (``map_batch``).

The original 81-point grid with 3 folds is 6 compiled calls.
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.models import rbm
from pixjax.training import logistic
from pixjax.types import PRNGKey


def stratified_kfold(labels: np.ndarray, folds: int) -> list[np.ndarray]:
    """Validation indices of ``folds`` stratified folds, in data order, no shuffling.

    Each class's samples (in order) are cut into ``folds`` contiguous chunks whose sizes
    differ by at most one; fold ``f`` takes chunk ``f`` of every class (as scikit-learn's
    ``StratifiedKFold(shuffle=False)`` does in spirit; its exact assignment differs).

    Raises:
      ValueError: ``folds < 2`` or more folds than samples of the smallest class.
    """
    labels = np.asarray(labels)
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds: expected an integer >= 2, got {folds!r}")
    classes, counts = np.unique(labels, return_counts=True)
    if len(labels) < folds or counts.min() < folds:
        small = classes[np.argmin(counts)]
        raise ValueError(
            f"folds: expected at most {int(min(len(labels), counts.min()))} (the "
            f"samples of the smallest class, label {small}: check the labels), got "
            f"{folds}"
        )
    out: list[list[np.ndarray]] = [[] for _ in range(folds)]
    for c in classes:
        for f, chunk in enumerate(np.array_split(np.flatnonzero(labels == c), folds)):
            out[f].append(chunk)
    return [np.sort(np.concatenate(parts)) for parts in out]


def _padded_folds(n: int, val_folds: list[np.ndarray]):
    """Train index arrays padded to equal length ``[F, L]`` and their true lengths."""
    train = [np.setdiff1d(np.arange(n), v) for v in val_folds]
    length = max(len(t) for t in train)
    idx = np.stack([np.pad(t, (0, length - len(t))) for t in train])
    return idx, np.array([len(t) for t in train])


def _over(fn, xs, map_batch: int | None):
    """``fn`` over the leading axis of the pytree ``xs``: one ``vmap`` (``map_batch``
    None) or ``jax.lax.map`` in groups of ``map_batch``."""
    if map_batch is None:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=None if map_batch == 1 else map_batch)


@functools.partial(
    jax.jit, static_argnames=("n_components", "batch_size", "snaps", "map_batch")
)
def _fit_models(
    keys, x_train, n_train, lrs, *, n_components, batch_size, snaps, map_batch
):
    """RBMs of every (fold, learning rate): parameter leaves ``[F, I, S, ...]``."""

    def per_fold(fold):
        k_f, x_f, n_f = fold

        def per_lr(run):
            k, lr = run
            return rbm.fit(
                k,
                x_f,
                n_components=n_components,
                learning_rate=lr,
                batch_size=batch_size,
                n_iter=snaps[-1],
                snapshots=snaps,
                n_valid=n_f,
            )

        return _over(per_lr, (k_f, lrs), map_batch)

    return _over(per_fold, (keys, x_train, n_train), map_batch)


@functools.partial(jax.jit, static_argnames=("num_classes", "max_iter", "map_batch"))
def _score_models(
    params,
    x_train,
    y_train,
    train_w,
    x_val,
    y_val,
    val_mask,
    c_arr,
    *,
    num_classes,
    max_iter,
    map_batch,
):
    """Validation accuracy ``[F, I, S, C]`` of a logistic regression per C on the
    features of every RBM."""

    def per_fold(fold):
        p_f, xt, yt, w, xv, yv, vm = fold

        def per_model(p):
            ft, fv = rbm.transform(p, xt), rbm.transform(p, xv)

            def per_c(c):
                lp = logistic.fit_logistic(
                    ft,
                    yt,
                    c=c,
                    num_classes=num_classes,
                    max_iter=max_iter,
                    weights=w.astype(jnp.float32),
                )
                hit = (logistic.predict(lp, fv) == yv) & vm
                return jnp.sum(hit) / jnp.sum(vm)

            return _over(per_c, c_arr, map_batch)

        per_lr = lambda p_i: _over(per_model, p_i, map_batch)  # over snapshots
        return _over(per_lr, p_f, map_batch)

    folds = (params, x_train, y_train, train_w, x_val, y_val, val_mask)
    return _over(per_fold, folds, map_batch)


def grid_search_rbm_lr(
    key: PRNGKey,
    x: np.ndarray,
    y: np.ndarray,
    *,
    learning_rates: Sequence[float],
    n_iters: Sequence[int],
    n_components: Sequence[int],
    cs: Sequence[float],
    folds: int = 3,
    batch_size: int = 10,
    num_classes: int | None = None,
    lr_max_iter: int = 100,
    map_batch: int | None = None,
) -> dict[str, Any]:
    """Cross-validated accuracy of every (learning rate, n_iter, n_components, C).

    Args:
      key: RBM randomness; fold ``f`` and learning rate ``i`` use
        ``fold_in(fold_in(key, f), i)`` for every ``n_components``.
      x: ``[N, D]`` values in ``[0, 1]``.
      y: ``[N]`` int labels.
      learning_rates, n_iters, n_components, cs: the grid's axes.
      folds: stratified folds (:func:`stratified_kfold`).
      batch_size: RBM batch size.
      num_classes: default ``max(y) + 1``.
      lr_max_iter: L-BFGS iterations of each logistic regression.
      map_batch: along each axis of the models (folds, learning rates, snapshots,
        C), how many are computed together under ``vmap``; the groups run one after
        the other (``jax.lax.map(..., batch_size=map_batch)``). Default: all of them
        at once on an accelerator, one at a time on the CPU, where XLA runs a
        ``vmap`` of small matmuls, and a batched ``while_loop`` that waits for its
        slowest member, slower than a loop (measured: logistic regressions 5x,
        200-component RBMs 1.5x). The results do not depend on it (up to float
        rounding).

    Returns:
      ``{"params": [{"learning_rate", "n_iter", "n_components", "C"}, ...],
      "scores": [P, folds] accuracy, "mean": [P], "std": [P] (over folds, population sd
      ddof=0 as scikit-learn's ``std_test_score``), "best_index": int,
      "best_params": dict, "compiled_calls": int, "stage_seconds": {n_components:
      {"rbm": s, "logistic": s}}}`` (wall time, compilation included) in the order of
      ``itertools.product(learning_rates, n_iters, n_components, cs)`` (P points).
    """
    rbm.check_data(x)
    y = np.asarray(y)
    if y.shape != (len(x),):
        raise ValueError(f"y: expected shape ({len(x)},), got {y.shape}")
    for name, axis in (
        ("learning_rates", learning_rates),
        ("n_iters", n_iters),
        ("n_components", n_components),
        ("cs", cs),
    ):
        if len(axis) == 0:
            raise ValueError(f"{name}: expected at least one value, got none")
    rbm.check_hyperparameters(
        n_components=list(n_components),
        learning_rate=list(learning_rates),
        batch_size=batch_size,
        n_iter=list(n_iters),
    )
    logistic.check_c(list(cs))
    if map_batch is None:
        map_batch = 1 if jax.default_backend() == "cpu" else None
    elif isinstance(map_batch, bool) or not isinstance(map_batch, int) or map_batch < 1:
        raise ValueError(
            f"map_batch: expected None or a positive integer, got {map_batch!r}"
        )
    num_classes = int(num_classes or y.max() + 1)
    val_folds = stratified_kfold(y, folds)
    train_idx, n_train = _padded_folds(len(x), val_folds)
    val_len = max(len(v) for v in val_folds)
    val_idx = np.stack([np.pad(v, (0, val_len - len(v))) for v in val_folds])
    val_mask = np.arange(val_len)[None] < np.array([len(v) for v in val_folds])[:, None]
    snaps = sorted(set(int(i) for i in n_iters))
    xj = jnp.asarray(x, jnp.float32)
    x_train, y_train = xj[train_idx], jnp.asarray(y[train_idx])  # [F, L, D], [F, L]
    x_val, y_val = xj[val_idx], jnp.asarray(y[val_idx])
    train_w = jnp.asarray(np.arange(train_idx.shape[1])[None] < n_train[:, None])
    lrs = jnp.asarray(learning_rates, jnp.float32)
    c_arr = jnp.asarray(cs, jnp.float32)
    keys = jax.vmap(
        lambda f: jax.vmap(lambda i: jax.random.fold_in(f, i))(
            jnp.arange(len(learning_rates))
        )
    )(jax.vmap(lambda f: jax.random.fold_in(key, f))(jnp.arange(folds)))  # [F, I]

    acc = {}  # (n_components) -> [I, S, C, F]
    seconds = {}  # (n_components) -> wall seconds of the two calls
    calls = 0
    for nc in n_components:
        t0 = time.perf_counter()
        params = _fit_models(
            keys,
            x_train,
            jnp.asarray(n_train),
            lrs,
            n_components=int(nc),
            batch_size=int(batch_size),
            snaps=tuple(snaps),
            map_batch=map_batch,
        )  # leaves [F, I, S, ..]
        params = jax.block_until_ready(params)
        t1 = time.perf_counter()
        scores = _score_models(
            params,
            x_train,
            y_train,
            train_w,
            x_val,
            y_val,
            jnp.asarray(val_mask),
            c_arr,
            num_classes=num_classes,
            max_iter=int(lr_max_iter),
            map_batch=map_batch,
        )  # [F, I, S, C]
        acc[nc] = np.asarray(scores).transpose(1, 2, 3, 0)  # [I, S, C, F]
        seconds[int(nc)] = {"rbm": t1 - t0, "logistic": time.perf_counter() - t1}
        calls += 2

    points, rows = [], []
    for (i, lr), n_iter, nc, (ci, c) in itertools.product(
        enumerate(learning_rates), n_iters, n_components, enumerate(cs)
    ):
        points.append(
            {
                "learning_rate": float(lr),
                "n_iter": int(n_iter),
                "n_components": int(nc),
                "C": float(c),
            }
        )
        rows.append(acc[nc][i, snaps.index(int(n_iter)), ci])
    scores = np.stack(rows)
    mean, std = scores.mean(axis=1), scores.std(axis=1)
    best = int(np.argmax(mean))  # first best, as GridSearchCV's rank 1
    return {
        "params": points,
        "scores": scores,
        "mean": mean,
        "std": std,
        "best_index": best,
        "best_params": points[best],
        "compiled_calls": calls,
        "stage_seconds": seconds,
    }
