"""``Patient/{id}/$predict``: run the models now and record each prediction as a new
RiskAssessment (POST only: GET is refused and computes nothing); what a client gets for
insufficient data and bad requests; the model card a learned model's Device names; and finding
the assessments again by search (subject, patient, method, date, risk, probability)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.ml.learned import incidence
from fhir_twin.ml.scores import pooled_cohort
from tests.factories import PCE_WHITE_MALE, batch_of_reads, outcome
from tests.ml.doctor_data import (
    MEDIUM,
    MODEL_SYSTEM,
    MODELS,
    NEWS2_VECTORS,
    RISK_PROBABILITY,
    ago,
    assessed_p1,
    assessments,
    by_model,
    cardiovascular_set,
    infection,
    iso,
    model_of,
    news2_set,
    partial_news2_set,
    patient,
    put,
    search,
    settle,
    transaction,
    years_ago,
)
from tests.ml.learned_data import diabetes_inputs, incidence_result, parts, predict, serve

PREDICT_DEFINITION = "urn:fhir-twin:OperationDefinition/Patient-predict"
WHATIF_DEFINITION = "urn:fhir-twin:OperationDefinition/Patient-whatif"


@pytest.fixture
def p1(app: Flask, client: FlaskClient) -> str:
    """p1, 55, with pneumonia, the medium NEWS2 set and cholesterol; the live assessments already made."""
    return assessed_p1(app, client)


def predictions(response: Any) -> dict[str, dict[str, list[Any]]]:
    """The Parameters answer of ``$predict`` by model."""
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["resourceType"] == "Parameters"
    assert {parameter["name"] for parameter in body["parameter"]} == {"prediction"}
    found = {}
    for parameter in body["parameter"]:
        named = parts(parameter)
        (model,) = named["model"]
        found[model] = named
    return found


def totals(client: FlaskClient) -> tuple[int, int, int]:
    """RiskAssessments, Provenances and versions of anything stored."""
    count = client.get("/fhir/RiskAssessment?_summary=count").get_json()["total"]
    provenances = client.get("/fhir/Provenance?_summary=count").get_json()["total"]
    history = client.get("/fhir/_history").get_json()["total"]
    return count, provenances, history


def without_meta_history(resource: dict[str, Any]) -> dict[str, Any]:
    meta = {key: value for key, value in resource["meta"].items() if key not in ("versionId", "lastUpdated")}
    return {**resource, "meta": meta}


# --- recording ------------------------------------------------------------------------------


def test_predict_records_a_new_assessment_on_every_call(client: FlaskClient, p1: str) -> None:
    (live,) = assessments(client, p1, "news2")
    answered = []
    for _ in range(2):
        response = client.post(f"/fhir/Patient/{p1}/$predict?model=news2")
        assert response.headers["Content-Type"] == "application/fhir+json; charset=utf-8"
        found = predictions(response)
        assert set(found) == {"news2"}
        news2 = found["news2"]
        assert news2["result"] == ["scored"]
        assert news2["message"][0].startswith("NEWS2 6 (medium)")
        assert "missing" not in news2
        (resource,) = news2["riskAssessment"]
        answered.append(resource)
        stored = client.get(f"/fhir/RiskAssessment/{resource['id']}")
        assert stored.status_code == 200
        assert without_meta_history(stored.get_json()) == resource
        provenance = client.get(f"/fhir/Provenance?target=RiskAssessment/{resource['id']}").get_json()
        assert provenance["total"] == 1

    # Never an overwrite: the live assessment and both answers are three resources.
    ids = [resource["id"] for resource in assessments(client, p1, "news2")]
    assert sorted(ids) == sorted([live["id"], *(resource["id"] for resource in answered)])
    assert len(set(ids)) == 3
    assert client.get(f"/fhir/RiskAssessment/{live['id']}").get_json()["meta"]["versionId"] == "1"
    assert {resource["status"] for resource in answered} == {"final"}
    assert answered[0]["basis"] == answered[1]["basis"]


def test_predict_by_post_with_parameters(client: FlaskClient, p1: str) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "model", "valueCode": "pooled-cohort-ascvd"}, {"name": "model", "valueCode": "qsofa"}],
    }
    found = predictions(client.post(f"/fhir/Patient/{p1}/$predict", json=body))
    assert set(found) == {"pooled-cohort-ascvd", "qsofa"}
    (ascvd,) = found["pooled-cohort-ascvd"]["riskAssessment"]
    # The worked example's man, with the newest systolic BP of the day (outside acute care);
    # treatment and diabetes are not recorded.
    inputs = replace(PCE_WHITE_MALE, systolic_bp=105, bp_treated=None, diabetes=None)
    expected = pooled_cohort.pooled_cohort(inputs)
    assert ascvd["prediction"][0]["probabilityDecimal"] == pytest.approx(round(expected.probability, 6), abs=1e-9)
    assert by_model(client, p1) == {"news2": 1, "qsofa": 2, "pooled-cohort-ascvd": 2, "atp3-hard-chd": 1}


def test_predict_without_model_runs_every_model(client: FlaskClient, p1: str) -> None:
    found = predictions(client.post(f"/fhir/Patient/{p1}/$predict"))
    assert set(found) == set(MODELS)
    assert {model: named["result"] for model, named in found.items()} == {model: ["scored"] for model in MODELS}
    assert by_model(client, p1) == {model: 2 for model in MODELS}


def test_insufficient_data_is_answered_and_nothing_is_stored(app: Flask, client: FlaskClient) -> None:
    put(client, patient("p2"))
    transaction(client, partial_news2_set("p2", ago(minutes=10)))
    settle(app)
    assert assessments(client, "p2", "news2") == []
    before = totals(client)

    found = predictions(client.post("/fhir/Patient/p2/$predict?model=news2"))
    news2 = found["news2"]
    assert news2["result"] == ["insufficient-data"]
    assert news2["missing"] == ["spo2", "supplemental_oxygen", "consciousness", "temperature"]
    assert "riskAssessment" not in news2
    # The message says exactly what is missing and why.
    assert news2["message"] == [
        "news2: insufficient data, missing spo2, supplemental_oxygen, consciousness, temperature. No oxygen "
        "saturation (SpO2) is recorded. No body temperature is recorded. No inhaled oxygen concentration or flow is "
        "recorded with the set: air or oxygen unknown. No level of consciousness (ACVPU or GCS) is recorded with the "
        "set."
    ]
    assert totals(client) == before
    assert assessments(client, "p2", "news2") == []


def test_a_model_outside_its_population_is_not_applicable(app: Flask, client: FlaskClient) -> None:
    put(client, patient("p3", birth_date=years_ago(35)))
    transaction(client, cardiovascular_set("p3", ago(hours=2)))
    settle(app)
    before = totals(client)
    found = predictions(client.post("/fhir/Patient/p3/$predict?model=pooled-cohort-ascvd"))
    ascvd = found["pooled-cohort-ascvd"]
    assert ascvd["result"] == ["not-applicable"]
    assert "age 35 outside 40-79" in ascvd["message"][0]
    assert "riskAssessment" not in ascvd and "missing" not in ascvd
    assert totals(client) == before


# --- GET: $predict affects state (R4 operations.html) ---------------------------------------


@pytest.fixture
def quiet(make_app: Callable[..., Flask]) -> FlaskClient:
    """p1 with the medium NEWS2 set and no live Doctor: nothing assessed unless $predict records it."""
    client = make_app(doctor=False).test_client()
    put(client, patient("p1"))
    transaction(client, news2_set("p1", MEDIUM, ago(minutes=10)))
    return client


def written_by_the_doctor(client: FlaskClient) -> dict[str, int]:
    return {
        name: client.get(f"/fhir/{name}?_summary=count").get_json()["total"]
        for name in ("RiskAssessment", "Provenance", "Device", "DocumentReference")
    }


def test_get_is_refused_and_computes_nothing(quiet: FlaskClient) -> None:
    history = quiet.get("/fhir/_history").get_json()["total"]
    response = quiet.get("/fhir/Patient/p1/$predict?model=news2")
    issue = outcome(response, 405, "not-supported")
    assert response.headers["Allow"] == "POST"
    assert "use POST" in issue["diagnostics"] and "affectsState" in issue["diagnostics"]
    head = quiet.head("/fhir/Patient/p1/$predict")
    assert (head.status_code, head.headers["Allow"]) == (405, "POST")
    assert written_by_the_doctor(quiet) == {"RiskAssessment": 0, "Provenance": 0, "Device": 0, "DocumentReference": 0}
    assert quiet.get("/fhir/_history").get_json()["total"] == history
    # POST records.
    assert predictions(quiet.post("/fhir/Patient/p1/$predict?model=news2"))["news2"]["result"] == ["scored"]
    assert written_by_the_doctor(quiet) == {"RiskAssessment": 1, "Provenance": 1, "Device": 1, "DocumentReference": 1}


def test_get_in_a_batch_is_refused_and_stores_nothing(quiet: FlaskClient) -> None:
    bundle = batch_of_reads("Patient/p1/$predict?model=news2", "Patient/p1")
    response = quiet.post("/fhir", json=bundle)
    assert response.status_code == 200, response.get_json()
    refused, read = response.get_json()["entry"]
    assert refused["response"]["status"].startswith("405")
    (issue,) = refused["response"]["outcome"]["issue"]
    assert "use POST" in issue["diagnostics"]
    assert read["response"]["status"].startswith("200")
    assert written_by_the_doctor(quiet) == {"RiskAssessment": 0, "Provenance": 0, "Device": 0, "DocumentReference": 0}


def test_post_in_a_batch_records(client: FlaskClient, p1: str) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Parameters", "parameter": [{"name": "model", "valueCode": "news2"}]},
                "request": {"method": "POST", "url": f"Patient/{p1}/$predict"},
            }
        ],
    }
    (entry,) = client.post("/fhir", json=bundle).get_json()["entry"]
    assert entry["response"]["status"].startswith("200")
    assert by_model(client, p1)["news2"] == 2


# --- the model card of a learned model ------------------------------------------------------


def test_a_learned_models_card_is_its_registered_versions(make_app: Callable[..., Flask]) -> None:
    app = make_app(doctor=False)
    client = app.test_client()
    registered = serve(app, incidence_result())
    put(client, patient("adult"))
    transaction(client, diabetes_inputs("adult", ago(minutes=10)))
    assert predict(client, "adult", "incident-diabetes")["result"] == ["scored"]

    device = client.get("/fhir/Device/incident-diabetes-1.0.0").get_json()
    kinds = [extension for extension in device["extension"] if extension["url"].endswith(".AIKind")]
    assert [extension["valueCodeableConcept"]["coding"][0]["code"] for extension in kinds] == [
        "Machine-Learning-Models"
    ]
    card = client.get(f"/fhir/{device['url']}")
    assert card.status_code == 200, card.get_json()
    (content,) = card.get_json()["content"]
    assert base64.b64decode(content["attachment"]["data"]).decode() == registered.card
    assert registered.card.startswith(f"# Model card: {incidence.MODEL.id} 1.0.0")
    provenance = client.get(f"/fhir/Provenance?agent=Device/{device['id']}").get_json()["entry"]
    assert {entity["what"]["reference"] for entity in provenance[0]["resource"]["entity"]} >= {device["url"]}


# --- errors ---------------------------------------------------------------------------------


def test_an_unknown_model_is_a_400_naming_it(client: FlaskClient, p1: str) -> None:
    before = totals(client)
    issue = outcome(client.post(f"/fhir/Patient/{p1}/$predict?model=news2&model=apache-ii"), 400)
    assert "apache-ii" in issue["diagnostics"]
    assert issue["expression"] == ["model"]
    assert totals(client) == before


def test_an_unknown_parameter_is_a_400(client: FlaskClient, p1: str) -> None:
    issue = outcome(client.post(f"/fhir/Patient/{p1}/$predict?systolic_bp=120"), 400)
    assert "systolic_bp" in issue["diagnostics"]
    assert issue["expression"] == ["systolic_bp"]
    body = {"resourceType": "Parameters", "parameter": [{"name": "horizon", "valueString": "P1Y"}]}
    assert outcome(client.post(f"/fhir/Patient/{p1}/$predict", json=body), 400)["expression"] == ["horizon"]


def test_an_unknown_patient_is_a_404(client: FlaskClient) -> None:
    issue = outcome(client.post("/fhir/Patient/nobody/$predict"), 404, "not-found")
    assert "Patient/nobody" in issue["diagnostics"]


def test_a_deleted_patient_is_a_410(client: FlaskClient) -> None:
    put(client, patient("p4"))
    assert client.delete("/fhir/Patient/p4").status_code in (200, 204)
    outcome(client.post("/fhir/Patient/p4/$predict"), 410, "deleted")
    outcome(client.post("/fhir/Patient/p4/$predict", json={"resourceType": "Parameters"}), 410, "deleted")


def test_the_operations_are_in_the_capability_statement(client: FlaskClient) -> None:
    statement = client.get("/fhir/metadata").get_json()
    (rest,) = statement["rest"]
    (patient_resource,) = [resource for resource in rest["resource"] if resource["type"] == "Patient"]
    operations = {operation["name"]: operation["definition"] for operation in patient_resource["operation"]}
    assert operations["predict"] == PREDICT_DEFINITION
    assert operations["whatif"] == WHATIF_DEFINITION
    (risk,) = [resource for resource in rest["resource"] if resource["type"] == "RiskAssessment"]
    names = {parameter["name"] for parameter in risk["searchParam"]}
    assert {"subject", "patient", "method", "date", "risk", "probability"} <= names


def test_the_definitions_say_what_the_operations_take(client: FlaskClient) -> None:
    predict_definition = client.get("/fhir/OperationDefinition/Patient-predict").get_json()
    assert (predict_definition["url"], predict_definition["affectsState"]) == (PREDICT_DEFINITION, True)
    parameters = {(p["name"], p["use"]): p for p in predict_definition["parameter"]}
    assert set(parameters) == {("model", "in"), ("return", "out")}
    assert (parameters["model", "in"]["type"], parameters["model", "in"]["max"]) == ("code", "*")
    whatif = client.get("/fhir/OperationDefinition/Patient-whatif").get_json()
    assert (whatif["url"], whatif["affectsState"]) == (WHATIF_DEFINITION, False)
    inputs = {p["name"]: p for p in whatif["parameter"] if p["use"] == "in"}
    assert (inputs["model"]["type"], inputs["model"]["max"]) == ("code", "*")
    # The hypothetical values: the twin's Body fields, each at most once.
    assert (inputs["systolic_bp"]["type"], inputs["systolic_bp"]["max"]) == ("decimal", "1")
    assert "mm[Hg]" in inputs["systolic_bp"]["documentation"]
    assert inputs["smoking_status"]["type"] == "code"
    assert "current, former, never" in inputs["smoking_status"]["documentation"]
    assert {"oxygen_saturation", "body_temperature", "consciousness", "hba1c"} <= set(inputs)


# --- search ---------------------------------------------------------------------------------


@pytest.fixture
def assessed(app: Flask, client: FlaskClient, p1: str) -> tuple[datetime, dict[str, dict[str, Any]]]:
    """p1 (NEWS2 6, moderate) and p2 (NEWS2 10, high) assessed live: when it started, and every
    RiskAssessment by id."""
    started = datetime.now(UTC) - timedelta(minutes=1)
    put(client, patient("p2", gender="female", birth_date=years_ago(62)))
    high = NEWS2_VECTORS[3][0]
    transaction(
        client,
        [infection("p2"), *news2_set("p2", high, ago(minutes=10)), *cardiovascular_set("p2", ago(minutes=11), hdl=38)],
    )
    settle(app)
    every = search(client, "RiskAssessment")
    assert len(every) == 8
    return started, {resource["id"]: resource for resource in every}


def ids(client: FlaskClient, query: str) -> set[str]:
    return {resource["id"] for resource in search(client, query)}


def where(every: dict[str, dict[str, Any]], test: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {res_id for res_id, resource in every.items() if test(resource)}


def test_search_by_subject_and_patient(client: FlaskClient, assessed: tuple[datetime, dict[str, Any]]) -> None:
    _, every = assessed
    of_p1 = where(every, lambda resource: resource["subject"]["reference"] == "Patient/p1")
    assert len(of_p1) == 4
    assert ids(client, "RiskAssessment?subject=Patient/p1") == of_p1
    assert ids(client, "RiskAssessment?patient=p1") == of_p1
    assert ids(client, "RiskAssessment?patient=Patient/p2") == set(every) - of_p1


def test_search_by_method(client: FlaskClient, assessed: tuple[datetime, dict[str, Any]]) -> None:
    _, every = assessed
    news2 = where(every, lambda resource: model_of(resource) == "news2")
    assert len(news2) == 2
    assert ids(client, f"RiskAssessment?method={MODEL_SYSTEM}|news2") == news2
    assert ids(client, "RiskAssessment?method=news2") == news2
    assert ids(client, "RiskAssessment?method=http://example.org/other|news2") == set()
    both = ids(client, f"RiskAssessment?method={MODEL_SYSTEM}|news2,{MODEL_SYSTEM}|qsofa")
    assert both == news2 | where(every, lambda resource: model_of(resource) == "qsofa")


def test_search_by_risk(client: FlaskClient, assessed: tuple[datetime, dict[str, Any]]) -> None:
    _, every = assessed

    def coded(code: str) -> set[str]:
        return where(
            every,
            lambda resource: (
                resource["prediction"][0].get("qualitativeRisk", {}).get("coding", [{}])[0].get("code") == code
            ),
        )

    moderate = ids(client, f"RiskAssessment?risk={RISK_PROBABILITY}|moderate")
    assert moderate == coded("moderate")
    assert {(every[i]["subject"]["reference"], model_of(every[i])) for i in moderate} >= {("Patient/p1", "news2")}
    high = ids(client, f"RiskAssessment?risk={RISK_PROBABILITY}|high")
    assert high == coded("high")
    assert {(every[i]["subject"]["reference"], model_of(every[i])) for i in high} >= {("Patient/p2", "news2")}
    combined = ids(
        client, f"RiskAssessment?subject=Patient/p2&method={MODEL_SYSTEM}|news2&risk={RISK_PROBABILITY}|high"
    )
    assert len(combined) == 1


def test_search_by_probability(client: FlaskClient, assessed: tuple[datetime, dict[str, Any]]) -> None:
    _, every = assessed

    def above(limit: float) -> set[str]:
        return where(every, lambda resource: resource["prediction"][0].get("probabilityDecimal", -1) > limit)

    assert len(above(0)) == 4  # the two ten-year risks of each patient
    assert ids(client, "RiskAssessment?probability=gt0.01") == above(0.01)
    assert above(0.01)
    assert ids(client, "RiskAssessment?probability=gt0.99") == set()
    below = where(every, lambda resource: 0 <= resource["prediction"][0].get("probabilityDecimal", -1) < 0.5)
    assert ids(client, "RiskAssessment?probability=lt0.5") == below


def test_search_by_date(client: FlaskClient, assessed: tuple[datetime, dict[str, Any]]) -> None:
    started, every = assessed
    assert ids(client, f"RiskAssessment?date=gt{iso(started)}") == set(every)
    assert ids(client, f"RiskAssessment?date=lt{iso(started)}") == set()
    today = started.date().isoformat()
    tomorrow = (started + timedelta(days=1)).date().isoformat()
    found = ids(client, f"RiskAssessment?date=ge{today}&date=le{tomorrow}")
    assert found == set(every)
