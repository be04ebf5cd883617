"""Tables and figures shared by the experiments (matplotlib, Agg backend)."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import numpy as np
from pixjax.experiments.common import save_figure_atomic


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fmt_pct(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.{digits}f}"


def zero_gradient_line(count: int, total: int) -> str:
    """The report line every attack result carries: how many images had an exactly
    zero input gradient (the attack could not move them)."""
    if count == 0:
        return (
            f"- input gradient exactly zero: 0 of {total} images (no vanished gradient)"
        )
    return (
        f"- **input gradient exactly zero: {count} of {total} images**: the attack "
        "could not move them, so their robustness is not evidence (try loss=margin)"
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def line_plot(
    path: pathlib.Path,
    x: Sequence[float],
    series: dict[str, dict[str, np.ndarray]],
    *,
    xlabel: str,
    title: str,
    logx: bool = False,
) -> None:
    """Two panels (accuracy, flip rate) vs ``x``; one line per series.

    ``series[name]`` holds ``accuracy``, ``accuracy_lo``, ``accuracy_hi``, ``flip``,
    ``flip_lo``, ``flip_hi`` arrays aligned with ``x`` (shares in ``[0, 1]``, NaN gaps
    allowed). Error bars are the 95% Wilson intervals.
    """
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, s in series.items():
        for ax, key in zip(axes, ("accuracy", "flip"), strict=True):
            y = 100 * np.asarray(s[key], float)
            lo = 100 * np.asarray(s[f"{key}_lo"], float)
            hi = 100 * np.asarray(s[f"{key}_hi"], float)
            ax.errorbar(
                x,
                y,
                yerr=[np.abs(y - lo), np.abs(hi - y)],
                marker="o",
                ms=4,
                capsize=3,
                label=name,
            )
    axes[0].set_ylabel("accuracy after change (%)")
    axes[1].set_ylabel("flipped among correct (%)")
    for ax in axes:
        ax.set_xlabel(xlabel)
        if logx:
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(x), [str(v) for v in x])
        ax.grid(alpha=0.3)
    if len(series) > 1:
        axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def example_grid(
    path: pathlib.Path,
    originals: np.ndarray,
    rows: list[tuple[str, np.ndarray, np.ndarray]],
    labels: np.ndarray,
    clean_pred: np.ndarray,
    class_names: Sequence[str],
    *,
    original_title: str = "original",
    suptitle: str = "pixel-changed examples (red: prediction flipped)",
) -> None:
    """A grid: first row the originals, then one row per configuration.

    Args:
      originals: ``[M, H, W, C]`` float in ``[0, 1]``.
      rows: ``(title, changed [M, H, W, C], pred [M])`` per configuration.
      labels, clean_pred: ``[M]``.
      original_title, suptitle: the first row's label and the figure's title.
    """
    plt = _plt()
    m = originals.shape[0]
    n_rows = 1 + len(rows)
    fig, axes = plt.subplots(n_rows, m, figsize=(1.8 * m, 2.0 * n_rows), squeeze=False)
    name = lambda c: class_names[c] if c < len(class_names) else str(c)

    def show(ax, img, title, color="black"):
        img = np.asarray(img)
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        else:
            ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=7, color=color)
        ax.set_xticks([])
        ax.set_yticks([])

    for j in range(m):
        show(
            axes[0, j],
            originals[j],
            f"label {name(labels[j])}\npred {name(clean_pred[j])}",
        )
    for i, (title, changed, pred) in enumerate(rows, start=1):
        for j in range(m):
            flipped = pred[j] != clean_pred[j]
            show(
                axes[i, j],
                changed[j],
                f"{name(clean_pred[j])} -> {name(pred[j])}",
                color="red" if flipped else "black",
            )
        axes[i, 0].set_ylabel(title, fontsize=7)
    axes[0, 0].set_ylabel(original_title, fontsize=7)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    save_figure_atomic(fig, path)
    plt.close(fig)


def fmt_num(x: float | None, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals; ``n/a`` for ``None`` (a non-finite number in a
    results document) or a non-finite value."""
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def examples_figure(
    path: pathlib.Path, examples: dict, class_names: Sequence[str]
) -> None:
    """:func:`example_grid` from the example images kept in a results document.

    Args:
      examples: ``{"original": packed [M, H, W, C], "labels": [M], "clean_pred": [M],
        "rows": [{"title", "images": packed [M, H, W, C], "pred": [M]}, ...]}`` with
        the images packed by :func:`pixjax.experiments.common.pack_uint8` (uint8);
        optionally ``"original_title"`` and ``"suptitle"`` (see :func:`example_grid`).
      class_names: the dataset's class names.
    """
    from pixjax.experiments.common import unpack_uint8

    from pixjax.data.base import to_float

    example_grid(
        path,
        to_float(unpack_uint8(examples["original"])),
        [
            (r["title"], to_float(unpack_uint8(r["images"])), np.asarray(r["pred"]))
            for r in examples["rows"]
        ],
        np.asarray(examples["labels"]),
        np.asarray(examples["clean_pred"]),
        class_names,
        **{k: examples[k] for k in ("original_title", "suptitle") if k in examples},
    )
