"""One model run as FHIR: a RiskAssessment, its Provenance, and the Device that is the model version.

R4 riskassessment.html: ``basis`` holds the version-specific references of the inputs used,
``method`` the model id with ``Coding.version``, ``performer`` a Device per model version, and
``probabilityDecimal`` a 0..1 fraction as in every official example. The AI Transparency on FHIR
IG's conventions mark it as AI-asserted: the ``AIAST`` security label, an AI Device pointing at
its model card (an AI-ModelCard DocumentReference), and an AI Provenance with the Device as
agent, the inputs as source entities and the model card as the derivation entity.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fhir_twin.fhir.instant import format_instant
from fhir_twin.ml.scores.score import ModelInfo, Score

MODEL_SYSTEM = "urn:fhir-twin:CodeSystem/model"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
AIAST = {"system": OBSERVATION_VALUE, "code": "AIAST", "display": "Artificial Intelligence asserted"}
SIMULATED = {"system": "urn:fhir-twin:CodeSystem/assessment", "code": "simulated", "display": "Simulated (what-if)"}
ASSESSMENT_IDENTIFIER = "urn:fhir-twin:assessment"
SCORE_EXTENSION = "urn:fhir-twin:StructureDefinition/prediction-score"
FORECAST_EXTENSION = "urn:fhir-twin:StructureDefinition/prediction-forecast"
UCUM = "http://unitsofmeasure.org"
# AI Transparency on FHIR (http://hl7.org/fhir/uv/aitransparency), an R4 IG: its profiles,
# extensions and code systems (input/fsh/AIDevice.fsh, AIProvenance.fsh).
AI_TRANSPARENCY = "http://hl7.org/fhir/uv/aitransparency"
AI_DEVICE_PROFILE = f"{AI_TRANSPARENCY}/StructureDefinition/AI-Device"
AI_MODEL_CARD_PROFILE = f"{AI_TRANSPARENCY}/StructureDefinition/AI-ModelCard"
AI_PROVENANCE_PROFILE = f"{AI_TRANSPARENCY}/StructureDefinition/AI-Provenance"
AI_KIND_EXTENSION = f"{AI_TRANSPARENCY}/StructureDefinition/aitransparency.AIKind"
MODEL_CARD_EXTENSION = f"{AI_TRANSPARENCY}/StructureDefinition/aitransparency.modelCardDescription"
AI_DEVICE_TYPE = f"{AI_TRANSPARENCY}/CodeSystem/AIdeviceTypeCS"
AI_INPUTS = f"{AI_TRANSPARENCY}/CodeSystem/AIinputsCS"
ARTIFICIAL_INTELLIGENCE = {"system": AI_DEVICE_TYPE, "code": "Artificial-Intelligence"}
AI_KINDS = {
    "rule-based": {"system": AI_DEVICE_TYPE, "code": "Rule-Based-Systems", "display": "Rule-Based Systems"},
    "learned": {"system": AI_DEVICE_TYPE, "code": "Machine-Learning-Models", "display": "Machine Learning Models"},
}
# R4 Device.owner is Reference(Organization), and ref-1 lets a display stand alone: the server
# keeps no Organization of its own that clients could edit or delete under the Devices.
OWNER = {"display": "fhir-twin"}

# A model's own band → the risk-probability code; the band itself stays in the concept's text.
QUALITATIVE = {
    "negligible": "negligible",
    "zero": "low",
    "low": "low",
    "borderline": "low",
    "low-medium": "moderate",
    "medium": "moderate",
    "moderate": "moderate",
    "intermediate": "moderate",
    "negative": "low",
    "positive": "high",
    "high": "high",
}
RISK_DISPLAY = {
    "negligible": "Negligible likelihood",
    "low": "Low likelihood",
    "moderate": "Moderate likelihood",
    "high": "High likelihood",
    "certain": "Certain",
}


@dataclass(frozen=True)
class Kind:
    """What a model's RiskAssessment is about: its ``code`` and the horizon of its prediction."""

    code: dict[str, Any]
    horizon: timedelta | None


def device_id(model: ModelInfo) -> str:
    """The Device id of a model version: ``news2-1.0.0`` (R4 ids allow letters, digits, ``-`` and ``.``)."""
    return f"{model.id}-{model.version}"[:64]


def card_id(model: ModelInfo) -> str:
    """The id of a model version's model card DocumentReference: ``news2-1.0.0-card``."""
    return f"{device_id(model)[:59]}-card"


def device(model: ModelInfo, base: str = "") -> dict[str, Any]:
    """The Device that stands for one model version (AI Transparency IG, AI-Device): typed
    Artificial Intelligence, its kind in ``aiKind``, and its model card named by the
    ``modelCardDescription`` extension and, as an address, by ``url`` (absolute under ``base``)."""
    kind = AI_KINDS[model.kind]
    card = f"DocumentReference/{card_id(model)}"
    return {
        "resourceType": "Device",
        "id": device_id(model),
        "meta": {"profile": [AI_DEVICE_PROFILE]},
        "extension": [
            {"url": AI_KIND_EXTENSION, "valueCodeableConcept": {"coding": [kind]}},
            {"url": MODEL_CARD_EXTENSION, "valueReference": {"reference": card}},
        ],
        "identifier": [{"system": MODEL_SYSTEM, "value": device_id(model)}],
        "status": "active",
        "manufacturer": "fhir-twin",
        "deviceName": [{"name": f"fhir-twin {model.id}", "type": "model-name"}],
        "modelNumber": model.id,
        "type": {"coding": [ARTIFICIAL_INTELLIGENCE], "text": f"Artificial Intelligence: {kind['display']}"},
        "version": [{"value": model.version}],
        "owner": OWNER,
        "url": f"{base}/{card}" if base else card,
        "note": [{"text": f"{model.outcome}. Intended use: {model.intended_use} Reference: {model.reference}"}],
    }


def model_card(model: ModelInfo, card: str, written: datetime) -> dict[str, Any]:
    """The model card of one model version as an AI-ModelCard DocumentReference (AI Transparency
    IG): the Markdown ``card`` attached as base64 ``data``, about the model's Device."""
    return {
        "resourceType": "DocumentReference",
        "id": card_id(model),
        "meta": {"profile": [AI_MODEL_CARD_PROFILE]},
        "status": "current",
        "type": {"coding": [{"system": AI_INPUTS, "code": "AIModelCard", "display": "AI Model-Card"}]},
        "category": [
            {"coding": [{"system": AI_INPUTS, "code": "AIModelCardMarkdownFormat", "display": "Markdown Format"}]}
        ],
        "subject": {"reference": f"Device/{device_id(model)}", "display": f"{model.id} {model.version}"},
        "date": format_instant(written),
        "description": f"Model card of {model.id} {model.version}: {model.outcome}",
        "content": [
            {
                "attachment": {
                    "contentType": "text/markdown",
                    "language": "en",
                    "data": base64.b64encode(card.encode()).decode("ascii"),
                    "title": f"Model card: {model.id} {model.version}",
                }
            }
        ],
    }


def method(model: ModelInfo) -> dict[str, Any]:
    return {
        "coding": [{"system": MODEL_SYSTEM, "code": model.id, "version": model.version, "display": model.outcome}],
        "text": f"{model.id} {model.version}",
    }


def risk_assessment(
    score: Score,
    kind: Kind,
    patient_id: str,
    basis: tuple[str, ...],
    notes: tuple[str, ...],
    occurred: datetime,
    *,
    assessment_id: str | None,
    preliminary: bool,
    simulated: bool = False,
    as_of: datetime | None = None,
    contained: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The RiskAssessment of one scored run; ``simulated`` ones are tagged, carry their hypothetical
    readings as ``contained`` Observations, and are never stored. ``whenPeriod`` starts at ``as_of``,
    the clinical time of the newest input: what the prediction is about, which may be long before
    it was made (``occurrence``)."""
    model = score.model
    prediction: dict[str, Any] = {"outcome": {"text": model.outcome}, "rationale": score.rationale}
    if score.probability is not None:
        prediction["probabilityDecimal"] = round(score.probability, 6)
    if score.band is not None:
        if score.band not in QUALITATIVE:
            raise ValueError(f"{model.id} gave the band {score.band!r}, which has no risk-probability code")
        code = QUALITATIVE[score.band]
        bound = "at least " if score.bound else ""
        prediction["qualitativeRisk"] = {
            "coding": [{"system": RISK_PROBABILITY, "code": code, "display": RISK_DISPLAY[code]}],
            "text": f"{bound}{score.band} ({model.id})",
        }
    horizon = kind.horizon
    if score.forecast is not None:
        horizon = timedelta(hours=score.forecast.horizon_hours)
    if horizon is not None:
        start = as_of or occurred
        prediction["whenPeriod"] = {"start": format_instant(start), "end": format_instant(start + horizon)}
    extensions = []
    if score.value is not None and score.forecast is None:
        extensions.append({"url": SCORE_EXTENSION, "valueDecimal": round(float(score.value), 4)})
    if score.forecast is not None:
        extensions.append(_forecast(score))
    if extensions:
        prediction["extension"] = extensions
    meta: dict[str, Any] = {"security": [AIAST]}
    if simulated:
        meta["tag"] = [SIMULATED]
    resource: dict[str, Any] = {"resourceType": "RiskAssessment"}
    if assessment_id is not None:
        resource["id"] = assessment_id
        resource["identifier"] = [{"system": ASSESSMENT_IDENTIFIER, "value": assessment_id}]
    resource["meta"] = meta
    if contained:
        resource["contained"] = contained
    resource.update(
        {
            "status": "preliminary" if preliminary or simulated else "final",
            "method": method(model),
            "code": kind.code,
            "subject": {"reference": f"Patient/{patient_id}"},
            "occurrenceDateTime": format_instant(occurred),
            "performer": {"reference": f"Device/{device_id(model)}", "display": f"{model.id} {model.version}"},
            "basis": [{"reference": reference} for reference in basis],
            "prediction": [prediction],
        }
    )
    if score.mitigation:
        resource["mitigation"] = score.mitigation
    texts = list(notes)
    if simulated:
        texts.insert(0, "Simulated what-if assessment: hypothetical inputs, not part of the patient's record.")
    if texts:
        resource["note"] = [{"text": text} for text in texts]
    return resource


def _forecast(score: Score) -> dict[str, Any]:
    """The point forecast and its interval (R4 has no element for a predicted value)."""
    forecast = score.forecast
    assert forecast is not None
    unit = {"unit": forecast.unit, "system": UCUM, "code": forecast.unit}
    return {
        "url": FORECAST_EXTENSION,
        "extension": [
            {"url": "value", "valueQuantity": {"value": round(forecast.value, 2), **unit}},
            {
                "url": "interval",
                "valueRange": {
                    "low": {"value": round(forecast.low, 2), **unit},
                    "high": {"value": round(forecast.high, 2), **unit},
                },
            },
            {"url": "level", "valueDecimal": forecast.level},
            {
                "url": "horizon",
                "valueQuantity": {"value": round(forecast.horizon_hours, 3), "unit": "h", "system": UCUM, "code": "h"},
            },
        ],
    }


def provenance(assessment_id: str, model: ModelInfo, basis: tuple[str, ...], recorded: datetime) -> dict[str, Any]:
    """Who made the assessment (the model's Device, in the AI role) from what (its inputs, as
    sources) as its model card describes it (the derivation): AI Transparency IG AI-Provenance."""
    card = {"role": "derivation", "what": {"reference": f"DocumentReference/{card_id(model)}"}}
    return {
        "resourceType": "Provenance",
        "meta": {"profile": [AI_PROVENANCE_PROFILE], "security": [AIAST]},
        "target": [{"reference": f"RiskAssessment/{assessment_id}/_history/1"}],
        "recorded": format_instant(recorded),
        "reason": [{"coding": [AIAST]}],
        "activity": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "performer",
                        }
                    ]
                },
                "role": [{"coding": [ARTIFICIAL_INTELLIGENCE]}],
                "who": {"reference": f"Device/{device_id(model)}", "display": f"{model.id} {model.version}"},
            }
        ],
        "entity": [*({"role": "source", "what": {"reference": reference}} for reference in basis), card],
    }
