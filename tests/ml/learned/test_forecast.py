"""hr-forecast: evaluated in time order against persistence, never on future readings; what a score says."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.model_selection import TimeSeriesSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures

from fhir_twin.ml.cohort import cohort_dataset
from fhir_twin.ml.dataset import Dataset
from fhir_twin.ml.learned import InsufficientData, forecast, metrics
from fhir_twin.ml.learned.forecast import MIN_HISTORY, ForecastConfig, Series, predict, rolling_origin
from fhir_twin.ml.learned.heart_rate_series import simulate_stream

START = datetime(2024, 1, 1, tzinfo=UTC)
PERSISTENCE_ERRORS = tuple(np.linspace(-5, 5, 99))
CONFIG = ForecastConfig(degree=1, residual_quantiles=PERSISTENCE_ERRORS)


def _series(stream: list[tuple[datetime, float]]) -> Series:
    return Series.of([t for t, _ in stream], [v for _, v in stream])


def _points(stream: list[tuple[datetime, float]]) -> list[tuple[datetime, float, str]]:
    return [(t, v, f"Observation/hr{i}/_history/1") for i, (t, v) in enumerate(stream)]


def test_simulated_stream_is_seeded_regular_and_centred_on_70() -> None:
    stream = simulate_stream(0, 864, START)
    assert stream == simulate_stream(0, 864, START)
    assert stream != simulate_stream(1, 864, START)
    assert {b - a for (a, _), (b, _) in pairwise(stream)} == {timedelta(minutes=5)}
    assert np.mean([v for _, v in stream]) == pytest.approx(70, abs=2)


def test_lag_model_beats_persistence_on_the_simulated_stream() -> None:
    """Three days of 5-minute readings, one-step-ahead at every origin: MSE about 7 % below the last value."""
    found = rolling_origin(_series(simulate_stream(0, 864, START)), degrees=(1,))
    linear = metrics.regression_metrics(found.observed, found.forecasts[1], found.persistence)
    assert linear["n"] == 864 - MIN_HISTORY
    assert round(linear["skill"], 3) == 0.069
    assert linear["r2"] > 0.8


def test_regressing_heart_rate_on_time_alone_fails_in_time_order() -> None:
    """Why the product never does it: fitted on earlier hours, a trend in time extrapolates into later ones.
    (The time-only models live only in this test.)"""
    stream = simulate_stream(0, 864, START)
    hours = np.array([(t - START).total_seconds() / 3600 for t, _ in stream])[:, None]
    values = np.array([v for _, v in stream])
    for degree in (1, 2):
        truth, guesses = [], []
        for train, test in TimeSeriesSplit(n_splits=5).split(hours):
            model = make_pipeline(PolynomialFeatures(degree), LinearRegression()).fit(hours[train], values[train])
            truth.append(values[test])
            guesses.append(model.predict(hours[test]))
        r2 = metrics.regression_metrics(np.concatenate(truth), np.concatenate(guesses))["r2"]
        assert r2 < 0, f"time-only degree {degree}: R² {r2:.2f}"


def test_rolling_origin_never_uses_later_readings() -> None:
    stream = simulate_stream(2, 120, START)
    cut = 80
    changed = stream[:cut] + [(t, v + 40.0) for t, v in stream[cut:]]  # leakage would show as a jump
    before = rolling_origin(_series(stream), degrees=(1, 2))
    after = rolling_origin(_series(changed), degrees=(1, 2))
    early = before.origins < cut
    for degree in (0, 1, 2):
        assert np.array_equal(before.forecasts[degree][early], after.forecasts[degree][early]), degree
        assert not np.array_equal(before.forecasts[degree][~early], after.forecasts[degree][~early]), degree


def test_too_short_a_history_is_insufficient_and_names_heart_rate() -> None:
    points = _points(simulate_stream(0, MIN_HISTORY - 1, START))
    score, basis = predict(CONFIG, points, points[-1][0])
    assert score.value is None and score.probability is None
    assert score.missing == ("heart_rate",)
    assert "heart_rate" in score.rationale and f"{MIN_HISTORY} readings needed" in score.rationale
    assert basis == []


def test_sparse_or_stale_series_are_not_forecast() -> None:
    daily = [(START + timedelta(days=2 * i), 70.0 + i % 3, f"Observation/d{i}/_history/1") for i in range(40)]
    score, _ = predict(CONFIG, daily, daily[-1][0])
    assert score.value is None and "regular series" in score.rationale
    points = _points(simulate_stream(0, 48, START))
    score, _ = predict(CONFIG, points, points[-1][0] + timedelta(hours=25))
    assert score.value is None and "older than 24 h" in score.rationale


def test_a_forecast_with_interval_probability_and_basis() -> None:
    points = _points(simulate_stream(3, 48, START))
    now = points[-1][0]
    score, basis = predict(CONFIG, points, now)
    forecast_ = score.forecast
    assert forecast_ is not None
    assert forecast_.low < forecast_.value < forecast_.high
    assert (forecast_.level, forecast_.unit) == (0.9, "/min")
    assert forecast_.horizon_hours == pytest.approx(5 / 60)
    assert score.value == round(forecast_.value, 1)
    assert 0 < score.probability < 1
    assert score.band in {"negligible", "low", "moderate", "high"}
    assert basis == [source for _, _, source in points][-len(basis) :]
    # Every reading the forecast and its interval were fitted on, none left out of the basis.
    assert basis == [p[2] for p in points]
    last = ", ".join(f"{v:.0f}" for _, v, _ in points[-3:])
    assert f"Last 3 heart rates {last} /min" in score.rationale
    assert "90 % interval" in score.rationale and "repeating the last value" in score.rationale
    assert "Chance of a heart rate above 100/min then: " in score.rationale and "P(" not in score.rationale
    assert "the last reading +" in score.rationale or "the last reading -" in score.rationale
    assert score.contributions and abs(score.contributions[0].points) >= abs(score.contributions[-1].points)
    assert score.contributions[0].input == "heart_rate_lag1"
    later = [*points, (now + timedelta(minutes=5), 190.0, "Observation/future/_history/1")]
    assert predict(CONFIG, later, now) == (score, basis), "readings after now are not used"


def test_a_rising_heart_rate_gives_a_high_probability_of_tachycardia() -> None:
    points = [(t, v + 32.0, source) for t, v, source in _points(simulate_stream(4, 48, START))]
    score, _ = predict(CONFIG, points, points[-1][0])
    assert score.probability > 0.5 and score.band == "high"


def _streams(patients: int, readings: int) -> Dataset:
    rows = [
        (f"p{n}", "heart_rate", pd.Timestamp(t), v, None, f"Observation/p{n}-{i}/_history/1")
        for n in range(patients)
        for i, (t, v) in enumerate(simulate_stream(10 + n, readings, START))
    ]
    frame = pd.DataFrame(rows, columns=["patient_id", "field", "time", "value", "category", "source"])
    patients_frame = pd.DataFrame(
        {"patient_id": [f"p{n}" for n in range(patients)], "gender": "female", "birth_date": pd.NaT, "race": None}
    )
    conditions = pd.DataFrame(columns=["patient_id", "code", "display", "onset", "source"])
    return Dataset("simulated streams", True, patients_frame, frame, conditions)


def test_training_chooses_by_rolling_origin_and_reports() -> None:
    result = forecast.train(_streams(5, 432))
    comparison = result.report["comparison"]
    candidates = comparison["candidates"]
    assert set(candidates) == {"persistence (last value)", "linear", "polynomial (degree 2)"}
    best = min(candidates, key=lambda name: candidates[name]["mse"])
    assert comparison["chosen"] == best == forecast.CANDIDATES[result.artifact.degree]
    assert best == "linear"
    assert candidates["linear"]["skill"] > 0
    assert result.report["holdout"]["n_test"] == 1
    assert 0.6 < result.report["calibration"]["holdout_interval_coverage"] <= 1
    assert len(result.artifact.residual_quantiles) == 99
    json.dumps(result.report, allow_nan=False)
    assert "synthetic" in result.card.lower() and "## Comparison" in result.card


def test_on_short_cohort_streams_persistence_is_kept() -> None:
    """Four hours per patient are too few for a regression to beat the last value: training says so."""
    result = forecast.train(cohort_dataset(3, 8, stream_patients=8))
    assert result.artifact.degree == 0
    candidates = result.report["comparison"]["candidates"]
    assert candidates["linear"]["skill"] < 0
    points = _points(simulate_stream(5, 48, START))
    score, _ = predict(result.artifact, points, points[-1][0])
    assert score.value == points[-1][1]


def test_training_without_regular_series_is_refused() -> None:
    with pytest.raises(InsufficientData, match="at least 24 heart-rate readings"):
        forecast.train(cohort_dataset(3, 5))


def test_naive_times_are_taken_as_utc_as_the_twin_stores_them() -> None:
    points = _points(simulate_stream(3, 48, START))
    naive = [(t.replace(tzinfo=None), v, source) for t, v, source in points]
    assert predict(CONFIG, naive, points[-1][0].replace(tzinfo=None)) == predict(CONFIG, points, points[-1][0])
