"""``/twin/me``: who the credential is, and what the web app may show it, as the Guard decides."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from fhir_twin.app import services_of
from tests.factories import Server, bearer

pytestmark = pytest.mark.audited


@pytest.fixture
def server(make_app: Any) -> Server:
    found = Server(make_app(auth_mode="tokens", doctor=False))
    found.put({"resourceType": "Patient", "id": "p1"})
    return found


def me(server: Server, headers: dict[str, str]) -> dict[str, Any]:
    answer = server.client.get("/twin/me", headers=headers)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


@pytest.mark.parametrize(
    ("scope", "patient", "can"),
    [
        ("user/*.rs", None, {"patients": True, "audit": True, "whatif": True}),
        ("user/Patient.rs user/Observation.rs", None, {"patients": True, "audit": False, "whatif": False}),
        ("patient/*.rs", "p1", {"patients": True, "audit": False, "whatif": True}),
        ("user/AuditEvent.rs user/Provenance.rs", None, {"patients": False, "audit": True, "whatif": False}),
        ("system/*.cruds", None, {"patients": True, "audit": True, "whatif": True}),
    ],
)
def test_what_each_credential_may_see(server: Server, scope: str, patient: str | None, can: dict[str, bool]) -> None:
    found = me(server, bearer(server.app, scope, patient, name="app-token"))
    assert found["name"] == "app-token"
    assert found["kind"] == "token"
    assert found["scopes"] == scope.split()
    assert found["patient"] == patient
    assert found["can"] == can


def test_can_follows_what_the_server_answers(server: Server) -> None:
    auditor = bearer(server.app, "user/AuditEvent.rs", name="auditor")
    assert me(server, auditor)["can"]["patients"] is False
    assert server.client.get("/twin/patients", headers=auditor).status_code == 403
    assert server.client.get("/twin/audit/chain", headers=auditor).status_code == 200


def test_without_a_credential_it_is_401(server: Server) -> None:
    answer = server.client.get("/twin/me")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_call_is_audited(server: Server) -> None:
    token = bearer(server.app, "user/*.rs", name="who-am-i")
    me(server, token)
    services_of(server.app).recorder.flush()
    found = server.read("AuditEvent?agent-name:exact=who-am-i").get_json()
    assert found["total"] == 1


def test_under_auth_mode_none_everything_is_allowed(make_app: Any) -> None:
    app: Flask = make_app(doctor=False)
    found = app.test_client().get("/twin/me").get_json()
    assert found["kind"] == "none"
    assert found["can"] == {"patients": True, "audit": True, "whatif": True}
