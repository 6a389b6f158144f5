"""Requests seeded fuzzing answered with 5xx: each is now a 4xx OperationOutcome that
names what is wrong and changes nothing, or, where the input is valid, a normal answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"


def outcome(response: Any, status: int, *needles: str) -> dict[str, Any]:
    """The response's OperationOutcome, after checking its status and that it names each needle."""
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"]
    for needle in needles:
        assert needle in json.dumps(body)
    return body


def heart_rate(res_id: str, value: str, unit: str = "/min", code: str = "8867-4") -> str:
    """An Observation whose ``valueQuantity.value`` is the JSON number text ``value``."""
    return (
        f'{{"resourceType": "Observation", "id": "{res_id}", "status": "final",'
        f' "code": {{"coding": [{{"system": "http://loinc.org", "code": "{code}"}}]}},'
        ' "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-05-01T08:00:00Z",'
        f' "valueQuantity": {{"value": {value}, "unit": "{unit}", "system": "http://unitsofmeasure.org",'
        f' "code": "{unit}"}}}}'
    )


@pytest.fixture
def patient(client: FlaskClient) -> str:
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    return "/fhir/Patient/p1"


def versions(client: FlaskClient, url: str) -> int:
    return client.get(f"{url}/_history").get_json()["total"]


def total(client: FlaskClient, resource_type: str) -> int:
    return client.get(f"/fhir/{resource_type}?_summary=count").get_json()["total"]


# --- JSON Patch: a malformed document is a 400 naming the operation and member (R4 http.html#patch)


@pytest.mark.parametrize(
    "operations, needles",
    [
        ([{"op": "replace", "path": "/~2", "value": "final"}], ("operation 0", "'/~2'", "JSON Pointer")),
        ([{"op": "replace", "path": "status", "value": "final"}], ("operation 0", "'status'", "start with /")),
        ([{"op": "replace", "path": "/status"}], ("operation 0", "replace", "'value'")),
        ([{"op": "add", "path": "/note"}], ("add", "'value'")),
        ([{"op": "test", "path": "/status"}], ("test", "'value'")),
        ([{"op": "move", "path": "/status"}], ("move", "'from'")),
        ([{"op": "copy", "from": "status", "path": "/code"}], ("copy", "'from'", "start with /")),
        ([{"path": "/status", "value": "final"}], ("op None", "add, remove, replace")),
        ([{"op": "replace", "path": "/status", "value": "final"}, {"op": "jump", "path": "/x"}], ("operation 1",)),
        ([{"op": "remove"}], ("'path'",)),
        ([{"op": "remove", "path": 3}], ("JSON Pointer string",)),
        (["remove"], ("not a JSON object",)),
        ([{"op": [], "path": "/status"}], ("op []", "add, remove")),
    ],
)
def test_malformed_json_patch_is_a_400(client: FlaskClient, patient: str, operations: Any, needles: str) -> None:
    response = client.patch(patient, data=json.dumps(operations), content_type=JSON_PATCH)
    outcome(response, 400, *needles)
    assert versions(client, patient) == 1


def test_a_failed_json_patch_test_stays_a_422(client: FlaskClient, patient: str) -> None:
    """A well-formed patch whose ``test`` fails is a 422 (RFC 5789 section 2.2, "unprocessable
    request"), as the existing patch tests pin; only malformed documents are 400."""
    operations = [{"op": "test", "path": "/id", "value": "p2"}]
    outcome(client.patch(patient, json=operations, content_type=JSON_PATCH), 422, "test failed")


# --- bodies: wrong JSON types, control characters, numbers beyond a double ------------------


def test_a_list_where_a_string_belongs_in_a_bound_coding(client: FlaskClient, patient: str) -> None:
    condition = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/p1"},
        "clinicalStatus": {"coding": [{"system": [None], "code": "active"}]},
    }
    outcome(client.post("/fhir/Condition", json=condition), 400, "Condition.clinicalStatus.coding[0].system")
    assert total(client, "Condition") == 0


@pytest.mark.parametrize("character", ["\\u0000", "\\u0001", "\\u001f", "\\u000b"])
def test_control_characters_in_strings_are_refused(client: FlaskClient, character: str) -> None:
    """R4 datatypes.html#string: no control characters but tab, CR and LF. U+0000 used to be
    stored on SQLite and a 500 on PostgreSQL; now both refuse it, naming the element."""
    body = f'{{"resourceType": "Patient", "name": [{{"family": "a{character}b"}}]}}'
    code = f"U+{int(character[2:], 16):04X}"
    outcome(client.post("/fhir/Patient", data=body, content_type=FHIR_JSON), 400, "Patient.name[0].family", code)
    assert total(client, "Patient") == 0


def test_tab_and_line_breaks_are_allowed(client: FlaskClient) -> None:
    body = '{"resourceType": "Patient", "name": [{"text": "a\\tb\\r\\nc"}]}'
    response = client.post("/fhir/Patient", data=body, content_type=FHIR_JSON)
    assert response.status_code == 201
    assert response.get_json()["name"][0]["text"] == "a\tb\r\nc"


def test_a_control_character_in_a_property_name_is_refused(client: FlaskClient) -> None:
    body = '{"resourceType": "Patient", "active": true, "x\\u0000": 1}'
    outcome(client.post("/fhir/Patient", data=body, content_type=FHIR_JSON), 400, "property name", "U+0000")


@pytest.mark.parametrize("value", ["1e400", "-1e400", "1e-400", "1" + "0" * 400])
def test_numbers_beyond_a_double_are_refused(client: FlaskClient, patient: str, value: str) -> None:
    """A mapped heart rate of 1e400 used to crash the twin (OverflowError)."""
    response = client.put("/fhir/Observation/hr", data=heart_rate("hr", value), content_type=FHIR_JSON)
    outcome(response, 400, "Observation.valueQuantity.value", "double precision")
    assert total(client, "Observation") == 0


def test_huge_finite_values_are_kept_and_flagged(client: FlaskClient, patient: str) -> None:
    """1e300/min is valid FHIR: stored, and the twin shows it as an implausible reading. A glucose of
    1.7e308 mmol/L is a double, but not once converted to mg/dL: still stored, still flagged."""
    response = client.put("/fhir/Observation/hr", data=heart_rate("hr", "1e300"), content_type=FHIR_JSON)
    assert response.status_code == 201
    glucose = heart_rate("glu", "1.7e308", unit="mmol/L", code="15074-8")
    assert client.put("/fhir/Observation/glu", data=glucose, content_type=FHIR_JSON).status_code == 201
    body = client.get("/twin/patients/p1").get_json()["body"]
    assert body["heart_rate"]["unverified"]["flag"] == "implausible"
    assert body["glucose"]["unverified"]["flag"] == "implausible"
    assert client.get(f"{patient}/$twin").status_code == 200


# --- reads and Bundles ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["99999999999999999999", "2147483648", "0"])
def test_a_version_that_cannot_exist_is_a_404(client: FlaskClient, patient: str, version: str) -> None:
    outcome(client.get(f"{patient}/_history/{version}"), 404, f"no version {version}")


def test_a_batch_entry_of_an_unknown_type_fails_alone(client: FlaskClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Patient "}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient "}, "request": {"method": "PUT", "url": "Patient /x"}},
            {"resource": {"resourceType": "Patient", "active": True}, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    response = client.post("/fhir", json=bundle)
    assert response.status_code == 200
    first, second, third = response.get_json()["entry"]
    assert first["response"]["status"].startswith("400")
    assert first["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert second["response"]["status"].startswith("4")
    assert third["response"]["status"].startswith("201")
    assert total(client, "Patient") == 1


@pytest.mark.parametrize("accept", ["application/fhir+json", "application/fhir+xml"])
def test_an_error_quoting_a_control_character_shows_it_escaped(client: FlaskClient, accept: str) -> None:
    """A parameter name with a control character was quoted as is: XML cannot carry it and
    OperationOutcome.issue.diagnostics may not hold it (R4 string), so the error itself was a 500."""
    response = client.get("/fhir/Patient?%1F=1", headers={"Accept": accept})
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "OperationOutcome" in text
    assert "\\x1f" in text and "\x1f" not in text
