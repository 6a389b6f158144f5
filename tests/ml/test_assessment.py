"""One model run as FHIR (``ml.assessment``): the RiskAssessment, its Provenance, the model's
Device and its model card are valid R4 resources this server accepts (201), say what the run
found, and follow the AI Transparency on FHIR IG (AI-Device, AI-ModelCard, AI-Provenance)."""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from fhir_twin.fhir.validation import resource_issues
from fhir_twin.ml import assessment
from fhir_twin.ml.card import score_card
from fhir_twin.ml.learned import forecast, incidence
from fhir_twin.ml.runners import rule_based
from fhir_twin.ml.scores import atp3, news2, pooled_cohort, qsofa
from fhir_twin.ml.scores.score import ModelInfo, Score
from tests.factories import ATP3_WORKED, PCE_WHITE_MALE
from tests.ml.doctor_data import (
    AIAST,
    MEDIUM,
    MODEL_SYSTEM,
    NEWS2_MEDIUM,
    RISK_PROBABILITY,
    SCORE_EXTENSION,
    ago,
    news2_set,
    patient,
    put,
    transaction,
)

OCCURRED = datetime(2026, 3, 2, 9, 0, 0, 123000)  # naive UTC, as fhir_twin.fhir.instant.now() gives
AI = "http://hl7.org/fhir/uv/aitransparency"
AI_DEVICE_TYPE = f"{AI}/CodeSystem/AIdeviceTypeCS"
AI_INPUTS = f"{AI}/CodeSystem/AIinputsCS"
KINDS = {runner.model.id: runner.kind for runner in rule_based(timedelta(hours=1))}

QSOFA_PARTIAL = qsofa.QsofaInputs(respiratory_rate=30, systolic_bp=90, age=60, suspected_infection=("Sepsis",))
SCORES = {
    "news2": news2.news2(NEWS2_MEDIUM),
    "qsofa": qsofa.qsofa(QSOFA_PARTIAL),
    "pooled-cohort-ascvd": pooled_cohort.pooled_cohort(PCE_WHITE_MALE),
    "atp3-hard-chd": atp3.atp3(ATP3_WORKED),
}


@pytest.fixture
def client(make_app: Any) -> FlaskClient:
    """No live Doctor: these tests store the Devices and assessments themselves, and must not race it."""
    return make_app(doctor=False).test_client()


@pytest.fixture
def basis(client: FlaskClient) -> tuple[str, ...]:
    """Patient p1 and a NEWS2 set stored, the version references a RiskAssessment may name."""
    put(client, patient("p1"))
    observations = news2_set("p1", MEDIUM, ago(minutes=5))
    return ("Patient/p1/_history/1", *transaction(client, observations))


def build(score: Score, basis: tuple[str, ...], **options: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {"assessment_id": "ra1", "preliminary": score.partial, **options}
    notes = arguments.pop("notes", ())
    return assessment.risk_assessment(score, KINDS[score.model.id], "p1", basis, notes, OCCURRED, **arguments)


def stored(client: FlaskClient, resource: dict[str, Any], status: int = 201) -> dict[str, Any]:
    """PUT a resource with an id, POST one without; it must be accepted as valid R4."""
    if "id" in resource:
        response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource)
    else:
        response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def without_meta_history(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {key: value for key, value in resource.get("meta", {}).items() if key not in ("versionId", "lastUpdated")}
    return {**resource, "meta": meta}


def described(client: FlaskClient, model: ModelInfo) -> dict[str, Any]:
    """Store the model version's Device and model card, as the Doctor does on first use; the Device."""
    device = stored(client, assessment.device(model))
    stored(client, assessment.model_card(model, score_card(model), OCCURRED))
    return device


@pytest.mark.parametrize("model", list(SCORES))
def test_each_models_resources_are_valid_r4(client: FlaskClient, basis: tuple[str, ...], model: str) -> None:
    score = SCORES[model]
    card = assessment.model_card(score.model, score_card(score.model), OCCURRED)
    device = assessment.device(score.model)
    resource = build(score, basis)
    provenance = assessment.provenance("ra1", score.model, basis, OCCURRED)
    for written in (device, card, resource, provenance):
        assert resource_issues(written) == [], written["resourceType"]
    assert stored(client, device)["id"] == f"{model}-1.0.0"
    assert stored(client, card)["id"] == f"{model}-1.0.0-card"
    created = stored(client, resource)
    # What was sent is what is stored (fhir.resources only validated it).
    assert without_meta_history(created) == resource
    assert without_meta_history(client.get("/fhir/RiskAssessment/ra1").get_json()) == resource
    provenance = stored(client, provenance)
    assert provenance["target"] == [{"reference": "RiskAssessment/ra1/_history/1"}]
    assert provenance["agent"][0]["who"]["reference"] == f"Device/{model}-1.0.0"
    sources = [entity["what"]["reference"] for entity in provenance["entity"] if entity["role"] == "source"]
    assert sources == list(basis)
    (derivation,) = [entity for entity in provenance["entity"] if entity["role"] != "source"]
    assert derivation == {"role": "derivation", "what": {"reference": f"DocumentReference/{model}-1.0.0-card"}}
    assert provenance["recorded"] == "2026-03-02T09:00:00.123+00:00"


def test_a_simulated_assessment_is_valid_and_marked(client: FlaskClient, basis: tuple[str, ...]) -> None:
    described(client, news2.MODEL)
    simulated = build(SCORES["news2"], basis, assessment_id=None, simulated=True, notes=("simulated: spo2 = 90",))
    assert "id" not in simulated and "identifier" not in simulated
    assert simulated["status"] == "preliminary"
    assert simulated["meta"]["tag"] == [assessment.SIMULATED]
    assert simulated["note"][0]["text"].startswith("Simulated what-if assessment")
    assert simulated["note"][1] == {"text": "simulated: spo2 = 90"}
    stored(client, simulated)


def test_the_risk_assessment_says_what_the_run_found(basis: tuple[str, ...]) -> None:
    resource = build(SCORES["news2"], basis)
    assert resource["id"] == "ra1"
    assert resource["identifier"] == [{"system": assessment.ASSESSMENT_IDENTIFIER, "value": "ra1"}]
    assert resource["status"] == "final"
    assert resource["subject"] == {"reference": "Patient/p1"}
    assert resource["occurrenceDateTime"] == "2026-03-02T09:00:00.123+00:00"
    assert resource["basis"] == [{"reference": reference} for reference in basis]
    assert resource["method"]["coding"] == [
        {"system": MODEL_SYSTEM, "code": "news2", "version": "1.0.0", "display": news2.MODEL.outcome}
    ]
    assert resource["performer"] == {"reference": "Device/news2-1.0.0", "display": "news2 1.0.0"}
    assert [f"{label['system']}|{label['code']}" for label in resource["meta"]["security"]] == [AIAST]
    (prediction,) = resource["prediction"]
    assert prediction["extension"] == [{"url": SCORE_EXTENSION, "valueDecimal": 6}]
    assert prediction["qualitativeRisk"]["coding"] == [
        {"system": RISK_PROBABILITY, "code": "moderate", "display": "Moderate likelihood"}
    ]
    assert prediction["qualitativeRisk"]["text"] == "medium (news2)"
    assert prediction["rationale"] == SCORES["news2"].rationale
    assert "whenPeriod" not in prediction and "probabilityDecimal" not in prediction
    assert resource["mitigation"] == news2.RESPONSE["medium"]
    assert "note" not in resource


def test_a_partial_run_is_preliminary(basis: tuple[str, ...]) -> None:
    score = SCORES["qsofa"]
    assert score.partial and score.band == "positive"
    resource = build(score, basis)
    assert resource["status"] == "preliminary"
    assert "mentation not observed but cannot change the result" in resource["prediction"][0]["rationale"]
    assert resource["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "high"
    assert resource["prediction"][0]["qualitativeRisk"]["text"] == "positive (qsofa)"


def test_a_partial_news2_says_at_least_in_its_band(client: FlaskClient, basis: tuple[str, ...]) -> None:
    score = news2.news2(dataclasses.replace(NEWS2_MEDIUM, consciousness=None, supplemental_oxygen=None))
    resource = build(score, basis)
    assert resource["status"] == "preliminary"
    risk = resource["prediction"][0]["qualitativeRisk"]
    assert risk["text"] == "at least medium (news2)" and risk["coding"][0]["code"] == "moderate"
    assert resource["prediction"][0]["extension"] == [{"url": SCORE_EXTENSION, "valueDecimal": 6}]
    stored(client, assessment.device(news2.MODEL))
    stored(client, resource)


def test_notes_and_stale_inputs(basis: tuple[str, ...]) -> None:
    resource = build(SCORES["pooled-cohort-ascvd"], basis, preliminary=True, notes=("Total cholesterol is old",))
    assert resource["status"] == "preliminary"
    assert resource["note"] == [{"text": "Total cholesterol is old"}]


@pytest.mark.parametrize("model", ["pooled-cohort-ascvd", "atp3-hard-chd"])
def test_a_ten_year_risk_is_a_fraction_over_ten_years(basis: tuple[str, ...], model: str) -> None:
    score = SCORES[model]
    (prediction,) = build(score, basis)["prediction"]
    assert prediction["probabilityDecimal"] == round(score.probability, 6)
    assert 0 < prediction["probabilityDecimal"] < 1
    assert prediction["extension"] == [{"url": SCORE_EXTENSION, "valueDecimal": round(100 * score.probability, 4)}]
    assert prediction["whenPeriod"] == {
        "start": "2026-03-02T09:00:00.123+00:00",
        "end": "2036-03-01T09:00:00.123+00:00",  # 3652 days
    }


def test_when_starts_at_the_time_the_prediction_is_about(basis: tuple[str, ...]) -> None:
    """A risk from readings of 2018 is a risk over the 10 years from 2018, whenever it was computed."""
    measured = datetime(2018, 9, 17, 10, 0)
    (prediction,) = build(SCORES["pooled-cohort-ascvd"], basis, as_of=measured)["prediction"]
    assert prediction["whenPeriod"] == {
        "start": "2018-09-17T10:00:00.000+00:00",
        "end": "2028-09-16T10:00:00.000+00:00",
    }


# Every risk factor at its worst the equations accept (age 79: they are for 40 to 79).
WORST_PCE = {
    "age": 79,
    "total_cholesterol": 320,
    "hdl": 20,
    "systolic_bp": 200,
    "bp_treated": True,
    "smoker": True,
    "diabetes": True,
}
EXTREMES = [
    pooled_cohort.pooled_cohort(
        dataclasses.replace(PCE_WHITE_MALE, **changes)  # type: ignore[arg-type]
    )
    for changes in (
        WORST_PCE,
        {**WORST_PCE, "sex": "female", "race": "african_american"},
        {"age": 40, "sex": "female", "total_cholesterol": 130, "hdl": 100, "systolic_bp": 90},
    )
] + [
    atp3.atp3(dataclasses.replace(ATP3_WORKED, **changes))  # type: ignore[arg-type]
    for changes in (
        {"age": 79, "total_cholesterol": 400, "hdl": 20, "systolic_bp": 220, "bp_treated": True, "smoker": True},
        {"age": 20, "sex": "female", "total_cholesterol": 130, "hdl": 100, "systolic_bp": 90},
    )
]


@pytest.mark.parametrize("score", EXTREMES, ids=lambda score: f"{score.model.id}-{score.value:.4g}")
def test_probability_stays_a_fraction_at_the_extremes(
    client: FlaskClient, basis: tuple[str, ...], score: Score
) -> None:
    resource = build(score, basis)
    probability = resource["prediction"][0]["probabilityDecimal"]
    assert 0 <= probability <= 1
    assert probability == round(score.probability, 6)
    described(client, score.model)
    stored(client, resource)


@pytest.mark.parametrize(
    ("band", "code"),
    [
        ("low", "low"),
        ("low-medium", "moderate"),
        ("medium", "moderate"),
        ("high", "high"),
        ("negative", "low"),
        ("positive", "high"),
        ("borderline", "low"),
        ("intermediate", "moderate"),
    ],
)
def test_every_band_a_model_gives_has_a_risk_probability_code(basis: tuple[str, ...], band: str, code: str) -> None:
    assert band in assessment.QUALITATIVE
    score = dataclasses.replace(SCORES["pooled-cohort-ascvd"], band=band)
    (coding,) = build(score, basis)["prediction"][0]["qualitativeRisk"]["coding"]
    assert coding == {"system": RISK_PROBABILITY, "code": code, "display": assessment.RISK_DISPLAY[code]}


@pytest.mark.parametrize("band", ["unknown", "very-high", "Medium", ""])
def test_a_band_without_a_code_is_an_error_never_a_guess(basis: tuple[str, ...], band: str) -> None:
    score = dataclasses.replace(SCORES["news2"], band=band)
    with pytest.raises(ValueError, match="no risk-probability code"):
        build(score, basis)


@pytest.mark.parametrize(
    ("model", "bands"),
    [
        ("news2", set(news2.RESPONSE)),
        ("qsofa", set(qsofa.MITIGATION)),
        ("pooled-cohort-ascvd", set(pooled_cohort.MITIGATION)),
        ("hr-forecast", {name for _, name in forecast.BANDS} | {"high"}),
        ("incident-diabetes", {name for _, name in incidence.BANDS} | {"high"}),
    ],
)
def test_every_band_a_model_names_is_mapped(model: str, bands: set[str]) -> None:
    assert bands <= set(assessment.QUALITATIVE), model


def test_no_band_no_probability_no_value(basis: tuple[str, ...]) -> None:
    score = dataclasses.replace(SCORES["news2"], value=None, band=None, mitigation=None)
    (prediction,) = build(score, basis)["prediction"]
    assert set(prediction) == {"outcome", "rationale"}


@pytest.mark.parametrize(
    ("model", "kind"),
    [(pooled_cohort.MODEL, "Rule-Based-Systems"), (incidence.MODEL, "Machine-Learning-Models")],
    ids=["rule-based", "learned"],
)
def test_the_device_is_an_ai_device_for_the_model_version(client: FlaskClient, model: ModelInfo, kind: str) -> None:
    device = assessment.device(model)
    assert device["id"] == assessment.device_id(model) == f"{model.id}-{model.version}"
    assert device["meta"] == {"profile": [f"{AI}/StructureDefinition/AI-Device"]}
    assert device["type"]["coding"] == [{"system": AI_DEVICE_TYPE, "code": "Artificial-Intelligence"}]
    extensions = {extension["url"]: extension for extension in device["extension"]}
    (ai_kind,) = extensions[f"{AI}/StructureDefinition/aitransparency.AIKind"]["valueCodeableConcept"]["coding"]
    assert (ai_kind["system"], ai_kind["code"]) == (AI_DEVICE_TYPE, kind)
    card = f"DocumentReference/{model.id}-{model.version}-card"
    modelcard = extensions[f"{AI}/StructureDefinition/aitransparency.modelCardDescription"]
    assert modelcard["valueReference"] == {"reference": card}
    assert device["url"] == card
    assert assessment.device(model, "https://twin.example/fhir")["url"] == f"https://twin.example/fhir/{card}"
    assert device["version"] == [{"value": model.version}]
    assert (device["manufacturer"], device["modelNumber"]) == ("fhir-twin", model.id)
    assert device["deviceName"] == [{"name": f"fhir-twin {model.id}", "type": "model-name"}]
    # R4 Device.owner is Reference(Organization): a display alone, the server keeping no Organization.
    assert device["owner"] == {"display": "fhir-twin"}
    assert model.reference in device["note"][0]["text"]
    assert resource_issues(device) == []
    assert stored(client, device)["meta"]["versionId"] == "1"


def test_the_model_card_is_an_ai_model_card_document(client: FlaskClient) -> None:
    text = score_card(news2.MODEL)
    card = assessment.model_card(news2.MODEL, text, OCCURRED)
    assert card["id"] == assessment.card_id(news2.MODEL) == "news2-1.0.0-card"
    assert card["meta"] == {"profile": [f"{AI}/StructureDefinition/AI-ModelCard"]}
    assert card["status"] == "current"
    assert card["type"] == {"coding": [{"system": AI_INPUTS, "code": "AIModelCard", "display": "AI Model-Card"}]}
    (category,) = card["category"]
    assert [(coding["system"], coding["code"]) for coding in category["coding"]] == [
        (AI_INPUTS, "AIModelCardMarkdownFormat")
    ]
    assert card["subject"]["reference"] == "Device/news2-1.0.0"
    assert card["date"] == "2026-03-02T09:00:00.123+00:00"
    (content,) = card["content"]
    attachment = content["attachment"]
    assert attachment["contentType"] == "text/markdown"
    assert attachment["title"] == "Model card: news2 1.0.0"
    assert base64.b64decode(attachment["data"]).decode() == text
    assert resource_issues(card) == []
    stored(client, assessment.device(news2.MODEL))
    assert without_meta_history(stored(client, card)) == card


def test_a_scores_model_card_says_what_its_definition_says() -> None:
    text = score_card(news2.MODEL)
    assert text.startswith("# Model card: news2 1.0.0\n")
    for said in (news2.MODEL.intended_use, news2.MODEL.outcome, news2.MODEL.reference, "rule-based"):
        assert said in text
    assert "| respiratory_rate | 9279-1 |" in text
    assert "| supplemental_oxygen | – |" in text
    assert "Horizon: none stated" in text
    assert "Horizon: this hospital stay" in score_card(qsofa.MODEL)


def test_the_provenance_is_an_ai_provenance(basis: tuple[str, ...]) -> None:
    provenance = assessment.provenance("ra1", news2.MODEL, basis, OCCURRED)
    assert provenance["meta"]["profile"] == [f"{AI}/StructureDefinition/AI-Provenance"]
    assert [f"{label['system']}|{label['code']}" for label in provenance["meta"]["security"]] == [AIAST]
    (agent,) = provenance["agent"]
    # AI-Provenance fixes the AI agent's role exactly: the code alone.
    assert agent["role"] == [{"coding": [{"system": AI_DEVICE_TYPE, "code": "Artificial-Intelligence"}]}]
    assert agent["who"] == {"reference": "Device/news2-1.0.0", "display": "news2 1.0.0"}
    assert provenance["entity"][-1] == {
        "role": "derivation",
        "what": {"reference": "DocumentReference/news2-1.0.0-card"},
    }
    assert [f"{coding['system']}|{coding['code']}" for coding in provenance["reason"][0]["coding"]] == [AIAST]
