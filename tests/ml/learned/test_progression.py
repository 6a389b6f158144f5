"""diabetes-progression reproduces the linear against polynomial comparison on load_diabetes (Efron et al. 2004)."""

from __future__ import annotations

import json

import pytest

from fhir_twin.ml.learned import progression
from fhir_twin.ml.learned.report import TrainResult


@pytest.fixture(scope="module")
def trained() -> TrainResult:
    return progression.train(seed=0)


def test_linear_beats_polynomial_in_cross_validation_and_holdout(trained: TrainResult) -> None:
    candidates = trained.report["comparison"]["candidates"]
    linear, polynomial = candidates["linear"], candidates["polynomial (degree 2)"]
    assert (round(linear["cv_mse"], 1), round(linear["cv_r2"], 3)) == (2985.2, 0.484)
    assert (round(linear["cv_mse_sd"], 1), round(linear["cv_r2_sd"], 3)) == (498.1, 0.119)
    assert (round(polynomial["cv_mse"], 1), round(polynomial["cv_r2"], 3)) == (3423.9, 0.408)
    assert (round(linear["holdout_mse"], 1), round(linear["holdout_r2"], 3)) == (2900.2, 0.453)
    assert (round(polynomial["holdout_mse"], 1), round(polynomial["holdout_r2"], 3)) == (3096.0, 0.416)
    assert trained.report["comparison"]["chosen"] == "linear"
    assert trained.report["holdout"]["metrics"]["baseline_mse"] == pytest.approx(5361.5, abs=0.1)
    assert trained.report["holdout"]["metrics"]["skill"] == pytest.approx(1 - 2900.2 / 5361.5, abs=1e-3)


def test_the_chosen_model_is_refitted_on_all_442_patients(trained: TrainResult) -> None:
    X, _ = progression.data()
    assert trained.report["data"]["patients"] == 442
    assert trained.artifact.predict(X.iloc[[0]]).shape == (1,)
    assert list(trained.artifact.feature_names_in_) == [f.name for f in progression.FEATURES]


def test_report_and_card(trained: TrainResult) -> None:
    json.dumps(trained.report, allow_nan=False)
    assert trained.report["data"]["synthetic"] is False
    assert trained.report["external"] is None and trained.report["calibration"] is None
    card = trained.card
    assert "**Synthetic data.**" not in card
    assert "| bmi | 39156-5 | kg/m2 |" in card
    assert "Not run on patients" in card
    assert "| linear | 2985.2 |" in card
    assert card.count("## ") >= 11
