"""``GET /fhir/metadata``: a CapabilityStatement generated from what the server really does
(R4 http.html#capabilities, capabilitystatement.html), and the OperationDefinitions of the
operations the server defines itself, read where its ``operation.definition`` leads
(R4 operationdefinition.html)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from fhir_twin.fhir.resource_types import resource_types
from fhir_twin.fhir.validation import resource_issues
from fhir_twin.interactions.message import Response
from fhir_twin.interactions.operations import Operation

OWN = "urn:fhir-twin:OperationDefinition/"
# The server's own operations: definition id, code, affectsState, its input parameters.
DEFINED = [
    ("Patient-twin", "twin", False, {"at", "recorded"}),
    ("Patient-predict", "predict", True, {"model"}),
    ("Patient-whatif", "whatif", False, {"model", "systolic_bp", "smoking_status"}),
]


@pytest.fixture
def statement(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    body = response.get_json()
    assert body["resourceType"] == "CapabilityStatement"
    return body


def _resource(statement: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in statement["rest"][0]["resource"] if item["type"] == name)


def test_statement_basics(statement: dict[str, Any]) -> None:
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert set(statement["format"]) >= {"application/fhir+json", "application/fhir+xml"}
    assert statement["patchFormat"] == ["application/json-patch+json", "application/fhir+json", "application/fhir+xml"]
    rest = statement["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "search-system", "history-system"}
    assert {r["type"] for r in rest["resource"]} == set(resource_types())


def test_every_type_declares_its_interactions(statement: dict[str, Any]) -> None:
    for item in statement["rest"][0]["resource"]:
        codes = {interaction["code"] for interaction in item["interaction"]}
        if item["type"] == "AuditEvent":
            # The audit trail is written by the server only.
            assert codes == {"read", "vread", "history-instance", "history-type", "search-type"}
            continue
        assert codes == {
            "read",
            "vread",
            "update",
            "patch",
            "delete",
            "history-instance",
            "history-type",
            "create",
            "search-type",
        }
        assert item["versioning"] == "versioned-update"
        assert item["conditionalCreate"] and item["conditionalUpdate"] and item["conditionalDelete"] == "single"


@pytest.mark.parametrize(
    "resource_type, code, kind",
    [
        ("Observation", "code", "token"),
        ("Observation", "value-quantity", "quantity"),
        ("Observation", "component-code-value-quantity", "composite"),
        ("Patient", "name", "string"),
        ("Patient", "birthdate", "date"),
        ("RiskAssessment", "probability", "number"),
        ("DiagnosticReport", "result", "reference"),
        ("Patient", "_lastUpdated", "date"),
    ],
)
def test_search_parameters_are_listed_with_their_definitions(
    statement: dict[str, Any], resource_type: str, code: str, kind: str
) -> None:
    params = {p["name"]: p for p in _resource(statement, resource_type)["searchParam"]}
    assert params[code]["type"] == kind
    assert params[code]["definition"].startswith("http://hl7.org/fhir/SearchParameter/")
    assert "_text" not in params and "_content" not in params


def test_operations_are_listed(statement: dict[str, Any]) -> None:
    names = {op["name"] for op in _resource(statement, "Observation")["operation"]}
    assert {"validate", "lastn"} <= names
    assert "everything" in {op["name"] for op in _resource(statement, "Patient")["operation"]}
    assert "lastn" not in {op["name"] for op in _resource(statement, "Patient")["operation"]}


def test_the_servers_own_operations_name_their_definitions(statement: dict[str, Any]) -> None:
    definitions = {op["name"]: op["definition"] for op in _resource(statement, "Patient")["operation"]}
    for res_id, code, _, _ in DEFINED:
        assert definitions[code] == f"{OWN}{res_id}"
    documentation = _resource(statement, "OperationDefinition")["documentation"]
    assert "not found by search" in documentation


@pytest.mark.parametrize(("res_id", "code", "affects_state", "inputs"), DEFINED)
def test_each_definition_is_read_where_the_statement_points(
    client: FlaskClient, res_id: str, code: str, affects_state: bool, inputs: set[str]
) -> None:
    response = client.get(f"/fhir/OperationDefinition/{res_id}")
    assert response.status_code == 200, response.get_json()
    assert response.headers["Content-Type"] == "application/fhir+json; charset=utf-8"
    definition = response.get_json()
    assert resource_issues(definition) == []
    assert definition["id"] == res_id
    assert definition["url"] == f"{OWN}{res_id}"
    assert (definition["status"], definition["kind"], definition["code"]) == ("active", "operation", code)
    assert definition["resource"] == ["Patient"]
    assert (definition["system"], definition["type"], definition["instance"]) == (False, False, True)
    assert definition["affectsState"] is affects_state
    assert definition["name"] == f"Patient{code.capitalize()}"
    for parameter in definition["parameter"]:
        assert {"name", "use", "min", "max", "type", "documentation"} <= set(parameter), parameter
    assert inputs <= {p["name"] for p in definition["parameter"] if p["use"] == "in"}
    (returned,) = [p for p in definition["parameter"] if p["use"] == "out"]
    assert (returned["name"], returned["type"], returned["min"], returned["max"]) == ("return", "Parameters", 1, "1")
    assert client.head(f"/fhir/OperationDefinition/{res_id}").status_code == 200


def test_twin_takes_a_clinical_and_a_server_time(client: FlaskClient) -> None:
    definition = client.get("/fhir/OperationDefinition/Patient-twin").get_json()
    inputs = {p["name"]: p for p in definition["parameter"] if p["use"] == "in"}
    assert set(inputs) == {"at", "recorded"}
    for parameter in inputs.values():
        assert (parameter["type"], parameter["min"], parameter["max"]) == ("dateTime", 0, "1")
    assert "Clinical time" in inputs["at"]["documentation"]
    assert "Server time" in inputs["recorded"]["documentation"]


@pytest.mark.parametrize(("res_id", "code", "affects_state", "inputs"), DEFINED)
def test_get_is_refused_exactly_when_the_definition_says_affects_state(
    client: FlaskClient, res_id: str, code: str, affects_state: bool, inputs: set[str]
) -> None:
    """A GET taken is answered by the operation (here 404 or 400: no patient, no input); one refused
    is 405 before anything is looked up."""
    response = client.get(f"/fhir/Patient/nobody/${code}")
    assert (response.status_code == 405) is affects_state, response.get_json()
    assert ("Allow" in response.headers) is affects_state


def test_an_operation_that_affects_state_cannot_be_declared_with_get() -> None:
    def handler(*_: Any) -> Response:
        return Response(200, {}, None)

    with pytest.raises(ValueError, match="POST only"):
        Operation("record", frozenset({"instance"}), frozenset({"GET", "POST"}), handler, f"{OWN}x", affects_state=True)


def test_the_definitions_are_served_not_stored(client: FlaskClient) -> None:
    definition = client.get("/fhir/OperationDefinition/Patient-predict").get_json()
    for method in ("put", "delete", "patch"):
        response = getattr(client, method)("/fhir/OperationDefinition/Patient-predict", json=definition)
        assert response.status_code == 405, (method, response.get_json())
        assert response.headers["Allow"] == "GET, HEAD"
        assert response.get_json()["resourceType"] == "OperationOutcome"
    # As HAPI FHIR's are: a search reads the store, where they are not.
    found = client.get(f"/fhir/OperationDefinition?url={OWN}Patient-predict").get_json()
    assert found["total"] == 0
    assert client.get("/fhir/OperationDefinition/Patient-predict/_history/1").status_code == 404
    # HL7's own operations are defined at HL7, not here.
    assert client.get("/fhir/OperationDefinition/Resource-validate").status_code == 404


def test_a_clients_operation_definitions_are_stored_as_any_resource(client: FlaskClient) -> None:
    mine = {
        "resourceType": "OperationDefinition",
        "url": "http://example.org/OperationDefinition/Patient-score",
        "name": "PatientScore",
        "status": "draft",
        "kind": "operation",
        "code": "score",
        "system": False,
        "type": False,
        "instance": True,
    }
    created = client.post("/fhir/OperationDefinition", json=mine)
    assert created.status_code == 201, created.get_json()
    res_id = created.get_json()["id"]
    assert client.get(f"/fhir/OperationDefinition/{res_id}").get_json()["code"] == "score"
    found = client.get("/fhir/OperationDefinition").get_json()
    assert [entry["resource"]["id"] for entry in found["entry"]] == [res_id]
