"""Searching the trail with AuditEvent's R4 search parameters.

The auditor's own searches are recorded too (and flushed in the background meanwhile), so each
search is compared on the records of the scripted activity only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.audited


class Activity:
    """Records of: ehr updates Patient/x (creating it) and creates Organization/o by POST, reads
    both, searches Patient; the auditor is refused Patient/x."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.start = datetime.now(UTC) - timedelta(seconds=1)
        client, ehr = server.client, server.ehr
        assert (
            client.put("/fhir/Patient/x", json={"resourceType": "Patient", "id": "x"}, headers=ehr).status_code == 201
        )
        created = client.post(
            "/fhir/Organization", json={"resourceType": "Organization", "name": "Ward 3"}, headers=ehr
        )
        self.org = created.get_json()["id"]
        assert client.get(f"/fhir/Organization/{self.org}", headers=ehr).status_code == 200
        assert client.get("/fhir/Patient/x", headers=ehr).status_code == 200
        assert client.get("/fhir/Patient?_id=x", headers=ehr).status_code == 200
        assert client.get("/fhir/Patient/x", headers=server.auditor).status_code == 403
        self.events = server.events()
        assert len(self.events) == 6
        self.ids = {event["id"] for event in self.events}

    def where(self, predicate: Callable[[dict[str, Any]], bool]) -> set[str]:
        return {event["id"] for event in self.events if predicate(event)}

    def found(self, query: str) -> set[str]:
        """What the search finds among the scripted records."""
        return self.server.audit_ids(query) & self.ids


@pytest.fixture
def activity(server: Any) -> Activity:
    return Activity(server)


def has_patient(event: dict[str, Any], patient: str) -> bool:
    return any(
        entity.get("what", {}).get("reference") == patient and entity["role"]["code"] == "1"
        for entity in event.get("entity", [])
    )


def test_patient(activity: Activity) -> None:
    expected = activity.where(lambda event: has_patient(event, "Patient/x"))
    # The update, the read, the search that found it, the refused read.
    assert len(expected) == 4
    assert activity.found("patient=Patient/x") == expected
    assert activity.found("patient=x") == expected
    assert activity.found("patient=Patient/nobody") == set()


def test_entity_matches_versioned_references(activity: Activity) -> None:
    server = activity.server
    # Organization/o is named only at a version: Organization/o/_history/1.
    about_org = activity.where(
        lambda event: any(w.startswith(f"Organization/{activity.org}") for w in server.whats(event))
    )
    assert len(about_org) == 2
    assert all(
        f"Organization/{activity.org}/_history/1" in server.whats(event)
        for event in activity.events
        if event["id"] in about_org
    )
    assert activity.found(f"entity=Organization/{activity.org}") == about_org
    assert activity.found(f"entity={activity.org}") == about_org
    about_x = activity.where(lambda event: any(w.startswith("Patient/x") for w in server.whats(event)))
    assert activity.found("entity=Patient/x") == about_x


def test_agent_name_and_identifier(activity: Activity) -> None:
    by_ehr = activity.where(lambda event: activity.server.requestor(event)["name"] == "ehr")
    assert len(by_ehr) == 5
    assert activity.found("agent-name=ehr") == by_ehr
    assert activity.found("agent:identifier=" + quote("urn:fhir-twin:api-token|ehr")) == by_ehr
    assert activity.found("agent-name=auditor") == activity.ids - by_ehr
    assert activity.found("agent-name=nobody") == set()


def test_date(activity: Activity) -> None:
    start = activity.start.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")
    assert activity.found("date=" + quote(f"ge{start}")) == activity.ids
    assert activity.found("date=" + quote(f"lt{start}")) == set()
    assert activity.found(f"date=ge{later}") == set()
    assert activity.found(f"date=lt{later}") == activity.ids
    # _sort=date: oldest first, as recorded.
    bundle = activity.server.audit_search("_sort=date&_count=100")
    recorded = [entry["resource"]["recorded"] for entry in bundle["entry"]]
    assert recorded == sorted(recorded, key=datetime.fromisoformat)


def test_action_outcome_type_subtype(activity: Activity) -> None:
    server = activity.server
    created = activity.where(lambda event: event["action"] == "C")
    assert len(created) == 1  # the POST; the PUT that created Patient/x is an update
    assert activity.found("action=C") == created
    assert activity.found("action=U") == activity.where(lambda event: event["action"] == "U")
    assert activity.found("action=R") == activity.where(lambda event: event["action"] == "R")
    refused = activity.where(lambda event: event["outcome"] == "4")
    assert len(refused) == 1
    assert activity.found("outcome=4") == refused
    assert activity.found("outcome=0") == activity.ids - refused
    assert activity.found("type=rest") == activity.ids
    assert activity.found("type=" + quote("http://dicom.nema.org/resources/ontology/DCM|rest")) == activity.ids
    reads = activity.where(lambda event: server.subtype(event) == "read")
    assert len(reads) == 3
    assert activity.found("subtype=read") == reads
    assert activity.found("subtype=" + quote("http://hl7.org/fhir/restful-interaction|read")) == reads
    assert activity.found("subtype=search-type") == activity.where(lambda event: server.subtype(event) == "search-type")
    assert activity.found("subtype=read&outcome=4&agent-name=auditor") == refused


def test_address(activity: Activity) -> None:
    assert activity.found(f"address={activity.server.address}") == activity.ids
    assert activity.found("address=192.0.2.1") == set()


def test_a_patient_token_learns_of_no_other_patient_from_the_trail(server: Any) -> None:
    client, ehr = server.client, server.ehr
    for pid in ("x", "y"):
        patient = {"resourceType": "Patient", "id": pid, "name": [{"family": "Chalmers"}]}
        assert client.put(f"/fhir/Patient/{pid}", json=patient, headers=ehr).status_code == 201
    # A clinician's search that finds both patients.
    assert client.get("/fhir/Patient?family=Chalmers", headers=ehr).get_json()["total"] == 2
    server.flush()
    # Patient/x's own portal token cannot read Patient/y.
    portal = server.token("patient/*.rs", "x", name="portal")
    assert client.get("/fhir/Patient/y", headers=portal).status_code == 404
    answer = client.get("/fhir/AuditEvent?_count=100", headers=portal)
    seen = [entry["resource"] for entry in answer.get_json().get("entry", [])] if answer.status_code == 200 else []
    named = {reference for event in seen for reference in server.whats(event)}
    assert not any(reference.startswith("Patient/y") for reference in named)
