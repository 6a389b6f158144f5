"""A ``Dataset``: the twins of many patients as pandas frames, what learned models train and are evaluated on.

Frames hold only usable twin values (flagged measurements are left out, as the twin leaves them
out of every score), in the twin's canonical units, with UTC times. Beside the frames a dataset
keeps the evidence of its origin (``ml.origin``: synthetic or not, and why) and the patients'
business identifiers, from which ``ml.identity`` tells which patients two datasets share.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

from fhir_twin.errors import Unprocessable
from fhir_twin.fhir.instant import now
from fhir_twin.ml import identity, origin
from fhir_twin.ml.origin import Origin
from fhir_twin.store import twin_facts as twin_store
from fhir_twin.store.repository import Repository
from fhir_twin.twin import document

PATIENT_COLUMNS = ("patient_id", "gender", "birth_date", "race")
MEASUREMENT_COLUMNS = ("patient_id", "field", "time", "value", "category", "source")
CONDITION_COLUMNS = ("patient_id", "code", "display", "onset", "source")


@dataclass(frozen=True)
class Dataset:
    """``patients``: patient_id, gender, birth_date (UTC timestamp or NaT), race.
    ``measurements``: patient_id, field (twin field name), time (UTC), value (float; NaN for a coded
    value), category (the coded value, e.g. ``current`` for smoking_status), source (version reference).
    ``conditions``: patient_id, code (``system|code``), display, onset (UTC or NaT), source.
    ``evidence``: the origin found in the data (None: only ``synthetic`` as its maker declared it).
    ``identifiers``: (patient_id, system, value) of each patient's business identifiers.
    """

    name: str
    synthetic: bool
    patients: pd.DataFrame
    measurements: pd.DataFrame
    conditions: pd.DataFrame
    evidence: Origin | None = None
    identifiers: Sequence[tuple[str, str, str]] = ()

    @property
    def origin(self) -> Origin:
        """The evidence of origin, or, for data built in code (the synthetic cohort), what its maker declared."""
        return self.evidence or Origin(len(self.patients), declared=self.synthetic, examined=False)

    def patient_keys(self) -> dict[str, frozenset[str]]:
        """Each patient's identity keys (``ml.identity``): id, birth date and gender, and each identifier."""
        import pandas as pd

        by_patient: dict[str, list[tuple[str, str]]] = {}
        for patient_id, system, value in self.identifiers:
            by_patient.setdefault(patient_id, []).append((system, value))
        found = {}
        for row in self.patients.itertuples(index=False):
            pid = str(row.patient_id)
            birth = "" if pd.isna(row.birth_date) else row.birth_date.date().isoformat()
            gender = row.gender if isinstance(row.gender, str) else ""
            found[pid] = identity.keys(pid, birth, gender, by_patient.get(pid, []))
        return found

    def digest(self) -> str:
        """SHA-256 of the data, so a report names exactly what a model was trained on."""
        import pandas as pd

        sha = hashlib.sha256()
        for frame in (self.patients, self.measurements, self.conditions):
            ordered = frame.sort_values(list(frame.columns[:2])).reset_index(drop=True) if len(frame) else frame
            sha.update(pd.util.hash_pandas_object(ordered.astype(str), index=False).values.tobytes())
        return sha.hexdigest()


class NotExternal(Unprocessable):
    """Data offered for external validation that is, or shares patients with, the training data."""


def require_external(dataset: Dataset, trained_on: str, digest: str | None, keys: frozenset[str]) -> None:
    """Refuse (``NotExternal``) ``dataset`` as external to a model ``trained_on`` (its name and version) from
    data with SHA-256 ``digest`` and patient identity ``keys``: the same data, any patient in both, or
    training patients that were not kept (nothing can then show the data are independent)."""
    advice = "external validation needs data the model was not trained on; without --data, evaluate files an "
    advice += "apparent validation on this server's twins"
    if digest is not None and dataset.digest() == digest:
        raise NotExternal(f"{dataset.name} is the data {trained_on} was trained on (SHA-256 {digest}): {advice}")
    if not keys:
        raise NotExternal(
            f"the patients {trained_on} was trained on were not kept, so no data can be shown to be "
            f"independent of them: {advice}"
        )
    shared = identity.shared(keys, dataset.patient_keys())
    if shared:
        raise NotExternal(
            f"{len(shared)} of {len(dataset.patients)} patients in {dataset.name} are among those {trained_on} was "
            f"trained on (same id, or same identifier, with the same birth date and gender; e.g. Patient/"
            f"{shared[0]}): {advice}"
        )


def empty(name: str, synthetic: bool) -> Dataset:
    """A dataset with no patients, every frame with its columns."""
    import pandas as pd

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
    Case list of conditions. Synthetic when any patient carries a mark of generated data
    (``ml.origin``); ``synthetic`` True labels it synthetic anyway, False (real) is refused with
    ``origin.RealOverridesEvidence`` when a patient carries such a mark."""
    with repository.transaction() as tx:
        patients, measurements, conditions = twin_store.population(tx.connection, kind, patient_id)
    patient_rows = []
    resources = []
    identifiers = []
    for patient_id, body in patients:
        resource = json.loads(body or "{}")
        resources.append(resource)
        identifiers += [
            (patient_id, str(i["system"]), str(i["value"]))
            for i in resource.get("identifier") or []
            if i.get("system") and i.get("value")
        ]
        summary = document.summary(resource, "", now())
        patient_rows.append((patient_id, summary.gender, _timestamp_of(summary.birth_date), summary.race))
    found = origin.of_patients(resources, synthetic)
    measurement_rows = [
        (pid, field, _utc(time), value if value is not None else float("nan"), category, f"{t}/{i}/_history/{v}")
        for pid, field, time, value, category, t, i, v in measurements
    ]
    condition_rows = [
        (pid, code, display, _utc(onset), f"{t}/{i}/_history/{v}") for pid, code, display, onset, t, i, v in conditions
    ]
    return Dataset(
        name,
        found.synthetic,
        _frame(patient_rows, PATIENT_COLUMNS, ("birth_date",)),
        _frame(measurement_rows, MEASUREMENT_COLUMNS, ("time",)),
        _frame(condition_rows, CONDITION_COLUMNS, ("onset",)),
        found,
        tuple(identifiers),
    )


def _utc(value: datetime | None) -> pd.Timestamp:
    import pandas as pd

    return pd.Timestamp(value, tz="UTC") if value is not None else pd.NaT


def _timestamp_of(birth_date: str | None) -> pd.Timestamp:
    """A birthDate (year, month or day precision) as a UTC timestamp at its start."""
    import pandas as pd

    if not birth_date:
        return pd.NaT
    try:
        return pd.Timestamp(birth_date[:10], tz="UTC")
    except ValueError:
        return pd.NaT


def _frame(rows: Sequence[tuple[object, ...]], columns: tuple[str, ...], times: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(columns))
    for column in times:
        frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame
