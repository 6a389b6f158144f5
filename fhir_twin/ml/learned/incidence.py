"""incident-diabetes: probability of a type 2 diabetes diagnosis within 5 years, by logistic regression.

The outcome is a future event, never a value computed from today's features: a diabetes diagnosis
(SNOMED CT 44054006 type 2, or 73211009 unspecified) with onset in the 5 years after an index date,
in patients without any diabetes (also 46635009 type 1) at that date. Features are the kind of the
published diabetes risk scores (FINDRISC: Lindström & Tuomilehto, Diabetes Care 2003;26:725; Wilson
et al., Arch Intern Med 2007;167:1068): age, sex, BMI, systolic BP, glucose, HbA1c, HDL, current
smoking and a recorded prediabetes. Imputation, scaling and the regression are one scikit-learn
``Pipeline`` so cross-validation does not leak (Steyerberg, Clinical Prediction Models, 2nd ed., 2019).

Index date (a single landmark, independent of the outcome): the dataset's end is the latest time it
holds (measurement or condition onset); the landmark is 5 years before it; a patient's index date is
the time of their latest feature measurement at or before the landmark. A patient is an example when
they are at least 18 then, have a known sex, have no diabetes at or before the index date, and are
followed up: a diabetes onset within the 5 years, or any record at or after index + 5 years. Patients
lost to follow-up are left out (complete-case, not survival analysis). Features are each field's latest
value at or before the index date and at most 3 years older.

Diabetes is present (in training, the patient is excluded; in prediction, the model does not apply) when
a diabetes diagnosis is recorded at or before the time (or without an onset), or by laboratory criteria
of the ADA (Standards of Care in Diabetes-2024, section 2, Diabetes Care 2024;47(Suppl 1):S20): any
HbA1c ≥ 6.5 % or fasting plasma glucose ≥ 126 mg/dL recorded at or before the time, however old. The
ADA asks for a confirming second test; one reading suffices here because the model predicts diabetes
for people without it, and excluding a person who may already have it is the safe error.
"""

from __future__ import annotations

import math
import pickle
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from fhir_twin.ml.concepts import DIABETES, PREDIABETES, TYPE_2_DIABETES
from fhir_twin.ml.dataset import Dataset
from fhir_twin.ml.learned import Bands, InsufficientData, risk_band
from fhir_twin.ml.learned.gates import classifier_gates
from fhir_twin.ml.learned.report import Feature, TrainResult, build, data_section, model_card
from fhir_twin.ml.learned.validation import (
    cross_validate_classifier,
    external_classifier,
    holdout_classifier,
    inference_latency,
)
from fhir_twin.ml.scores.model import LOINC, Contribution, Input, ModelInfo, Score

SNOMED = "http://snomed.info/sct"

MODEL = ModelInfo(
    id="incident-diabetes",
    version="1.0.0",
    kind="learned",
    inputs=(
        Input("age"),
        Input("sex"),
        Input("bmi", f"{LOINC}|39156-5"),
        Input("systolic_bp", f"{LOINC}|8480-6"),
        Input("glucose", f"{LOINC}|2339-0"),
        Input("hba1c", f"{LOINC}|4548-4"),
        Input("hdl_cholesterol", f"{LOINC}|2085-9"),
        Input("smoking_status", f"{LOINC}|72166-2"),
        Input("prediabetes", f"{SNOMED}|15777000"),
    ),
    outcome="Diagnosis of type 2 diabetes (SNOMED CT 44054006 or 73211009; ICD-10 E11 or E14) within 5 years",
    horizon="5 years",
    intended_use=(
        "Adults (18 and over) without diabetes, to flag who may benefit from diabetes screening. Decision "
        "support only. Trained on this server's own data and not validated clinically; results on synthetic "
        "data are not clinical performance."
    ),
    reference=(
        "Logistic regression with internal, hold-out and external validation reported per TRIPOD+AI (Collins GS "
        "et al., BMJ 2024;385:e078378); features as in FINDRISC (Lindström J, Tuomilehto J, Diabetes Care "
        "2003;26:725-731)."
    ),
)

YEAR = timedelta(days=365.25)
HORIZON = 5 * YEAR
LOOKBACK = 3 * YEAR
MIN_AGE = 18.0
MIN_EXAMPLES = 20
MIN_PER_CLASS = 5
# Probability at or above which the model calls a patient high risk; sensitivity, specificity and PPV
# are reported there. Bands: below 0.01 negligible, below 0.05 low, below 0.2 moderate, else high.
# These cut-points are this server's choice for a 5-year risk, not clinical thresholds.
THRESHOLD = 0.2
BANDS: Bands = ((0.01, "negligible"), (0.05, "low"), (THRESHOLD, "moderate"))

MEASURED = ("bmi", "systolic_bp", "glucose", "hba1c", "hdl_cholesterol")
COLUMNS = ("age", "male", *MEASURED, "current_smoker", "prediabetes")
FEATURES = (
    Feature("age", None, "a", "age at the index date, from Patient.birthDate"),
    Feature("male", None, "1", "1 for Patient.gender male, 0 for female (other and unknown: not scored)"),
    Feature("bmi", f"{LOINC}|39156-5", "kg/m2", "body mass index"),
    Feature("systolic_bp", f"{LOINC}|8480-6", "mm[Hg]", "systolic blood pressure"),
    Feature("glucose", f"{LOINC}|2339-0", "mg/dL", "glucose in blood"),
    Feature("hba1c", f"{LOINC}|4548-4", "%", "hemoglobin A1c"),
    Feature("hdl_cholesterol", f"{LOINC}|2085-9", "mg/dL", "HDL cholesterol"),
    Feature("current_smoker", f"{LOINC}|72166-2", "1", "1 when the latest smoking status is current, 0 former/never"),
    Feature("prediabetes", f"{SNOMED}|15777000", "1", "1 when prediabetes was recorded at or before the index date"),
)
MITIGATION = (
    "Consider testing for prediabetes and type 2 diabetes (HbA1c, fasting plasma glucose or OGTT) as the ADA "
    "Standards of Care recommend for adults with overweight or obesity and risk factors and for everyone from "
    "age 35 (ADA, Standards of Care in Diabetes-2024, section 2, Diabetes Care 2024;47(Suppl 1):S20-S42); with "
    "prediabetes, refer to an intensive lifestyle behaviour programme (section 3, S43-S51). This is a model "
    "estimate from this server's data, not a diagnosis."
)

# Laboratory criteria for diabetes (ADA, Standards of Care in Diabetes-2024, section 2, S20).
HBA1C_DIABETES = 6.5  # %
FASTING_GLUCOSE_DIABETES = 126.0  # mg/dL
# Why a patient has diabetes, in the order the evidence is looked for; the training report counts each.
DIAGNOSIS = "diabetes diagnosis recorded at or before the index date"
BY_HBA1C = "HbA1c ≥ 6.5 % at or before the index date (ADA)"
BY_FASTING_GLUCOSE = "fasting glucose ≥ 126 mg/dL at or before the index date (ADA)"

# What a version must show on its hold-out before it may serve patients (``gates``).
GATES = classifier_gates("holdout")

Record = tuple[str, datetime, float, str | None, str]  # field, time, value (NaN if coded), category, source
ConditionRecord = tuple[str, datetime | None, str, str | None]  # code, onset (None if unknown), source, display
Features = dict[str, float | str | None]


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


def _records(measurements: pd.DataFrame) -> dict[str, list[Record]]:
    found: dict[str, list[Record]] = {}
    for row in measurements.itertuples(index=False):
        category = row.category if isinstance(row.category, str) else None
        found.setdefault(str(row.patient_id), []).append(
            (row.field, row.time, float(row.value), category, str(row.source))
        )
    return found


def _conditions(conditions: pd.DataFrame) -> dict[str, list[ConditionRecord]]:
    found: dict[str, list[ConditionRecord]] = {}
    for row in conditions.itertuples(index=False):
        onset = None if pd.isna(row.onset) else row.onset
        display = row.display if isinstance(row.display, str) else None
        found.setdefault(str(row.patient_id), []).append((str(row.code), onset, str(row.source), display))
    return found


def _utc(when: datetime) -> pd.Timestamp:
    """``when`` as an aware UTC timestamp; a naive time is taken to be UTC, as the twin stores times."""
    stamp = pd.Timestamp(when)
    return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)


def _age(birth_date: Any, at: datetime) -> float | None:
    if birth_date is None or pd.isna(birth_date):
        return None
    return (_utc(at) - _utc(birth_date)) / YEAR


def _male(gender: Any) -> float | None:
    return {"male": 1.0, "female": 0.0}.get(gender) if isinstance(gender, str) else None


@dataclass(frozen=True)
class Diabetes:
    """Evidence that diabetes is present at a time: which criterion, in words, and the record it is in."""

    criterion: str
    evidence: str
    source: str


def _diabetes(records: Sequence[Record], conditions: Sequence[ConditionRecord], at: datetime) -> Diabetes | None:
    """A diagnosis at or before ``at`` (or without onset) first, else the latest HbA1c ≥ 6.5 %, else the latest
    fasting glucose ≥ 126 mg/dL at or before ``at``; None without any."""
    for code, onset, source, display in conditions:
        if DIABETES.matches(code, None) and (onset is None or onset <= at):
            onset_text = f"onset {_utc(onset).date().isoformat()}" if onset is not None else "onset unknown"
            text = f"diabetes is already recorded: {source} ({display or code}, {onset_text})"
            return Diabetes(DIAGNOSIS, text, source)
    for name, label, threshold, unit, criterion in (
        ("hba1c", "HbA1c", HBA1C_DIABETES, "%", BY_HBA1C),
        ("fasting_glucose", "fasting glucose", FASTING_GLUCOSE_DIABETES, "mg/dL", BY_FASTING_GLUCOSE),
    ):
        found = [r for r in records if r[0] == name and r[1] <= at and not math.isnan(r[2]) and r[2] >= threshold]
        if found:
            _, when, value, _, source = max(found, key=lambda r: r[1])
            text = (
                f"diabetes is already present: {label} {value:g} {unit} on {_utc(when).date().isoformat()} "
                f"(≥ {threshold:g} {unit}, ADA)"
            )
            return Diabetes(criterion, text, source)
    return None


def _features(
    birth_date: Any,
    gender: Any,
    records: Sequence[Record],
    conditions: Sequence[ConditionRecord],
    at: datetime,
) -> tuple[Features, list[str]]:
    """Features at ``at`` and their sources; ``diabetes`` 1 when diabetes is present by then (a diagnosis,
    or HbA1c or fasting glucose by the ADA criteria), with ``diabetes_evidence`` saying which record shows it."""
    at = _utc(at)
    earliest = at - LOOKBACK
    latest: dict[str, Record] = {}
    for record in records:
        name, when, value, category, _ = record
        if not earliest <= when <= at:
            continue
        usable = category not in (None, "unknown") if name == "smoking_status" else not math.isnan(value)
        if usable and (name not in latest or when >= latest[name][1]):
            latest[name] = record
    features: Features = {"age": _age(birth_date, at), "male": _male(gender)}
    features.update({name: latest[name][2] if name in latest else None for name in MEASURED})
    smoking = latest.get("smoking_status")
    features["current_smoker"] = None if smoking is None else float(smoking[3] == "current")
    sources = [latest[name][4] for name in (*MEASURED, "smoking_status") if name in latest]
    prediabetes = [c for c in conditions if PREDIABETES.matches(c[0], None) and c[1] is not None and c[1] <= at]
    diabetes = _diabetes(records, conditions, at)
    features["prediabetes"] = float(bool(prediabetes))
    features["diabetes"] = float(diabetes is not None)
    sources += [c[2] for c in prediabetes[:1]]
    if diabetes is not None:
        features["diabetes_evidence"] = diabetes.evidence
        sources.append(diabetes.source)
    return features, sources


def features_now(
    patient_row: Mapping[str, Any],
    measurements_of_patient: pd.DataFrame,
    conditions_of_patient: pd.DataFrame,
    at: datetime,
) -> tuple[Features, list[str]]:
    """One patient's features at ``at`` from the ``Dataset`` frames' rows of that patient, as training
    computes them at the index date, and the version references of the values used. ``diabetes`` is 1
    when diabetes is present by then (a diagnosis, or HbA1c or fasting glucose by the ADA criteria), and
    ``diabetes_evidence`` names the record: the model does not apply."""
    records = next(iter(_records(measurements_of_patient).values()), [])
    conditions = next(iter(_conditions(conditions_of_patient).values()), [])
    return _features(patient_row.get("birth_date"), patient_row.get("gender"), records, conditions, at)


@dataclass(frozen=True)
class Examples:
    X: pd.DataFrame
    y: pd.Series
    index_dates: pd.Series
    sources: dict[str, list[str]]
    excluded: dict[str, int]
    landmark: datetime | None


def _examples(dataset: Dataset) -> Examples:
    times = [dataset.measurements["time"].max(), dataset.conditions["onset"].max()]
    known = [t for t in times if not pd.isna(t)]
    empty = Examples(pd.DataFrame(columns=list(COLUMNS), dtype=float), pd.Series(dtype=int), pd.Series(), {}, {}, None)
    if not known:
        return empty
    landmark = max(known) - HORIZON
    records = _records(dataset.measurements)
    conditions = _conditions(dataset.conditions)
    rows, labels, index_dates, sources = {}, {}, {}, {}
    excluded: Counter[str] = Counter()
    for patient in dataset.patients.sort_values("patient_id").itertuples(index=False):
        pid = str(patient.patient_id)
        own, diagnoses = records.get(pid, []), conditions.get(pid, [])
        candidates = [r[1] for r in own if r[0] in (*MEASURED, "smoking_status") and r[1] <= landmark]
        if not candidates:
            excluded["no feature measurement by the landmark"] += 1
            continue
        index = max(candidates)
        features, used = _features(patient.birth_date, patient.gender, own, diagnoses, index)
        age = features["age"]
        if not isinstance(age, float) or features["male"] is None:
            excluded["age or sex unknown"] += 1
            continue
        if age < MIN_AGE:
            excluded["under 18 at the index date"] += 1
            continue
        diabetes = _diabetes(own, diagnoses, index)
        if diabetes is not None:
            excluded[diabetes.criterion] += 1
            continue
        event = any(
            TYPE_2_DIABETES.matches(c[0], None) and c[1] is not None and index < c[1] <= index + HORIZON
            for c in diagnoses
        )
        followed = max([r[1] for r in own] + [c[1] for c in diagnoses if c[1] is not None]) >= index + HORIZON
        if not event and not followed:
            excluded["followed up for less than 5 years"] += 1
            continue
        rows[pid], labels[pid], index_dates[pid], sources[pid] = features, int(event), index, used
    X = pd.DataFrame([rows[pid] for pid in rows], index=list(rows), columns=list(COLUMNS)).astype(float)
    return Examples(X, pd.Series(labels, dtype=int), pd.Series(index_dates), sources, dict(excluded), landmark)


def examples(dataset: Dataset) -> tuple[pd.DataFrame, pd.Series, pd.Series, dict[str, list[str]]]:
    """The training table: one row per eligible patient (index = patient id) with ``COLUMNS`` (NaN where
    missing), the 0/1 outcome, the index dates and the version references each row was built from."""
    found = _examples(dataset)
    return found.X, found.y, found.index_dates, found.sources


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
    found = _examples(dataset)
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
        efficiency={
            "fit_seconds": fit_seconds,
            "latency_p50_ms": latency["p50_ms"],
            "latency_p95_ms": latency["p95_ms"],
            "artifact_bytes": len(pickle.dumps(artifact)),
        },
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
    found = _examples(dataset)
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
        return Score.insufficient(MODEL, (*MEASURED, "smoking_status"))
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
