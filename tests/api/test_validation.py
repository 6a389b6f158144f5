"""Validation on write: structure, required bindings and empty elements (R4 http.html#create:
"400 Bad Request - resource could not be parsed or failed basic FHIR validation rules")."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.factories import observation


@pytest.mark.parametrize(
    "body, code, expression",
    [
        (observation(status="bogus"), "code-invalid", "Observation.status"),
        (observation(code={}), "invalid", "Observation.code"),
        (observation(category=[]), "invalid", "Observation.category"),
        (observation(issued=""), "invalid", "Observation.issued"),
        (observation(valueString=None), "invalid", "Observation.valueString"),
        (observation(effectiveDateTime="2020-13-01"), "value", "Observation.effectiveDateTime"),
        (observation(valueQuantity={"value": "abc"}), "value", "Observation.valueQuantity.value"),
        (observation(unknownElement=1), "structure", "Observation.unknownElement"),
        ({"resourceType": "Observation", "code": {"text": "x"}}, "required", "Observation.status"),
        (observation(subject={"reference": 5}), "value", "Observation.subject.reference"),
        (
            observation(component=[{"code": {"text": "c"}, "valueQuantity": {"comparator": "about", "value": 1}}]),
            "code-invalid",
            "Observation.component[0].valueQuantity.comparator",
        ),
    ],
)
def test_invalid_observation_is_refused(client: FlaskClient, body: dict[str, Any], code: str, expression: str) -> None:
    response = client.post("/fhir/Observation", json=body)
    assert response.status_code == 400
    issues = response.get_json()["issue"]
    assert any(issue["code"] == code and issue.get("expression") == [expression] for issue in issues), issues
    assert all(issue["diagnostics"] for issue in issues)
    assert client.get("/fhir/Observation").get_json()["total"] == 0


@pytest.mark.parametrize(
    "body, expression",
    [
        ({"resourceType": "Patient", "gender": "unknown-ish"}, "Patient.gender"),
        ({"resourceType": "Patient", "name": [{"use": "nick", "family": "x"}]}, "Patient.name[0].use"),
        (
            {
                "resourceType": "Patient",
                "contained": [
                    {"resourceType": "Organization", "id": "o", "active": True, "telecom": [{"system": "pager2"}]}
                ],
            },
            "Patient.contained[0].telecom[0].system",
        ),
    ],
)
def test_required_bindings_everywhere(client: FlaskClient, body: dict[str, Any], expression: str) -> None:
    response = client.post("/fhir/Patient", json=body)
    assert response.status_code == 400
    assert [expression] in [issue.get("expression") for issue in response.get_json()["issue"]]


def test_invalid_update_keeps_the_stored_version(client: FlaskClient) -> None:
    assert client.put("/fhir/Observation/o1", json=observation(id="o1")).status_code == 201
    response = client.put("/fhir/Observation/o1", json=observation(id="o1", status="bogus"))
    assert response.status_code == 400
    assert client.get("/fhir/Observation/o1").get_json()["status"] == "final"
    assert client.get("/fhir/Observation/o1/_history").get_json()["total"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "Patient", "id": "bad id"},
        {"resourceType": "Patient", "id": "x" * 65},
    ],
)
def test_invalid_id_in_body_is_refused_on_update(client: FlaskClient, body: dict[str, Any]) -> None:
    response = client.put("/fhir/Patient/p1", json=body)
    assert response.status_code == 400
    assert client.get("/fhir/Patient/p1").status_code == 404


def test_unknown_resource_type_in_body(client: FlaskClient) -> None:
    response = client.post("/fhir/Patient", json={"resourceType": "Patientx"})
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["resourceType"]


# Every issue in one answer: fhir.resources stops at some problems (its cardinality checks run
# only on models whose fields are all valid), the answer must not.
EVERY_ISSUE = [
    (
        {"resourceType": "Observation", "subject": {"reference": "Patient/p"}},
        {"Observation.status", "Observation.code"},
    ),
    ({"resourceType": "Patient", "birthDate": "1970-13-45", "gender": "mal"}, {"Patient.birthDate", "Patient.gender"}),
    (
        {
            "resourceType": "Observation",
            "status": "final",
            "component": [
                {"code": {"text": "fine"}, "valueString": "a"},
                {"code": {"coding": [{"system": "http://loinc.org", "code": 5}]}, "valueQuantity": {"comparator": "~"}},
                {"valueString": ""},
            ],
        },
        {
            "Observation.code",
            "Observation.component[1].code.coding[0].code",
            "Observation.component[1].valueQuantity.comparator",
            "Observation.component[2].code",
            "Observation.component[2].valueString",
        },
    ),
    (
        {"resourceType": "MedicationRequest", "subject": {"reference": "Patient/p"}, "note": [None, {"text": 1}]},
        {
            "MedicationRequest.status",
            "MedicationRequest.intent",
            "MedicationRequest.medication[x]",
            "MedicationRequest.note[0]",
            "MedicationRequest.note[1].text",
        },
    ),
    (
        observation(valueString="a", valueBoolean=True, effectiveDateTime="yesterday"),
        {"Observation.value[x]", "Observation.effectiveDateTime"},
    ),
    (
        {"resourceType": "Patient", "active": "yes", "multipleBirthInteger": "+2", "gender": "mal"},
        {"Patient.active", "Patient.multipleBirthInteger", "Patient.gender"},
    ),
    (observation(valueQuantity={"value": "1.50"}, issued=5), {"Observation.valueQuantity.value", "Observation.issued"}),
]


def error_expressions(issues: list[dict[str, Any]]) -> list[str]:
    return [issue["expression"][-1] for issue in issues if issue["severity"] == "error"]


@pytest.mark.parametrize("body, expressions", EVERY_ISSUE)
def test_a_write_is_told_every_issue(client: FlaskClient, body: dict[str, Any], expressions: set[str]) -> None:
    response = client.post(f"/fhir/{body['resourceType']}", json=body)
    assert response.status_code == 400
    found = error_expressions(response.get_json()["issue"])
    assert sorted(found) == sorted(expressions)
    assert client.get(f"/fhir/{body['resourceType']}").get_json()["total"] == 0


@pytest.mark.parametrize("body, expressions", EVERY_ISSUE)
def test_a_transaction_entry_is_told_every_issue(
    client: FlaskClient, body: dict[str, Any], expressions: set[str]
) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": body, "request": {"method": "POST", "url": body["resourceType"]}},
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 400
    issues = response.get_json()["issue"]
    assert {issue["expression"][0] for issue in issues} == {"Bundle.entry[1]"}
    assert sorted(error_expressions(issues)) == sorted(expressions)
    assert client.get("/fhir/Patient").get_json()["total"] == 0


def test_a_contained_resource_of_unknown_type_is_named(client: FlaskClient) -> None:
    body = {"resourceType": "Patient", "contained": [{"resourceType": "Bogus"}], "gender": "mal"}
    response = client.post("/fhir/Patient", json=body)
    assert response.status_code == 400
    found = error_expressions(response.get_json()["issue"])
    assert sorted(found) == ["Patient.contained[0].resourceType", "Patient.gender"]
    assert client.get("/fhir/Patient").get_json()["total"] == 0
