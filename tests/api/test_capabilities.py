"""``GET /fhir/metadata``: a CapabilityStatement generated from what the server really does
(R4 http.html#capabilities, capabilitystatement.html)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from fhir_twin.fhir.model import resource_types


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
    assert statement["patchFormat"] == ["application/json-patch+json"]
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
