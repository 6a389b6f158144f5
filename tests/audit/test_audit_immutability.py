"""AuditEvents are written by the server alone: through the API they are read-only, whoever asks
and however (a plain request, a Bundle entry, a conditional write)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fhir_twin.app import services_of
from fhir_twin.audit.trail import verify_trail

pytestmark = pytest.mark.audited


@pytest.fixture
def event(server: Any) -> dict[str, Any]:
    """A stored AuditEvent, as the auditor reads it."""
    server.client.put("/fhir/Patient/x", json={"resourceType": "Patient", "id": "x"}, headers=server.ehr)
    server.flush()
    (found,) = server.audit_search("_count=10")["entry"]
    return found["resource"]


def unchanged(server: Any, event: dict[str, Any]) -> None:
    answer = server.client.get(f"/fhir/AuditEvent/{event['id']}", headers=server.auditor)
    assert answer.status_code == 200
    assert answer.get_json() == event
    assert answer.headers["ETag"] == 'W/"1"'
    history = server.client.get(f"/fhir/AuditEvent/{event['id']}/_history", headers=server.auditor).get_json()
    assert history["total"] == 1
    server.flush()
    assert verify_trail(services_of(server.app).interactions.repository).finding is None


def allowed(answer: Any) -> set[str]:
    return {method.strip() for method in answer.headers["Allow"].split(",")}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
def test_an_audit_event_cannot_be_changed_or_deleted(server: Any, event: dict[str, Any], method: str) -> None:
    forged = {**event, "outcome": "0", "agent": [{"name": "someone else", "requestor": True}]}
    body: Any = forged
    content_type = "application/fhir+json"
    if method == "PATCH":
        body = [{"op": "replace", "path": "/action", "value": "R"}]
        content_type = "application/json-patch+json"
    mark = server.chain_count()
    answer = server.client.open(
        f"/fhir/AuditEvent/{event['id']}",
        method=method,
        data=json.dumps(body),
        content_type=content_type,
        headers=server.ehr,  # system/*.cruds: every other type it may change
    )
    assert answer.status_code == 405
    assert answer.get_json()["resourceType"] == "OperationOutcome"
    assert allowed(answer) == {"GET", "HEAD"}
    unchanged(server, event)
    # The attempt is itself recorded, as a refusal.
    (attempt,) = server.events_since(mark)[:1]
    assert attempt["outcome"] == "4" and attempt["outcomeDesc"].startswith("405")
    assert server.requestor(attempt)["name"] == "ehr"


def test_a_new_audit_event_cannot_be_posted(server: Any, event: dict[str, Any]) -> None:
    forged = {key: value for key, value in event.items() if key not in ("id", "meta")}
    answer = server.client.post("/fhir/AuditEvent", json=forged, headers=server.ehr)
    assert answer.status_code == 405
    assert "GET" in allowed(answer)
    server.flush()
    # The one record of a create is the refusal's own: nothing was created.
    created = [entry["resource"] for entry in server.audit_search("action=C")["entry"]]
    assert [(record["outcome"], record["outcomeDesc"][:3]) for record in created] == [("4", "405")]
    unchanged(server, event)


def test_the_refusal_of_a_post_does_not_allow_post(server: Any, event: dict[str, Any]) -> None:
    forged = {key: value for key, value in event.items() if key not in ("id", "meta")}
    answer = server.client.post("/fhir/AuditEvent", json=forged, headers=server.ehr)
    assert answer.status_code == 405
    assert "POST" not in allowed(answer)


def test_conditional_writes_to_the_trail_are_refused(server: Any, event: dict[str, Any]) -> None:
    answer = server.client.delete("/fhir/AuditEvent?outcome=0", headers=server.ehr)
    assert answer.status_code == 405
    answer = server.client.put(f"/fhir/AuditEvent?_id={event['id']}", json=event, headers=server.ehr)
    assert answer.status_code == 405
    unchanged(server, event)


def test_a_batch_cannot_change_the_trail(server: Any, event: dict[str, Any]) -> None:
    entries = [
        {"resource": {**event, "outcome": "8"}, "request": {"method": "PUT", "url": f"AuditEvent/{event['id']}"}},
        {"request": {"method": "DELETE", "url": f"AuditEvent/{event['id']}"}},
    ]
    answer = server.client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries}, headers=server.ehr
    )
    assert answer.status_code == 200
    statuses = [entry["response"]["status"] for entry in answer.get_json()["entry"]]
    assert [status.split()[0] for status in statuses] == ["405", "405"]
    unchanged(server, event)


def test_a_transaction_that_would_change_the_trail_fails_whole(server: Any, event: dict[str, Any]) -> None:
    entries = [
        {"resource": {"resourceType": "Patient", "id": "y"}, "request": {"method": "PUT", "url": "Patient/y"}},
        {"resource": {**event, "outcome": "8"}, "request": {"method": "PUT", "url": f"AuditEvent/{event['id']}"}},
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    answer = server.client.post("/fhir", json=bundle, headers=server.ehr)
    assert answer.status_code == 405
    assert server.client.get("/fhir/Patient/y", headers=server.ehr).status_code == 404
    unchanged(server, event)


def test_without_authentication_the_trail_is_still_read_only(make_app: Any) -> None:
    app = make_app(auth_mode="none", doctor=False)
    client = app.test_client()
    client.put("/fhir/Patient/x", json={"resourceType": "Patient", "id": "x"})
    services_of(app).recorder.flush()
    (entry,) = client.get("/fhir/AuditEvent").get_json()["entry"]
    event = entry["resource"]
    assert client.put(f"/fhir/AuditEvent/{event['id']}", json={**event, "outcome": "8"}).status_code == 405
    assert client.delete(f"/fhir/AuditEvent/{event['id']}").status_code == 405
    assert client.get(f"/fhir/AuditEvent/{event['id']}").get_json() == event
