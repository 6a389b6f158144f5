"""A ``Dataset``: the twins of many patients as pandas frames, what learned models train and are evaluated on.

Frames hold only usable twin values (flagged measurements are left out, as the twin leaves them
out of every score), in the twin's canonical units, with UTC times.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

PATIENT_COLUMNS = ("patient_id", "gender", "birth_date", "race")
MEASUREMENT_COLUMNS = ("patient_id", "field", "time", "value", "category", "source")
CONDITION_COLUMNS = ("patient_id", "code", "display", "onset", "source")


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
