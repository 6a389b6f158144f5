"""The models this server knows: the validated scores, and the learned models with, once activated,
the active version of each from the registry.

A learned model is served only once a version of it was trained (``fhir-twin train``) and activated
(``train --activate`` or ``models activate``, which check the gates it declares); until then no
RiskAssessment claims its name.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any, ClassVar

from fhir_twin.errors import Invalid, NotFound
from fhir_twin.ml import dataset as datasets
from fhir_twin.ml.assessment import Kind
from fhir_twin.ml.dataset import Dataset
from fhir_twin.ml.learned import forecast, incidence, pima, progression
from fhir_twin.ml.learned.gates import Gate
from fhir_twin.ml.learned.report import TrainResult
from fhir_twin.ml.registry import ModelVersion, Registry
from fhir_twin.ml.runners import Patient, Run, Runner, rule_based
from fhir_twin.ml.schemas import ModelEntry
from fhir_twin.ml.scores.model import ModelInfo
from fhir_twin.store.repository import Repository

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
    input_names: ClassVar[tuple[str, ...]] = ()

    def run(self, patient: Patient, changes: dict[str, str] | None = None) -> Run:
        found = patient.twins.series(patient.id, "heart_rate", None, None, None)
        points = [
            (point.time.replace(tzinfo=UTC), point.value, point.source)
            for point in found.points
            if point.used and point.value is not None and point.time is not None
        ]
        score, sources = forecast.predict(self.artifact, points, patient.now.replace(tzinfo=UTC))
        return Run(dataclasses.replace(score, model=self.model), tuple(sources), (), False)


@dataclass(frozen=True)
class IncidenceRunner:
    """5-year incident type 2 diabetes from the twin at this moment (``learned.incidence``)."""

    model: ModelInfo
    artifact: Any
    kind: ClassVar[Kind] = Kind({"text": "Incident type 2 diabetes within 5 years"}, timedelta(days=1826))
    input_names: ClassVar[tuple[str, ...]] = tuple(model_input.name for model_input in incidence.MODEL.inputs)

    def run(self, patient: Patient, changes: dict[str, str] | None = None) -> Run:
        one = datasets.from_repository(patient.twins.repository, "patient", patient_id=patient.id)
        at = patient.now.replace(tzinfo=UTC)
        rows = one.patients.to_dict("records")
        features, sources = incidence.features_now(rows[0] if rows else {}, one.measurements, one.conditions, at)
        notes: tuple[str, ...] = ()
        if changes:
            features = {**features, **{_FEATURE.get(name, name): _feature(name, raw) for name, raw in changes.items()}}
            notes = tuple(f"simulated: {name} = {raw}" for name, raw in changes.items())
        score = incidence.predict(self.artifact, features, at)
        basis = (patient.document.patient.source, *dict.fromkeys(sources))
        return Run(dataclasses.replace(score, model=self.model), basis, notes, False)


# ``$whatif`` names an input as the model lists it; the feature it sets, and the coded values it takes.
_FEATURE = {"sex": "male", "smoking_status": "current_smoker"}
_CODED = {
    "sex": {"male": 1.0, "female": 0.0},
    "smoking_status": {"current": 1.0, "former": 0.0, "never": 0.0},
    "prediabetes": {"true": 1.0, "false": 0.0},
}


def _feature(name: str, raw: str) -> float:
    if name in _CODED:
        choices = _CODED[name]
        if raw not in choices:
            raise Invalid.at(name, f"{name} must be one of {', '.join(choices)}, not {raw!r}")
        return choices[raw]
    try:
        value = float(raw)
    except ValueError:
        raise Invalid.at(name, f"{name} must be a number, not {raw!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise Invalid.at(name, f"{name} must be a finite number, not {raw!r}")
    return value


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

    def entries(self) -> list[ModelEntry]:
        """Every model, rule-based first, with its registered versions."""
        registered: dict[str, list[ModelVersion]] = {}
        for version in self.registry.versions():
            registered.setdefault(version.model_id, []).append(version)
        found = [ModelEntry(runner.model, runner.model.version, [], True) for runner in self._rule_based]
        for model_id, entry in LEARNED.items():
            versions = registered.get(model_id, [])
            active = next((v.version for v in versions if v.active), None)
            found.append(ModelEntry(entry.model, active, versions, entry.runner is not None))
        return found

    def entry(self, model_id: str) -> ModelEntry:
        for entry in self.entries():
            if entry.info.id == model_id:
                return entry
        known = ", ".join(entry.info.id for entry in self.entries())
        raise NotFound(f"No model {model_id!r}; models: {known}")
