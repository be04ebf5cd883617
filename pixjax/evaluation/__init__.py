"""Evaluation: the sweep engine, metrics and the Pixel-index."""

from pixjax.evaluation.metrics import (
    classification_report,
    format_classification_report,
    mcnemar,
)
from pixjax.evaluation.pixel_index import pixel_index
from pixjax.evaluation.predict import accuracy, classify, forward, map_batches, predict
from pixjax.evaluation.summary import (
    Z95,
    SeedSummary,
    seed_summary,
    summarize,
    summarize_seeds,
    wilson_interval,
)
from pixjax.evaluation.sweep import (
    Sweeper,
    SweepOutputs,
    change_batch,
    make_sweeper,
    run_sweep,
    run_variants,
    summarize_outputs,
    summarize_pixel_outputs,
    sweep,
)

__all__ = [
    "accuracy",
    "classify",
    "forward",
    "map_batches",
    "predict",
    "classification_report",
    "format_classification_report",
    "SweepOutputs",
    "Sweeper",
    "SeedSummary",
    "Z95",
    "change_batch",
    "make_sweeper",
    "mcnemar",
    "pixel_index",
    "run_sweep",
    "run_variants",
    "seed_summary",
    "summarize",
    "summarize_seeds",
    "summarize_outputs",
    "summarize_pixel_outputs",
    "sweep",
    "wilson_interval",
]
