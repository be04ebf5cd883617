"""Comparisons on the host: McNemar's test of paired outcomes and the per-class
classification report.

All functions are plain numpy on integer counts, so they are exact and independent of
how the work was batched or sharded. Per-configuration outcomes, seed summaries and
Wilson intervals are in :mod:`pixjax.evaluation.summary`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from pixjax.data.base import check_labels


def mcnemar(before_correct: np.ndarray, after_correct: np.ndarray) -> dict[str, Any]:
    """McNemar's test of paired outcomes (same images, two models or conditions).

    Args:
      before_correct, after_correct: ``[N]`` bool, per image.

    Returns:
      ``b`` (right before, wrong after), ``c`` (wrong before, right after), the exact
      two-sided binomial p-value on the ``b + c`` discordant pairs, and the chi-square
      statistic with continuity correction.
    """
    before = np.asarray(before_correct, bool)
    after = np.asarray(after_correct, bool)
    if before.shape != after.shape:
        raise ValueError(
            f"after_correct: expected shape {before.shape} like before_correct, got "
            f"{after.shape}"
        )
    b = int(np.sum(before & ~after))
    c = int(np.sum(~before & after))
    n = b + c
    if n == 0:
        p = 1.0
    else:
        k = min(b, c)
        # P(X <= k) for X ~ Binomial(n, 1/2), in log space for large n
        logs = [
            math.lgamma(n + 1)
            - math.lgamma(i + 1)
            - math.lgamma(n - i + 1)
            - n * math.log(2.0)
            for i in range(k + 1)
        ]
        top = max(logs)
        p = min(1.0, 2.0 * math.exp(top) * sum(math.exp(v - top) for v in logs))
    chi2 = (abs(b - c) - 1) ** 2 / n if n else 0.0
    return {"b": b, "c": c, "p_value": p, "chi2": chi2}


def classification_report(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
) -> dict[str, Any]:
    """Per-class precision, recall, f1 and support, accuracy, macro and weighted means:
    the numbers of ``sklearn.metrics.classification_report(..., output_dict=True)``
    (an undefined precision / recall, 0 / 0, counts as 0, scikit-learn's default).

    Returns:
      ``{name: {"precision", "recall", "f1-score", "support"}, ..., "accuracy": float,
      "macro avg": {...}, "weighted avg": {...}}``, one entry per class ``0 ..
      num_classes - 1`` named by ``class_names`` (default: the index).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(
            f"y_pred: expected the shape of y_true {y_true.shape}, got {y_pred.shape}"
        )
    k = int(num_classes or max(y_true.max(), y_pred.max()) + 1)
    check_labels(y_true, k, argument="y_true", classes_from="num_classes={n}")
    check_labels(y_pred, k, argument="y_pred", classes_from="num_classes={n}")
    names = [str(i) for i in range(k)] if class_names is None else list(class_names)
    if len(names) != k:
        raise ValueError(f"class_names: expected {k} names, got {len(names)}")
    tp = np.bincount(y_true[y_true == y_pred], minlength=k)[:k].astype(float)
    pred_n = np.bincount(y_pred, minlength=k)[:k].astype(float)
    true_n = np.bincount(y_true, minlength=k)[:k].astype(float)
    precision = np.divide(tp, pred_n, out=np.zeros(k), where=pred_n > 0)
    recall = np.divide(tp, true_n, out=np.zeros(k), where=true_n > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    out: dict[str, Any] = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1-score": float(f1[i]),
            "support": int(true_n[i]),
        }
        for i, name in enumerate(names)
    }
    out["accuracy"] = float(np.mean(y_true == y_pred))
    w = true_n / true_n.sum()
    for label, avg in (("macro avg", np.mean), ("weighted avg", None)):
        vals = [precision, recall, f1]
        out[label] = {
            key: float(avg(v) if avg else np.sum(v * w))
            for key, v in zip(("precision", "recall", "f1-score"), vals, strict=True)
        }
        out[label]["support"] = int(true_n.sum())
    return out


def format_classification_report(report: dict[str, Any], digits: int = 2) -> str:
    """The text layout of ``sklearn.metrics.classification_report``."""
    names = [n for n in report if n not in ("accuracy", "macro avg", "weighted avg")]
    width = max(len("weighted avg"), *(len(n) for n in names))
    head = (
        f"{'':>{width}} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"
    )
    lines = [head, ""]

    def row(name, r):
        return (
            f"{name:>{width}} {r['precision']:>9.{digits}f} {r['recall']:>9.{digits}f} "
            f"{r['f1-score']:>9.{digits}f} {r['support']:>9}"
        )

    lines += [row(n, report[n]) for n in names]
    total = report["macro avg"]["support"]
    lines += [
        "",
        f"{'accuracy':>{width}} {'':>9} {'':>9} {report['accuracy']:>9.{digits}f} "
        f"{total:>9}",
        row("macro avg", report["macro avg"]),
        row("weighted avg", report["weighted avg"]),
    ]
    return "\n".join(lines)
