"""The life of an R4 Subscription (subscription.html "Subscription Status"): its ``end`` honoured,
and one set ``off`` or deleted sent nothing more, what it was owed dropped.

Each test has a second, ``control`` Subscription on the same receiver: once the control has been
told of a later write, the subscription under test would have been told too, so "nothing was
sent" is checked without waiting an arbitrary time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import services_of
from fhir_twin.store import subscription_outbox as outbox
from tests.subscriptions.receiver import Receiver, eventually


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(subscription_retry_delay_ms=50, subscription_max_attempts=1000)


def subscribe(client: FlaskClient, receiver: Receiver, path: str, **extra: Any) -> dict[str, Any]:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "lifecycle",
        "criteria": "Patient",
        "channel": {"type": "rest-hook", "endpoint": f"http://127.0.0.1:{receiver.port}/{path}"},
        **extra,
    }
    response = client.post("/fhir/Subscription", json=body)
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json())


def write_patient(client: FlaskClient) -> None:
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}).status_code == 201


def received(receiver: Receiver, path: str) -> int:
    return sum(got.path == f"/{path}" for got in receiver.received)


def in_a_moment(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="milliseconds")


def status(client: FlaskClient, subscription: dict[str, Any]) -> str:
    return str(client.get(f"/fhir/Subscription/{subscription['id']}").get_json()["status"])


@pytest.mark.audited
def test_after_its_end_a_subscription_is_turned_off_by_the_server_and_told_nothing(
    make_app: Callable[..., Flask], receiver: Receiver
) -> None:
    client = make_app().test_client()
    ending = subscribe(client, receiver, "ending", end=in_a_moment(5))
    control = subscribe(client, receiver, "control")
    write_patient(client)
    eventually(lambda: received(receiver, "ending") == 1 and received(receiver, "control") == 1)

    eventually(lambda: status(client, ending) == "off", timeout=10)
    turned_off = client.get(f"/fhir/Subscription/{ending['id']}").get_json()
    assert turned_off["meta"]["versionId"] == "2"
    assert "error" not in turned_off
    assert turned_off["end"] == ending["end"]
    events = client.get("/fhir/AuditEvent?agent-name=fhir-twin subscriptions")
    assert events.get_json()["total"] >= 1, events.get_json()

    write_patient(client)
    eventually(lambda: received(receiver, "control") == 2)
    assert received(receiver, "ending") == 1
    assert status(client, control) == "active"


def test_what_was_owed_when_the_end_passes_is_dropped(app: Flask, client: FlaskClient, receiver: Receiver) -> None:
    receiver.status = 503  # the ward system is down until after the end
    ending = subscribe(client, receiver, "ending", end=in_a_moment(4))
    write_patient(client)
    assert outbox.pending(services_of(app).repository, ending["id"]) == 1
    eventually(lambda: status(client, ending) == "off", timeout=10)
    assert outbox.pending(services_of(app).repository, ending["id"]) == 0
    receiver.status = 200
    subscribe(client, receiver, "control")
    write_patient(client)
    eventually(lambda: received(receiver, "control") == 1)
    assert received(receiver, "ending") == 0


@pytest.mark.parametrize("stop", ["off", "delete"])
def test_a_subscription_set_off_or_deleted_is_told_nothing_more_and_owed_nothing(
    app: Flask, client: FlaskClient, receiver: Receiver, stop: str
) -> None:
    ward = Receiver(status=503).start()  # down while the notifications are owed
    try:
        stopping = subscribe(client, ward, "stopping")
        write_patient(client)
        write_patient(client)
        repository = services_of(app).repository
        assert outbox.pending(repository, stopping["id"]) == 2
        if stop == "off":
            changed = {**stopping, "status": "off"}
            assert client.put(f"/fhir/Subscription/{stopping['id']}", json=changed).status_code == 200
        else:
            assert client.delete(f"/fhir/Subscription/{stopping['id']}").status_code == 200
        assert outbox.pending(repository, stopping["id"]) == 0

        # Once the control is told of a later write, an attempt in flight at the stop has ended.
        subscribe(client, receiver, "control")
        write_patient(client)
        eventually(lambda: received(receiver, "control") == 1)
        ward.status = 200
        write_patient(client)
        eventually(lambda: received(receiver, "control") == 2)
        assert ward.received == []
        assert outbox.pending(repository, stopping["id"]) == 0
    finally:
        ward.stop()


def test_a_subscription_turned_back_on_is_told_of_new_writes_only(
    app: Flask, client: FlaskClient, receiver: Receiver
) -> None:
    paused = subscribe(client, receiver, "paused")
    off = client.put(f"/fhir/Subscription/{paused['id']}", json={**paused, "status": "off"})
    assert off.status_code == 200
    write_patient(client)  # while off: owes nothing
    again = client.put(f"/fhir/Subscription/{paused['id']}", json={**paused, "status": "requested"})
    assert again.status_code == 200 and again.get_json()["status"] == "active"
    write_patient(client)
    eventually(lambda: received(receiver, "paused") == 1)
    write_patient(client)
    # Each Subscription's notifications go in order: once nothing is owed, all were sent.
    eventually(
        lambda: outbox.pending(services_of(app).repository, paused["id"]) == 0 and received(receiver, "paused") >= 2
    )
    assert received(receiver, "paused") == 2
