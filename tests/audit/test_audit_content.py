"""What an AuditEvent says (IHE BALP RESTful events): the interaction, who asked, from where,
what was touched at which version, which patient's record, and how it ended."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import pytest

from fhir_twin.app import services_of
from fhir_twin.audit.trail import verify_trail
from tests.factories import HEART_RATE, observation

pytestmark = pytest.mark.audited

DCM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
TOKEN_SYSTEM = "urn:fhir-twin:api-token"


def only_new(server: Any, mark: int) -> dict[str, Any]:
    """The one AuditEvent recorded since ``mark`` records."""
    new = server.events_since(mark)
    assert len(new) == 1, [server.subtype(event) for event in new]
    return new[0]


@pytest.fixture
def patient_x(server: Any) -> int:
    """Patient/x, version 1; how many records the trail holds after it."""
    answer = server.client.put("/fhir/Patient/x", json={"resourceType": "Patient", "id": "x"}, headers=server.ehr)
    assert answer.status_code == 201
    return server.chain_count()


def test_a_read_names_the_interaction_the_token_the_address_and_the_version(server: Any, patient_x: int) -> None:
    assert server.client.get("/fhir/Patient/x", headers=server.ehr).status_code == 200
    event = only_new(server, patient_x)

    assert event["resourceType"] == "AuditEvent"
    assert event["type"]["system"] == DCM and event["type"]["code"] == "rest"
    assert event["subtype"] == [{"system": RESTFUL, "code": "read"}]
    assert event["action"] == "R"
    assert event["outcome"] == "0"
    assert "outcomeDesc" not in event
    datetime.fromisoformat(event["recorded"])

    client = server.requestor(event)
    assert client["name"] == "ehr"
    assert client["who"]["identifier"] == {"system": TOKEN_SYSTEM, "value": "ehr"}
    assert client["network"]["address"] == server.address
    # The server is the other party, not a requestor.
    assert [agent["name"] for agent in event["agent"] if not agent.get("requestor")] == ["fhir-twin"]

    assert server.whats(event) == ["Patient/x/_history/1", "Patient/x"]
    resource, patient = event["entity"]
    assert resource["role"]["code"] == "4"  # domain resource
    assert patient["what"] == {"reference": "Patient/x"}
    assert patient["type"]["code"] == "1" and patient["role"]["code"] == "1"  # person, patient

    # The auditor reads back exactly what was stored.
    read_back = server.client.get(f"/fhir/AuditEvent/{event['id']}", headers=server.auditor)
    assert read_back.status_code == 200
    assert read_back.get_json() == event
    assert event["meta"]["versionId"] == "1"


def test_create_update_and_delete_name_the_versions_they_wrote(server: Any, patient_x: int) -> None:
    created = server.client.post(
        "/fhir/Observation", json=observation(HEART_RATE, subject="Patient/x"), headers=server.ehr
    )
    assert created.status_code == 201
    oid = created.get_json()["id"]
    event = only_new(server, patient_x)
    assert server.subtype(event) == "create" and event["action"] == "C" and event["outcome"] == "0"
    # The Observation at the version created, and the patient whose record it joined.
    assert server.whats(event) == [f"Observation/{oid}/_history/1", "Patient/x"]
    assert server.requestor(event)["name"] == "ehr"

    mark = server.chain_count()
    changed = {**observation(HEART_RATE, subject="Patient/x"), "id": oid, "status": "amended"}
    assert server.client.put(f"/fhir/Observation/{oid}", json=changed, headers=server.ehr).status_code == 200
    event = only_new(server, mark)
    assert server.subtype(event) == "update" and event["action"] == "U" and event["outcome"] == "0"
    assert server.whats(event) == [f"Observation/{oid}/_history/2", "Patient/x"]

    mark = server.chain_count()
    assert server.client.delete(f"/fhir/Observation/{oid}", headers=server.ehr).status_code in (200, 204)
    event = only_new(server, mark)
    assert server.subtype(event) == "delete" and event["action"] == "D" and event["outcome"] == "0"
    assert server.whats(event)[0] == f"Observation/{oid}/_history/3"


def test_a_search_is_an_execute_with_its_query_in_base64(server: Any, patient_x: int) -> None:
    assert server.client.get("/fhir/Patient?_id=x&gender=other", headers=server.ehr).status_code == 200
    event = only_new(server, patient_x)
    assert server.subtype(event) == "search-type"
    assert event["action"] == "E" and event["outcome"] == "0"
    queries = [entity for entity in event["entity"] if "query" in entity]
    assert len(queries) == 1
    assert queries[0]["role"]["code"] == "24"  # query
    path, _, query = base64.b64decode(queries[0]["query"]).decode("utf-8").partition("?")
    assert path.endswith("Patient")
    assert sorted(parse_qsl(query)) == [("_id", "x"), ("gender", "other")]

    # A search of every Patient is a query too: its path.
    mark = server.chain_count()
    assert server.client.get("/fhir/Patient", headers=server.ehr).status_code == 200
    [query] = [entity["query"] for entity in only_new(server, mark)["entity"] if "query" in entity]
    assert base64.b64decode(query).decode("utf-8").endswith("Patient")

    # A search that finds Patient/x records that its record was disclosed.
    mark = server.chain_count()
    assert server.client.get("/fhir/Patient?_id=x", headers=server.ehr).status_code == 200
    event = only_new(server, mark)
    assert "Patient/x" in server.whats(event)


def test_a_denial_is_a_failure_with_its_403(server: Any, patient_x: int) -> None:
    answer = server.client.get("/fhir/Patient/x", headers=server.auditor)
    assert answer.status_code == 403
    event = only_new(server, patient_x)
    assert server.subtype(event) == "read" and event["action"] == "R"
    assert event["outcome"] == "4"
    assert "403" in event["outcomeDesc"]
    assert server.requestor(event)["name"] == "auditor"
    assert server.requestor(event)["network"]["address"] == server.address


@pytest.mark.parametrize("authorization", [None, "Bearer ftw_not-a-token-of-this-server", "Basic ZWhyOmVocg=="])
def test_an_unauthenticated_request_is_recorded_but_names_no_token(
    server: Any, patient_x: int, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    assert server.client.get("/fhir/Patient/x", headers=headers).status_code == 401
    event = only_new(server, patient_x)
    assert event["outcome"] == "4"
    assert event["outcomeDesc"].startswith("401")
    assert server.subtype(event) == "read"
    for agent in event["agent"]:
        assert agent["name"] not in ("ehr", "auditor")
        assert agent.get("who", {}).get("identifier", {}).get("system") != TOKEN_SYSTEM


def test_an_unauthenticated_request_records_where_it_came_from(server: Any, patient_x: int) -> None:
    assert server.client.get("/fhir/Patient/x").status_code == 401
    event = only_new(server, patient_x)
    client = server.requestor(event)
    assert client["name"] != "fhir-twin"
    assert client.get("network", {}).get("address") == server.address


def test_reads_of_what_does_not_exist_are_recorded_and_change_nothing(server: Any, patient_x: int) -> None:
    assert server.client.get("/fhir/Patient/nobody", headers=server.ehr).status_code == 404
    assert server.client.get("/fhir/Patient/x/_history/9", headers=server.ehr).status_code == 404
    assert server.client.get("/fhir/Observation/none", headers=server.ehr).status_code == 404
    new = server.events_since(patient_x)
    assert [(server.subtype(event), event["outcome"]) for event in new] == [
        ("read", "4"),
        ("vread", "4"),
        ("read", "4"),
    ]
    assert all(event["outcomeDesc"].startswith("404") for event in new)
    assert "Patient/nobody" in server.whats(new[0])
    assert server.whats(new[2]) == ["Observation/none"]
    # Still served, still intact.
    assert server.client.get("/fhir/Patient/x", headers=server.ehr).status_code == 200
    assert server.client.get("/fhir/Patient/nobody", headers=server.ehr).status_code == 404
    server.flush()
    verdict = verify_trail(services_of(server.app).interactions.repository)
    assert verdict.finding is None and verdict.checked == server.chain_count() == 1 + 3 + 2


def test_a_patient_the_trail_refers_to_can_still_be_deleted(server: Any, patient_x: int) -> None:
    for _ in range(3):
        assert server.client.get("/fhir/Patient/x", headers=server.ehr).status_code == 200
    recorded = server.chain_count()
    assert len(server.audit_ids("patient=Patient/x")) == recorded == 4

    answer = server.client.delete("/fhir/Patient/x", headers=server.ehr)
    assert answer.status_code in (200, 204), answer.get_json()
    assert server.client.get("/fhir/Patient/x", headers=server.ehr).status_code == 410
    # The trail about Patient/x outlives it, and records its deletion too.
    server.flush()
    about_x = server.audit_ids("entity=Patient/x")
    assert len(about_x) >= recorded + 1
    deletion = [event for event in server.events() if server.subtype(event) == "delete"]
    assert len(deletion) == 1 and deletion[0]["id"] in about_x
    assert server.whats(deletion[0])[0] == "Patient/x/_history/2"
    repository = services_of(server.app).interactions.repository
    assert verify_trail(repository).finding is None


def test_with_auditing_off_nothing_is_recorded(make_app: Any) -> None:
    app = make_app(auth_mode="none", doctor=False, audit=False)
    client = app.test_client()
    assert client.put("/fhir/Patient/x", json={"resourceType": "Patient", "id": "x"}).status_code == 201
    assert client.get("/fhir/Patient/x").status_code == 200
    assert services_of(app).recorder is None
    assert client.get("/fhir/AuditEvent?_summary=count").get_json()["total"] == 0


def test_a_conditional_create_that_finds_the_patient_names_it(server: Any) -> None:
    patient = {"resourceType": "Patient", "id": "x", "identifier": [{"system": "urn:mrn", "value": "123"}]}
    assert server.client.put("/fhir/Patient/x", json=patient, headers=server.ehr).status_code == 201
    mark = server.chain_count()
    answer = server.client.post(
        "/fhir/Patient",
        json={key: value for key, value in patient.items() if key != "id"},
        headers={**server.ehr, "If-None-Exist": "identifier=urn:mrn|123"},
    )
    assert answer.status_code == 200
    assert answer.get_json()["id"] == "x"  # Patient/x's record, disclosed
    event = only_new(server, mark)
    assert server.subtype(event) == "create" and event["outcome"] == "0"
    assert "Patient/x" in server.whats(event)


def test_record_ids_are_version_7_uuids_that_sort_as_the_interactions_happened(server: Any, patient_x: int) -> None:
    """Time-ordered ids (RFC 9562 UUIDv7) put each batch of records at the end of every index.
    The chain's order differs: a write's record is chained at once, the reads' with their batch."""
    # The reads' batch is written by ``events_since`` below, after the update, however slow the machine.
    services_of(server.app).recorder.stop()
    for _ in range(5):
        assert server.client.get("/fhir/Patient/x", headers=server.ehr).status_code == 200
    assert (
        server.client.put(
            "/fhir/Patient/x", json={"resourceType": "Patient", "id": "x"}, headers=server.ehr
        ).status_code
        == 200
    )

    events = server.events_since(patient_x)
    assert [server.subtype(event) for event in events] == ["update"] + ["read"] * 5
    update, reads = events[0]["id"], [event["id"] for event in events[1:]]
    assert all(uuid.UUID(event_id).version == 7 for event_id in [update, *reads])
    # The reads in the order they were made (the chain's, within their batch), the update after.
    assert reads == sorted(reads)
    assert update > max(reads)
    # Each id's 48 bits of time are the millisecond its record says it was recorded.
    for event in events:
        milliseconds = int(event["id"].replace("-", "")[:12], 16)
        recorded = datetime.fromisoformat(event["recorded"])
        assert milliseconds == round(recorded.timestamp() * 1000)
