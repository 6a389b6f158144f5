"""The model registry: every trained version of a learned model, stored in the database so every
server process serves the same active version, and older versions stay loadable.

A version is ``MAJOR.N.0``: MAJOR is the model code's major version, N counts the versions
trained before it. The artifact is pickled; the database is trusted like the code (an artifact
is never taken from a client).

Training registers a version inactive: it serves patients only once activated, and it is
activated only when every gate its model declares (``learned.gates``) passes on its report, with a
reason. Each activation is recorded in the audit trail as an AuditEvent in the same transaction:
who (the login), when, which version (``Device/{model}-{version}``) and why (``purposeOfEvent``).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_twin.audit.recorder import new_occurrence, write_records
from fhir_twin.errors import Invalid, NotFound, Unprocessable
from fhir_twin.ml.assessment import device_id
from fhir_twin.ml.learned import gates as gating
from fhir_twin.ml.learned.gates import Gate
from fhir_twin.ml.learned.report import TrainResult, model_card
from fhir_twin.ml.scores.score import ModelInfo
from fhir_twin.store import doctor_state as store
from fhir_twin.store.repository import DatabaseTransaction, Repository

ModelVersion = store.ModelVersion
# The subtype of an activation's AuditEvent (``urn:fhir-twin:CodeSystem/operation``).
ACTIVATE = "activate-model"


@dataclass(frozen=True)
class Activation:
    """Who activates a version and why, and where that is recorded: ``agent`` names the command, ``by``
    the login that ran it; ``audit_key`` None when the server keeps no audit trail (``audit`` off)."""

    reason: str
    by: str | None
    agent: str
    audit_key: str | None
    site: str = ""


class GatesFailed(Unprocessable):
    """A version whose report does not pass its model's gates: it stays registered and inactive."""

    def __init__(self, message: str, results: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.results = results


class Registry:
    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self._loaded: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def register(self, result: TrainResult, training_keys: frozenset[str] = frozenset()) -> TrainResult:
        """Store ``result`` as the newest version, inactive, with the identity keys of the patients it was
        trained on (``ml.identity``); the result with its version filled in."""
        registered: list[TrainResult] = []

        def build(version: str) -> tuple[bytes, str, str]:
            model = dataclasses.replace(result.model, version=version)
            report = {**result.report, "model": {**result.report.get("model", {}), "version": version}}
            registered.append(TrainResult(model, result.artifact, report, model_card(model, report)))
            artifact = pickle.dumps(result.artifact, protocol=pickle.HIGHEST_PROTOCOL)
            return artifact, json.dumps(report, allow_nan=False), registered[-1].card

        major = int(result.model.version.split(".")[0])
        store.register(self.repository, result.model.id, major, build, training_keys)
        return registered[-1]

    def update_report(self, model: ModelInfo, report: dict[str, Any]) -> str:
        """Replace a version's report (after an external validation), returning its new card."""
        card = model_card(model, report)
        if not store.update_report(self.repository, model.id, model.version, json.dumps(report, allow_nan=False), card):
            raise NotFound(f"{model.id} has no version {model.version}")
        return card

    def versions(self, model_id: str | None = None) -> list[ModelVersion]:
        return store.versions(self.repository, model_id)

    def version(self, model_id: str, version: str) -> ModelVersion:
        found = store.stored_version(self.repository, model_id, version)
        if found is None:
            raise NotFound(f"{model_id} has no version {version}")
        return found

    def training_keys(self, model_id: str, version: str) -> frozenset[str]:
        """The identity keys of the patients ``version`` was trained on (empty for bundled data)."""
        return store.training_keys(self.repository, model_id, version)

    def activate(
        self, model: ModelInfo, version: str, gates: Sequence[Gate], activation: Activation
    ) -> list[dict[str, Any]]:
        """Make ``version`` of ``model`` the one every process serves, if its stored report passes ``gates``;
        recorded with ``activation`` in the audit trail. The gates' results; ``GatesFailed`` (nothing
        changes) when any fails, ``NotFound`` without such a version, ``Invalid`` without a reason."""
        if not activation.reason.strip():
            raise Invalid.at("reason", "give the reason for activating a version")
        model_id = model.id
        stored = self.version(model_id, version)
        results = gating.check(gates, json.loads(stored.report))
        failed = gating.failures(results)
        if failed:
            raise GatesFailed(f"{model_id} {version} was not activated: its gates failed: {'; '.join(failed)}", results)
        device = f"Device/{device_id(dataclasses.replace(model, version=version))}"

        def record(tx: DatabaseTransaction) -> None:
            if activation.audit_key is None:
                return
            occurrence = new_occurrence(
                interaction="operation",
                operation=ACTIVATE,
                action="U",
                status=200,
                agent=activation.agent,
                agent_kind="cli",
                user=activation.by,
                resources=[device],
                site=activation.site,
                purpose=activation.reason,
            )
            write_records(tx, [occurrence], activation.audit_key)

        if not store.activate(self.repository, model_id, version, activation.by, activation.reason, record):
            raise NotFound(f"{model_id} has no version {version}")
        return results

    def active_version(self, model_id: str) -> str | None:
        return store.active_version(self.repository, model_id)

    def load(self, model_id: str, version: str | None = None) -> tuple[str, Any] | None:
        """(version, artifact) of ``version``, or of the active one; None when never trained."""
        if version is not None:
            with self._lock:
                if (model_id, version) in self._loaded:
                    return version, self._loaded[(model_id, version)]
        found = store.artifact(self.repository, model_id, version)
        if found is None:
            return None
        found_version, data = found
        with self._lock:
            if (model_id, found_version) not in self._loaded:
                self._loaded[(model_id, found_version)] = pickle.loads(data)
            return found_version, self._loaded[(model_id, found_version)]


def write_report(model: ModelInfo, report: dict[str, Any], card: str, folder: Path) -> list[str]:
    """Write ``{model}-{version}.json`` and ``.md`` into ``folder``; the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{model.id}-{model.version}"
    json_path, card_path = folder / f"{stem}.json", folder / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    card_path.write_text(card, encoding="utf-8")
    return [str(json_path), str(card_path)]
