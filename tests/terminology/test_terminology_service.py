"""Terminology from the packaged R4 definitions and stored resources (R4 terminology-service.html):
``CodeSystem/$lookup``, ``ValueSet/$expand``, ``$validate-code`` and the token modifiers ``:in``,
``:not-in``, ``:above`` and ``:below``."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from fhir_twin.app import create_app, services_of
from fhir_twin.terminology.definitions import DATA
from tests import factories
from tests.factories import put

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_terminology_data.py"
VER_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CATEGORY_VS = "http://hl7.org/fhir/ValueSet/observation-category"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
LOCAL_VS = "http://example.org/fhir/ValueSet/vitals-only"


@pytest.fixture(scope="module")
def client(module_database_url: str) -> Iterator[FlaskClient]:
    """A server holding Observations in two categories, Conditions in three verification statuses
    and a stored ValueSet; the tests only read."""
    app = create_app({"database_url": module_database_url, "auth_mode": "none", "audit": False})
    app.testing = True
    client = app.test_client()
    put(client, {"resourceType": "Patient", "id": "p"})
    for res_id, category in (("vital", "vital-signs"), ("lab", "laboratory")):
        coded = [{"coding": [{"system": CATEGORY, "code": category}]}]
        put(client, factories.observation("8867-4", res_id=res_id, patient="p", category=coded))
    for status in ("unconfirmed", "provisional", "confirmed"):
        put(client, condition(status))
    put(
        client,
        {
            "resourceType": "ValueSet",
            "id": "vitals-only",
            "url": LOCAL_VS,
            "status": "active",
            "compose": {"include": [{"system": CATEGORY, "concept": [{"code": "vital-signs", "display": "Vitals"}]}]},
        },
    )
    yield client
    services_of(app).repository.engine.dispose()


def condition(status: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": status,
        "verificationStatus": {"coding": [{"system": VER_STATUS, "code": status}]},
        "subject": {"reference": "Patient/p"},
    }


def parts(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    assert body["resourceType"] == "Parameters", body
    return [part for part in body["parameter"] if part["name"] == name]


def value(body: dict[str, Any], name: str) -> Any:
    (found,) = parts(body, name)
    return next(v for k, v in found.items() if k.startswith("value"))


def ids(client: FlaskClient, query: str) -> set[str]:
    response = client.get(f"/fhir/{query}")
    assert response.status_code == 200, response.get_json()
    return {entry["resource"]["id"] for entry in response.get_json().get("entry", [])}


def issue(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_json()
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    found: dict[str, Any] = body["issue"][0]
    return found


def test_lookup_gives_display_parent_and_child(client: FlaskClient) -> None:
    body = client.get(f"/fhir/CodeSystem/$lookup?system={VER_STATUS}&code=provisional").get_json()
    assert value(body, "display") == "Provisional"
    assert value(body, "version") == "4.0.1"
    properties = {(p["part"][0]["valueCode"], p["part"][1]["valueCode"]) for p in parts(body, "property")}
    assert ("parent", "unconfirmed") in properties
    parent = client.get(f"/fhir/CodeSystem/$lookup?system={VER_STATUS}&code=unconfirmed&property=child").get_json()
    children = {p["part"][1]["valueCode"] for p in parts(parent, "property")}
    assert children == {"provisional", "differential"}


def test_lookup_by_coding_in_a_parameters_body(client: FlaskClient) -> None:
    sent = {
        "resourceType": "Parameters",
        "parameter": [{"name": "coding", "valueCoding": {"system": CATEGORY, "code": "laboratory"}}],
    }
    response = client.post("/fhir/CodeSystem/$lookup", json=sent)
    assert value(response.get_json(), "display") == "Laboratory"


def test_lookup_of_an_unknown_code_is_404_and_of_a_system_not_held_400(client: FlaskClient) -> None:
    assert (
        "nonsense"
        in issue(client.get(f"/fhir/CodeSystem/$lookup?system={VER_STATUS}&code=nonsense"), 404)["diagnostics"]
    )
    not_held = issue(client.get(f"/fhir/CodeSystem/$lookup?system={SNOMED}&code=22298006"), 400)
    assert not_held["code"] == "not-supported" and SNOMED in not_held["diagnostics"]
    assert issue(client.get(f"/fhir/CodeSystem/$lookup?system={VER_STATUS}"), 400)["code"] == "invalid"


def test_expand_with_filter_and_paging(client: FlaskClient) -> None:
    whole = client.get(f"/fhir/ValueSet/$expand?url={CATEGORY_VS}").get_json()
    assert whole["expansion"]["total"] == 9
    codes = [c["code"] for c in whole["expansion"]["contains"]]
    page = client.get(f"/fhir/ValueSet/$expand?url={CATEGORY_VS}&offset=2&count=3").get_json()
    assert page["expansion"]["total"] == 9 and page["expansion"]["offset"] == 2
    assert [c["code"] for c in page["expansion"]["contains"]] == codes[2:5]
    filtered = client.get(f"/fhir/ValueSet/$expand?url={CATEGORY_VS}&filter=SIGN").get_json()
    assert [c["code"] for c in filtered["expansion"]["contains"]] == ["vital-signs"]
    assert filtered["expansion"]["total"] == 1


def test_expand_follows_is_a_filters(client: FlaskClient) -> None:
    sent = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "valueSet",
                "resource": {
                    "resourceType": "ValueSet",
                    "status": "draft",
                    "compose": {
                        "include": [
                            {
                                "system": VER_STATUS,
                                "filter": [{"property": "concept", "op": "is-a", "value": "unconfirmed"}],
                            }
                        ]
                    },
                },
            }
        ],
    }
    body = client.post("/fhir/ValueSet/$expand", json=sent).get_json()
    assert {c["code"] for c in body["expansion"]["contains"]} == {"unconfirmed", "provisional", "differential"}


def test_expand_a_stored_value_set_by_url_and_by_id(client: FlaskClient) -> None:
    for path in (f"ValueSet/$expand?url={LOCAL_VS}", "ValueSet/vitals-only/$expand"):
        body = client.get(f"/fhir/{path}").get_json()
        assert body["expansion"]["contains"] == [{"system": CATEGORY, "code": "vital-signs", "display": "Vitals"}]


def test_expand_needing_a_system_not_held_says_so(client: FlaskClient) -> None:
    found = issue(client.get("/fhir/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/observation-codes"), 400)
    assert found["code"] == "not-supported" and LOINC in found["diagnostics"]
    assert issue(client.get("/fhir/ValueSet/$expand?url=http://example.org/none"), 400)["code"] == "not-found"


def test_validate_code_on_value_sets_and_code_systems(client: FlaskClient) -> None:
    good = client.get(f"/fhir/ValueSet/$validate-code?url={CATEGORY_VS}&system={CATEGORY}&code=laboratory").get_json()
    assert value(good, "result") is True and value(good, "display") == "Laboratory"
    outside = client.get(f"/fhir/ValueSet/$validate-code?url={LOCAL_VS}&system={CATEGORY}&code=laboratory").get_json()
    assert value(outside, "result") is False and "not in the value set" in value(outside, "message")
    wrong_display = client.get(f"/fhir/CodeSystem/$validate-code?url={CATEGORY}&code=laboratory&display=Lab").get_json()
    assert value(wrong_display, "result") is False and "Laboratory" in value(wrong_display, "message")
    concept = {"coding": [{"system": SNOMED, "code": "1"}, {"system": CATEGORY, "code": "vital-signs"}]}
    sent = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "url", "valueUri": LOCAL_VS},
            {"name": "codeableConcept", "valueCodeableConcept": concept},
        ],
    }
    assert value(client.post("/fhir/ValueSet/$validate-code", json=sent).get_json(), "result") is True


def test_validate_code_in_a_system_not_held_says_so(client: FlaskClient) -> None:
    body = client.get(f"/fhir/CodeSystem/$validate-code?url={SNOMED}&code=22298006").get_json()
    assert value(body, "result") is False and "code system not held" in value(body, "message")
    loinc = client.get(
        f"/fhir/ValueSet/$validate-code?url=http://hl7.org/fhir/ValueSet/observation-codes&system={LOINC}&code=8867-4"
    ).get_json()
    assert value(loinc, "result") is False and "code system not held" in value(loinc, "message")


def test_in_and_not_in_a_value_set(client: FlaskClient) -> None:
    assert ids(client, f"Observation?category:in={CATEGORY_VS}") == {"vital", "lab"}
    assert ids(client, f"Observation?category:in={LOCAL_VS}") == {"vital"}
    assert ids(client, f"Observation?category:not-in={LOCAL_VS}") == {"lab"}
    assert ids(client, "Condition?verification-status:in=http://hl7.org/fhir/ValueSet/condition-ver-status") == {
        "unconfirmed",
        "provisional",
        "confirmed",
    }


def test_below_and_above_in_a_held_hierarchy(client: FlaskClient) -> None:
    assert ids(client, f"Condition?verification-status:below={VER_STATUS}|unconfirmed") == {
        "unconfirmed",
        "provisional",
    }
    assert ids(client, f"Condition?verification-status:above={VER_STATUS}|provisional") == {
        "unconfirmed",
        "provisional",
    }
    assert ids(client, f"Condition?verification-status:above={VER_STATUS}|confirmed") == {"confirmed"}


def test_modifiers_on_systems_not_held_or_unknown_value_sets_are_400(client: FlaskClient) -> None:
    below = issue(client.get(f"/fhir/Observation?code:below={SNOMED}|404684003"), 400)
    assert below["code"] == "not-supported" and SNOMED in below["diagnostics"]
    assert issue(client.get("/fhir/Observation?code:below=404684003"), 400)["code"] == "invalid"
    assert (
        issue(client.get("/fhir/Observation?code:in=http://hl7.org/fhir/ValueSet/observation-codes"), 400)["code"]
        == "not-supported"
    )
    assert issue(client.get("/fhir/Observation?code:in=http://example.org/none"), 400)["code"] == "not-found"


def test_capability_statement_lists_the_operations(client: FlaskClient) -> None:
    body = client.get("/fhir/metadata").get_json()
    by_type = {r["type"]: {o["name"] for o in r.get("operation", [])} for r in body["rest"][0]["resource"]}
    assert "lookup" in by_type["CodeSystem"] and "validate-code" in by_type["CodeSystem"]
    assert {"expand", "validate-code"} <= by_type["ValueSet"]
    # Each type's $validate-code names the specification's definition for that type.
    definitions = {
        (r["type"], o["name"]): o["definition"] for r in body["rest"][0]["resource"] for o in r.get("operation", [])
    }
    hl7 = "http://hl7.org/fhir/OperationDefinition/"
    assert definitions["CodeSystem", "validate-code"] == hl7 + "CodeSystem-validate-code"
    assert definitions["ValueSet", "validate-code"] == hl7 + "ValueSet-validate-code"
    assert definitions["CodeSystem", "lookup"] == hl7 + "CodeSystem-lookup"


def test_packaged_definitions_match_build_script() -> None:
    spec = importlib.util.spec_from_file_location("build_terminology_data", SCRIPT)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert json.loads(DATA.read_text(encoding="utf-8")) == script.build()
