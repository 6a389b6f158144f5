"""incident-diabetes: probability of a type 2 diabetes diagnosis within 5 years, by logistic regression.

The outcome is a future event, never a value computed from today's features: a diabetes diagnosis
(SNOMED CT 44054006 type 2, or 73211009 unspecified) with onset in the 5 years after an index date,
in patients without any diabetes (also 46635009 type 1) at that date. Features are the kind of the
published diabetes risk scores (FINDRISC: Lindström & Tuomilehto, Diabetes Care 2003;26:725; Wilson
et al., Arch Intern Med 2007;167:1068): age, sex, BMI, systolic BP, glucose, HbA1c, HDL, current
smoking and a recorded prediabetes. Imputation, scaling and the regression are one scikit-learn
``Pipeline`` so cross-validation does not leak (Steyerberg, Clinical Prediction Models, 2nd ed., 2019).

How examples and features are made, and when diabetes is already present: ``incidence_examples``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fhir_twin.ml import codes, fields
from fhir_twin.ml.assessment import Kind
from fhir_twin.ml.dataset import CONDITION_COLUMNS, MEASUREMENT_COLUMNS, Dataset
from fhir_twin.ml.fields import BodyField
from fhir_twin.ml.learned import Bands, InsufficientData, risk_band
from fhir_twin.ml.learned.declared.incidence import GATES, MEASURED_FIELDS, MODEL, READS, WHATIF
from fhir_twin.ml.learned.incidence_examples import COLUMNS, MEASURED, MIN_AGE, Examples, examples_of, features_now
from fhir_twin.ml.learned.report import Feature, TrainResult, build, data_section, efficiency, model_card
from fhir_twin.ml.learned.validation import (
    cross_validate_classifier,
    external_classifier,
    holdout_classifier,
    inference_latency,
)
from fhir_twin.ml.reader import Gathered, Reader
from fhir_twin.ml.runners import Patient, Run, completed
from fhir_twin.ml.scores.score import Contribution, ModelInfo, Score
from fhir_twin.ml.simulation import Simulation

MIN_EXAMPLES = 20
MIN_PER_CLASS = 5
# Probability at or above which the model calls a patient high risk; sensitivity, specificity and PPV
# are reported there. Bands: below 0.01 negligible, below 0.05 low, below 0.2 moderate, else high.
# These cut-points are this server's choice for a 5-year risk, not clinical thresholds.
THRESHOLD = 0.2
BANDS: Bands = ((0.01, "negligible"), (0.05, "low"), (THRESHOLD, "moderate"))

FEATURES = (
    Feature("age", None, "a", "age at the index date, from Patient.birthDate"),
    Feature("male", None, "1", "1 for Patient.gender male, 0 for female (other and unknown: not scored)"),
    *(
        Feature.of(measured, description)
        for measured, description in zip(
            MEASURED_FIELDS,
            ("body mass index", "systolic blood pressure", "glucose in blood", "hemoglobin A1c", "HDL cholesterol"),
            strict=True,
        )
    ),
    Feature(
        "current_smoker", codes.SMOKING_STATUS.token, "1", "1 when the latest smoking status is current, 0 former/never"
    ),
    Feature("prediabetes", codes.PREDIABETES.token, "1", "1 when prediabetes was recorded at or before the index date"),
)
MITIGATION = (
    "Consider testing for prediabetes and type 2 diabetes (HbA1c, fasting plasma glucose or OGTT) as the ADA "
    "Standards of Care recommend for adults with overweight or obesity and risk factors and for everyone from "
    "age 35 (ADA, Standards of Care in Diabetes-2024, section 2, Diabetes Care 2024;47(Suppl 1):S20-S42); with "
    "prediabetes, refer to an intensive lifestyle behaviour programme (section 3, S43-S51). This is a model "
    "estimate from this server's data, not a diagnosis."
)


@dataclass(frozen=True)
class IncidenceModel:
    """The trained artifact: the fitted pipeline and the feature order it expects."""

    pipeline: Pipeline
    columns: tuple[str, ...] = COLUMNS
    code_version: str = field(default=MODEL.version)  # of the code that trained it; the registry numbers versions


def pipeline(seed: int = 0, columns: tuple[str, ...] = COLUMNS) -> Pipeline:
    """Median imputation with missing-value indicators, standardisation, L2 logistic regression (C = 1).

    ``keep_empty_features`` keeps a column no training row has (imputed as 0) instead of dropping it
    with a warning, so the fitted pipeline always takes ``COLUMNS``.
    """
    steps: list[tuple[str, Any]] = []
    if columns != COLUMNS:
        steps.append(
            ("select", ColumnTransformer([("keep", "passthrough", list(columns))]).set_output(transform="pandas"))
        )
    steps += [
        ("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
        ("scale", StandardScaler()),
        ("classifier", LogisticRegression(max_iter=1000, random_state=seed)),
    ]
    return Pipeline(steps)


def _check(found: Examples, dataset: Dataset) -> None:
    events = int(found.y.sum())
    others = len(found.y) - events
    if len(found.y) < MIN_EXAMPLES or min(events, others) < MIN_PER_CLASS:
        raise InsufficientData(
            f"{MODEL.id} needs at least {MIN_EXAMPLES} examples with at least {MIN_PER_CLASS} of each outcome; "
            f"{dataset.name} gives {len(found.y)} ({events} with incident diabetes, {others} without; excluded: "
            f"{', '.join(f'{n} {why}' for why, n in found.excluded.items()) or 'none'})"
        )


def train(dataset: Dataset, seed: int = 0) -> TrainResult:
    """Stratified 5-fold cross-validation, one stratified 80/20 hold-out, then the model refitted on all
    examples; compared with an age-and-sex-only model. Raises ``InsufficientData`` on too few examples."""
    found = examples_of(dataset)
    _check(found, dataset)
    X, y = found.X, found.y
    cv = cross_validate_classifier(lambda: pipeline(seed), X, y, folds=5, seed=seed, threshold=THRESHOLD)
    reference = cross_validate_classifier(
        lambda: pipeline(seed, ("age", "male")), X, y, folds=5, seed=seed, threshold=THRESHOLD
    )
    holdout = holdout_classifier(lambda: pipeline(seed), X, y, test_size=0.2, seed=seed, threshold=THRESHOLD)
    started = time.perf_counter()
    artifact = IncidenceModel(pipeline(seed).fit(X, y))
    fit_seconds = time.perf_counter() - started
    sample = [(X.loc[pid].to_dict(), found.index_dates[pid]) for pid in X.index[:50]]
    latency = inference_latency(lambda item: predict(artifact, item[0], item[1]), sample)
    compared = ("auroc", "brier", "log_loss", "calibration_slope")
    report = build(
        MODEL,
        data=data_section(
            dataset,
            examples=len(y),
            events=int(y.sum()),
            landmark=found.landmark,
            excluded=found.excluded,
            missing={name: int(X[name].isna().sum()) for name in COLUMNS},
        ),
        features=FEATURES,
        outcome={
            "definition": MODEL.outcome + ", in patients without diabetes at the index date",
            "horizon": "5 years",
            "prevalence": float(y.mean()),
            "index_date": "latest feature measurement at or before (dataset end − 5 years); features up to 3 years old",
        },
        cross_validation=cv,
        holdout=holdout,
        calibration={
            "out_of_fold_slope": cv["out_of_fold"]["calibration_slope"],
            "out_of_fold_intercept": cv["out_of_fold"]["calibration_intercept"],
            "holdout_slope": holdout["metrics"]["calibration_slope"],
            "holdout_intercept": holdout["metrics"]["calibration_intercept"],
            "reliability": cv["reliability"],
        },
        efficiency=efficiency(fit_seconds, latency, artifact),
        comparison={
            "summary": "cross-validated (mean over folds) against a logistic regression on age and sex only",
            "candidates": {
                "all features": {name: cv["metrics"][name]["mean"] for name in compared},
                "age and sex only": {name: reference["metrics"][name]["mean"] for name in compared},
            },
            "chosen": "all features",
        },
        limits=[
            "Trained on this server's own records: diagnoses are only as complete as the records sent to it.",
            "Patients lost to follow-up before 5 years are left out, which can bias risks (no survival model).",
            "Missing values are imputed with training medians; an indicator marks each imputed feature.",
            "Not validated clinically; with synthetic data (Synthea or the synthetic cohort) outcomes follow the "
            "generator's rules, so no figure here is clinical performance.",
        ],
        seed=seed,
        gates=GATES,
    )
    return TrainResult(MODEL, artifact, report, model_card(MODEL, report))


def evaluate(artifact: IncidenceModel, dataset: Dataset) -> dict[str, Any]:
    """External validation: the fitted model applied unchanged to ``dataset``'s examples (built by the same
    rules). Add it to a report with ``report.external_report``."""
    found = examples_of(dataset)
    if found.y.empty:
        raise InsufficientData(f"{dataset.name} gives no {MODEL.id} examples (excluded: {found.excluded})")
    result = external_classifier(artifact.pipeline, found.X, found.y, threshold=THRESHOLD)
    return {**result, "events": int(found.y.sum()), "excluded": found.excluded}


def _readable(name: str) -> str:
    return f"{name.removeprefix('missingindicator_')} missing" if name.startswith("missingindicator_") else name


def predict(artifact: IncidenceModel, features: Mapping[str, float | str | None], at: datetime) -> Score:
    """The 5-year probability for one patient's ``features`` (``COLUMNS``; ``diabetes`` 1 makes it not
    applicable, saying ``diabetes_evidence``). Missing measured features are imputed with the training
    medians and named in ``missing``; without age and sex, or without any measured feature, no score."""
    if features.get("diabetes"):
        return Score.not_applicable(MODEL, str(features.get("diabetes_evidence") or "diabetes is already recorded"))
    missing = tuple(name for name in COLUMNS if _missing(features.get(name)))
    required = tuple(name for name, column in (("age", "age"), ("sex", "male")) if column in missing)
    if required:
        return Score.insufficient(MODEL, required)
    if all(name in missing for name in (*MEASURED, "current_smoker")):
        return Score.insufficient(MODEL, (*MEASURED, fields.SMOKING_STATUS.name))
    age = float(features["age"])  # type: ignore[arg-type]
    if age < MIN_AGE:
        return Score.not_applicable(MODEL, f"age {age:.0f} is under {MIN_AGE:.0f}")
    values = [np.nan if _missing(features.get(c)) else float(features[c]) for c in artifact.columns]  # type: ignore[arg-type]
    row = pd.DataFrame([values], columns=list(artifact.columns))
    probability = float(artifact.pipeline.predict_proba(row)[0, 1])
    band = risk_band(probability, BANDS)
    contributions = _contributions(artifact.pipeline, row, features)
    top = "; ".join(c.explanation for c in contributions[:3])
    rationale = (
        f"Estimated probability of a type 2 diabetes diagnosis within 5 years: {probability:.1%} ({band}). "
        f"Largest contributors, against a patient with the training cohort's average values: {top}."
    )
    if missing:
        rationale += f" Not available, imputed with the training median: {', '.join(missing)}."
    return Score(
        model=MODEL,
        value=round(probability, 4),
        probability=probability,
        band=band,
        partial=bool(missing),
        missing=missing,
        contributions=contributions,
        rationale=rationale,
        mitigation=MITIGATION if band in ("moderate", "high") else None,
    )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# How each column reads in a rationale: its words for a value (a number's unit, or the yes/no).
IN_WORDS: dict[str, tuple[str, str]] = {
    "age": ("age", " years"),
    "bmi": ("BMI", " kg/m²"),
    "systolic_bp": ("systolic BP", " mmHg"),
    "glucose": ("glucose", " mg/dL"),
    "hba1c": ("HbA1c", " %"),
    "hdl_cholesterol": ("HDL cholesterol", " mg/dL"),
    "male": ("sex", ""),
    "current_smoker": ("smoking status", ""),
    "prediabetes": ("prediabetes", ""),
}
YES_NO_WORDS = {
    "male": ("male", "female"),
    "current_smoker": ("a current smoker", "not a current smoker"),
    "prediabetes": ("prediabetes recorded", "no prediabetes recorded"),
}


def _contributions(
    model: Pipeline, row: pd.DataFrame, features: Mapping[str, float | str | None]
) -> tuple[Contribution, ...]:
    """β·z for every column the regression sees (indicator columns included), largest |β·z| first; each
    explained in words: the value, and whether it raises or lowers the estimate against the training
    cohort's average patient (z is the value's distance from the training mean in training SDs)."""
    z = np.asarray(model[:-1].transform(row))[0]
    names = [_readable(str(n)) for n in model[:-1].get_feature_names_out()]
    beta = model.named_steps["classifier"].coef_[0]
    terms = []
    for name, b, value in zip(names, beta, z, strict=True):
        column = name.removesuffix(" missing")
        absent = _missing(features.get(column))
        if column != name:
            shown: float | str = "yes" if absent else "no"
        else:
            shown = "missing" if absent else float(features[column])  # type: ignore[arg-type]
        term = float(b * value) + 0.0
        direction = "raises the estimate" if term > 0 else "lowers the estimate"
        terms.append(Contribution(name, shown, term, f"{_words(column, name != column, shown)} ({direction})"))
    return tuple(sorted(terms, key=lambda c: -abs(c.points)))


def _words(column: str, indicator: bool, shown: float | str) -> str:
    """A column's value as a clinician reads it: "HbA1c 6.1 %", "a current smoker", "BMI not recorded"."""
    label = IN_WORDS.get(column, (column.replace("_", " "), ""))[0]
    if indicator or shown == "missing":
        return f"{label} not recorded"
    if column in YES_NO_WORDS:
        return YES_NO_WORDS[column][0 if shown == 1.0 else 1]
    unit = IN_WORDS.get(column, ("", ""))[1]
    return f"{label} {float(shown):.3g}{unit}"


@dataclass(frozen=True)
class IncidenceRunner:
    """5-year incident type 2 diabetes from the twin at this moment."""

    model: ModelInfo
    artifact: Any
    kind: ClassVar[Kind] = Kind({"text": "Incident type 2 diabetes within 5 years"}, timedelta(days=1826))
    reads: ClassVar[tuple[BodyField, ...]] = READS
    fields: ClassVar[tuple[str, ...]] = WHATIF

    def run(self, patient: Patient, simulated: Simulation | None = None, requested: bool = False) -> Run:
        document = patient.document
        reader = Reader(document, simulated)
        for name in self.fields:
            reader.needs_verification(name, "the estimate uses the earlier reading, if any.")
        at = patient.now.replace(tzinfo=UTC)
        rows = [
            (
                patient.id,
                name,
                _utc(point.time),
                math.nan if point.value is None else point.value,
                point.category,
                point.source,
            )
            for name in self.fields
            for point in reader.points(name)
        ]
        measurements = pd.DataFrame(rows, columns=list(MEASUREMENT_COLUMNS))
        conditions = pd.DataFrame(
            [
                (patient.id, item.code, item.display, _utc(item.start), item.source)
                for item in document.case.get("conditions", [])
                if item.code is not None
            ],
            columns=list(CONDITION_COLUMNS),
        )
        birth = document.patient.birth_date
        who = {"birth_date": pd.Timestamp(birth[:10], tz="UTC") if birth else None, "gender": document.patient.gender}
        features, sources = features_now(who, measurements, conditions, at)
        score = predict(self.artifact, features, at)
        for name in self.fields:
            for point in reader.points(name):
                if point.source in sources:
                    reader.read(point)
        basis = (document.patient.source, *dict.fromkeys(sources))
        gathered = Gathered(None, basis, tuple(reader.notes), False, reader.unverified, reader.as_of)
        return completed(gathered, replace(score, model=self.model), simulated)


def _utc(when: datetime | None) -> pd.Timestamp:
    return pd.Timestamp(when, tz="UTC") if when is not None else pd.NaT
