"""The models this server knows: the validated scores, and the learned models with, once activated,
the active version of each from the registry.

A learned model is served only once a version of it was trained (``fhir-twin train``) and activated
(``train --activate`` or ``models activate``, which check the gates it declares); until then no
RiskAssessment claims its name.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import pandas as pd

from fhir_twin.errors import NotFound
from fhir_twin.ml import dataset as datasets
from fhir_twin.ml import fields as body_fields
from fhir_twin.ml.assessment import Kind
from fhir_twin.ml.card import score_card
from fhir_twin.ml.dataset import Dataset
from fhir_twin.ml.fields import BodyField
from fhir_twin.ml.learned import forecast, incidence, incidence_examples, pima, progression
from fhir_twin.ml.learned.gates import Gate
from fhir_twin.ml.learned.report import TrainResult
from fhir_twin.ml.reader import Gathered, Reader
from fhir_twin.ml.registry import ModelVersion, Registry
from fhir_twin.ml.runners import Patient, Run, Runner, completed, rule_based
from fhir_twin.ml.schemas import ModelEntry
from fhir_twin.ml.scores.score import ModelInfo
from fhir_twin.ml.simulation import Simulation
from fhir_twin.store.repository import Repository
from fhir_twin.twin.mapping import Mapping

# How long a process trusts its knowledge of which version is active before asking the database.
ACTIVE_TTL = 2.0


@dataclass(frozen=True)
class Learned:
    """A learned model: how to train it, evaluate a trained version, run it on a patient, and the gates
    a version's report must pass before it is activated."""

    model: ModelInfo
    train: Callable[[Dataset, int], TrainResult]
    # Trained on the server's own twins, or on data of its own (load_diabetes, MASS Pima).
    on_server_data: bool
    evaluate: Callable[[Any, Dataset], dict[str, Any]] | None
    runner: Callable[[ModelInfo, Any], Runner] | None
    gates: tuple[Gate, ...]


@dataclass(frozen=True)
class ForecastRunner:
    """Next heart rate from the patient's own series (``learned.forecast``)."""

    model: ModelInfo
    artifact: Any
    kind: ClassVar[Kind] = Kind({"text": "Heart rate above 100/min at the next reading (forecast)"}, None)
    reads: ClassVar[tuple[BodyField, ...]] = (body_fields.HEART_RATE,)
    # The forecast is of the patient's own series: a hypothetical reading does not change it.
    fields: ClassVar[tuple[str, ...]] = ()

    def run(self, patient: Patient, simulated: Simulation | None = None, requested: bool = False) -> Run:
        reader = Reader(patient.document)
        found = reader.points(body_fields.HEART_RATE.name)
        if found and found[-1].time is not None:
            reader.needs_verification(body_fields.HEART_RATE.name, "the forecast is made from the readings before it.")
        points = [(point.time.replace(tzinfo=UTC), point.value, point.source) for point in found if point.value]  # type: ignore[union-attr]
        score, sources = forecast.predict(self.artifact, points, patient.now.replace(tzinfo=UTC))
        for point in found:
            if point.source in sources:
                reader.read(point)
        gathered = Gathered(None, tuple(sources), tuple(reader.notes), False, reader.unverified, _newest(reader))
        return completed(gathered, dataclasses.replace(score, model=self.model))


@dataclass(frozen=True)
class IncidenceRunner:
    """5-year incident type 2 diabetes from the twin at this moment (``learned.incidence``)."""

    model: ModelInfo
    artifact: Any
    kind: ClassVar[Kind] = Kind({"text": "Incident type 2 diabetes within 5 years"}, timedelta(days=1826))
    reads: ClassVar[tuple[BodyField, ...]] = incidence.READS
    fields: ClassVar[tuple[str, ...]] = body_fields.names(incidence.READS)

    def run(self, patient: Patient, simulated: Simulation | None = None, requested: bool = False) -> Run:
        import pandas as pd

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
        measurements = pd.DataFrame(rows, columns=list(datasets.MEASUREMENT_COLUMNS))
        conditions = pd.DataFrame(
            [
                (patient.id, item.code, item.display, _utc(item.start), item.source)
                for item in document.case.get("conditions", [])
                if item.code is not None
            ],
            columns=list(datasets.CONDITION_COLUMNS),
        )
        birth = document.patient.birth_date
        who = {"birth_date": pd.Timestamp(birth[:10], tz="UTC") if birth else None, "gender": document.patient.gender}
        features, sources = incidence_examples.features_now(who, measurements, conditions, at)
        score = incidence.predict(self.artifact, features, at)
        for name in self.fields:
            for point in reader.points(name):
                if point.source in sources:
                    reader.read(point)
        basis = (document.patient.source, *dict.fromkeys(sources))
        gathered = Gathered(None, basis, tuple(reader.notes), False, reader.unverified, _newest(reader))
        return completed(gathered, dataclasses.replace(score, model=self.model), simulated)


def _utc(when: datetime | None) -> pd.Timestamp:
    import pandas as pd

    return pd.Timestamp(when, tz="UTC") if when is not None else pd.NaT


def _newest(reader: Reader) -> datetime | None:
    return max(reader.times) if reader.times else None


LEARNED = {
    entry.model.id: entry
    for entry in (
        Learned(forecast.MODEL, forecast.train, True, None, ForecastRunner, forecast.GATES),
        Learned(incidence.MODEL, incidence.train, True, incidence.evaluate, IncidenceRunner, incidence.GATES),
        Learned(
            progression.MODEL, lambda _dataset, seed: progression.train(seed), False, None, None, progression.GATES
        ),
        Learned(pima.MODEL, lambda _dataset, seed: pima.train(seed), False, None, None, pima.GATES),
    )
}


class Catalog:
    def __init__(self, repository: Repository, window: timedelta) -> None:
        self.registry = Registry(repository)
        self._rule_based = rule_based(window)
        self._active: dict[str, tuple[float, str | None]] = {}

    def check(self, mapping: Mapping) -> None:
        """Stop (``fields.UnmappedField``) on a Body field some model reads that ``mapping`` does not
        define as the model expects: every score's, and every learned model's that runs on patients,
        whether or not a version of it is active yet."""
        for runner in self._rule_based:
            body_fields.check(runner.model.id, runner.reads, mapping)
        for model_id, entry in LEARNED.items():
            body_fields.check(model_id, getattr(entry.runner, "reads", ()), mapping)

    def runners(self) -> Sequence[Runner]:
        """Every model to run on a patient: the scores, and each trained learned model's active version."""
        found = list(self._rule_based)
        for model_id, entry in LEARNED.items():
            active = self._active_version(model_id) if entry.runner is not None else None
            if entry.runner is None or active is None:
                continue
            loaded = self.registry.load(model_id, active)
            if loaded is not None:
                version, artifact = loaded
                found.append(entry.runner(dataclasses.replace(entry.model, version=version), artifact))
        return found

    def _active_version(self, model_id: str) -> str | None:
        checked = self._active.get(model_id)
        if checked is None or time.monotonic() - checked[0] > ACTIVE_TTL:
            checked = (time.monotonic(), self.registry.active_version(model_id))
            self._active[model_id] = checked
        return checked[1]

    def card(self, model: ModelInfo) -> str:
        """The Markdown model card of ``model``'s version: a score's from its ``ModelInfo``, a learned
        model's as the registry holds it for that version."""
        if model.kind == "rule-based":
            return score_card(model)
        for version in self.registry.versions(model.id):
            if version.version == model.version:
                return version.card
        raise NotFound(f"{model.id} has no version {model.version}")

    def entries(self) -> list[ModelEntry]:
        """Every model, rule-based first, with its registered versions."""
        registered: dict[str, list[ModelVersion]] = {}
        for version in self.registry.versions():
            registered.setdefault(version.model_id, []).append(version)
        found = [ModelEntry(runner.model, runner.model.version, [], True, runner.fields) for runner in self._rule_based]
        for model_id, entry in LEARNED.items():
            versions = registered.get(model_id, [])
            active = next((v.version for v in versions if v.active), None)
            reads = getattr(entry.runner, "fields", ())
            found.append(ModelEntry(entry.model, active, versions, entry.runner is not None, reads))
        return found

    def entry(self, model_id: str) -> ModelEntry:
        for entry in self.entries():
            if entry.info.id == model_id:
                return entry
        known = ", ".join(entry.info.id for entry in self.entries())
        raise NotFound(f"No model {model_id!r}; models: {known}")
