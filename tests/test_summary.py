"""Summaries checked against values computed by hand (in the comments), not through
pixjax helpers: the Wilson interval, one configuration's counts and per-class tables,
and the seed summary (mean, sample sd with ddof=1, pooled Wilson interval)."""

import math

import numpy as np
import pytest

from pixjax.evaluation import (
    SeedSummary,
    seed_summary,
    summarize,
    summarize_seeds,
    wilson_interval,
)

# A tiny fixed outcome array: 8 images of 3 classes, one configuration, two seeds.
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
CLEAN = np.array([0, 0, 1, 1, 1, 2, 2, 0])  # images 2 and 7 wrong before the change
PRED = {
    0: np.array([0, 2, 1, 1, 0, 2, 1, 0]),  # images 1, 4, 6 flip (to 2, 0, 1)
    1: np.array([0, 0, 1, 1, 1, 2, 2, 2]),  # no flips; image 7 becomes right
}
CONF = {
    0: np.array([0.9, 0.6, 0.5, 0.8, 0.7, 0.9, 0.4, 0.3]),
    1: np.full(8, 0.8),
}


def test_wilson_interval_hand_computed():
    # p = 0.1, n = 100, z = 1.96: centre 0.11480, half-width 0.05957 (by hand).
    lo, hi = wilson_interval(10, 100)
    assert lo == pytest.approx(0.05523, abs=5e-5)
    assert hi == pytest.approx(0.17437, abs=5e-5)
    # 8 / 40: p = 0.2, z^2/n = 3.8415/40 = 0.096037, denominator 1.096037;
    # centre (0.2 + 0.048018) / 1.096037 = 0.226286; half-width
    # 1.96 * sqrt(0.004 + 3.8415/6400) / 1.096037 = 1.96 * 0.067825 / 1.096037 = 0.121287
    lo, hi = wilson_interval(8, 40)
    assert lo == pytest.approx(0.226286 - 0.121287, abs=5e-5)
    assert hi == pytest.approx(0.226286 + 0.121287, abs=5e-5)
    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.07135, abs=5e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes/total"):
        wilson_interval(5, 3)


def test_summarize_counts_and_per_class_tables_by_hand():
    m = summarize(LABELS, CLEAN, PRED[0], CONF[0], num_classes=3)
    assert m["n"] == 8 and m["clean_correct"] == 6 and m["clean_accuracy"] == 6 / 8
    # right after the change: images 0, 3, 5
    assert m["correct"] == 3 and m["accuracy"] == 3 / 8
    assert m["flips"] == 3 and m["flip_rate"] == 3 / 6
    # any prediction change: images 1, 4, 6 (image 2 keeps its wrong class)
    assert m["changed_rate"] == 3 / 8
    assert m["per_class_n"] == [3, 2, 3]
    assert m["per_class_correct"] == [2, 2, 2]
    assert m["per_class_correct_after"] == [1, 1, 1]
    assert m["per_class_flips"] == [1, 1, 1]
    assert m["per_class_flip_rate"] == [0.5, 0.5, 0.5]
    assert m["flip_confusion"] == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]
    assert m["flipped_confidence"] == pytest.approx((0.6 + 0.7 + 0.4) / 3)
    # Wilson of 3 / 6: p = 0.5, z^2/n = 0.640243, denominator 1.640243, centre 0.5;
    # half-width 1.96 * sqrt(0.041667 + 3.8415 / 144) / 1.640243 = 0.312384
    assert m["flip_rate_ci"] == pytest.approx(
        [0.5 - 0.312384, 0.5 + 0.312384], abs=5e-5
    )

    m = summarize(LABELS, CLEAN, PRED[1], CONF[1], num_classes=4)  # an empty class 3
    assert m["correct"] == 7 and m["flips"] == 0 and m["flip_rate"] == 0.0
    assert m["changed_rate"] == 1 / 8  # image 7: 0 -> 2
    assert m["per_class_n"] == [3, 2, 3, 0]
    assert m["per_class_correct_after"] == [2, 2, 3, 0]
    assert m["per_class_flip_rate"][:3] == [0.0, 0.0, 0.0]
    assert math.isnan(m["per_class_flip_rate"][3])  # no correct image of class 3
    assert math.isnan(m["flipped_confidence"])
    assert np.asarray(m["flip_confusion"]).sum() == 0


def test_summarize_bad_input():
    with pytest.raises(ValueError, match="labels: expected classes in 0..2"):
        summarize(LABELS + 1, CLEAN, PRED[0], CONF[0], num_classes=3)
    with pytest.raises(ValueError, match="pred: expected shape"):
        summarize(LABELS, CLEAN, PRED[0][:5], CONF[0], num_classes=3)
    with pytest.raises(ValueError, match="num_classes: expected more than"):
        summarize(LABELS, CLEAN, np.where(PRED[0] == 2, 5, PRED[0]), CONF[0], 3)


def test_seed_summary_mean_sd_and_pooled_interval_by_hand():
    # mean (0.2 + 0.4 + 0.9) / 3 = 0.5; deviations -0.3, -0.1, 0.4; squares sum to
    # 0.09 + 0.01 + 0.16 = 0.26; ddof=1: 0.26 / 2 = 0.13; sd sqrt(0.13) = 0.360555
    s = seed_summary([0.2, 0.4, 0.9], successes=8, total=40)
    assert isinstance(s, SeedSummary)
    assert s.mean == pytest.approx(0.5) and s.std == pytest.approx(0.360555, abs=1e-6)
    assert s.n == 3 and (s.successes, s.total) == (8, 40)
    # pooled: Wilson of 8 / 40 (see test_wilson_interval_hand_computed)
    assert s.ci == pytest.approx((0.104999, 0.347573), abs=5e-6)
    assert s.fields("flip_rate") == {
        "flip_rate_mean": s.mean,
        "flip_rate_std": s.std,
        "flip_rate_ci": list(s.ci),
    }
    # not the population sd (ddof=0 would give sqrt(0.26 / 3) = 0.294392)
    assert s.std != pytest.approx(0.294392, abs=1e-3)


def test_seed_summary_one_seed_nan_and_errors():
    one = seed_summary([0.7])
    assert (one.mean, one.std, one.n, one.ci) == (0.7, 0.0, 1, None)
    assert one.fields("x") == {"x_mean": 0.7, "x_std": 0.0}
    nan = float("nan")
    assert math.isnan(seed_summary([0.5, nan]).mean)  # a NaN is not dropped silently
    skipped = seed_summary([0.5, nan, 0.7], skip_nan=True)
    # defined values 0.5, 0.7: mean 0.6, sd sqrt(2 * 0.1^2 / 1) = 0.141421
    assert skipped.n == 2 and skipped.mean == pytest.approx(0.6)
    assert skipped.std == pytest.approx(0.141421, abs=1e-6)
    assert seed_summary([nan, 0.3], skip_nan=True)[:3] == (0.3, 0.0, 1)
    none = seed_summary([nan, nan], skip_nan=True)
    assert none.n == 0 and math.isnan(none.mean) and math.isnan(none.std)
    with pytest.raises(ValueError, match="values: expected one value per seed"):
        seed_summary([])
    with pytest.raises(ValueError, match="successes/total: expected both"):
        seed_summary([0.1, 0.2], successes=3)
    with pytest.raises(ValueError, match="successes/total: expected 0 <= successes"):
        seed_summary([0.1, 0.2], successes=5, total=4)


def test_summarize_seeds_over_the_fixed_outcomes_by_hand():
    rows = [summarize(LABELS, CLEAN, PRED[s], CONF[s], 3) for s in (0, 1)]
    out = summarize_seeds(
        rows,
        {"flip_rate": ("flips", "clean_correct"), "accuracy": ("correct", "n")},
    )
    assert sorted(out) == sorted(
        f"{q}_{s}" for q in ("flip_rate", "accuracy") for s in ("mean", "std", "ci")
    )
    # flip rates 3/6 and 0/6: mean 0.25, sd sqrt((0.25^2 + 0.25^2) / 1) = 0.353553
    assert out["flip_rate_mean"] == pytest.approx(0.25)
    assert out["flip_rate_std"] == pytest.approx(0.353553, abs=1e-6)
    # pooled 3 flips of 12: p = 0.25, z^2/n = 0.320122, denominator 1.320122, centre
    # (0.25 + 0.160061) / 1.320122 = 0.310624, half-width
    # 1.96 * sqrt(0.1875 / 12 + 3.8415 / 576) / 1.320122 = 0.221682
    assert out["flip_rate_ci"] == pytest.approx(
        [0.310624 - 0.221682, 0.310624 + 0.221682], abs=5e-5
    )
    # accuracy 3/8 and 7/8: mean 0.625, sd 0.353553; pooled 10 of 16: p = 0.625,
    # z^2/n = 0.240091, centre (0.625 + 0.120046) / 1.240091 = 0.600799, half-width
    # 1.96 * sqrt(0.234375 / 16 + 3.8415 / 1024) / 1.240091 = 0.214389
    assert out["accuracy_mean"] == pytest.approx(0.625)
    assert out["accuracy_std"] == pytest.approx(0.353553, abs=1e-6)
    assert out["accuracy_ci"] == pytest.approx(
        [0.600799 - 0.214389, 0.600799 + 0.214389], abs=5e-5
    )
    # a quantity without counts, and one undefined for a seed (no flips in seed 1)
    conf = summarize_seeds(rows, {"flipped_confidence": None}, skip_nan=True)
    assert conf == {
        "flipped_confidence_mean": pytest.approx((0.6 + 0.7 + 0.4) / 3),
        "flipped_confidence_std": 0.0,
    }
    with pytest.raises(ValueError, match="rows: expected the key 'flips'"):
        summarize_seeds([{"flip_rate": 0.1}], {"flip_rate": ("flips", "n")})
    with pytest.raises(ValueError, match="rows: expected one result row per seed"):
        summarize_seeds([], {"flip_rate": None})
