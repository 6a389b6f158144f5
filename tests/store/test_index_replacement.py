"""An update replaces its resource's index rows in every index table: searches find the new
values and no longer the old (R4 http.html#update: the new version replaces the current one)."""

from __future__ import annotations

from flask.testing import FlaskClient

OLD = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:test", "value": "old-id"}],
    "name": [{"family": "Oldname"}],
    "birthDate": "1950-01-01",
    "managingOrganization": {"reference": "Organization/old-org"},
}
NEW = {
    "resourceType": "Patient",
    "identifier": [{"system": "urn:test", "value": "new-id"}],
    "name": [{"family": "Newname"}],
    "birthDate": "1990-06-06",
    "managingOrganization": {"reference": "Organization/new-org"},
}


def found(client: FlaskClient, query: str) -> int:
    response = client.get(f"/fhir/Patient?{query}")
    assert response.status_code == 200
    return int(response.json["total"])


def test_an_update_replaces_string_token_date_and_reference_rows(client: FlaskClient) -> None:
    for org in ("old-org", "new-org"):
        assert (
            client.put(f"/fhir/Organization/{org}", json={"resourceType": "Organization", "id": org}).status_code == 201
        )
    created = client.post("/fhir/Patient", json=OLD)
    assert created.status_code == 201
    patient_id = created.json["id"]
    assert client.put(f"/fhir/Patient/{patient_id}", json={**NEW, "id": patient_id}).status_code == 200

    for old in ("family=Oldname", "identifier=urn:test|old-id", "birthdate=1950-01-01", "organization=old-org"):
        assert found(client, old) == 0, old
    for new in ("family=Newname", "identifier=urn:test|new-id", "birthdate=1990-06-06", "organization=new-org"):
        assert found(client, new) == 1, new
