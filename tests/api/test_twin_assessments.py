"""The Digital Doctor's part of the twin document: ``/twin/patients/{id}`` lists each model's newest
RiskAssessment under ``assessments``, and, with ``?at=``, the newest made before then."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.ml.doctor_data import (
    MODELS,
    NEWS2_VECTORS,
    SCORE_EXTENSION,
    ago,
    news2_set,
    record_p1,
    transaction,
)
from tests.ml.learned_data import incidence_result, parts, serve

FIELDS = {"reference", "model", "version", "status", "occurrence", "score", "probability", "risk", "rationale", "basis"}


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """Without the live worker, so the RiskAssessments are exactly those ``$predict`` made."""
    return make_app(doctor=False)


@pytest.fixture
def p1(app: Flask, client: FlaskClient) -> dict[str, Any]:
    """p1, 55, with a medium NEWS2 set and cholesterol, and incident-diabetes trained; the Patient."""
    serve(app, incidence_result())
    return record_p1(client)


def predict_all(client: FlaskClient) -> dict[str, dict[str, Any]]:
    """``$predict`` on p1: the RiskAssessment each model wrote, by model."""
    time.sleep(0.005)  # occurrence times are to the millisecond: keep two runs apart
    response = client.post("/fhir/Patient/p1/$predict", json={"resourceType": "Parameters"})
    assert response.status_code == 200, response.get_json()
    found = {}
    for prediction in response.get_json()["parameter"]:
        named = parts(prediction)
        if "riskAssessment" in named:
            found[named["model"][0]] = named["riskAssessment"][0]
    return found


def twin_assessments(client: FlaskClient, query: str = "") -> list[dict[str, Any]]:
    response = client.get(f"/twin/patients/p1{query}")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["patient"]["id"] == "p1"
    return body["assessments"]


def summary(resource: dict[str, Any]) -> dict[str, Any]:
    """What the twin document should say of a RiskAssessment."""
    (coding,) = resource["method"]["coding"]
    (prediction,) = resource["prediction"]
    score = [e["valueDecimal"] for e in prediction.get("extension", []) if e["url"] == SCORE_EXTENSION]
    return {
        "reference": f"RiskAssessment/{resource['id']}",
        "model": coding["code"],
        "version": coding["version"],
        "status": resource["status"],
        "occurrence": resource["occurrenceDateTime"],
        "score": score[0] if score else None,
        "probability": prediction.get("probabilityDecimal"),
        "risk": prediction["qualitativeRisk"]["coding"][0]["code"],
        "rationale": prediction["rationale"],
        "basis": [basis["reference"] for basis in resource["basis"]],
    }


def test_the_twin_lists_each_models_assessment(client: FlaskClient, p1: dict[str, Any]) -> None:
    assert twin_assessments(client) == []
    made = predict_all(client)
    assert set(made) == {*MODELS, "incident-diabetes"}
    listed = twin_assessments(client)
    assert all(set(entry) == FIELDS for entry in listed)
    assert {entry["model"]: entry for entry in listed} == {model: summary(made[model]) for model in made}
    by_model = {entry["model"]: entry for entry in listed}
    assert by_model["news2"]["score"] == 6 and by_model["news2"]["risk"] == "moderate"
    assert by_model["news2"]["probability"] is None and by_model["news2"]["status"] == "final"
    diabetes = by_model["incident-diabetes"]
    assert (diabetes["version"], diabetes["status"]) == ("1.0.0", "preliminary"), "BMI, glucose, HbA1c imputed"
    assert 0 < diabetes["probability"] < 1 and diabetes["basis"][0] == "Patient/p1/_history/1"


def test_the_newest_assessment_of_each_model_is_shown(client: FlaskClient, p1: dict[str, Any]) -> None:
    first = predict_all(client)
    transaction(client, news2_set("p1", NEWS2_VECTORS[0][0], ago(minutes=1)))
    second = predict_all(client)
    listed = twin_assessments(client)
    assert len(listed) == len(second), "one entry per model"
    assert {entry["model"]: entry["reference"] for entry in listed} == {
        model: f"RiskAssessment/{resource['id']}" for model, resource in second.items()
    }
    news2 = next(entry for entry in listed if entry["model"] == "news2")
    assert news2["score"] == 0 and news2["risk"] == "low"
    assert all(entry["occurrence"] > first["news2"]["occurrenceDateTime"] for entry in listed)


def test_the_twin_at_a_time_lists_the_assessments_made_before_it(client: FlaskClient, p1: dict[str, Any]) -> None:
    first = predict_all(client)
    transaction(client, news2_set("p1", NEWS2_VECTORS[0][0], ago(minutes=1)))
    predict_all(client)

    before = twin_assessments(client, f"?at={p1['meta']['lastUpdated']}")
    assert before == [], "the patient existed, and no model had assessed it yet"
    then = twin_assessments(client, f"?at={first['news2']['occurrenceDateTime']}")
    assert {entry["model"]: entry["reference"] for entry in then} == {
        model: f"RiskAssessment/{resource['id']}" for model, resource in first.items()
    }
    assert next(entry for entry in then if entry["model"] == "news2")["score"] == 6
