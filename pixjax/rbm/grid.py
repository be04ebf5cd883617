"""Vectorised grid search with k-fold cross-validation for the RBM pipeline.

The RBM nudge study picks its hyperparameters with scikit-learn's
``GridSearchCV(Pipeline([rbm, logistic]), grid, cv=3)`` over RBM ``learning_rate`` x
``n_iter`` x ``n_components`` x ``C`` of the classifier (81 points, 3 folds: 243
pipelines, each fitting an RBM). :func:`grid_search` computes the same scores with
far less work and few compiled calls:

* ``C`` does not change the RBM: each ``(learning_rate, n_iter, n_components, fold,
  seed)`` RBM is fitted once and its features serve every ``C`` (3x less RBM work on
  the protocol's grid);
* ``n_iter`` values are prefixes of one run: one run of ``max(n_iter)`` epochs with
  snapshots after each requested epoch count gives every ``n_iter`` exactly;
* learning rates, folds and seeds are ``vmap`` axes of one training (batched
  matmuls), and the logistic regressions are vmapped over ``C`` and every RBM;
* one jitted call per ``n_components`` value (the shapes differ) does the RBM
  training, the features, the classifiers and the fold scores: 3 calls for the
  protocol's grid.

Scores are fold accuracies, as ``GridSearchCV``'s default for classifiers; the result
mirrors ``cv_results_`` (mean, population standard deviation over folds, rank with
ties sharing the best rank) and picks the first best point, as scikit-learn does.
Randomness: the RBMs of seed ``s`` and fold ``f`` use ``fold_in(fold_in(key, s),
f)`` whatever their learning rate and size (common random numbers across grid
points, like a fixed ``random_state`` in scikit-learn); ``seeds > 1`` averages each
fold's score over independently seeded RBMs.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pixjax.rbm import logistic, rbm
from pixjax.types import PRNGKey


@dataclasses.dataclass(frozen=True)
class Grid:
    """The hyperparameter grid (each field a tuple of values to try).

    The defaults are the RBM nudge study's grid (PyImageSearch): 3 x 3 x 3 x 3 = 81
    points.
    """

    learning_rate: tuple[float, ...] = (0.1, 0.01, 0.001)
    n_iter: tuple[int, ...] = (20, 40, 80)
    n_components: tuple[int, ...] = (50, 100, 200)
    C: tuple[float, ...] = (1.0, 10.0, 100.0)

    @classmethod
    def from_mapping(cls, grid: Mapping[str, Sequence]) -> Grid:
        """A :class:`Grid` from ``{"learning_rate": [...], ...}`` (missing keys take
        the default values)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(grid) - set(names))
        if unknown:
            raise ValueError(f"grid: unknown keys {unknown}; expected keys {names}")
        return cls(**{k: tuple(v) for k, v in grid.items()})

    def points(self) -> list[dict[str, Any]]:
        """Every combination, ``learning_rate`` varying slowest and ``C`` fastest."""
        return [
            {"learning_rate": lr, "n_iter": it, "n_components": nc, "C": c}
            for lr, it, nc, c in itertools.product(
                self.learning_rate, self.n_iter, self.n_components, self.C
            )
        ]

    def validate(self) -> None:
        """Checks every value, before any work.

        Raises:
          ValueError: naming the field, the bad value and the accepted values.
        """
        for f in dataclasses.fields(self):
            values = getattr(self, f.name)
            if not isinstance(values, tuple) or len(values) == 0:
                raise ValueError(
                    f"grid: {f.name} needs at least one value, got {values!r}"
                )
            if len(set(values)) != len(values):
                raise ValueError(f"grid: {f.name} has repeated values {values}")
        for v in self.learning_rate:
            rbm.check_positive_float(v, "grid learning_rate")
        for v in self.n_iter:
            rbm.check_positive_int(v, "grid n_iter")
        for v in self.n_components:
            rbm.check_positive_int(v, "grid n_components")
        for v in self.C:
            rbm.check_positive_float(v, "grid C")


PROTOCOL_GRID = Grid()


class GridResult(NamedTuple):
    """Scores of every grid point (the fields of scikit-learn's ``cv_results_``).

    Attributes:
      params: ``[P]`` dicts ``{"learning_rate", "n_iter", "n_components", "C"}`` in
        :meth:`Grid.points` order.
      split_test_scores: ``[P, folds]`` accuracy on each held-out fold (mean over
        seeds).
      seed_test_scores: ``[P, folds, seeds]`` the same per seed.
      mean_test_score: ``[P]`` mean over folds.
      std_test_score: ``[P]`` population standard deviation over folds.
      rank_test_score: ``[P]`` int, 1 = best; tied means share the best rank.
      best_index: the first point with the highest mean score.
      best_params: ``params[best_index]``.
      best_score: ``mean_test_score[best_index]``.
      folds: the ``(train_index, test_index)`` pairs used.
      logistic_converged: ``[P, folds, seeds]`` bool, the classifier reached ``tol``
        (scikit-learn warns otherwise).
    """

    params: list[dict[str, Any]]
    split_test_scores: np.ndarray
    seed_test_scores: np.ndarray
    mean_test_score: np.ndarray
    std_test_score: np.ndarray
    rank_test_score: np.ndarray
    best_index: int
    best_params: dict[str, Any]
    best_score: float
    folds: list[tuple[np.ndarray, np.ndarray]]
    logistic_converged: np.ndarray


def kfold_indices(
    n: int, k: int, *, key: PRNGKey | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` train / test index splits, as scikit-learn's ``KFold``.

    The samples (in order, or permuted by ``jax.random.permutation(key, n)`` when a
    key is given) are cut into ``k`` contiguous test folds, the first ``n % k`` of
    them one sample larger; each fold's train set is the rest, in increasing order.

    Args:
      n: number of samples.
      k: number of folds, ``2 <= k <= n``.
      key: optional PRNG key to shuffle before splitting.

    Returns:
      ``k`` pairs ``(train_index, test_index)`` of int64 arrays.

    Raises:
      ValueError: ``k < 2`` or ``k > n``.
    """
    n = rbm.check_positive_int(n, "n")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 2:
        raise ValueError(f"k: expected an integer number of folds >= 2, got {k!r}")
    if k > n:
        raise ValueError(f"k: expected at most n={n} folds (one sample each), got {k}")
    order = np.arange(n) if key is None else np.asarray(jax.random.permutation(key, n))
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    out = []
    for i in range(k):
        test = order[bounds[i] : bounds[i + 1]].astype(np.int64)
        mask = np.ones(n, bool)
        mask[test] = False
        out.append((np.flatnonzero(mask).astype(np.int64), np.sort(test)))
    return out


def _pad_rows(indices: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Index lists padded to one length with index 0: ``([F, M] index, [F, M]
    mask)``."""
    m = max(len(i) for i in indices)
    idx = np.zeros((len(indices), m), np.int64)
    mask = np.zeros((len(indices), m), bool)
    for f, i in enumerate(indices):
        idx[f, : len(i)] = i
        mask[f, : len(i)] = True
    return idx, mask


@functools.lru_cache(maxsize=16)
def _group_search_fn(
    n_train: int,
    n_visible: int,
    n_components: int,
    batch_size: int,
    n_iters: tuple[int, ...],
    masked: bool,
    num_classes: int,
    max_iter: int,
    tol: float,
):
    """One jitted call: every RBM of one ``n_components`` value, its features, the
    classifiers for every ``C`` and their fold accuracies."""
    fit_rbm = rbm.make_fit(
        n_train,
        n_visible,
        n_components=n_components,
        batch_size=batch_size,
        n_iter=max(n_iters),
        snapshot_epochs=n_iters,
        masked=masked,
    )
    fit_clf = logistic.make_fit_logistic(num_classes, max_iter=max_iter, tol=tol)

    def one_fold(key, x_train, y_train, w_train, x_test, y_test, w_test, lrs, cs):
        # RBMs: [L, S] snapshots of [F?] -> vmap over learning rates.
        n_rows = jnp.sum(w_train).astype(jnp.int32) if masked else None
        snaps = jax.vmap(lambda lr: fit_rbm(key, x_train, lr, n_rows))(lrs)

        def score(params):  # one RBM -> accuracies [C] and convergence [C]
            f_train = rbm.transform(params, x_train)
            f_test = rbm.transform(params, x_test)

            def per_c(c):
                clf, info = fit_clf(f_train, y_train, c, w_train)
                hit = (logistic.predict(clf, f_test) == y_test).astype(jnp.float32)
                return jnp.sum(hit * w_test) / jnp.sum(w_test), info.grad_max <= tol

            return jax.vmap(per_c)(cs)

        # [L, S_epochs, ...] -> scores [L, S_epochs, C]
        return jax.vmap(jax.vmap(score))(snaps)

    def search(keys, x_train, y_train, w_train, x_test, y_test, w_test, lrs, cs):
        # keys: [seeds, F]; data: [F, ...]; vmap over seeds (outer) and folds.
        over_folds = jax.vmap(one_fold, in_axes=(0, 0, 0, 0, 0, 0, 0, None, None))
        return jax.vmap(
            over_folds, in_axes=(0, None, None, None, None, None, None, None, None)
        )(keys, x_train, y_train, w_train, x_test, y_test, w_test, lrs, cs)

    return jax.jit(search)


def grid_search(
    key: PRNGKey,
    X: jax.Array | np.ndarray,
    y: jax.Array | np.ndarray,
    grid: Grid | Mapping[str, Sequence] = PROTOCOL_GRID,
    *,
    folds: int = 3,
    shuffle_key: PRNGKey | None = None,
    seeds: int = 1,
    batch_size: int = 10,
    num_classes: int | None = None,
    max_iter: int = 100,
    tol: float = 1e-4,
) -> GridResult:
    """Cross-validated grid search of the RBM + logistic regression pipeline.

    Equivalent to scikit-learn's ``GridSearchCV(Pipeline([("rbm", BernoulliRBM(
    batch_size=batch_size)), ("logistic", LogisticRegression(max_iter=max_iter,
    tol=tol))]), grid, cv=KFold(folds))`` with ``refit=False``, in one jitted call per
    ``n_components`` value (see the module docstring).

    Args:
      key: PRNG key of the RBMs.
      X: ``[N, n_visible]`` in ``[0, 1]``.
      y: ``[N]`` integer labels.
      grid: a :class:`Grid` or a mapping with keys ``learning_rate``, ``n_iter``,
        ``n_components``, ``C``.
      folds: k of the k-fold split (:func:`kfold_indices`; unshuffled unless
        ``shuffle_key`` is given).
      shuffle_key: optional key to shuffle the samples before splitting.
      seeds: RBMs per (grid point, fold), each fold score is their mean.
      batch_size: the RBM's minibatch size.
      num_classes: classes; default ``max(y) + 1``.
      max_iter, tol: the classifier's (:func:`logistic.fit_logistic`).

    Returns:
      A :class:`GridResult`.

    Raises:
      ValueError: naming the bad argument, before any work.
    """
    X = rbm.check_visible(X, "X")
    _, y = logistic.check_features_labels(X, y)
    num_classes = logistic.check_num_classes(num_classes, y)
    grid = grid if isinstance(grid, Grid) else Grid.from_mapping(grid)
    grid.validate()
    rbm.check_positive_int(seeds, "seeds")
    rbm.check_positive_int(batch_size, "batch_size")
    rbm.check_positive_int(max_iter, "max_iter")
    rbm.check_positive_float(tol, "tol")
    n, d = X.shape
    splits = kfold_indices(n, folds, key=shuffle_key)

    train_idx, train_mask = _pad_rows([tr for tr, _ in splits])
    test_idx, test_mask = _pad_rows([te for _, te in splits])
    n_train = train_idx.shape[1]
    equal = bool(train_mask.all())
    masked = not equal or n_train % batch_size != 0
    Xn = np.asarray(X)
    x_train = jnp.asarray(Xn[train_idx])  # [F, M, d]
    x_test = jnp.asarray(Xn[test_idx])
    y_train, y_test = jnp.asarray(y[train_idx]), jnp.asarray(y[test_idx])
    w_train = jnp.asarray(train_mask, jnp.float32)
    w_test = jnp.asarray(test_mask, jnp.float32)
    keys = jax.vmap(
        lambda s: jax.vmap(lambda f: jax.random.fold_in(jax.random.fold_in(key, s), f))(
            jnp.arange(folds)
        )
    )(jnp.arange(seeds))
    lrs = jnp.asarray(grid.learning_rate, jnp.float32)
    cs = jnp.asarray(grid.C, jnp.float32)
    n_iters = tuple(sorted(grid.n_iter))

    # scores[(lr, n_iter, nc, C)] -> [folds, seeds]
    points = grid.points()
    seed_scores = np.zeros((len(points), folds, seeds))
    converged = np.zeros((len(points), folds, seeds), bool)
    index = {
        (p["learning_rate"], p["n_iter"], p["n_components"], p["C"]): i
        for i, p in enumerate(points)
    }
    for nc in grid.n_components:
        search = _group_search_fn(
            n_train,
            d,
            int(nc),
            int(batch_size),
            n_iters,
            masked,
            num_classes,
            int(max_iter),
            float(tol),
        )
        acc, conv = search(
            keys, x_train, y_train, w_train, x_test, y_test, w_test, lrs, cs
        )
        acc, conv = np.asarray(acc), np.asarray(conv)  # [seeds, F, L, E, C]
        for (li, lr), (ei, it), (ci, c) in itertools.product(
            enumerate(grid.learning_rate), enumerate(n_iters), enumerate(grid.C)
        ):
            i = index[(lr, it, nc, c)]
            seed_scores[i] = acc[:, :, li, ei, ci].T
            converged[i] = conv[:, :, li, ei, ci].T

    split = seed_scores.mean(axis=2)
    mean = split.mean(axis=1)
    std = split.std(axis=1)
    order = -mean
    rank = np.array([1 + np.sum(order < v) for v in order], np.int32)
    best = int(np.argmax(mean))
    return GridResult(
        params=points,
        split_test_scores=split,
        seed_test_scores=seed_scores,
        mean_test_score=mean,
        std_test_score=std,
        rank_test_score=rank,
        best_index=best,
        best_params=dict(points[best]),
        best_score=float(mean[best]),
        folds=splits,
        logistic_converged=converged,
    )
