"""``$validate`` (R4 resource-operation-validate.html): every issue, nothing stored."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.factories import observation


def parameters(resource: dict[str, Any] | None = None, mode: str | None = None) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if resource is not None:
        parts.append({"name": "resource", "resource": resource})
    if mode is not None:
        parts.append({"name": "mode", "valueCode": mode})
    return {"resourceType": "Parameters", "parameter": parts}


def issues(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"]


def test_a_valid_resource_has_no_issues(client: FlaskClient) -> None:
    found = issues(client.post("/fhir/Observation/$validate", json=observation()))
    assert [issue["severity"] for issue in found] == ["information"]
    assert client.get("/fhir/Observation").get_json()["total"] == 0


def test_every_issue_is_listed(client: FlaskClient) -> None:
    found = issues(client.post("/fhir/Observation/$validate", json=observation(status="bogus", category=[])))
    expressions = {issue["expression"][0] for issue in found if issue["severity"] == "error"}
    assert expressions == {"Observation.status", "Observation.category"}


def test_parameters_body_and_type_mismatch(client: FlaskClient) -> None:
    found = issues(client.post("/fhir/Patient/$validate", json=parameters(observation())))
    assert any(issue.get("expression") == ["resourceType"] for issue in found)


def test_update_mode_checks_the_id(client: FlaskClient) -> None:
    found = issues(client.post("/fhir/Observation/o1/$validate", json=parameters(observation(id="o2"), "update")))
    assert any(issue.get("expression") == ["Observation.id"] for issue in found)
    ok = issues(client.post("/fhir/Observation/o1/$validate", json=observation(id="o1")))
    assert ok[0]["severity"] == "information"


def test_delete_mode(client: FlaskClient) -> None:
    assert client.post("/fhir/Patient/p1/$validate", json=parameters(mode="delete")).status_code == 404
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    found = issues(client.post("/fhir/Patient/p1/$validate", json=parameters(mode="delete")))
    assert found[0]["severity"] == "information"
    assert client.get("/fhir/Patient/p1").status_code == 200


@pytest.mark.parametrize(
    "body, status",
    [
        (parameters(observation(), "remove"), 400),
        (parameters(), 400),
        ({"resourceType": "Parameters", "parameter": [{"name": "mode"}]}, 400),
    ],
)
def test_bad_requests(client: FlaskClient, body: dict[str, Any], status: int) -> None:
    response = client.post("/fhir/Observation/$validate", json=body)
    assert response.status_code == status
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_validate_takes_post_only(client: FlaskClient) -> None:
    response = client.get("/fhir/Observation/$validate")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    "body, expressions",
    [
        ({"resourceType": "Observation"}, {"Observation.status", "Observation.code"}),
        (
            {"resourceType": "Patient", "birthDate": "1970-13-45", "gender": "mal"},
            {"Patient.birthDate", "Patient.gender"},
        ),
        (
            observation(status=None, component=[{"code": {"coding": [{"system": "http://loinc.org", "code": 5}]}}, {}]),
            {
                "Observation.status",
                "Observation.component[0].code.coding[0].code",
                "Observation.component[1]",
            },
        ),
    ],
)
def test_every_issue_of_every_kind_is_listed(client: FlaskClient, body: dict[str, Any], expressions: set[str]) -> None:
    found = issues(client.post(f"/fhir/{body['resourceType']}/$validate", json=body))
    errors = [issue for issue in found if issue["severity"] == "error"]
    assert sorted(issue["expression"][0] for issue in errors) == sorted(expressions)
    assert all(issue["diagnostics"] and issue["code"] for issue in errors)
