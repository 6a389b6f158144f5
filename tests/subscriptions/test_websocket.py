"""R4 websocket Subscriptions with a real websocket client: bind, ping, refusals, clean-up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.sync.client import ClientConnection, connect

from fhir_twin.app import services_of
from fhir_twin.store import subscription_outbox as outbox
from fhir_twin.subscriptions import websocket
from fhir_twin.subscriptions.websocket import WebsocketChannel
from tests.factories import bearer
from tests.live_server import LiveServer, free_port, make_token
from tests.subscriptions.receiver import eventually

WEBSOCKET_EXTENSION = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"
ADMIN = "user/Subscription.cruds user/Patient.cruds"


@pytest.fixture
def app(make_app: Any) -> Iterator[Flask]:
    app = make_app(auth_mode="tokens", websocket_port=free_port())
    yield app
    channel(app).stop()


@pytest.fixture
def headers(app: Flask) -> dict[str, str]:
    return bearer(app, ADMIN)


def channel(app: Flask) -> WebsocketChannel:
    found = services_of(app).websocket
    assert found is not None
    return found


def url(app: Flask) -> str:
    return f"ws://127.0.0.1:{services_of(app).config.websocket_port}/websocket"


def token_of(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def subscribe(client: FlaskClient, headers: dict[str, str], criteria: str = "Patient?gender=female") -> str:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "ward board",
        "criteria": criteria,
        "channel": {"type": "websocket"},
    }
    response = client.post("/fhir/Subscription", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["status"] == "active"
    return str(response.get_json()["id"])


def write_patient(client: FlaskClient, headers: dict[str, str], gender: str) -> None:
    response = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": gender}, headers=headers)
    assert response.status_code == 201, response.get_json()


@contextmanager
def bind(app: Flask, subscription_id: str, token: str) -> Iterator[ClientConnection]:
    """A client connected and bound to the Subscription."""
    with connect(url(app), open_timeout=10) as socket:
        socket.send(f"bind {subscription_id} {token}")
        assert socket.recv(timeout=10) == f"bound {subscription_id}"
        yield socket


def refused(socket: ClientConnection) -> tuple[int, str]:
    """The close code and reason the server closed ``socket`` with."""
    with pytest.raises(ConnectionClosed) as closed:
        socket.recv(timeout=10)
    frame = closed.value.rcvd
    assert frame is not None
    return frame.code, frame.reason


def test_a_matching_write_pings_the_bound_client_and_another_does_not(
    app: Flask, client: FlaskClient, headers: dict[str, str]
) -> None:
    subscription_id = subscribe(client, headers)
    with bind(app, subscription_id, token_of(headers)) as socket:
        write_patient(client, headers, "male")
        write_patient(client, headers, "female")
        assert socket.recv(timeout=10) == f"ping {subscription_id}"
        eventually(lambda: outbox.pending(services_of(app).repository, subscription_id) == 0)
        # The male patient owed nothing: one ping, and nothing after it.
        with pytest.raises(TimeoutError):
            socket.recv(timeout=0.5)


def test_every_bound_client_is_pinged(app: Flask, client: FlaskClient, headers: dict[str, str]) -> None:
    subscription_id = subscribe(client, headers)
    token = token_of(headers)
    with bind(app, subscription_id, token) as first, bind(app, subscription_id, token) as second:
        write_patient(client, headers, "female")
        assert first.recv(timeout=10) == f"ping {subscription_id}"
        assert second.recv(timeout=10) == f"ping {subscription_id}"


def test_the_token_may_come_in_the_upgrade_request(app: Flask, client: FlaskClient, headers: dict[str, str]) -> None:
    subscription_id = subscribe(client, headers)
    with connect(url(app), additional_headers=headers, open_timeout=10) as socket:
        socket.send(f"bind {subscription_id}")
        assert socket.recv(timeout=10) == f"bound {subscription_id}"


def test_a_bad_token_is_refused(app: Flask, client: FlaskClient, headers: dict[str, str]) -> None:
    subscription_id = subscribe(client, headers)
    for bind_message in (f"bind {subscription_id} not-a-token", f"bind {subscription_id}"):
        with connect(url(app), open_timeout=10) as socket:
            socket.send(bind_message)
            code, reason = refused(socket)
        assert code == CloseCode.POLICY_VIOLATION
        assert "access token" in reason
    assert channel(app).bound(subscription_id) == 0


def test_a_token_that_may_not_read_the_subscription_is_refused(
    app: Flask, client: FlaskClient, headers: dict[str, str]
) -> None:
    subscription_id = subscribe(client, headers)
    with connect(url(app), open_timeout=10) as socket:
        socket.send(f"bind {subscription_id} {token_of(bearer(app, 'user/Patient.rs'))}")
        code, reason = refused(socket)
    assert code == CloseCode.POLICY_VIOLATION
    assert reason == f"the access token may not read Subscription/{subscription_id}"


def test_an_unknown_or_rest_hook_subscription_is_refused(
    app: Flask, client: FlaskClient, headers: dict[str, str]
) -> None:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "hook",
        "criteria": "Patient",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/hook"},
    }
    rest_hook = client.post("/fhir/Subscription", json=body, headers=headers).get_json()["id"]
    expected = {
        "no-such-subscription": "no Subscription no-such-subscription",
        rest_hook: f"Subscription/{rest_hook} has channel rest-hook, not websocket",
    }
    for subscription_id, reason in expected.items():
        with connect(url(app), open_timeout=10) as socket:
            socket.send(f"bind {subscription_id} {token_of(headers)}")
            assert refused(socket) == (CloseCode.POLICY_VIOLATION, reason)


def test_a_message_other_than_bind_is_refused(app: Flask) -> None:
    with connect(url(app), open_timeout=10) as socket:
        socket.send("hello")
        code, reason = refused(socket)
    assert code == CloseCode.POLICY_VIOLATION
    assert "bind" in reason


def test_a_client_gone_is_unbound_and_what_is_owed_meanwhile_waits_for_the_next(
    app: Flask, client: FlaskClient, headers: dict[str, str]
) -> None:
    subscription_id = subscribe(client, headers)
    with bind(app, subscription_id, token_of(headers)):
        eventually(lambda: channel(app).bound(subscription_id) == 1)
    eventually(lambda: channel(app).bound(subscription_id) == 0)
    write_patient(client, headers, "female")
    write_patient(client, headers, "female")
    assert outbox.pending(services_of(app).repository, subscription_id) == 2
    with bind(app, subscription_id, token_of(headers)) as socket:
        assert [socket.recv(timeout=10), socket.recv(timeout=10)] == [f"ping {subscription_id}"] * 2
        eventually(lambda: outbox.pending(services_of(app).repository, subscription_id) == 0)


def test_a_websocket_subscription_has_no_endpoint(client: FlaskClient, headers: dict[str, str]) -> None:
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "board",
        "criteria": "Patient",
        "channel": {"type": "websocket", "endpoint": "ws://elsewhere.example/ws"},
    }
    response = client.post("/fhir/Subscription", json=body, headers=headers)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == ["Subscription.channel.endpoint"]
    assert client.get("/fhir/Subscription", headers=headers).get_json()["total"] == 0


def test_the_capability_statement_names_the_websocket_url(app: Flask, client: FlaskClient) -> None:
    rest = client.get("/fhir/metadata").get_json()["rest"][0]
    port = channel(app).config.websocket_port
    assert {"url": WEBSOCKET_EXTENSION, "valueUri": f"ws://localhost:{port}/websocket"} in rest["extension"]


def test_fhir_twin_serve_runs_the_websocket_server(database_url: str) -> None:
    token = make_token(database_url, "user/Subscription.cruds user/Patient.cruds")
    port = free_port()
    server = LiveServer(database_url, workers=2, websocket_port=str(port)).start()
    try:
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        metadata = requests.get(f"{server.base}/metadata", timeout=30).json()
        advertised = metadata["rest"][0]["extension"][0]
        assert advertised == {"url": WEBSOCKET_EXTENSION, "valueUri": f"ws://127.0.0.1:{port}/websocket"}
        body = {"resourceType": "Subscription", "status": "requested", "reason": "board", "criteria": "Patient"}
        created = requests.post(
            f"{server.base}/Subscription", json={**body, "channel": {"type": "websocket"}}, headers=auth, timeout=30
        )
        assert created.status_code == 201, created.text
        subscription_id = created.json()["id"]
        with connect(advertised["valueUri"], open_timeout=10) as socket:
            socket.send(f"bind {subscription_id} {token}")
            assert socket.recv(timeout=10) == f"bound {subscription_id}"
            patient = {"resourceType": "Patient"}
            assert requests.post(f"{server.base}/Patient", json=patient, headers=auth, timeout=30).status_code == 201
            assert socket.recv(timeout=10) == f"ping {subscription_id}"
    finally:
        server.stop()


def test_a_socket_that_binds_nothing_is_closed(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(websocket, "BIND_TIMEOUT", 0.3)
    with connect(url(app), open_timeout=10) as socket:
        code, reason = refused(socket)
    assert code == CloseCode.POLICY_VIOLATION
    assert "no bind within" in reason


def test_past_the_limit_a_new_socket_is_told_to_come_back_later(
    app: Flask, client: FlaskClient, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(websocket, "MAX_SOCKETS", 1)
    subscription_id = subscribe(client, headers)
    with bind(app, subscription_id, token_of(headers)):
        with connect(url(app), open_timeout=10) as second:
            code, reason = refused(second)
        assert code == CloseCode.TRY_AGAIN_LATER
        assert "too many" in reason
    # The first gone (its count is given back before it is unbound), a socket is taken again.
    eventually(lambda: channel(app).bound(subscription_id) == 0)
    with bind(app, subscription_id, token_of(headers)):
        pass


def test_a_message_larger_than_a_bind_closes_the_socket(app: Flask) -> None:
    with connect(url(app), open_timeout=10) as socket:
        socket.send("bind " + "x" * (websocket.MAX_MESSAGE + 1))
        code, _reason = refused(socket)
    assert code == CloseCode.MESSAGE_TOO_BIG


def test_a_websocket_subscription_is_refused_by_a_server_with_no_websocket_channel(make_app: Any) -> None:
    """Accepted, it would wait for a bind nobody can make: nothing would ever be pinged."""
    app = make_app(auth_mode="none")
    body = {"resourceType": "Subscription", "status": "requested", "reason": "r", "criteria": "Observation"}
    response = app.test_client().post("/fhir/Subscription", json={**body, "channel": {"type": "websocket"}})
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["code"] == "not-supported"
    assert issue["expression"] == ["Subscription.channel.type"]
    assert "websocket_port" in issue["diagnostics"]
    assert app.test_client().get("/fhir/Subscription").get_json().get("total") == 0


def test_a_websocket_subscription_may_be_set_off_on_a_server_with_no_websocket_channel(make_app: Any) -> None:
    """Refusing a new one must not trap an existing one: turning it off needs no channel."""
    offering = make_app(auth_mode="none", websocket_port=free_port()).test_client()
    body = {"resourceType": "Subscription", "status": "requested", "reason": "r", "criteria": "Observation"}
    made = offering.post("/fhir/Subscription", json={**body, "channel": {"type": "websocket"}}).get_json()
    elsewhere = make_app(auth_mode="none").test_client()  # another server on the database, with no port
    off = elsewhere.put(f"/fhir/Subscription/{made['id']}", json={**made, "status": "off"})
    assert off.status_code == 200, off.get_json()
    assert off.get_json()["status"] == "off"
    again = elsewhere.put(f"/fhir/Subscription/{made['id']}", json={**made, "status": "requested"})
    assert again.status_code == 400
