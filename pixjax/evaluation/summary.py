"""Outcomes to numbers, on the host: one configuration, and one quantity over seeds.

* :func:`summarize`: the metrics of one configuration from per-image outcomes (flip
  rate among the images classified correctly before the change, accuracy, Wilson
  intervals, per-class counts and flip rates, where flipped images go, new-class
  confidence).
* :func:`seed_summary` / :func:`summarize_seeds`: one quantity repeated over seeds ->
  mean, sample standard deviation (``ddof=1``) and the Wilson interval of the counts
  pooled over the seeds. Every experiment reports its spreads with these.
* :func:`wilson_interval`: the Wilson score interval (Wilson 1927).

Everything is plain numpy on exact integer counts, so results do not depend on how the
work was batched or sharded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from pixjax.data.base import check_labels

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927).

    Args:
      successes: number of successes, ``0 <= successes <= total``.
      total: number of trials; ``0`` gives the uninformative ``(0, 1)``.
      z: normal quantile (default: 95%).

    Returns:
      ``(low, high)`` bounds in ``[0, 1]``.
    """
    if total < 0 or successes < 0 or successes > total:
        raise ValueError(
            f"successes/total: expected 0 <= successes <= total, got {successes}/{total}"
        )
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    z2 = z * z
    denom = 1.0 + z2 / total
    centre = (p + z2 / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == total else min(1.0, centre + half)
    return lo, hi


def summarize(
    labels: np.ndarray,
    clean_pred: np.ndarray,
    pred: np.ndarray,
    confidence: np.ndarray,
    num_classes: int,
) -> dict[str, Any]:
    """Metrics of one configuration from per-image outcomes.

    Args:
      labels: ``[N]`` int true labels in ``0 .. num_classes - 1``.
      clean_pred: ``[N]`` predictions on the unchanged images.
      pred: ``[N]`` predictions on the changed images (``< num_classes``).
      confidence: ``[N]`` softmax probability of ``pred`` on the changed images.
      num_classes: number of classes (size of the per-class arrays).

    Returns:
      A JSON-ready dict. ``flips`` / ``flip_rate`` use the paper's denominator (Zhang &
      Cai 2021): images the model classified correctly before the change whose
      prediction changed.

      * ``n``, ``clean_correct``, ``clean_accuracy``; ``correct``, ``accuracy`` and
        ``accuracy_ci`` (after the change, Wilson 95%);
      * ``flips``, ``flip_rate``, ``flip_rate_ci``; ``changed_rate`` (any prediction
        change, over all images);
      * per class ``c`` (lists of ``num_classes``): ``per_class_n`` (images),
        ``per_class_correct`` (classified correctly before the change),
        ``per_class_correct_after`` (classified correctly after it),
        ``per_class_flips`` and ``per_class_flip_rate`` (flips / correct before; NaN
        for a class without correct images);
      * ``flip_confusion`` ``[num_classes][num_classes]``: true class -> new class of
        the flipped images;
      * ``flipped_confidence``: mean confidence in the new class over the flipped
        images (NaN without flips).
    """
    check_labels(labels, num_classes, classes_from="num_classes={n}")
    labels = np.asarray(labels)
    clean_pred, pred = np.asarray(clean_pred), np.asarray(pred)
    confidence = np.asarray(confidence)
    for name, a in (("clean_pred", clean_pred), ("pred", pred)):
        if a.shape != labels.shape:
            raise ValueError(
                f"{name}: expected shape {labels.shape} like labels, got {a.shape}"
            )
    if confidence.shape != labels.shape:
        raise ValueError(
            f"confidence: expected shape {labels.shape} like labels, got "
            f"{confidence.shape}"
        )
    correct_clean = clean_pred == labels
    correct = pred == labels
    flipped = correct_clean & (pred != clean_pred)
    if flipped.any() and int(pred[flipped].max()) >= num_classes:
        raise ValueError(
            f"num_classes: expected more than the largest predicted class "
            f"{int(pred[flipped].max())}, got {num_classes}"
        )
    n = int(labels.size)
    n_cc = int(correct_clean.sum())
    n_flip = int(flipped.sum())
    n_correct = int(correct.sum())
    per_class_n = np.bincount(labels, minlength=num_classes)
    per_class_total = np.bincount(labels[correct_clean], minlength=num_classes)
    per_class_after = np.bincount(labels[correct], minlength=num_classes)
    per_class_flips = np.bincount(labels[flipped], minlength=num_classes)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels[flipped], pred[flipped]), 1)
    return {
        "n": n,
        "clean_correct": n_cc,
        "clean_accuracy": n_cc / n if n else float("nan"),
        "correct": n_correct,
        "accuracy": n_correct / n if n else float("nan"),
        "accuracy_ci": list(wilson_interval(n_correct, n)),
        "flips": n_flip,
        "flip_rate": n_flip / n_cc if n_cc else float("nan"),
        "flip_rate_ci": list(wilson_interval(n_flip, n_cc)),
        "changed_rate": float(np.mean(pred != clean_pred)) if n else float("nan"),
        "per_class_n": per_class_n.tolist(),
        "per_class_flips": per_class_flips.tolist(),
        "per_class_correct": per_class_total.tolist(),
        "per_class_correct_after": per_class_after.tolist(),
        "per_class_flip_rate": [
            (f / t if t else float("nan"))
            for f, t in zip(
                per_class_flips.tolist(), per_class_total.tolist(), strict=True
            )
        ],
        "flip_confusion": confusion.tolist(),
        "flipped_confidence": (
            float(np.mean(confidence[flipped], dtype=np.float64))
            if n_flip
            else float("nan")
        ),
    }


class SeedSummary(NamedTuple):
    """One quantity summarised over seeds (see :func:`seed_summary`).

    Attributes:
      mean: mean of the per-seed values.
      std: sample standard deviation (``ddof=1``); ``0.0`` for a single seed.
      n: number of per-seed values summarised.
      ci: 95% (or ``z``) Wilson interval of the pooled counts, or ``None`` without
        counts.
      successes, total: the pooled counts (``None`` without counts).
    """

    mean: float
    std: float
    n: int
    ci: tuple[float, float] | None
    successes: int | None
    total: int | None

    def fields(self, name: str) -> dict[str, Any]:
        """``{name}_mean``, ``{name}_std`` and (with counts) ``{name}_ci`` as a
        JSON-ready dict, the keys every experiment's results use."""
        out: dict[str, Any] = {f"{name}_mean": self.mean, f"{name}_std": self.std}
        if self.ci is not None:
            out[f"{name}_ci"] = list(self.ci)
        return out


def seed_summary(
    values: Sequence[float] | np.ndarray,
    successes: int | None = None,
    total: int | None = None,
    *,
    skip_nan: bool = False,
    z: float = Z95,
) -> SeedSummary:
    """Mean, sample sd and pooled Wilson interval of one quantity over seeds.

    The spread is the sample standard deviation, ``ddof=1`` (the seeds are a sample of
    the possible draws). With one seed it is undefined; it is reported as ``0.0`` (no
    spread observed; ``n`` says how many seeds there were), as the reports have always
    done. The interval is not the spread of the seeds: it is the Wilson interval of
    ``successes / total``, the counts summed over the seeds.

    Args:
      values: ``[S]`` the per-seed values (e.g. each seed's flip rate).
      successes, total: the counts pooled over the seeds (e.g. flips and clean-correct
        images, summed); both or neither.
      skip_nan: summarise only the defined (non-NaN) values, e.g. the confidence of
        flipped images, undefined for a seed without flips. Without it a NaN makes the
        mean NaN. With it and no defined value, mean and sd are NaN.
      z: normal quantile of the interval (default: 95%).

    Returns:
      A :class:`SeedSummary`.

    Raises:
      ValueError: no values, values that are not 1-D, or only one of the counts.
    """
    v = np.asarray(values, np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ValueError(
            f"values: expected one value per seed (at least one), got shape {v.shape}"
        )
    if (successes is None) != (total is None):
        raise ValueError(
            "successes/total: expected both pooled counts or neither, got "
            f"{successes}/{total}"
        )
    if skip_nan:
        n = int(np.sum(~np.isnan(v)))
        mean = float(np.nanmean(v)) if n else float("nan")
        if n > 1:
            std = float(np.nanstd(v, ddof=1))
        else:
            std = 0.0 if n == 1 else float("nan")
    else:
        n = int(v.size)
        mean = float(np.mean(v))
        std = float(np.std(v, ddof=1)) if n > 1 else 0.0
    ci = None
    if successes is not None:
        successes, total = int(successes), int(total)
        ci = wilson_interval(successes, total, z)
    return SeedSummary(mean, std, n, ci, successes, total)


def summarize_seeds(
    rows: Sequence[Mapping[str, Any]],
    fields: Mapping[str, tuple[str, str] | None],
    *,
    skip_nan: bool = False,
    z: float = Z95,
) -> dict[str, Any]:
    """:func:`seed_summary` of several quantities of per-seed result rows.

    Args:
      rows: one dict per seed (e.g. :func:`summarize` outputs of one configuration).
      fields: quantity -> ``(successes key, total key)`` whose sums over the rows give
        the pooled Wilson interval, or ``None`` for no interval; e.g.
        ``{"flip_rate": ("flips", "clean_correct"), "accuracy": ("correct", "n"),
        "pixel_index": None}``.
      skip_nan, z: see :func:`seed_summary`.

    Returns:
      A flat JSON-ready dict: ``{name}_mean`` and ``{name}_std`` per quantity, and
      ``{name}_ci`` where counts were named.

    Raises:
      ValueError: no rows, or a key missing from a row.
    """
    if len(rows) == 0:
        raise ValueError("rows: expected one result row per seed, got none")
    out: dict[str, Any] = {}
    for name, counts in fields.items():
        keys = [name] + ([] if counts is None else list(counts))
        for key in keys:
            missing = [i for i, r in enumerate(rows) if key not in r]
            if missing:
                raise ValueError(
                    f"rows: expected the key {key!r} in every row, missing in rows "
                    f"{missing}"
                )
        pooled = (
            (None, None)
            if counts is None
            else (
                sum(int(r[counts[0]]) for r in rows),
                sum(int(r[counts[1]]) for r in rows),
            )
        )
        s = seed_summary([r[name] for r in rows], *pooled, skip_nan=skip_nan, z=z)
        out.update(s.fields(name))
    return out
