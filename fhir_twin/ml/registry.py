"""The model registry: every trained version of a learned model, stored in the database so every
server process serves the same active version, and older versions stay loadable.

A version is ``MAJOR.N.0``: MAJOR is the model code's major version, N counts the versions
trained before it. The artifact is pickled; the database is trusted like the code (an artifact
is never taken from a client).
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import threading
from pathlib import Path
from typing import Any

from fhir_twin.errors import NotFound
from fhir_twin.ml.learned.report import TrainResult, model_card
from fhir_twin.ml.scores.model import ModelInfo
from fhir_twin.store import doctor as store
from fhir_twin.store.repository import Repository

ModelVersion = store.ModelVersion


class Registry:
    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self._loaded: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def register(self, result: TrainResult) -> TrainResult:
        """Store ``result`` as the newest, active version; the result with its version filled in."""
        registered: list[TrainResult] = []

        def build(version: str) -> tuple[bytes, str, str]:
            model = dataclasses.replace(result.model, version=version)
            report = {**result.report, "model": {**result.report.get("model", {}), "version": version}}
            registered.append(TrainResult(model, result.artifact, report, model_card(model, report)))
            artifact = pickle.dumps(result.artifact, protocol=pickle.HIGHEST_PROTOCOL)
            return artifact, json.dumps(report, allow_nan=False), registered[-1].card

        store.register(self.repository, result.model.id, int(result.model.version.split(".")[0]), build)
        return registered[-1]

    def update_report(self, model: ModelInfo, report: dict[str, Any]) -> str:
        """Replace a version's report (after an external validation), returning its new card."""
        card = model_card(model, report)
        if not store.update_report(self.repository, model.id, model.version, json.dumps(report, allow_nan=False), card):
            raise NotFound(f"{model.id} has no version {model.version}")
        return card

    def versions(self, model_id: str | None = None) -> list[ModelVersion]:
        return store.versions(self.repository, model_id)

    def activate(self, model_id: str, version: str) -> None:
        if not store.activate(self.repository, model_id, version):
            raise NotFound(f"{model_id} has no version {version}")

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
