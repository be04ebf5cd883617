"""Evaluation: the sweep engine, metrics and the Pixel-index."""

from pixjax.evaluation.metrics import (
    Z95,
    classification_report,
    format_classification_report,
    mcnemar,
    summarize,
    wilson_interval,
)
from pixjax.evaluation.pixel_index import pixel_index
from pixjax.evaluation.sweep import (
    Sweeper,
    SweepOutputs,
    change_batch,
    make_sweeper,
    run_sweep,
    summarize_outputs,
    sweep,
)

__all__ = [
    "classification_report",
    "format_classification_report",
    "SweepOutputs",
    "Sweeper",
    "Z95",
    "change_batch",
    "make_sweeper",
    "mcnemar",
    "pixel_index",
    "run_sweep",
    "summarize",
    "summarize_outputs",
    "sweep",
    "wilson_interval",
]
