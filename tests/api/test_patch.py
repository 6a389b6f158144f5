"""The patch interaction with JSON Patch (R4 http.html#patch, RFC 6902)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

JSON_PATCH = "application/json-patch+json"


@pytest.fixture
def observation(client: FlaskClient) -> str:
    body = (
        '{"resourceType": "Observation", "id": "o1", "status": "preliminary",'
        ' "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},'
        ' "valueQuantity": {"value": 72.50, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}'
    )
    assert client.put("/fhir/Observation/o1", data=body, content_type="application/fhir+json").status_code == 201
    return "/fhir/Observation/o1"


def patch(client: FlaskClient, url: str, operations: Any, **headers: str) -> Any:
    return client.patch(url, json=operations, content_type=JSON_PATCH, headers=headers)


def test_patch_applies_and_versions(client: FlaskClient, observation: str) -> None:
    response = patch(
        client,
        observation,
        [
            {"op": "test", "path": "/status", "value": "preliminary"},
            {"op": "replace", "path": "/status", "value": "final"},
        ],
    )
    assert response.status_code == 200
    assert response.headers["ETag"] == 'W/"2"'
    body = client.get(observation).get_json()
    assert body["status"] == "final"
    assert body["meta"]["versionId"] == "2"
    # Untouched decimals keep their text.
    assert b'"value":72.50' in client.get(observation).data


def test_patch_with_if_match(client: FlaskClient, observation: str) -> None:
    operations = [{"op": "replace", "path": "/status", "value": "final"}]
    assert patch(client, observation, operations, **{"If-Match": 'W/"5"'}).status_code == 412
    assert patch(client, observation, operations, **{"If-Match": 'W/"1"'}).status_code == 200


@pytest.mark.parametrize(
    "operations, status, needle",
    [
        ([{"op": "test", "path": "/status", "value": "final"}], 422, "test failed"),
        ([{"op": "remove", "path": "/nothing"}], 422, "cannot be applied"),
        ([{"op": "replace", "path": "/status", "value": "bogus"}], 422, "Observation.status"),
        ([{"op": "remove", "path": "/status"}], 422, "status"),
        ([{"op": "replace", "path": "/id", "value": "o2"}], 422, "type or id"),
        ([{"op": "jump", "path": "/status"}], 400, "malformed"),
        ({"op": "replace"}, 400, "array"),
    ],
)
def test_bad_patches_change_nothing(
    client: FlaskClient, observation: str, operations: Any, status: int, needle: str
) -> None:
    response = patch(client, observation, operations)
    assert response.status_code == status
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert needle in str(outcome)
    assert client.get(observation).get_json()["meta"]["versionId"] == "1"


def test_patch_of_missing_or_deleted_resource(client: FlaskClient, observation: str) -> None:
    operations = [{"op": "replace", "path": "/status", "value": "final"}]
    assert patch(client, "/fhir/Observation/none", operations).status_code == 404
    client.delete(observation)
    assert patch(client, observation, operations).status_code == 410


def test_patch_needs_json_patch_content_type(client: FlaskClient, observation: str) -> None:
    response = client.patch(observation, json=[{"op": "replace", "path": "/status", "value": "final"}])
    assert response.status_code == 400
    assert "JSON Patch" in response.get_json()["issue"][0]["diagnostics"]


def test_conditional_patch(client: FlaskClient, observation: str) -> None:
    operations = [{"op": "replace", "path": "/status", "value": "amended"}]
    assert patch(client, "/fhir/Observation?_id=o1", operations).status_code == 200
    assert client.get(observation).get_json()["status"] == "amended"
    assert patch(client, "/fhir/Observation?_id=none", operations).status_code == 404


def test_a_failed_patch_names_its_operation_but_quotes_nothing_stored(client: FlaskClient, observation: str) -> None:
    """The failure text reaches the audit trail: it names the operation and path, not the
    stored resource's content (jsonpatch's own messages quote the whole document)."""
    operations = [
        {"op": "replace", "path": "/status", "value": "amended"},
        {"op": "test", "path": "/valueQuantity/value", "value": 1},
    ]
    response = patch(client, observation, operations)
    assert response.status_code == 422
    diagnostics = response.get_json()["issue"][0]["diagnostics"]
    assert "operation 1 (test /valueQuantity/value)" in diagnostics
    assert "72.5" not in diagnostics and "preliminary" not in diagnostics
    removal = patch(client, observation, [{"op": "remove", "path": "/note/0"}])
    assert removal.status_code == 422
    assert "operation 0 (remove /note/0)" in removal.get_json()["issue"][0]["diagnostics"]
    assert "72.5" not in removal.get_json()["issue"][0]["diagnostics"]
    assert client.get(observation).get_json()["meta"]["versionId"] == "1"
