"""The CDS Hooks 2.0 service (cds-hooks.hl7.org/2.0): discovery, a ``patient-view`` call answered
from this server's twin, from a prefetch or from the client's FHIR server, feedback, bad requests
and the audit trail."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import services_of
from tests.live_server import LiveServer, make_token
from tests.ml.doctor_data import (
    MEDIUM,
    NEWS2_VECTORS,
    Vitals,
    ago,
    cardiovascular_set,
    infection,
    news2_set,
    patient,
    put,
    transaction,
)

SERVICE = "/cds-services/fhir-twin-patient-view"
HIGH = NEWS2_VECTORS[3][0]
# High NEWS2 (11) with systolic BP 95 and respiratory rate 24: qSOFA 2 of 3, positive.
SEPTIC = Vitals(24, 93, "O2", 95, 115, True, 38.5)


def hook_request(patient_id: str = "p1", **more: Any) -> dict[str, Any]:
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": patient_id}} | more


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    # The live Doctor stays off: a call must not depend on what it stored (and stores nothing).
    return make_app(doctor=False)


def record(client: FlaskClient, patient_id: str, vitals: Any = MEDIUM) -> None:
    put(client, patient(patient_id))
    transaction(
        client,
        [
            infection(patient_id),
            *news2_set(patient_id, vitals, ago(minutes=10)),
            *cardiovascular_set(patient_id, ago(hours=2)),
        ],
    )


def versions(client: FlaskClient) -> int:
    """How many versions of anything are stored."""
    return len(client.get("/fhir/_history?_count=1000").get_json().get("entry", []))


def call(client: FlaskClient, body: Any, **headers: str) -> Any:
    response = client.post(SERVICE, json=body, headers=headers)
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()) == {"cards"}
    return response.get_json()["cards"]


def comparable(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cards without what differs call to call (uuid) or by data source (the patient page link)."""
    return [{key: value for key, value in card.items() if key not in ("uuid", "links")} for card in found]


def test_discovery_describes_the_patient_view_service(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    (service,) = response.get_json()["services"]
    assert service["hook"] == "patient-view"
    assert service["id"] == "fhir-twin-patient-view"
    assert service["title"] and service["description"] and service["usageRequirements"]
    prefetch = service["prefetch"]
    assert prefetch["patient"] == "Patient/{{context.patientId}}"
    for key in ("observation", "condition", "medicationRequest"):
        assert prefetch[key].endswith("?patient={{context.patientId}}")


def test_a_call_answers_cards_from_the_stored_twin_and_stores_nothing(client: FlaskClient) -> None:
    record(client, "p1", SEPTIC)
    before = versions(client)
    found = call(client, hook_request())
    assert [card["indicator"] for card in found] == ["critical", "warning", "info"]
    news2, qsofa, pce = found
    assert news2["summary"] == "NEWS2 11: high clinical risk"
    assert qsofa["summary"].startswith("qSOFA 2 of 3, positive")
    assert pce["summary"].startswith("10-year ASCVD risk ")
    for card in found:
        uuid.UUID(card["uuid"])
        assert len(card["summary"]) < 140
        assert card["source"]["url"] == f"http://localhost/twin/models/{card['source']['url'].rsplit('/', 1)[1]}"
        assert client.get(card["source"]["url"].removeprefix("http://localhost")).status_code == 200
        assert card["links"] == [
            {"label": "The patient's twin in fhir-twin", "url": "http://localhost/app/patients/p1", "type": "absolute"}
        ]
    assert versions(client) == before


def test_a_medium_news2_is_a_warning(client: FlaskClient) -> None:
    record(client, "p1", MEDIUM)
    news2 = call(client, hook_request())[0]
    assert (news2["indicator"], news2["summary"]) == ("warning", "NEWS2 6: medium clinical risk")


def test_a_patient_with_nothing_recorded_gets_no_cards(client: FlaskClient) -> None:
    put(client, patient("p2"))
    assert call(client, hook_request("p2")) == []


def test_an_unknown_patient_is_404(client: FlaskClient) -> None:
    assert client.post(SERVICE, json=hook_request("nobody")).status_code == 404


def searchset(client: FlaskClient, query: str) -> dict[str, Any]:
    return client.get(f"/fhir/{query}").get_json()


def prefetch_of(client: FlaskClient, patient_id: str, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a CDS client would prefetch by the service's templates, read from this server."""
    (service,) = client.get("/cds-services").get_json()["services"]
    found = {}
    for key, template in service["prefetch"].items():
        if key in leave_out:
            continue
        query = template.replace("{{context.patientId}}", patient_id)
        found[key] = client.get(f"/fhir/{query}").get_json()
    return found


def test_prefetch_and_the_stored_twin_give_the_same_cards(client: FlaskClient) -> None:
    record(client, "p1", HIGH)
    stored = call(client, hook_request())
    prefetched = call(client, hook_request(prefetch=prefetch_of(client, "p1")))
    assert comparable(prefetched) == comparable(stored)
    # A key left out, or sent as null, is fetched.
    partial = prefetch_of(client, "p1", leave_out=("observation",)) | {"condition": None}
    assert comparable(call(client, hook_request(prefetch=partial))) == comparable(stored)


def test_a_prefetch_is_read_in_memory_and_stored_nowhere(client: FlaskClient) -> None:
    record(client, "p1", HIGH)
    given = prefetch_of(client, "p1")
    given["patient"] = {**given["patient"], "id": "elsewhere"}
    for key in ("observation", "condition", "medicationRequest"):
        for entry in given[key].get("entry", []):
            entry["resource"]["subject"] = {"reference": "Patient/elsewhere"}
    before = versions(client)
    found = call(client, hook_request("elsewhere", prefetch=given))
    assert found[0]["summary"] == "NEWS2 10: high clinical risk"
    assert versions(client) == before
    assert client.get("/fhir/Patient/elsewhere").status_code == 404


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        ({"context": {"patientId": "p1"}, "hookInstance": str(uuid.uuid4())}, "hook"),
        (hook_request(hook="order-select"), "hook"),
        (hook_request(hookInstance="not-a-uuid"), "hookInstance"),
        ({"hook": "patient-view", "hookInstance": str(uuid.uuid4())}, "context"),
        ({"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {}}, "context.patientId"),
        (
            {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": "a b"}},
            "context.patientId",
        ),
        (hook_request(prefetch=[]), "prefetch"),
        (hook_request(prefetch={"observation": {"resourceType": "Patient"}}), "prefetch.observation"),
        (hook_request(prefetch={"patient": {"resourceType": "Patient", "id": "other"}}), "prefetch.patient"),
        (hook_request(prefetch={"labs": None}), "prefetch.labs"),
        (hook_request(fhirAuthorization={"access_token": "x", "token_type": "Bearer"}), "fhirAuthorization"),
        (hook_request(fhirServer="http://ehr.example/fhir"), "fhirServer"),
        (hook_request(fhirServer="ftp://ehr.example/fhir"), "fhirServer"),
        (
            hook_request(fhirServer="https://ehr.example/fhir", fhirAuthorization={"token_type": "Bearer"}),
            "fhirAuthorization",
        ),
    ],
)
def test_a_malformed_request_is_400_naming_what_is_wrong(
    client: FlaskClient, body: dict[str, Any], expression: str
) -> None:
    response = client.post(SERVICE, json=body)
    assert response.status_code == 400, response.get_json()
    (issue,) = response.get_json()["issue"]
    assert issue["expression"] == [expression]
    assert issue["diagnostics"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [("{not json", "application/json"), ("[]", "application/json"), ("hook=patient-view", "text/plain")],
)
def test_a_body_that_is_no_json_object_is_400(client: FlaskClient, data: str, content_type: str) -> None:
    response = client.post(SERVICE, data=data, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_an_unknown_service_is_404(client: FlaskClient) -> None:
    assert client.post("/cds-services/nothing-here", json=hook_request()).status_code == 404
    assert client.post("/cds-services/nothing-here/feedback", json={"feedback": []}).status_code == 404


def feedback_item(card: str, **more: Any) -> dict[str, Any]:
    return {"card": card, "outcome": "accepted", "outcomeTimestamp": "2026-03-02T09:10:00Z"} | more


def test_feedback_is_accepted(client: FlaskClient) -> None:
    record(client, "p1", HIGH)
    card = call(client, hook_request())[0]["uuid"]
    accepted = {"feedback": [feedback_item(card)]}
    assert client.post(f"{SERVICE}/feedback", json=accepted).status_code == 200
    overridden = feedback_item(
        card,
        outcome="overridden",
        overrideReason={
            "reason": {"code": "already-seen", "system": "https://ehr.example/reasons"},
            "userComment": "seen",
        },
    )
    assert client.post(f"{SERVICE}/feedback", json={"feedback": [overridden]}).status_code == 200


def test_feedback_on_a_card_this_service_never_issued_is_400(client: FlaskClient) -> None:
    record(client, "p1", HIGH)
    card = call(client, hook_request())[0]["uuid"]
    body = {"feedback": [feedback_item(card), feedback_item(str(uuid.uuid4()))]}
    response = client.post(f"{SERVICE}/feedback", json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["feedback[1].card"]
    assert "no card this service returned" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.audited
def test_feedback_to_another_server_process_names_the_cards_patient(make_app: Callable[..., Flask]) -> None:
    issuing = make_app(doctor=False)
    record(issuing.test_client(), "p1", HIGH)
    card = call(issuing.test_client(), hook_request())[0]["uuid"]
    # Another server on the same database (another worker process) takes the feedback.
    other = make_app(doctor=False)
    assert other.test_client().post(f"{SERVICE}/feedback", json={"feedback": [feedback_item(card)]}).status_code == 200
    services_of(other).recorder.flush()
    events = other.test_client().get("/fhir/AuditEvent?patient=p1&_count=100").get_json().get("entry", [])
    subtypes = {coding["code"] for entry in events for coding in entry["resource"].get("subtype", [])}
    assert "cds-hooks-patient-view-feedback" in subtypes


def test_issued_cards_are_forgotten_after_the_retention(make_app: Callable[..., Flask]) -> None:
    client = make_app(doctor=False, cds_card_retention="PT0S").test_client()
    record(client, "p1", HIGH)
    card = call(client, hook_request())[0]["uuid"]
    call(client, hook_request())  # issuing again forgets what is past the retention
    response = client.post(f"{SERVICE}/feedback", json={"feedback": [feedback_item(card)]})
    assert response.status_code == 400
    assert "cds_card_retention" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        ({}, "feedback"),
        ({"feedback": []}, "feedback"),
        ({"feedback": [feedback_item("nope")]}, "feedback[0].card"),
        ({"feedback": [feedback_item(str(uuid.uuid4()), outcome="ignored")]}, "feedback[0].outcome"),
        (
            {"feedback": [feedback_item(str(uuid.uuid4()), outcomeTimestamp="yesterday")]},
            "feedback[0].outcomeTimestamp",
        ),
        (
            {"feedback": [feedback_item(str(uuid.uuid4()), acceptedSuggestions=[{"label": "x"}])]},
            "feedback[0].acceptedSuggestions",
        ),
        (
            {"feedback": [feedback_item(str(uuid.uuid4()), overrideReason={"userComment": "no"})]},
            "feedback[0].overrideReason",
        ),
    ],
)
def test_malformed_feedback_is_400(client: FlaskClient, body: dict[str, Any], expression: str) -> None:
    response = client.post(f"{SERVICE}/feedback", json=body)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == [expression]


@pytest.mark.audited
def test_each_call_and_its_feedback_leave_an_audit_event_naming_the_patient(make_app: Callable[..., Flask]) -> None:
    app = make_app(doctor=False)
    client = app.test_client()
    record(client, "p1", HIGH)
    card = call(client, hook_request())[0]["uuid"]
    assert client.post(f"{SERVICE}/feedback", json={"feedback": [feedback_item(card)]}).status_code == 200
    assert client.post(SERVICE, json=hook_request(hook="order-select")).status_code == 400
    services_of(app).recorder.flush()
    events = [entry["resource"] for entry in client.get("/fhir/AuditEvent?patient=p1&_count=100").get_json()["entry"]]
    operations = {
        coding["code"]: event
        for event in events
        for coding in event.get("subtype", [])
        if coding["code"].startswith("cds-hooks")
    }
    assert set(operations) == {"cds-hooks-patient-view", "cds-hooks-patient-view-feedback"}
    for event in operations.values():
        assert event["action"] == "R"
        assert {"reference": "Patient/p1"} in [entity.get("what") for entity in event["entity"]]
    refused = [
        entry["resource"]
        for entry in client.get("/fhir/AuditEvent?outcome=4&_count=100").get_json().get("entry", [])
        if any(coding["code"] == "cds-hooks-patient-view" for coding in entry["resource"].get("subtype", []))
    ]
    assert refused


@pytest.fixture
def live_fhir(database_url: str) -> Iterator[tuple[str, str]]:
    """Another FHIR server (a real ``fhir-twin serve``) on the test database, and a token of it."""
    token = make_token(database_url, "system/*.rs")
    server = LiveServer(database_url).start()
    try:
        yield server.base, token
    finally:
        server.stop()


def test_a_call_reads_the_clients_fhir_server_with_its_token(
    make_app: Callable[..., Flask], live_fhir: tuple[str, str]
) -> None:
    base, token = live_fhir
    client = make_app(doctor=False, cds_fhir_servers=base).test_client()
    record(client, "p1", HIGH)
    stored = call(client, hook_request())
    authorization = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "system/*.rs",
        "subject": "ehr",
    }
    remote = call(client, hook_request(fhirServer=base, fhirAuthorization=authorization))
    assert comparable(remote) == comparable(stored)
    # A patient of another server has no page here: no link that would open another patient.
    assert all("links" not in card for card in remote)
    # The token is forwarded: a wrong one is refused by that server, and the call fails saying so.
    wrong = {**authorization, "access_token": "ftw_wrong"}
    response = client.post(SERVICE, json=hook_request(fhirServer=base, fhirAuthorization=wrong))
    assert response.status_code == 503
    assert "answered 401" in response.get_json()["issue"][0]["diagnostics"]
