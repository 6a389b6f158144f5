"""incident-diabetes's examples: each patient's features at a time, whether diabetes is already present, and
the training table of one landmark.

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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from fhir_twin.ml import fields
from fhir_twin.ml.concepts import DIABETES, PREDIABETES, TYPE_2_DIABETES
from fhir_twin.ml.dataset import Dataset
from fhir_twin.ml.learned.declared.incidence import MEASURED_FIELDS

YEAR = timedelta(days=365.25)
HORIZON = 5 * YEAR
LOOKBACK = 3 * YEAR
MIN_AGE = 18.0

MEASURED = fields.names(MEASURED_FIELDS)
SMOKING_STATUS = fields.SMOKING_STATUS.name
COLUMNS = ("age", "male", *MEASURED, "current_smoker", "prediabetes")

# Laboratory criteria for diabetes (ADA, Standards of Care in Diabetes-2024, section 2, S20).
HBA1C_DIABETES = 6.5  # %
FASTING_GLUCOSE_DIABETES = 126.0  # mg/dL
# Why a patient has diabetes, in the order the evidence is looked for; the training report counts each.
DIAGNOSIS = "diabetes diagnosis recorded at or before the index date"
BY_HBA1C = "HbA1c ≥ 6.5 % at or before the index date (ADA)"
BY_FASTING_GLUCOSE = "fasting glucose ≥ 126 mg/dL at or before the index date (ADA)"

Record = tuple[str, datetime, float, str | None, str]  # field, time, value (NaN if coded), category, source
ConditionRecord = tuple[str, datetime | None, str, str | None]  # code, onset (None if unknown), source, display
Features = dict[str, float | str | None]


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
        (fields.HBA1C.name, "HbA1c", HBA1C_DIABETES, "%", BY_HBA1C),
        (fields.FASTING_GLUCOSE.name, "fasting glucose", FASTING_GLUCOSE_DIABETES, "mg/dL", BY_FASTING_GLUCOSE),
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
        usable = category not in (None, "unknown") if name == SMOKING_STATUS else not math.isnan(value)
        if usable and (name not in latest or when >= latest[name][1]):
            latest[name] = record
    features: Features = {"age": _age(birth_date, at), "male": _male(gender)}
    features.update({name: latest[name][2] if name in latest else None for name in MEASURED})
    smoking = latest.get(SMOKING_STATUS)
    features["current_smoker"] = None if smoking is None else float(smoking[3] == "current")
    sources = [latest[name][4] for name in (*MEASURED, SMOKING_STATUS) if name in latest]
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


def examples_of(dataset: Dataset) -> Examples:
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
        candidates = [r[1] for r in own if r[0] in (*MEASURED, SMOKING_STATUS) and r[1] <= landmark]
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
    found = examples_of(dataset)
    return found.X, found.y, found.index_dates, found.sources
