"""What narrows a Bulk Data export (IG v2 export.html): Group/{id}/$export, ``_typeFilter``,
``_elements`` and ``includeAssociatedData``; the files stay complete NDJSON and the status and
manifest keep to the IG."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhir_twin.app import create_app, services_of
from fhir_twin.fhir.subsetting import SUBSETTED
from fhir_twin.security import tokens
from tests.factories import observation, put

ASYNC = {"Prefer": "respond-async"}
LENIENT = {"Prefer": "respond-async, handling=lenient"}
LOINC = "http://loinc.org"
DATA: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-01-01"},
    {"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1980-01-01"},
    {"resourceType": "Patient", "id": "p3", "gender": "male", "birthDate": "1990-01-01"},
    {"resourceType": "Patient", "id": "p4", "gender": "female"},
    observation("8867-4", res_id="o1", patient="p1", value=70),
    observation("8310-5", res_id="o2", patient="p1", value=37, unit="Cel"),
    observation("8867-4", res_id="o3", patient="p2", value=80),
    observation("9279-1", res_id="o4", patient="p3", value=16),
    observation("8867-4", res_id="o5", patient="p4", value=90),
    {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p2"}},
    {"resourceType": "Condition", "id": "c3", "subject": {"reference": "Patient/p3"}},
    {"resourceType": "Practitioner", "id": "pr1"},
    {
        "resourceType": "Group",
        "id": "g1",
        "type": "person",
        "actual": True,
        "member": [
            {"entity": {"reference": "Patient/p1"}},
            {"entity": {"reference": "http://localhost/fhir/Patient/p2"}},
            # No longer in the group (R4 group.html member.inactive): left out.
            {"entity": {"reference": "Patient/p3"}, "inactive": True},
            {"entity": {"reference": "Practitioner/pr1"}},
        ],
    },
    {"resourceType": "Group", "id": "empty", "type": "person", "actual": True},
]


@pytest.fixture(scope="module")
def client(module_database_url: str) -> Iterator[FlaskClient]:
    app = create_app({"database_url": module_database_url, "auth_mode": "none", "audit": False})
    app.testing = True
    client = app.test_client()
    for body in DATA:
        put(client, body)
    yield client
    services_of(app).exports.stop()
    services_of(app).repository.engine.dispose()


def kick_off(client: FlaskClient, path: str = "$export", headers: dict[str, str] | None = None, **query: Any) -> str:
    response = client.get(f"/fhir/{path}", query_string=query, headers=headers or ASYNC)
    assert response.status_code == 202, response.get_json()
    return response.headers["Content-Location"]


def wait(client: FlaskClient, location: str, headers: dict[str, str] | None = None) -> TestResponse:
    deadline = time.monotonic() + 20
    while (response := client.get(location, headers=headers)).status_code == 202 and time.monotonic() < deadline:
        assert response.headers["X-Progress"]
        time.sleep(0.02)
    return response


def exported(client: FlaskClient, location: str) -> dict[str, list[dict[str, Any]]]:
    """The resources of a finished export by type, after checking the manifest (IG v2
    export.html#response---complete-status) and that every file is complete NDJSON."""
    response = wait(client, location)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Expires"]
    manifest = response.get_json()
    assert set(manifest) == {"transactionTime", "request", "requiresAccessToken", "output", "error"}
    assert manifest["error"] == []
    found: dict[str, list[dict[str, Any]]] = {}
    for output in manifest["output"]:
        file = client.get(output["url"])
        assert file.status_code == 200
        assert file.content_type == "application/fhir+ndjson"
        text = file.get_data(as_text=True)
        assert text.endswith("\n")
        resources = [json.loads(line) for line in text.splitlines()]
        assert len(resources) == output["count"]
        assert {resource["resourceType"] for resource in resources} == {output["type"]}
        found.setdefault(output["type"], []).extend(resources)
    return found


def ids(found: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {name: sorted(resource["id"] for resource in resources) for name, resources in found.items()}


def refused(response: TestResponse, parameter: str, status: int = 400) -> str:
    assert response.status_code == status, response.get_json()
    issue = response.get_json()["issue"][0]
    if parameter:
        assert issue["expression"] == [parameter]
    return str(issue["diagnostics"])


def test_group_export_holds_the_active_members_compartments_only(client: FlaskClient) -> None:
    location = kick_off(client, "Group/g1/$export")
    # The Group is in its members' compartments too (R4 compartmentdefinition-patient: Group.member).
    assert ids(exported(client, location)) == {
        "Patient": ["p1", "p2"],
        "Observation": ["o1", "o2", "o3"],
        "Condition": ["c1"],
        "Group": ["g1"],
    }
    manifest = client.get(location).get_json()
    assert manifest["request"] == "http://localhost/fhir/Group/g1/$export"


OVER_TIME = {
    "resourceType": "Group",
    "id": "over-time",
    "type": "person",
    "actual": True,
    "member": [
        # Ended: a member then, not now.
        {"entity": {"reference": "Patient/p1"}, "period": {"start": "2020-01-01", "end": "2021-06-30T12:00:00Z"}},
        # Not yet ended: a current member.
        {"entity": {"reference": "Patient/p2"}, "period": {"start": "2020-01-01", "end": "2999-12"}},
        # Flagged inactive, even within its period: left out.
        {"entity": {"reference": "Patient/p3"}, "inactive": True, "period": {"start": "2020-01-01"}},
        # Not yet begun: not a member now.
        {"entity": {"reference": "Patient/p4"}, "period": {"start": "2999-01-01"}},
    ],
}


def test_group_export_leaves_out_members_whose_period_ended_or_not_begun(client: FlaskClient) -> None:
    put(client, OVER_TIME)
    found = ids(exported(client, kick_off(client, "Group/over-time/$export", _type="Patient,Observation")))
    # Deleted, it leaves the other tests' Group compartments as they were.
    assert client.delete("/fhir/Group/over-time").status_code == 200
    assert found == {"Patient": ["p2"], "Observation": ["o3"]}


def test_group_export_with_type_and_a_group_without_members(client: FlaskClient) -> None:
    assert ids(exported(client, kick_off(client, "Group/g1/$export", _type="Condition"))) == {"Condition": ["c1"]}
    assert exported(client, kick_off(client, "Group/empty/$export")) == {}


def test_unknown_group_and_group_without_id(client: FlaskClient) -> None:
    assert "Group/nope" in refused(client.get("/fhir/Group/nope/$export", headers=ASYNC), "", 404)
    assert "Group/{id}/$export" in refused(client.get("/fhir/Group/$export", headers=ASYNC), "", 404)
    assert client.get("/fhir/Observation/$export", headers=ASYNC).status_code == 404


def test_type_filter_narrows_its_type_and_repeats_are_ored(client: FlaskClient) -> None:
    heart_rate = f"Observation?code={LOINC}|8867-4"
    one = kick_off(client, _typeFilter=heart_rate, _type="Observation,Condition")
    assert ids(exported(client, one)) == {"Observation": ["o1", "o3", "o5"], "Condition": ["c1", "c3"]}
    either = kick_off(client, _typeFilter=[heart_rate, "Observation?subject=Patient/p3"], _type="Observation")
    assert ids(exported(client, either)) == {"Observation": ["o1", "o3", "o4", "o5"]}
    # Within one Group, and two types filtered.
    both = kick_off(client, "Group/g1/$export", _typeFilter=[heart_rate, "Patient?gender=female"])
    assert ids(exported(client, both)) == {
        "Patient": ["p1"],
        "Observation": ["o1", "o3"],
        "Condition": ["c1"],
        "Group": ["g1"],
    }


@pytest.mark.parametrize(
    "value",
    [
        "Observation?bogus=1",
        "Observation",
        "Nonsense?code=1",
        "Observation?_count=5",
        "Observation?date=notadate",
    ],
)
def test_a_bad_type_filter_is_refused_naming_it(client: FlaskClient, value: str) -> None:
    before = client.get("/fhir/$export-poll-status", query_string={"_jobId": "x"}).status_code
    diagnostics = refused(
        client.get("/fhir/$export", query_string={"_typeFilter": value}, headers=ASYNC), "_typeFilter"
    )
    assert value in diagnostics
    assert before == 404


def test_elements_subset_each_line_and_tag_it(client: FlaskClient) -> None:
    location = kick_off(client, _type="Observation,Patient", _elements="Observation.code,gender")
    found = exported(client, location)
    for resource in found["Observation"]:
        # code asked for, status mandatory (R4 search.html#elements), the rest left out.
        assert set(resource) == {"resourceType", "id", "meta", "code", "status"}
        assert SUBSETTED in resource["meta"]["tag"]
    for resource in found["Patient"]:
        assert set(resource) <= {"resourceType", "id", "meta", "gender"}
        assert "birthDate" not in resource
        assert SUBSETTED in resource["meta"]["tag"]


def test_type_qualified_elements_leave_other_types_whole(client: FlaskClient) -> None:
    found = exported(client, kick_off(client, _type="Patient,Condition", _elements="Condition.subject"))
    assert all("birthDate" in patient for patient in found["Patient"] if patient["id"] != "p4")
    assert all(SUBSETTED not in patient.get("meta", {}).get("tag", []) for patient in found["Patient"])
    assert all(set(condition) == {"resourceType", "id", "meta", "subject"} for condition in found["Condition"])


@pytest.mark.parametrize("value", ["Observation.", "Bogus.code", "code,1x"])
def test_bad_elements_are_refused(client: FlaskClient, value: str) -> None:
    refused(client.get("/fhir/$export", query_string={"_elements": value}, headers=ASYNC), "_elements")


def test_post_kick_off_with_parameters(client: FlaskClient) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Observation"},
            {"name": "_typeFilter", "valueString": "Observation?subject=Patient/p2"},
            {"name": "_elements", "valueString": "subject"},
        ],
    }
    response = client.post("/fhir/Group/g1/$export", json=body, headers=ASYNC)
    assert response.status_code == 202, response.get_json()
    found = exported(client, response.headers["Content-Location"])
    assert ids(found) == {"Observation": ["o3"]}
    assert set(found["Observation"][0]) == {"resourceType", "id", "meta", "subject", "status", "code"}


def test_capability_statement_lists_export_on_patient_and_group_only(client: FlaskClient) -> None:
    statement = client.get("/fhir/metadata").get_json()
    rest = statement["rest"][0]
    assert "export" in {operation["name"] for operation in rest["operation"]}
    offering = {
        entry["type"]
        for entry in rest["resource"]
        if "export" in {operation["name"] for operation in entry.get("operation", [])}
    }
    assert offering == {"Patient", "Group"}


def test_group_export_needs_the_scopes_a_patient_export_needs(make_app: Any) -> None:
    app = make_app(auth_mode="tokens")
    repository = services_of(app).repository
    system, _ = tokens.create(repository, "exporter", "system/*.rs", None, None)
    patient, _ = tokens.create(repository, "patient", "patient/*.rs", "p1", None)
    narrow, _ = tokens.create(repository, "narrow", "system/Observation.rs", None, None)
    writer, _ = tokens.create(repository, "writer", "system/*.cruds", None, None)
    client = app.test_client()
    group = {"resourceType": "Group", "id": "g2", "type": "person", "actual": True}
    for body in (DATA[0], DATA[4], {**group, "member": [{"entity": {"reference": "Patient/p1"}}]}):
        response = client.put(f"/fhir/{body['resourceType']}/{body['id']}", json=body, headers=bearer(writer))
        assert response.status_code == 201
    for secret in (patient, narrow):
        response = client.get("/fhir/Group/g2/$export", headers={**ASYNC, **bearer(secret)})
        assert response.status_code == 403, response.get_json()
    response = client.get("/fhir/Group/g2/$export", headers={**ASYNC, **bearer(system)})
    assert response.status_code == 202
    done = wait(client, response.headers["Content-Location"], bearer(system))
    assert done.status_code == 200
    assert {output["type"] for output in done.get_json()["output"]} == {"Patient", "Observation", "Group"}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
