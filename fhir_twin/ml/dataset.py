"""A ``Dataset``: the twins of many patients as pandas frames, what learned models train and are evaluated on.

Frames hold only usable twin values (flagged measurements are left out, as the twin leaves them
out of every score), in the twin's canonical units, with UTC times.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from fhir_twin.fhir.instant import now
from fhir_twin.store import twin as twin_store
from fhir_twin.store.repository import Repository
from fhir_twin.twin import document

PATIENT_COLUMNS = ("patient_id", "gender", "birth_date", "race")
MEASUREMENT_COLUMNS = ("patient_id", "field", "time", "value", "category", "source")
CONDITION_COLUMNS = ("patient_id", "code", "display", "onset", "source")
ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


@dataclass(frozen=True)
class Dataset:
    """``patients``: patient_id, gender, birth_date (UTC timestamp or NaT), race.
    ``measurements``: patient_id, field (twin field name), time (UTC), value (float; NaN for a coded
    value), category (the coded value, e.g. ``current`` for smoking_status), source (version reference).
    ``conditions``: patient_id, code (``system|code``), display, onset (UTC or NaT), source.
    """

    name: str
    synthetic: bool
    patients: pd.DataFrame
    measurements: pd.DataFrame
    conditions: pd.DataFrame

    def digest(self) -> str:
        """SHA-256 of the data, so a report names exactly what a model was trained on."""
        sha = hashlib.sha256()
        for frame in (self.patients, self.measurements, self.conditions):
            ordered = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True) if len(frame) else frame
            sha.update(pd.util.hash_pandas_object(ordered.astype(str), index=False).values.tobytes())
        return sha.hexdigest()


def empty(name: str, synthetic: bool) -> Dataset:
    """A dataset with no patients, every frame with its columns."""
    return Dataset(
        name,
        synthetic,
        pd.DataFrame(columns=list(PATIENT_COLUMNS)),
        pd.DataFrame(columns=list(MEASUREMENT_COLUMNS)),
        pd.DataFrame(columns=list(CONDITION_COLUMNS)),
    )


def from_repository(
    repository: Repository,
    name: str,
    synthetic: bool | None = None,
    kind: str = "conditions",
    patient_id: str | None = None,
) -> Dataset:
    """The current twins of every live patient in ``repository`` (or of one); ``kind`` names the
    Case list of conditions. ``synthetic`` None: synthetic when every patient is labelled test
    data (security label HTEST, as generated cohorts are)."""
    with repository.unit() as unit:
        patients, measurements, conditions = twin_store.population(unit.connection, kind, patient_id)
    patient_rows = []
    test_data = 0
    for patient_id, body in patients:
        resource = json.loads(body or "{}")
        labels = (resource.get("meta") or {}).get("security") or []
        test_data += any(label.get("system") == ACT_REASON and label.get("code") == "HTEST" for label in labels)
        summary = document.summary(resource, "", now())
        patient_rows.append((patient_id, summary.gender, _timestamp_of(summary.birth_date), summary.race))
    measurement_rows = [
        (pid, field, _utc(time), value if value is not None else float("nan"), category, f"{t}/{i}/_history/{v}")
        for pid, field, time, value, category, t, i, v in measurements
    ]
    condition_rows = [
        (pid, code, display, _utc(onset), f"{t}/{i}/_history/{v}") for pid, code, display, onset, t, i, v in conditions
    ]
    if synthetic is None:
        synthetic = bool(patients) and test_data == len(patients)
    return Dataset(
        name,
        synthetic,
        _frame(patient_rows, PATIENT_COLUMNS, ("birth_date",)),
        _frame(measurement_rows, MEASUREMENT_COLUMNS, ("time",)),
        _frame(condition_rows, CONDITION_COLUMNS, ("onset",)),
    )


def _utc(value: datetime | None) -> pd.Timestamp:
    return pd.Timestamp(value, tz="UTC") if value is not None else pd.NaT


def _timestamp_of(birth_date: str | None) -> pd.Timestamp:
    """A birthDate (year, month or day precision) as a UTC timestamp at its start."""
    if not birth_date:
        return pd.NaT
    try:
        return pd.Timestamp(birth_date[:10], tz="UTC")
    except ValueError:
        return pd.NaT


def _frame(rows: list[tuple[object, ...]], columns: tuple[str, ...], times: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    for column in times:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame
