"""R4 rest-hook Subscriptions: what a receiver gets, and what a bad Subscription is told."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import services_of
from fhir_twin.store import subscription_outbox as outbox
from tests.factories import bearer
from tests.subscriptions.receiver import Receiver, eventually

SECRET_URL = "https://www.medplum.com/fhir/StructureDefinition/subscription-secret"
FHIR_JSON = "application/fhir+json"


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(subscription_retry_delay_ms=100, subscription_max_attempts=3, subscription_timeout_ms=2000)


def subscription(endpoint: str, criteria: str = "Patient?gender=female", **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "test",
        "criteria": criteria,
        "channel": {"type": "rest-hook", "endpoint": endpoint, **channel},
    }


def create(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/fhir/{body['resourceType']}", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_a_requested_subscription_is_stored_active(client: FlaskClient, receiver: Receiver) -> None:
    stored = create(client, subscription(receiver.url))
    assert stored["status"] == "active"
    assert client.get(f"/fhir/Subscription/{stored['id']}").get_json()["status"] == "active"
    assert client.get("/fhir/Subscription?status=active").get_json()["total"] == 1


def test_a_matching_write_notifies_with_the_resource_headers_and_signature(
    client: FlaskClient, receiver: Receiver
) -> None:
    extension = [{"url": SECRET_URL, "valueString": "s3cret"}]
    body = subscription(receiver.url, payload=FHIR_JSON, header=["Authorization: Bearer abc", "X-Ward: 7"])
    create(client, {**body, "extension": extension})
    patient = create(client, {"resourceType": "Patient", "gender": "female"})
    eventually(lambda: len(receiver.received) == 1)
    got = receiver.received[0]
    assert got.path == "/hook"
    assert got.headers["content-type"] == FHIR_JSON
    assert got.headers["authorization"] == "Bearer abc"
    assert got.headers["x-ward"] == "7"
    assert json.loads(got.body)["id"] == patient["id"]
    assert json.loads(got.body)["meta"]["versionId"] == "1"
    expected = hmac.new(b"s3cret", got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-signature"] == expected


def test_without_a_payload_the_notification_has_no_body(client: FlaskClient, receiver: Receiver) -> None:
    create(client, subscription(receiver.url))
    create(client, {"resourceType": "Patient", "gender": "female"})
    eventually(lambda: len(receiver.received) == 1)
    assert receiver.received[0].body == b""
    assert "x-signature" not in receiver.received[0].headers


def test_a_write_that_does_not_match_notifies_nothing(app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    create(client, subscription(receiver.url))
    create(client, {"resourceType": "Patient", "gender": "male"})
    create(client, {"resourceType": "Practitioner", "gender": "female"})
    create(client, {"resourceType": "Patient", "gender": "female"})
    eventually(lambda: len(receiver.received) == 1)
    time.sleep(0.5)
    assert len(receiver.received) == 1
    assert outbox.pending(services_of(app).repository) == 0


def test_a_receiver_that_is_down_gets_its_notifications_later_in_order(
    make_app: Callable[..., Flask], receiver: Receiver
) -> None:
    client = make_app(subscription_retry_delay_ms=50, subscription_max_attempts=20).test_client()
    receiver.status = 503
    create(client, subscription(receiver.url, criteria="Patient", payload=FHIR_JSON))
    ids = [create(client, {"resourceType": "Patient", "gender": "female"})["id"] for _ in range(3)]
    time.sleep(0.4)
    receiver.status = 200
    eventually(lambda: len(receiver.received) == 3)
    assert [json.loads(got.body)["id"] for got in receiver.received] == ids


def test_repeated_failure_sets_the_subscription_to_error(app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    receiver.status = 500
    stored = create(client, subscription(receiver.url))
    create(client, {"resourceType": "Patient", "gender": "female"})

    def errored() -> bool:
        return client.get(f"/fhir/Subscription/{stored['id']}").get_json()["status"] == "error"

    eventually(errored)
    after = client.get(f"/fhir/Subscription/{stored['id']}").get_json()
    assert "500" in after["error"] and "3 attempts" in after["error"]
    assert after["meta"]["versionId"] == "2"
    assert outbox.pending(services_of(app).repository) == 0
    receiver.status = 200
    create(client, {"resourceType": "Patient", "gender": "female"})
    time.sleep(0.5)
    assert receiver.received == []


def test_a_rolled_back_write_owes_nothing(app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    create(client, subscription(receiver.url, criteria="Patient"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "gender": "female"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "gender": "nonsense"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    assert client.post("/fhir", json=bundle).status_code == 400
    assert outbox.pending(services_of(app).repository) == 0
    time.sleep(0.3)
    assert receiver.received == []


@pytest.mark.parametrize(
    ("change", "element", "words"),
    [
        ({"criteria": "Nonsense?x=1"}, "Subscription.criteria", "resource type"),
        ({"criteria": "Patient?colour=blue"}, "Subscription.criteria", "colour"),
        ({"criteria": "Observation?date=notadate"}, "Subscription.criteria", "date"),
        ({"criteria": "Patient?_include=Patient:organization"}, "Subscription.criteria", "_include"),
        ({"channel": {"type": "email", "endpoint": "mailto:a@b.c"}}, "Subscription.channel.type", "not supported"),
        ({"channel": {"type": "email"}}, "Subscription.channel.type", "rest-hook and websocket only"),
        ({"channel": {"type": "rest-hook", "endpoint": "ftp://x/y"}}, "Subscription.channel.endpoint", "http(s)"),
        (
            {"channel": {"type": "rest-hook", "endpoint": "http://x/y", "payload": "application/fhir+xml"}},
            "Subscription.channel.payload",
            "not supported",
        ),
        (
            {"channel": {"type": "rest-hook", "endpoint": "http://x/y", "header": ["no colon"]}},
            "Subscription.channel.header[0]",
            "Name: value",
        ),
        ({"extension": [{"url": SECRET_URL, "valueInteger": 3}]}, "Subscription.extension", "valueString"),
    ],
)
def test_a_subscription_the_server_cannot_honour_is_refused_naming_why(
    client: FlaskClient, change: dict[str, Any], element: str, words: str
) -> None:
    body = {**subscription("http://127.0.0.1:9/hook"), **change}
    response = client.post("/fhir/Subscription", json=body)
    assert response.status_code == 400, response.get_json()
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == [element]
    assert words in issue["diagnostics"]
    assert client.get("/fhir/Subscription").get_json()["total"] == 0
    update = client.put("/fhir/Subscription/s1", json={**body, "id": "s1"})
    assert update.status_code == 400


def test_only_a_credential_that_sees_every_match_may_subscribe(
    make_app: Callable[..., Flask], receiver: Receiver
) -> None:
    """A Subscription is sent every matching resource, whoever's: a patient-context token, which
    may search its own patient's record only, would be told of every other patient's."""
    app = make_app(auth_mode="tokens")
    client = app.test_client()
    body = subscription(receiver.url, "Observation?code=8867-4")
    patient = client.post("/fhir/Subscription", json=body, headers=bearer(app, "patient/*.cruds", "p1"))
    assert patient.status_code == 403
    assert "may search only its patient's" in patient.get_json()["issue"][0]["diagnostics"]
    narrow = client.post("/fhir/Subscription", json=body, headers=bearer(app, "user/Subscription.c"))
    assert narrow.status_code == 403
    system = bearer(app, "system/*.cruds")
    assert client.get("/fhir/Subscription", headers=system).get_json()["total"] == 0
    clinician = client.post(
        "/fhir/Subscription", json=body, headers=bearer(app, "user/Subscription.c user/Observation.s")
    )
    assert clinician.status_code == 201, clinician.get_json()
