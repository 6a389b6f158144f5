"""The patch interaction with FHIRPath Patch (R4 http.html#patch, fhirpatch.html): a Parameters
resource of add, insert, delete, replace and move operations, in FHIR JSON, FHIR XML and Bundle
entries, with the rules of fhirpatch.html and the conditions of any update.

The cases named after the FHIR test cases follow ``r5/patch/fhir-path-tests.xml`` of
FHIR/fhir-test-cases (the examples of fhirpatch.html), rewritten as JSON.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import create_app, services_of

FHIR_JSON = "application/fhir+json"
_ids = itertools.count()


@pytest.fixture(scope="module")
def client(module_database_url: str) -> Iterator[FlaskClient]:
    app: Flask = create_app({"database_url": module_database_url, "auth_mode": "none", "audit": False})
    app.testing = True
    yield app.test_client()
    services_of(app).repository.engine.dispose()


def operation(kind: str, path: str, **parts: dict[str, Any]) -> dict[str, Any]:
    """One ``operation`` parameter: ``parts`` maps a part name to its value[x] (or ``part``) member."""
    return {
        "name": "operation",
        "part": [
            {"name": "type", "valueCode": kind},
            {"name": "path", "valueString": path},
            *({"name": name, **value} for name, value in parts.items()),
        ],
    }


def parameters(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", **({"parameter": list(operations)} if operations else {})}


def stored(client: FlaskClient, resource: dict[str, Any]) -> str:
    """Store ``resource`` under a new id and return its URL."""
    res_id = f"fp{next(_ids)}"
    url = f"/fhir/{resource['resourceType']}/{res_id}"
    answer = client.put(url, json={**resource, "id": res_id}, content_type=FHIR_JSON)
    assert answer.status_code == 201, answer.get_json()
    return url


def patch(client: FlaskClient, url: str, body: Any, **headers: str) -> Any:
    return client.patch(url, json=body, content_type=FHIR_JSON, headers=headers)


def content(resource: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in resource.items() if key not in ("id", "meta")}


CONTACT = {"name": {"text": "a name"}, "gender": "male"}
IDENTIFIERS = [
    {"system": "http://example.org", "value": "value 1"},
    {"system": "http://example.org", "value": "value 2"},
]
NEW_IDENTIFIER = {"system": "http://example.org", "value": "value 3"}


@pytest.mark.parametrize(
    "before, operations, after",
    [
        pytest.param({"birthDate": "1920-01-01"}, [], {"birthDate": "1920-01-01"}, id="no-difference"),
        pytest.param(
            {"birthDate": "1920-01-01"},
            [operation("replace", "Patient.birthDate", value={"valueDate": "1930-01-01"})],
            {"birthDate": "1930-01-01"},
            id="replace-primitive",
        ),
        pytest.param(
            {"birthDate": "1920-01-01", "gender": "male"},
            [operation("delete", "Patient.birthDate")],
            {"gender": "male"},
            id="delete-primitive",
        ),
        pytest.param(
            {"gender": "male"},
            [operation("add", "Patient", name={"valueString": "birthDate"}, value={"valueDate": "1930-01-01"})],
            {"gender": "male", "birthDate": "1930-01-01"},
            id="add-primitive",
        ),
        pytest.param(
            {"contact": [CONTACT]},
            [operation("replace", "Patient.contact[0].gender", value={"valueCode": "female"})],
            {"contact": [{"name": {"text": "a name"}, "gender": "female"}]},
            id="replace-nested-primitive",
        ),
        pytest.param(
            {"contact": [CONTACT]},
            [operation("replace", "Patient.contact[0].name.text", value={"valueString": "the name"})],
            {"contact": [{"name": {"text": "the name"}, "gender": "male"}]},
            id="replace-nested-primitive-2",
        ),
        pytest.param(
            {"contact": [CONTACT]},
            [operation("delete", "Patient.contact[0].gender")],
            {"contact": [{"name": {"text": "a name"}}]},
            id="delete-nested-primitive",
        ),
        pytest.param(
            {"contact": [CONTACT]},
            [operation("delete", "Patient.contact[0].name.text")],
            {"contact": [{"gender": "male"}]},
            id="delete-nested-primitive-leaves-no-empty-element",
        ),
        pytest.param(
            {"contact": [{"name": {"text": "a name"}}]},
            [operation("add", "Patient.contact[0]", name={"valueString": "gender"}, value={"valueCode": "male"})],
            {"contact": [{"name": {"text": "a name"}, "gender": "male"}]},
            id="add-nested-primitive",
        ),
        pytest.param(
            {"gender": "male"},
            [
                operation(
                    "add",
                    "Patient",
                    name={"valueString": "maritalStatus"},
                    value={"valueCodeableConcept": {"text": "married"}},
                )
            ],
            {"gender": "male", "maritalStatus": {"text": "married"}},
            id="add-complex",
        ),
        pytest.param(
            {"maritalStatus": {"id": "1", "text": "married"}},
            [
                operation(
                    "replace",
                    "Patient.maritalStatus",
                    value={"valueCodeableConcept": {"id": "2", "text": "not married"}},
                )
            ],
            {"maritalStatus": {"id": "2", "text": "not married"}},
            id="replace-complex",
        ),
        pytest.param(
            {"gender": "male", "maritalStatus": {"text": "married"}},
            [operation("delete", "Patient.maritalStatus")],
            {"gender": "male"},
            id="delete-complex",
        ),
        pytest.param(
            {"gender": "male"},
            [
                operation(
                    "add",
                    "Patient",
                    name={"valueString": "contact"},
                    value={"part": [{"name": "name", "valueHumanName": {"text": "a name"}}]},
                )
            ],
            {"gender": "male", "contact": [{"name": {"text": "a name"}}]},
            id="add-anonymous-type",
        ),
        pytest.param(
            {"gender": "male", "contact": [{"name": {"text": "a name"}}]},
            [operation("delete", "Patient.contact[0]")],
            {"gender": "male"},
            id="delete-anonymous-type",
        ),
        pytest.param(
            {"identifier": [{"id": "a", **IDENTIFIERS[0]}, {"id": "b", **IDENTIFIERS[1]}]},
            [
                operation("replace", "Patient.identifier[0].value", value={"valueString": "value 2"}),
                operation("replace", "Patient.identifier[1].value", value={"valueString": "value 1"}),
            ],
            {
                "identifier": [
                    {"id": "a", "system": "http://example.org", "value": "value 2"},
                    {"id": "b", "system": "http://example.org", "value": "value 1"},
                ]
            },
            id="list-contents-changed",
        ),
        pytest.param(
            {"identifier": IDENTIFIERS},
            [
                operation(
                    "insert", "Patient.identifier", index={"valueInteger": 2}, value={"valueIdentifier": NEW_IDENTIFIER}
                )
            ],
            {"identifier": [*IDENTIFIERS, NEW_IDENTIFIER]},
            id="insert-at-the-end",
        ),
        pytest.param(
            {"identifier": IDENTIFIERS},
            [
                operation(
                    "insert", "Patient.identifier", index={"valueInteger": 0}, value={"valueIdentifier": NEW_IDENTIFIER}
                )
            ],
            {"identifier": [NEW_IDENTIFIER, *IDENTIFIERS]},
            id="insert-at-the-start",
        ),
        pytest.param(
            {"identifier": IDENTIFIERS},
            [
                operation(
                    "insert", "Patient.identifier", index={"valueInteger": 1}, value={"valueIdentifier": NEW_IDENTIFIER}
                )
            ],
            {"identifier": [IDENTIFIERS[0], NEW_IDENTIFIER, IDENTIFIERS[1]]},
            id="insert-in-the-middle",
        ),
        pytest.param(
            {"identifier": IDENTIFIERS},
            [
                operation(
                    "add", "Patient", name={"valueString": "identifier"}, value={"valueIdentifier": NEW_IDENTIFIER}
                )
            ],
            {"identifier": [*IDENTIFIERS, NEW_IDENTIFIER]},
            id="add-appends-to-a-list",
        ),
        pytest.param(
            {"identifier": [*IDENTIFIERS, NEW_IDENTIFIER]},
            [operation("delete", "Patient.identifier[1]")],
            {"identifier": [IDENTIFIERS[0], NEW_IDENTIFIER]},
            id="delete-from-a-list",
        ),
        pytest.param(
            {"identifier": [*IDENTIFIERS, NEW_IDENTIFIER]},
            [operation("move", "Patient.identifier", source={"valueInteger": 0}, destination={"valueInteger": 2})],
            {"identifier": [IDENTIFIERS[1], NEW_IDENTIFIER, IDENTIFIERS[0]]},
            id="move-forwards",
        ),
        pytest.param(
            {"identifier": [*IDENTIFIERS, NEW_IDENTIFIER]},
            [operation("move", "Patient.identifier", source={"valueInteger": 2}, destination={"valueInteger": 0})],
            {"identifier": [NEW_IDENTIFIER, *IDENTIFIERS]},
            id="move-backwards",
        ),
        pytest.param(
            {"identifier": IDENTIFIERS},
            [
                operation(
                    "replace",
                    "Patient.identifier.where(value = 'value 2').system",
                    value={"valueUri": "urn:ietf:rfc:3986"},
                )
            ],
            {"identifier": [IDENTIFIERS[0], {"system": "urn:ietf:rfc:3986", "value": "value 2"}]},
            id="path-with-where",
        ),
        pytest.param(
            {"name": [{"given": ["Ann", "Bea"]}]},
            [operation("insert", "Patient.name[0].given", index={"valueInteger": 1}, value={"valueString": "Cy"})],
            {"name": [{"given": ["Ann", "Cy", "Bea"]}]},
            id="insert-a-primitive",
        ),
        pytest.param(
            {"birthDate": "1920-01-01", "_birthDate": {"extension": [{"url": "http://x.org/e", "valueString": "v"}]}},
            [operation("delete", "Patient.birthDate")],
            {},
            id="delete-takes-a-primitives-extension-too",
        ),
    ],
)
def test_each_operation_changes_the_element_the_path_names(
    client: FlaskClient, before: dict[str, Any], operations: list[dict[str, Any]], after: dict[str, Any]
) -> None:
    url = stored(client, {"resourceType": "Patient", **before})

    answer = patch(client, url, parameters(*operations))

    assert answer.status_code == 200, answer.get_json()
    assert content(answer.get_json()) == {"resourceType": "Patient", **after}
    assert content(client.get(url).get_json()) == {"resourceType": "Patient", **after}
    assert answer.headers["ETag"] == ('W/"1"' if before == after else 'W/"2"')


OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"text": "heart rate"},
    "valueQuantity": {"value": 72, "unit": "/min"},
}


@pytest.mark.parametrize(
    "operations, after",
    [
        pytest.param(
            [operation("replace", "Observation.value", value={"valueString": "seventy-two"})],
            {"valueString": "seventy-two"},
            id="replace-a-choice-with-another-type",
        ),
        pytest.param(
            [operation("replace", "Observation.value.ofType(Quantity).value", value={"valueDecimal": 75})],
            {"valueQuantity": {"value": 75, "unit": "/min"}},
            id="path-through-ofType",
        ),
        pytest.param(
            [operation("replace", "Observation.valueQuantity.unit", value={"valueString": "beats/min"})],
            {"valueQuantity": {"value": 72, "unit": "beats/min"}},
            id="path-with-the-json-name",
        ),
        pytest.param(
            [
                operation("delete", "Observation.value"),
                operation("add", "Observation", name={"valueString": "value"}, value={"valueBoolean": True}),
            ],
            {"valueBoolean": True},
            id="delete-then-add-a-choice",
        ),
        pytest.param(
            [
                operation(
                    "add",
                    "Observation",
                    name={"valueString": "component"},
                    value={
                        "part": [
                            {"name": "code", "valueCodeableConcept": {"text": "rhythm"}},
                            {"name": "value", "valueString": "regular"},
                        ]
                    },
                )
            ],
            {
                "valueQuantity": {"value": 72, "unit": "/min"},
                "component": [{"code": {"text": "rhythm"}, "valueString": "regular"}],
            },
            id="add-parts-with-a-choice",
        ),
    ],
)
def test_choice_elements_are_patched_under_their_typed_names(
    client: FlaskClient, operations: list[dict[str, Any]], after: dict[str, Any]
) -> None:
    url = stored(client, OBSERVATION)

    answer = patch(client, url, parameters(*operations))

    assert answer.status_code == 200, answer.get_json()
    expected = {key: value for key, value in OBSERVATION.items() if key != "valueQuantity"} | after
    assert content(client.get(url).get_json()) == expected


PATIENT = {"resourceType": "Patient", "gender": "male", "birthDate": "1920-01-01", "name": [{"given": ["Ann", "Bea"]}]}


@pytest.mark.parametrize(
    "operations, status, needle",
    [
        (
            [operation("replace", "Patient.maritalStatus", value={"valueCodeableConcept": {"text": "x"}})],
            422,
            "selects nothing",
        ),
        (
            [
                operation(
                    "insert", "Patient.identifier", index={"valueInteger": 0}, value={"valueIdentifier": NEW_IDENTIFIER}
                )
            ],
            422,
            "selects nothing",
        ),
        (
            [operation("move", "Patient.identifier", source={"valueInteger": 0}, destination={"valueInteger": 1})],
            422,
            "selects nothing",
        ),
        (
            [operation("add", "Patient.maritalStatus", name={"valueString": "text"}, value={"valueString": "x"})],
            422,
            "selects nothing",
        ),
        ([operation("replace", "Patient.name.given", value={"valueString": "Cy"})], 422, "selects 2 elements"),
        ([operation("delete", "Patient.name.given")], 422, "selects 2 elements"),
        (
            [operation("insert", "Patient.name[0].given", index={"valueInteger": 3}, value={"valueString": "Cy"})],
            422,
            "index 3 is past the end",
        ),
        (
            [operation("move", "Patient.name[0].given", source={"valueInteger": 2}, destination={"valueInteger": 0})],
            422,
            "source 2 is past the end",
        ),
        (
            [
                operation(
                    "insert", "Patient.name[0].given.first()", index={"valueInteger": 0}, value={"valueString": "Cy"}
                )
            ],
            422,
            "it must select the list",
        ),
        (
            [operation("insert", "Patient.birthDate", index={"valueInteger": 0}, value={"valueDate": "1930-01-01"})],
            422,
            "does not repeat",
        ),
        (
            [operation("add", "Patient", name={"valueString": "gender"}, value={"valueCode": "female"})],
            422,
            "already exists",
        ),
        (
            [operation("add", "Patient", name={"valueString": "nickname"}, value={"valueString": "x"})],
            422,
            "no element 'nickname'",
        ),
        (
            [operation("replace", "Patient.birthDate", value={"valueHumanName": {"text": "x"}})],
            422,
            "does not fit Patient.birthDate",
        ),
        (
            [operation("add", "Patient", name={"valueString": "deceased"}, value={"valueString": "x"})],
            422,
            "does not fit Patient.deceased",
        ),
        ([operation("replace", "Patient", value={"valueString": "x"})], 422, "the resource itself"),
        ([operation("replace", "Patient.name.given.count()", value={"valueInteger": 1})], 422, "computed value"),
        ([operation("replace", "Patient.gender", value={"valueCode": "bogus"})], 422, "Patient.gender"),
        ([operation("replace", "Patient.id", value={"valueId": "other"})], 422, "type or id"),
        (
            [
                operation("replace", "Patient.gender", value={"valueCode": "female"}),
                operation("delete", "Patient.name.given"),
            ],
            422,
            "operation 1 (delete Patient.name.given)",
        ),
        ({"resourceType": "Patient"}, 400, "Parameters resource"),
        ([{"name": "op", "part": [{"name": "type", "valueCode": "delete"}]}], 400, "only 'operation' parameters"),
        ([operation("jump", "Patient.gender")], 400, "type 'jump'"),
        ([{"name": "operation", "part": [{"name": "type", "valueCode": "delete"}]}], 400, "no 'path' part"),
        ([operation("replace", "Patient.gender")], 400, "no 'value' part"),
        ([operation("move", "Patient.name", source={"valueInteger": 0})], 400, "no 'destination' part"),
        ([operation("delete", "Patient.gender", value={"valueCode": "x"})], 400, "which delete does not take"),
        ([operation("delete", "Patient.gender", colour={"valueString": "x"})], 400, "part named 'colour'"),
        ([operation("delete", "Patient.name.where(")], 400, "not FHIRPath"),
        (
            [operation("insert", "Patient.name", index={"valueInteger": -1}, value={"valueHumanName": {"text": "x"}})],
            400,
            "0 or more",
        ),
        ([operation("replace", "Patient.gender", value={"valueCode": "x", "valueString": "y"})], 400, "Parameters"),
    ],
)
def test_a_patch_that_cannot_apply_names_its_operation_and_changes_nothing(
    client: FlaskClient, operations: Any, status: int, needle: str
) -> None:
    url = stored(client, PATIENT)

    answer = patch(client, url, parameters(*operations) if isinstance(operations, list) else operations)

    assert answer.status_code == status, answer.get_json()
    outcome = answer.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert needle in outcome["issue"][0]["diagnostics"]
    assert client.get(url).get_json()["meta"]["versionId"] == "1"


def test_a_delete_selecting_nothing_changes_nothing(client: FlaskClient) -> None:
    url = stored(client, PATIENT)

    answer = patch(client, url, parameters(operation("delete", "Patient.maritalStatus")))

    assert answer.status_code == 200
    assert answer.headers["ETag"] == 'W/"1"'
    assert content(client.get(url).get_json()) == PATIENT


def test_a_failing_operation_is_named_in_the_issue_expression(client: FlaskClient) -> None:
    url = stored(client, PATIENT)

    answer = patch(
        client,
        url,
        parameters(
            operation("delete", "Patient.gender"),
            operation("replace", "Patient.photo", value={"valueAttachment": {"title": "x"}}),
        ),
    )

    assert answer.status_code == 422
    assert answer.get_json()["issue"][0]["expression"] == ["Parameters.parameter[1]"]


def test_if_match_guards_a_fhirpath_patch(client: FlaskClient) -> None:
    url = stored(client, PATIENT)
    body = parameters(operation("replace", "Patient.gender", value={"valueCode": "female"}))

    stale = patch(client, url, body, **{"If-Match": 'W/"7"'})
    current = patch(client, url, body, **{"If-Match": 'W/"1"'})

    assert stale.status_code == 412
    assert (current.status_code, current.headers["ETag"]) == (200, 'W/"2"')
    assert client.get(url).get_json()["gender"] == "female"


def test_a_conditional_fhirpath_patch_patches_the_one_match(client: FlaskClient) -> None:
    url = stored(client, {**PATIENT, "identifier": [{"system": "http://example.org/mrn", "value": "cond-1"}]})
    body = parameters(operation("replace", "Patient.birthDate", value={"valueDate": "1931-02-03"}))

    answer = patch(client, "/fhir/Patient?identifier=http://example.org/mrn|cond-1", body)
    missing = patch(client, "/fhir/Patient?identifier=http://example.org/mrn|nobody", body)

    assert answer.status_code == 200
    assert answer.headers["Location"].split("/fhir/")[1].startswith(url.removeprefix("/fhir/") + "/_history/2")
    assert client.get(url).get_json()["birthDate"] == "1931-02-03"
    assert missing.status_code == 404


def test_a_fhirpath_patch_in_fhir_xml(client: FlaskClient) -> None:
    url = stored(client, {"resourceType": "Patient", "gender": "male"})
    xml = (
        '<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>'
        '<part><name value="type"/><valueCode value="add"/></part>'
        '<part><name value="path"/><valueString value="Patient"/></part>'
        '<part><name value="name"/><valueString value="birthDate"/></part>'
        '<part><name value="value"/><valueDate value="1930-01-01"/></part>'
        "</parameter></Parameters>"
    )

    answer = client.patch(url, data=xml, content_type="application/fhir+xml", headers={"Accept": FHIR_JSON})

    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert content(client.get(url).get_json()) == {
        "resourceType": "Patient",
        "gender": "male",
        "birthDate": "1930-01-01",
    }


@pytest.mark.parametrize("bundle_type", ["batch", "transaction"])
def test_a_fhirpath_patch_as_a_bundle_entry(client: FlaskClient, bundle_type: str) -> None:
    url = stored(client, PATIENT)
    entry = {
        "resource": parameters(operation("replace", "Patient.gender", value={"valueCode": "female"})),
        "request": {"method": "PATCH", "url": url.removeprefix("/fhir/")},
    }

    answer = client.post("/fhir", json={"resourceType": "Bundle", "type": bundle_type, "entry": [entry]})

    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["entry"][0]["response"]["status"] == "200 OK"
    assert client.get(url).get_json()["gender"] == "female"


def test_a_failing_fhirpath_patch_rolls_its_transaction_back(client: FlaskClient) -> None:
    url = stored(client, PATIENT)
    entries = [
        {"resource": {"resourceType": "Patient", "gender": "other"}, "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": parameters(
                operation("replace", "Patient.maritalStatus", value={"valueCodeableConcept": {"text": "x"}})
            ),
            "request": {"method": "PATCH", "url": url.removeprefix("/fhir/")},
        },
    ]

    answer = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    others = client.get("/fhir/Patient?gender=other").get_json()

    assert answer.status_code == 422
    assert "Bundle.entry[1]" in answer.get_json()["issue"][0]["diagnostics"]
    assert "operation 0" in answer.get_json()["issue"][0]["diagnostics"]
    assert others.get("total", len(others.get("entry", []))) == 0
    assert client.get(url).get_json()["meta"]["versionId"] == "1"


def test_the_capability_statement_names_both_patch_formats(client: FlaskClient) -> None:
    statement = client.get("/fhir/metadata").get_json()
    patient = next(item for item in statement["rest"][0]["resource"] if item["type"] == "Patient")
    documentation = next(item["documentation"] for item in patient["interaction"] if item["code"] == "patch")

    assert {"application/json-patch+json", "application/fhir+json", "application/fhir+xml"} <= set(
        statement["patchFormat"]
    )
    assert "FHIRPath Patch" in documentation and "JSON Patch" in documentation
