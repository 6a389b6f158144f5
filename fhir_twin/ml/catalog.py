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
from datetime import timedelta
from typing import Any

from fhir_twin.errors import NotFound
from fhir_twin.ml import fields as body_fields
from fhir_twin.ml.card import score_card
from fhir_twin.ml.dataset import Dataset
from fhir_twin.ml.fields import BodyField
from fhir_twin.ml.learned.declared import forecast, incidence, pima, progression
from fhir_twin.ml.learned.gates import Gate
from fhir_twin.ml.learned.report import TrainResult
from fhir_twin.ml.registry import ModelVersion, Registry
from fhir_twin.ml.runners import Runner, rule_based
from fhir_twin.ml.schemas import ModelEntry
from fhir_twin.ml.scores.score import ModelInfo
from fhir_twin.store.repository import Repository
from fhir_twin.twin.mapping import Mapping

# How long a process trusts its knowledge of which version is active before asking the database.
ACTIVE_TTL = 2.0


@dataclass(frozen=True)
class Learned:
    """A learned model: what it is, the gates a version's report must pass before it is activated, the
    Body fields it reads on a patient (``READS``) and those a ``$whatif`` may change, and how to train it,
    evaluate a trained version and run it on a patient. The last three import the model's module, and
    with it numpy, pandas and scikit-learn, when first called."""

    model: ModelInfo
    gates: tuple[Gate, ...]
    # Trained on the server's own twins, or on data of its own (load_diabetes, MASS Pima).
    on_server_data: bool
    train: Callable[[Dataset, int], TrainResult]
    evaluate: Callable[[Any, Dataset], dict[str, Any]] | None = None
    runner: Callable[[ModelInfo, Any], Runner] | None = None
    reads: tuple[BodyField, ...] = ()
    whatif: tuple[str, ...] = ()


def _train_forecast(dataset: Dataset, seed: int) -> TrainResult:
    from fhir_twin.ml.learned import forecast as implementation

    return implementation.train(dataset, seed)


def _forecast_runner(model: ModelInfo, artifact: Any) -> Runner:
    from fhir_twin.ml.learned.forecast import ForecastRunner

    return ForecastRunner(model, artifact)


def _train_incidence(dataset: Dataset, seed: int) -> TrainResult:
    from fhir_twin.ml.learned import incidence as implementation

    return implementation.train(dataset, seed)


def _evaluate_incidence(artifact: Any, dataset: Dataset) -> dict[str, Any]:
    from fhir_twin.ml.learned import incidence as implementation

    return implementation.evaluate(artifact, dataset)


def _incidence_runner(model: ModelInfo, artifact: Any) -> Runner:
    from fhir_twin.ml.learned.incidence import IncidenceRunner

    return IncidenceRunner(model, artifact)


def _train_progression(_dataset: Dataset, seed: int) -> TrainResult:
    from fhir_twin.ml.learned import progression as implementation

    return implementation.train(seed)


def _train_pima(_dataset: Dataset, seed: int) -> TrainResult:
    from fhir_twin.ml.learned import pima as implementation

    return implementation.train(seed)


LEARNED = {
    entry.model.id: entry
    for entry in (
        Learned(
            forecast.MODEL,
            forecast.GATES,
            True,
            _train_forecast,
            runner=_forecast_runner,
            reads=forecast.READS,
            whatif=forecast.WHATIF,
        ),
        Learned(
            incidence.MODEL,
            incidence.GATES,
            True,
            _train_incidence,
            _evaluate_incidence,
            _incidence_runner,
            incidence.READS,
            incidence.WHATIF,
        ),
        Learned(progression.MODEL, progression.GATES, False, _train_progression),
        Learned(pima.MODEL, pima.GATES, False, _train_pima),
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
            body_fields.check(model_id, entry.reads, mapping)

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
            found.append(ModelEntry(entry.model, active, versions, entry.runner is not None, entry.whatif))
        return found

    def entry(self, model_id: str) -> ModelEntry:
        for entry in self.entries():
            if entry.info.id == model_id:
                return entry
        known = ", ".join(entry.info.id for entry in self.entries())
        raise NotFound(f"No model {model_id!r}; models: {known}")
