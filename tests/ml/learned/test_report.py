"""Reports are strict JSON; model cards name the data, flag synthetic data and hold every section; an
apparent validation on the server's own twins is filed apart from external validation; gates are shown."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np

from fhir_twin.ml.dataset import empty
from fhir_twin.ml.learned.gates import Gate
from fhir_twin.ml.learned.report import (
    Feature,
    build,
    clean,
    data_section,
    external_report,
    internal_report,
    model_card,
)
from fhir_twin.ml.scores.score import Input, ModelInfo

MODEL = ModelInfo("demo", "0.1.0", "learned", (Input("bmi", "http://loinc.org|39156-5"),), "demo outcome", "1 year",
                  "for tests", "none")  # fmt: skip


def _report(synthetic: bool) -> dict:
    summary = {"k": 5, "mean": 0.8, "sd": 0.05, "ci_low": 0.74, "ci_high": 0.86}
    return build(
        MODEL,
        data=data_section(empty("demo data", synthetic), examples=0),
        features=[
            Feature("bmi", "http://loinc.org|39156-5", "kg/m2", "body mass index"),
            Feature("prediabetes", "http://snomed.info/sct|15777000", "1", "recorded"),
        ],
        outcome={"definition": "demo", "horizon": "1 year"},
        cross_validation={"method": "5-fold", "metrics": {"auroc": summary, "brier": {**summary, "mean": math.nan}}},
        holdout={"method": "80/20", "n_test": 10, "metrics": {"auroc": np.float64(0.7), "n": np.int64(10)}},
        calibration={"slope": 0.9, "reliability": [{"n": 10, "predicted": 0.1, "observed": 0.2}]},
        efficiency={"fit_seconds": 0.01},
        comparison=None,
        limits=["a limit"],
        seed=7,
        gates=(
            Gate("hold-out AUROC", ("holdout", "metrics", "auroc"), "a source", low=0.7),
            Gate("calibration slope", ("calibration", "slope"), "our choice", low=0.95, high=1.05),
            Gate("hold-out Brier", ("holdout", "metrics", "brier"), "not measured here", above=0.0),
        ),
        created=datetime(2026, 1, 1, tzinfo=UTC),
    )


def test_clean_makes_strict_json() -> None:
    value = clean({"a": np.float32(1.5), "b": (np.int64(2), math.inf), "c": np.array([math.nan]), "d": np.bool_(True)})
    assert value == {"a": 1.5, "b": [2, None], "c": [None], "d": True}
    assert type(value["b"][0]) is int
    report = _report(True)
    json.dumps(report, allow_nan=False)
    assert set(report) == {
        "model", "data", "features", "outcome", "cross_validation", "holdout", "external", "internal",
        "calibration", "efficiency", "comparison", "gates", "limits", "created", "versions", "seed",
    }  # fmt: skip
    assert report["cross_validation"]["metrics"]["brier"]["mean"] is None
    assert set(report["versions"]) == {"scikit-learn", "pandas", "numpy"}


def test_card_sections_and_synthetic_warning() -> None:
    card = model_card(MODEL, _report(True))
    assert card.startswith("# Model card: demo 0.1.0")
    assert "**Synthetic data.**" in card and "not clinical performance" in card
    assert f"SHA-256: {empty('demo data', True).digest()}" in card
    assert "| bmi | 39156-5 | kg/m2 | body mass index |" in card
    assert "| prediabetes | http://snomed.info/sct\\|15777000 | 1 | recorded |" in card, "a bar would split the cell"
    assert "| auroc | 0.800 ± 0.050 | 0.740 to 0.860 |" in card
    assert "## External validation\n\nNot performed" in card
    assert "| 1 | 10 | 0.100 | 0.200 |" in card
    assert "- a limit" in card and "TRIPOD+AI" in card
    assert "**Synthetic data.**" not in model_card(MODEL, _report(False))


def test_external_report_adds_a_section_without_changing_the_original() -> None:
    report = _report(False)
    external = empty("other site", False)
    updated = external_report(report, {"method": "unchanged", "n": 3, "metrics": {"auroc": 0.7}}, external)
    assert report["external"] is None
    assert updated["external"]["dataset"]["sha256"] == external.digest()
    card = model_card(MODEL, updated)
    assert "Dataset: other site (synthetic: no, 0 patients" in card
    assert "| auroc | 0.700 | – |" in card


def test_gates_are_checked_on_the_report_and_shown_on_the_card() -> None:
    report = _report(False)
    assert [(g["name"], g["value"], g["passed"]) for g in report["gates"]] == [
        ("hold-out AUROC", 0.7, True),
        ("calibration slope", 0.9, False),
        ("hold-out Brier", None, False),
    ]
    assert report["gates"][1]["allowed"] == "0.95 to 1.05" and report["gates"][1]["reason"] == "our choice"
    card = model_card(MODEL, report)
    gates = card.split("## Gates", 1)[1].split("## Efficiency", 1)[0]
    assert "not all pass, so this version cannot be activated" in gates
    assert "| hold-out AUROC | holdout.metrics.auroc | ≥ 0.7 | 0.700 | pass | a source |" in gates
    assert "| calibration slope | calibration.slope | 0.95 to 1.05 | 0.900 | FAIL | our choice |" in gates
    assert "| hold-out Brier | holdout.metrics.brier | > 0 | – | FAIL | not measured here |" in gates


def test_an_apparent_validation_is_internal_never_external() -> None:
    report = _report(True)
    here = empty("this server's current twins", True)
    updated = internal_report(report, {"method": "unchanged", "n": 3, "metrics": {"auroc": 0.9}}, here)
    assert updated["external"] is None and report["internal"] is None
    assert updated["internal"]["description"] == (
        "Apparent validation on this server's current twins, which may include the training data"
    )
    card = model_card(MODEL, updated)
    assert "## External validation\n\nNot performed" in card
    internal = card.split("## Internal validation (apparent)", 1)[1].split("## Calibration", 1)[0]
    assert "which may include the training data." in internal
    assert "Dataset: this server's current twins (synthetic: yes, 0 patients" in internal
    assert "| auroc | 0.900 | – |" in internal
