"""incident-diabetes on the synthetic cohort: future outcomes only, validated three ways, explained per patient."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from fhir_twin.ml.cohort import cohort_dataset
from fhir_twin.ml.concepts import SNOMED as SNOMED_SYSTEM
from fhir_twin.ml.dataset import Dataset
from fhir_twin.ml.learned import InsufficientData, incidence, incidence_examples
from fhir_twin.ml.learned.incidence import evaluate, predict, train
from fhir_twin.ml.learned.incidence_examples import COLUMNS, HORIZON, examples, features_now
from fhir_twin.ml.learned.report import TrainResult, external_report
from tests.ml.learned_data import TYPICAL

AT = datetime(2012, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def development() -> Dataset:
    return cohort_dataset(1, 400)


@pytest.fixture(scope="module")
def trained(development: Dataset) -> TrainResult:
    return train(development, seed=0)


def test_examples_are_future_diagnoses_in_patients_without_diabetes(development: Dataset) -> None:
    X, y, index_dates, sources = examples(development)
    assert list(X.columns) == list(COLUMNS)
    assert 350 < len(X) < 400, "patients with diabetes at the index date are left out"
    assert 0.1 < y.mean() < 0.3
    conditions = development.conditions
    diabetes = conditions[conditions["code"] == "http://snomed.info/sct|44054006"].set_index("patient_id")["onset"]
    for patient_id, label in y.items():
        onset = diabetes.get(patient_id)
        index = index_dates[patient_id]
        if onset is not None:
            assert onset > index, "diabetes before the index date excludes the patient"
        assert label == int(onset is not None and onset <= index + HORIZON)
    excluded = set(development.patients["patient_id"]) - set(X.index)
    assert excluded and all(diabetes[p] <= index_dates.get(p, diabetes[p]) for p in excluded)
    assert all(source.startswith(("Observation/", "Condition/")) for used in sources.values() for source in used)


def test_cross_validation_holdout_and_calibration(trained: TrainResult) -> None:
    report = trained.report
    cv = report["cross_validation"]["metrics"]
    assert cv["auroc"]["k"] == 5
    assert round(cv["auroc"]["mean"], 3) == 0.795
    assert round(cv["auroc"]["sd"], 3) == 0.113
    assert cv["auroc"]["ci_low"] < cv["auroc"]["mean"] < cv["auroc"]["ci_high"]
    holdout = report["holdout"]
    assert (holdout["n_train"], holdout["n_test"]) == (302, 76)
    assert round(holdout["metrics"]["auroc"], 3) == 0.857
    calibration = report["calibration"]
    assert 0.5 < calibration["out_of_fold_slope"] < 1.5
    assert -0.5 < calibration["out_of_fold_intercept"] < 0.5
    assert len(calibration["reliability"]) == 10
    comparison = report["comparison"]["candidates"]
    assert comparison["all features"]["auroc"] > comparison["age and sex only"]["auroc"]
    assert report["efficiency"]["latency_p95_ms"] >= report["efficiency"]["latency_p50_ms"] > 0
    json.dumps(report, allow_nan=False)


def test_external_validation_on_another_cohort(trained: TrainResult) -> None:
    external = cohort_dataset(2, 400)
    found = evaluate(trained.artifact, external)
    assert round(found["metrics"]["auroc"], 3) == 0.800
    assert found["ci"]["auroc"][0] < found["metrics"]["auroc"] < found["ci"]["auroc"][1]
    assert found["metrics"]["calibration_slope"] is not None
    report = external_report(trained.report, found, external)
    assert trained.report["external"] is None, "the original report is not changed"
    assert report["external"]["dataset"] == {
        "name": external.name,
        "synthetic": True,
        "origin": {
            "patients": 400,
            "synthetic_patients": 0,
            "marks": {},
            "declared": True,
            "summary": "declared synthetic by the code that built the data; no Patient resource was examined",
        },
        "patients": 400,
        "sha256": external.digest(),
    }
    json.dumps(report, allow_nan=False)
    card = incidence.model_card(incidence.MODEL, report)
    assert external.digest() in card


def test_model_card_says_synthetic_and_has_every_section(trained: TrainResult) -> None:
    card = trained.card
    for section in (
        "# Model card: incident-diabetes 1.0.0",
        "## Data",
        "## Features",
        "## Outcome and horizon",
        "## Cross-validation",
        "## Hold-out",
        "## External validation",
        "## Calibration",
        "## Efficiency",
        "## Intended use",
        "## Limits",
    ):
        assert section in card, section
    assert "**Synthetic data.**" in card and "not clinical performance" in card
    assert "| hba1c | 4548-4 | % |" in card
    assert "TRIPOD+AI" in card
    assert "Not performed" in card


def test_training_is_deterministic(development: Dataset, trained: TrainResult) -> None:
    again = train(development, seed=0)
    assert again.report["cross_validation"]["metrics"] == trained.report["cross_validation"]["metrics"]
    assert again.report["holdout"]["metrics"] == trained.report["holdout"]["metrics"]


def test_too_few_examples_are_refused() -> None:
    with pytest.raises(
        InsufficientData, match=r"at least 20 examples .* gives 10 \(3 with incident diabetes, 7 without"
    ):
        train(cohort_dataset(1, 10))


def test_a_prediction_explains_its_top_three_contributions(trained: TrainResult) -> None:
    score = predict(trained.artifact, TYPICAL, AT)
    assert 0 < score.probability < 1
    assert score.value == round(score.probability, 4)
    assert score.band == "high" and score.mitigation and "Standards of Care" in score.mitigation
    assert not score.partial and score.missing == ()
    points = [abs(c.points) for c in score.contributions]
    assert points == sorted(points, reverse=True)
    for contribution in score.contributions[:3]:
        assert contribution.explanation in score.rationale
    assert score.rationale.startswith("Estimated probability of a type 2 diabetes diagnosis within 5 years: ")
    assert "Largest contributors, against a patient with the training cohort's average values: " in score.rationale
    assert "β" not in score.rationale and "z " not in score.rationale
    assert any(c.explanation.endswith(("(raises the estimate)", "(lowers the estimate)")) for c in score.contributions)
    lower = predict(trained.artifact, {**TYPICAL, "hba1c": 5.0, "glucose": 85.0, "bmi": 22.0, "prediabetes": 0.0}, AT)
    assert lower.probability < score.probability
    assert lower.band in ("negligible", "low")
    assert lower.mitigation is None


def test_missing_values_are_imputed_and_named(trained: TrainResult) -> None:
    score = predict(trained.artifact, {**TYPICAL, "hba1c": None, "hdl_cholesterol": float("nan")}, AT)
    assert score.partial and score.missing == ("hba1c", "hdl_cholesterol")
    assert "imputed with the training median: hba1c, hdl_cholesterol" in score.rationale
    assert 0 < score.probability < 1


def test_no_score_without_age_sex_or_any_measurement_and_none_with_diabetes(trained: TrainResult) -> None:
    assert predict(trained.artifact, {**TYPICAL, "age": None, "male": None}, AT).missing == ("age", "sex")
    empty = {"age": 50.0, "male": 0.0, "prediabetes": 0.0}
    assert predict(trained.artifact, empty, AT).value is None
    assert "diabetes is already recorded" in predict(trained.artifact, {**TYPICAL, "diabetes": 1.0}, AT).rationale
    assert predict(trained.artifact, {**TYPICAL, "age": 16.0}, AT).value is None


def test_features_now_match_the_training_row(development: Dataset) -> None:
    X, _, index_dates, sources = examples(development)
    patient_id = X.index[3]
    patient = development.patients.set_index("patient_id").loc[patient_id]
    measurements = development.measurements[development.measurements["patient_id"] == patient_id]
    conditions = development.conditions[development.conditions["patient_id"] == patient_id]
    features, basis = features_now(patient, measurements, conditions, index_dates[patient_id])
    assert features.pop("diabetes") == 0.0
    row = X.loc[patient_id]
    assert all((pd.isna(row[c]) and features[c] is None) or row[c] == features[c] for c in COLUMNS)
    assert basis == sources[patient_id]
    naive = index_dates[patient_id].tz_convert(None).to_pydatetime()
    assert features_now(patient, measurements, conditions, naive)[0] == {**features, "diabetes": 0.0}


def test_an_icd10_coded_diagnosis_is_an_outcome_and_an_exclusion() -> None:
    """Type 2 diabetes coded in ICD-10 (E11.9) labels an example as an event, like SNOMED CT
    44054006; one recorded before the index date excludes the patient."""
    dataset = cohort_dataset(1, 120)
    snomed = f"{SNOMED_SYSTEM}|44054006"
    icd10 = dataset.conditions.assign(
        code=dataset.conditions["code"].where(
            dataset.conditions["code"] != snomed, "http://hl7.org/fhir/sid/icd-10-cm|E11.9"
        )
    )
    recoded = dataclasses.replace(dataset, conditions=icd10)
    X, y, _, _ = incidence_examples.examples(dataset)
    X_icd, y_icd, _, _ = incidence_examples.examples(recoded)
    assert (dataset.conditions["code"] == snomed).any()
    assert y_icd.sum() == y.sum() > 0
    assert len(X_icd) == len(X)


def _frames(
    measurements: list[tuple[str, str, float]], conditions: list[tuple[str, str, str]] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One patient's frames: (field, date, value) measurements and (code, display, onset) conditions."""
    rows = [("p", name, pd.Timestamp(day, tz="UTC"), value, None, f"Observation/{name}/_history/1")
            for name, day, value in measurements]  # fmt: skip
    diagnoses = [("p", code, display, pd.Timestamp(onset, tz="UTC"), "Condition/dm/_history/1")
                 for code, display, onset in conditions]  # fmt: skip
    return (
        pd.DataFrame(rows, columns=["patient_id", "field", "time", "value", "category", "source"]),
        pd.DataFrame(diagnoses, columns=["patient_id", "code", "display", "onset", "source"]),
    )


PATIENT = {"birth_date": pd.Timestamp("1969-05-01", tz="UTC"), "gender": "male"}
NOW = datetime(2024, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("measurements", "conditions", "says", "source"),
    [
        (
            [("bmi", "2024-03-01", 31.0), ("hba1c", "2023-01-05", 8.5), ("hba1c", "2024-03-01", 6.9)],
            [],
            "diabetes is already present: HbA1c 6.9 % on 2024-03-01 (≥ 6.5 %, ADA)",
            "Observation/hba1c/_history/1",
        ),
        (
            [("bmi", "2024-03-01", 31.0), ("fasting_glucose", "2024-02-10", 131.0)],
            [],
            "diabetes is already present: fasting glucose 131 mg/dL on 2024-02-10 (≥ 126 mg/dL, ADA)",
            "Observation/fasting_glucose/_history/1",
        ),
        (
            [("bmi", "2024-03-01", 31.0), ("hba1c", "2024-03-01", 8.5)],
            [(f"{SNOMED_SYSTEM}|44054006", "Diabetes mellitus type 2", "2020-01-01")],
            "diabetes is already recorded: Condition/dm/_history/1 (Diabetes mellitus type 2, onset 2020-01-01)",
            "Condition/dm/_history/1",
        ),
    ],
    ids=["hba1c", "fasting-glucose", "diagnosis-first"],
)
def test_existing_diabetes_by_laboratory_criteria_is_not_applicable_naming_the_evidence(
    trained: TrainResult, measurements: list[tuple[str, str, float]], conditions: list[tuple[str, str, str]],
    says: str, source: str,
) -> None:  # fmt: skip
    frames = _frames(measurements, conditions)
    features, basis = features_now(PATIENT, *frames, NOW)
    assert features["diabetes"] == 1.0 and source in basis
    score = predict(trained.artifact, features, NOW)
    assert score.value is None and score.probability is None
    assert score.rationale == f"incident-diabetes: not applicable, {says}"


def test_readings_below_the_criteria_or_after_the_time_leave_the_model_applicable(trained: TrainResult) -> None:
    frames = _frames(
        [
            ("bmi", "2024-03-01", 31.0),
            ("hba1c", "2024-03-01", 6.4),
            ("fasting_glucose", "2024-03-01", 125.0),
            ("hba1c", "2024-07-01", 9.0),  # after the time of the prediction
        ]
    )
    features, _ = features_now(PATIENT, *frames, NOW)
    assert features["diabetes"] == 0.0 and "diabetes_evidence" not in features
    score = predict(trained.artifact, features, NOW)
    assert score.probability is not None and 0 < score.probability < 1
    later, _ = features_now(PATIENT, *frames, datetime(2024, 8, 1, tzinfo=UTC))
    assert "HbA1c 9 % on 2024-07-01" in predict(trained.artifact, later, NOW).rationale


def test_training_excludes_diabetes_by_laboratory_criteria_and_counts_each_criterion() -> None:
    dataset = cohort_dataset(1, 150)
    X, _, index_dates, _ = examples(dataset)
    by_hba1c, by_glucose = list(X.index[:3]), list(X.index[3:5])
    frame = dataset.measurements
    raised = frame["value"].where(~(frame["patient_id"].isin(by_hba1c) & (frame["field"] == "hba1c")), 7.1)
    fasting = pd.DataFrame(
        [
            (pid, "fasting_glucose", index_dates[pid], 140.0, None, f"Observation/fg-{pid}/_history/1")
            for pid in by_glucose
        ],
        columns=frame.columns,
    )
    hba1c_holders = set(frame.loc[frame["field"] == "hba1c", "patient_id"]) & set(by_hba1c)
    changed = dataclasses.replace(dataset, measurements=pd.concat([frame.assign(value=raised), fasting]))
    X_changed, _, _, _ = examples(changed)
    assert set(X.index) - set(X_changed.index) == hba1c_holders | set(by_glucose)
    excluded = train(changed, seed=0).report["data"]["excluded"]
    assert excluded[incidence_examples.BY_HBA1C] == len(hba1c_holders) > 0
    assert excluded[incidence_examples.BY_FASTING_GLUCOSE] == 2
    prevalent = train(dataset, seed=0).report["data"]["excluded"][incidence_examples.DIAGNOSIS]
    assert excluded[incidence_examples.DIAGNOSIS] == prevalent > 0, "a diagnosis counts first"
