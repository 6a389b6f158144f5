"""Cross-validation, hold-out and external validation of pipelines: fresh models per fold, seeded splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fhir_twin.ml.learned.validation import (
    cross_validate_classifier,
    cross_validate_regressor,
    external_classifier,
    holdout_classifier,
    holdout_regressor,
    inference_latency,
)


def _classification(n: int, seed: int) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    logit = -1 + 1.5 * X["a"] - 0.5 * X["b"]
    return X, pd.Series((rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int))


def _classifier() -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("classifier", LogisticRegression(random_state=0))])


def test_cross_validation_fits_a_fresh_model_per_fold_and_summarises() -> None:
    X, y = _classification(300, 0)
    made = []

    def factory() -> Pipeline:
        made.append(1)
        return _classifier()

    found = cross_validate_classifier(factory, X, y, folds=5, seed=0)
    assert len(made) == 5
    assert len(found["per_fold"]) == 5
    assert sum(fold["n"] for fold in found["per_fold"]) == 300
    auroc = found["metrics"]["auroc"]
    assert auroc["k"] == 5
    assert auroc["ci_low"] < auroc["mean"] < auroc["ci_high"]
    assert auroc["mean"] > 0.7
    assert found["fit_seconds"] > 0
    assert sum(row["n"] for row in found["reliability"]) == 300
    assert found == {
        **cross_validate_classifier(_classifier, X, y, folds=5, seed=0),
        "fit_seconds": found["fit_seconds"],
    }


def test_holdout_is_stratified_and_evaluated_once() -> None:
    X, y = _classification(300, 1)
    found = holdout_classifier(_classifier, X, y, test_size=0.2, seed=0)
    assert (found["n_train"], found["n_test"]) == (240, 60)
    assert found["metrics"]["prevalence"] == pytest.approx(y.mean(), abs=0.02)
    low, high = found["ci"]["auroc"]
    assert low < found["metrics"]["auroc"] < high


def test_external_validation_uses_the_fitted_model_unchanged() -> None:
    X, y = _classification(300, 2)
    fitted = _classifier().fit(X, y)
    coefficients = fitted[-1].coef_.copy()
    X_ext, y_ext = _classification(200, 3)
    found = external_classifier(fitted, X_ext, y_ext)
    assert found["n"] == 200
    assert np.array_equal(fitted[-1].coef_, coefficients)
    assert found["metrics"]["auroc"] > 0.7


def test_regression_validation_against_the_mean() -> None:
    rng = np.random.default_rng(4)
    X = pd.DataFrame({"x": rng.normal(size=200)})
    y = pd.Series(3 * X["x"] + rng.normal(size=200))
    cv = cross_validate_regressor(LinearRegression, X, y, folds=10, seed=0)
    assert cv["metrics"]["r2"]["mean"] > 0.8
    assert cv["metrics"]["skill"]["mean"] > 0.8
    holdout = holdout_regressor(LinearRegression, X, y, seed=42)
    assert (holdout["n_train"], holdout["n_test"]) == (160, 40)
    assert holdout["metrics"]["skill"] > 0.8


def test_latency_percentiles() -> None:
    found = inference_latency(lambda row: sum(row), [[1, 2]] * 20)
    assert found["n"] == 20
    assert 0 <= found["p50_ms"] <= found["p95_ms"]
    assert inference_latency(lambda row: row, [])["p50_ms"] is None
