"""marshmallow schemas of the model documents the twin API serves (``/twin/models``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields

from fhir_twin.ml.assessment import SCORE_EXTENSION, device_id
from fhir_twin.ml.registry import ModelVersion
from fhir_twin.ml.scores.score import ModelInfo
from fhir_twin.twin.schemas import Instant


@dataclass(frozen=True)
class ModelEntry:
    """A model as the server knows it: its identity, the version in use (None: never trained), its versions."""

    info: ModelInfo
    active: str | None
    versions: list[ModelVersion]
    runs_on_patients: bool
    reads: tuple[str, ...] = ()  # the twin's Body fields it reads: the names ``$whatif`` takes for it

    @property
    def device(self) -> str | None:
        if self.active is None:
            return None
        return f"Device/{device_id(dataclasses.replace(self.info, version=self.active))}"


class InputSchema(Schema):
    name = fields.String()
    loinc = fields.String(allow_none=True)


class VersionSchema(Schema):
    """A registered version: whether it is the one in use, and its last activation (who, when, why)."""

    version = fields.String()
    created = Instant()
    active = fields.Boolean()
    activated = Instant(allow_none=True)
    activated_by = fields.String(allow_none=True, data_key="activatedBy")
    activation_reason = fields.String(allow_none=True, data_key="activationReason")


def _attr(name: str) -> fields.Function:
    return fields.Function(lambda entry: getattr(entry.info, name))


class ModelSchema(Schema):
    id = _attr("id")
    kind = _attr("kind")
    version = fields.String(attribute="active", allow_none=True)
    available = fields.Function(lambda entry: entry.active is not None)
    runs_on_patients = fields.Boolean(data_key="runsOnPatients")
    outcome = _attr("outcome")
    horizon = _attr("horizon")
    intended_use = fields.Function(lambda entry: entry.info.intended_use, data_key="intendedUse")
    reference = _attr("reference")
    inputs = fields.Function(lambda entry: InputSchema(many=True).dump([i._asdict() for i in entry.info.inputs]))
    reads = fields.List(fields.String())
    device = fields.String(allow_none=True)
    versions = fields.List(fields.Nested(VersionSchema))


def detail(entry: ModelEntry, version: ModelVersion | None, report: dict[str, Any] | None) -> dict[str, Any]:
    """One model with the report and model card of ``version`` (the active one unless asked)."""
    out = ModelSchema().dump(entry)
    out["report"] = report
    out["reportVersion"] = version.version if version is not None else None
    out["card"] = version.card if version is not None else None
    return out


def assessment_summary(resource: dict[str, Any]) -> dict[str, Any]:
    """A RiskAssessment as the twin document shows it: which model said what, when, from what."""
    coding = ((resource.get("method") or {}).get("coding") or [{}])[0]
    prediction = (resource.get("prediction") or [{}])[0]
    risk = ((prediction.get("qualitativeRisk") or {}).get("coding") or [{}])[0]
    score = next(
        (e.get("valueDecimal") for e in prediction.get("extension", []) if e.get("url") == SCORE_EXTENSION), None
    )
    return {
        "reference": f"RiskAssessment/{resource.get('id')}",
        "model": coding.get("code"),
        "version": coding.get("version"),
        "status": resource.get("status"),
        "occurrence": resource.get("occurrenceDateTime"),
        "score": score,
        "probability": prediction.get("probabilityDecimal"),
        "risk": risk.get("code"),
        "rationale": prediction.get("rationale"),
        "basis": [basis.get("reference") for basis in resource.get("basis", [])],
    }
