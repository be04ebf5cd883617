"""Per-class precision / recall / F1 and the text table of
``sklearn.metrics.classification_report`` (same numbers, same layout), in numpy.

Definitions (per label ``l``; ``tp`` true positives, ``true`` = support = samples whose
true label is ``l``, ``pred`` = samples predicted as ``l``)::

    precision = tp / pred     recall = tp / true     f1 = 2 tp / (true + pred)

A zero denominator gives ``zero_division`` (scikit-learn's default value 0, without
its warning). ``macro avg`` is the unweighted mean over labels, ``weighted avg`` the
support-weighted mean; the ``accuracy`` row is shown when the labels cover every label
present, otherwise a ``micro avg`` row (pooled counts over the given labels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class ClassScores(NamedTuple):
    """Per-label scores, each ``[L]`` in the order of ``labels``."""

    labels: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray  # int64


def _ratio(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    out = np.full(num.shape, float(zero_division))
    np.divide(num, den, out=out, where=den != 0)
    return out


def _check(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if np.asarray(y_true).ndim != 1 or np.asarray(y_pred).ndim != 1:
        raise ValueError(
            f"y_true, y_pred: expected 1-D label arrays, got shapes "
            f"{np.shape(y_true)} and {np.shape(y_pred)}"
        )
    if t.shape != p.shape:
        raise ValueError(
            f"y_pred: expected as many labels as y_true ({t.shape[0]}), got {p.shape[0]}"
        )
    if t.size == 0:
        raise ValueError("y_true: expected at least one label, got none")
    return t, p


def _counts(t, p, labels):
    tp = np.array([np.sum((t == lab) & (p == lab)) for lab in labels], np.int64)
    true = np.array([np.sum(t == lab) for lab in labels], np.int64)
    pred = np.array([np.sum(p == lab) for lab in labels], np.int64)
    return tp, true, pred


def precision_recall_f1_support(
    y_true,
    y_pred,
    *,
    labels: Sequence | None = None,
    zero_division: float = 0.0,
) -> ClassScores:
    """Per-label precision, recall, F1 and support.

    Args:
      y_true: ``[N]`` true labels (any sortable, comparable values).
      y_pred: ``[N]`` predicted labels.
      labels: the labels to report, in this order; default: every label in
        ``y_true`` or ``y_pred``, sorted.
      zero_division: the value of a ratio with a zero denominator.
    """
    t, p = _check(y_true, y_pred)
    labels = np.unique(np.concatenate([t, p])) if labels is None else np.asarray(labels)
    tp, true, pred = _counts(t, p, labels)
    return ClassScores(
        labels=labels,
        precision=_ratio(tp, pred, zero_division),
        recall=_ratio(tp, true, zero_division),
        f1=_ratio(2 * tp, true + pred, zero_division),
        support=true,
    )


def classification_report(
    y_true,
    y_pred,
    *,
    labels: Sequence | None = None,
    target_names: Sequence[str] | None = None,
    digits: int = 2,
    output_dict: bool = False,
    zero_division: float = 0.0,
) -> str | dict:
    """The text (or dict) report of ``sklearn.metrics.classification_report``.

    Args:
      y_true, y_pred: ``[N]`` labels.
      labels: labels to include (default: all present, sorted).
      target_names: display names, one per label.
      digits: decimals in the text table (the dict is unrounded).
      output_dict: return ``{name: {"precision", "recall", "f1-score", "support"},
        "accuracy": float, "macro avg": {...}, "weighted avg": {...}}`` instead.
      zero_division: value of a ratio with a zero denominator.

    Returns:
      The table as a string (rows: one per label, then ``accuracy`` or ``micro avg``,
      ``macro avg``, ``weighted avg``), or the dict.
    """
    t, p = _check(y_true, y_pred)
    present = np.unique(np.concatenate([t, p]))
    given = labels is not None
    scores = precision_recall_f1_support(
        t, p, labels=labels, zero_division=zero_division
    )
    labs = scores.labels
    if target_names is None:
        names = [str(lab) for lab in labs]
    else:
        names = [str(n) for n in target_names]
        if len(names) != len(labs):
            raise ValueError(
                f"target_names: expected {len(labs)} names (one per label), got "
                f"{len(names)}"
            )
    if not isinstance(digits, int) or digits < 0:
        raise ValueError(f"digits: expected an integer >= 0, got {digits!r}")
    micro_is_accuracy = not given or set(present.tolist()) <= set(labs.tolist())
    total = int(np.sum(scores.support))

    rows = {
        name: (float(pr), float(rc), float(f), int(s))
        for name, pr, rc, f, s in zip(
            names,
            scores.precision,
            scores.recall,
            scores.f1,
            scores.support,
            strict=True,
        )
    }
    averages: dict[str, tuple[float, float, float, int]] = {}
    if micro_is_accuracy:
        accuracy = float(np.mean(t == p))
    else:
        tp, true, pred = _counts(t, p, labs)
        stp, strue, spred = tp.sum(), true.sum(), pred.sum()
        averages["micro avg"] = (
            float(_ratio(stp, spred, zero_division)),
            float(_ratio(stp, strue, zero_division)),
            float(_ratio(2 * stp, strue + spred, zero_division)),
            total,
        )
    averages["macro avg"] = (
        float(np.mean(scores.precision)),
        float(np.mean(scores.recall)),
        float(np.mean(scores.f1)),
        total,
    )
    if total > 0:
        w = scores.support / total
        weighted = tuple(
            float(np.sum(a * w)) for a in (scores.precision, scores.recall, scores.f1)
        )
    else:
        weighted = (float(zero_division),) * 3
    averages["weighted avg"] = (*weighted, total)

    if output_dict:
        keys = ("precision", "recall", "f1-score", "support")
        out: dict = {n: dict(zip(keys, r, strict=True)) for n, r in rows.items()}
        for name, r in averages.items():
            if name == "micro avg":
                out[name] = dict(zip(keys, r, strict=True))
        if micro_is_accuracy:
            out["accuracy"] = accuracy
        for name in ("macro avg", "weighted avg"):
            out[name] = dict(zip(keys, averages[name], strict=True))
        return out

    width = max(max(len(n) for n in names), len("weighted avg"), digits)
    head = ("precision", "recall", "f1-score", "support")
    lines = [f"{'':>{width}} " + "".join(f" {h:>9}" for h in head), ""]

    def row(name, vals):
        pr, rc, f, s = vals
        return (
            f"{name:>{width}} "
            + "".join(f" {v:>9.{digits}f}" for v in (pr, rc, f))
            + f" {s:>9}"
        )

    lines += [row(n, r) for n, r in rows.items()]
    lines.append("")
    if micro_is_accuracy:
        lines.append(
            f"{'accuracy':>{width}} "
            + f" {'':>9}" * 2
            + f" {accuracy:>9.{digits}f} {total:>9}"
        )
    lines += [row(n, r) for n, r in averages.items()]
    return "\n".join(lines) + "\n"
