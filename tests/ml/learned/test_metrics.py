"""Evaluation metrics on inputs small enough to check by hand, and calibration on simulated probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fhir_twin.ml.learned import metrics
from fhir_twin.ml.learned.metrics import bootstrap_ci, calibration, classification_metrics, regression_metrics


def test_regression_metrics_by_hand() -> None:
    found = regression_metrics([1, 2, 3], [1, 2, 4])
    assert found["mse"] == pytest.approx(1 / 3)
    assert found["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert found["mae"] == pytest.approx(1 / 3)
    assert found["r2"] == pytest.approx(0.5)  # 1 − (1/3) / (2/3)
    assert "skill" not in found


def test_skill_is_zero_when_the_model_is_the_baseline_and_one_when_perfect() -> None:
    y = [70.0, 72.0, 75.0, 71.0]
    baseline = [69.0, 70.0, 72.0, 75.0]
    assert regression_metrics(y, baseline, baseline)["skill"] == 0.0
    perfect = regression_metrics(y, y, baseline)
    assert perfect["skill"] == 1.0
    assert perfect["mse"] == 0.0
    assert perfect["r2"] == 1.0
    worse = regression_metrics(y, [60.0] * 4, baseline)
    assert worse["skill"] < 0


def test_r2_is_none_for_a_constant_target() -> None:
    assert regression_metrics([5, 5, 5], [5, 5, 6])["r2"] is None


def test_classification_metrics_by_hand() -> None:
    found = classification_metrics([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1], threshold=0.5)
    assert found["auroc"] == pytest.approx(0.75)  # 3 of the 4 (event, non-event) pairs ranked right
    assert found["brier"] == pytest.approx((0.01 + 0.36 + 0.36 + 0.01) / 4)
    assert found["scaled_brier"] == pytest.approx(1 - 0.185 / 0.25)
    assert found["log_loss"] == pytest.approx(-(math.log(0.9) + math.log(0.4) + math.log(0.4) + math.log(0.9)) / 4)
    assert (found["accuracy"], found["sensitivity"], found["specificity"], found["ppv"]) == (0.5, 0.5, 0.5, 0.5)
    assert (found["prevalence"], found["n"], found["threshold"]) == (0.5, 4, 0.5)


def test_perfect_predictions() -> None:
    found = classification_metrics([0, 1, 0, 1], [0.0, 1.0, 0.0, 1.0])
    assert found["brier"] == 0.0
    assert found["auroc"] == 1.0
    assert found["log_loss"] < 1e-5
    assert found["accuracy"] == found["sensitivity"] == found["specificity"] == found["ppv"] == 1.0
    assert found["calibration_slope"] is None, "perfect separation: the recalibration slope is infinite"


def test_one_class_gives_no_auroc_and_says_why() -> None:
    found = classification_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert found["auroc"] is None
    assert found["scaled_brier"] is None
    assert found["calibration_slope"] is None and found["calibration_intercept"] is None
    assert found["sensitivity"] is None
    assert "one outcome class" in found["note"]


def test_probabilities_outside_0_1_are_refused() -> None:
    with pytest.raises(ValueError, match=r"0\.\.1"):
        classification_metrics([0, 1], [0.2, 1.5])


def _simulated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-1.0, 1.2, n)
    y = (rng.random(n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    return y, true_logit


def test_calibration_of_well_calibrated_probabilities_is_slope_1_intercept_0() -> None:
    y, logit = _simulated(20_000, 0)
    slope, intercept = calibration(y, 1 / (1 + np.exp(-logit)))
    assert slope == pytest.approx(1.0, abs=0.05)
    assert intercept == pytest.approx(0.0, abs=0.05)


def test_calibration_detects_overfitting_and_overestimation() -> None:
    y, logit = _simulated(20_000, 1)
    too_extreme, _ = calibration(y, 1 / (1 + np.exp(-2 * logit)))
    assert too_extreme == pytest.approx(0.5, abs=0.05)  # slope < 1: predictions too extreme
    _, too_high = calibration(y, 1 / (1 + np.exp(-(logit + 1))))
    assert too_high == pytest.approx(-1.0, abs=0.06)  # intercept < 0: risks overestimated


def test_bootstrap_interval_is_seeded_and_brackets_the_estimate() -> None:
    y, logit = _simulated(300, 2)
    prob = 1 / (1 + np.exp(-logit))
    interval = bootstrap_ci(metrics.auroc, y, prob, seed=3)
    assert interval == bootstrap_ci(metrics.auroc, y, prob, seed=3)
    assert interval is not None
    assert interval[0] < metrics.auroc(y, prob) < interval[1]
    assert bootstrap_ci(metrics.auroc, np.zeros(5), np.full(5, 0.2)) is None, "AUROC is undefined on every resample"


def test_summary_over_folds_is_mean_sd_and_t_interval() -> None:
    found = metrics.summary([1.0, 2.0, 3.0, None])
    assert (found["k"], found["mean"], found["sd"]) == (3, 2.0, 1.0)
    assert found["ci_low"] == pytest.approx(2 - 4.303 / math.sqrt(3))
    assert found["ci_high"] == pytest.approx(2 + 4.303 / math.sqrt(3))
    assert metrics.summary([None])["mean"] is None


def test_reliability_bins_hold_every_prediction() -> None:
    y, logit = _simulated(1000, 4)
    rows = metrics.reliability(y, 1 / (1 + np.exp(-logit)))
    assert len(rows) == 10
    assert sum(row["n"] for row in rows) == 1000
    predicted = [row["predicted"] for row in rows]
    assert predicted == sorted(predicted)
