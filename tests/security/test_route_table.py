"""Default deny, proved over the route table: every route of the FHIR and twin APIs declares what
a token needs, and is refused over HTTP to a token without it; every operation the app
registers (the server's, the twin's ``$twin``, the Doctor's ``$predict`` and ``$whatif``)
declares a permission, and one that declares none, or that the server does not offer, is
refused to every token but ``system/*.cruds``."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhir_twin.api.security import TWIN_ROUTES
from fhir_twin.app import services_of
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation
from fhir_twin.interactions.routes import ANY_CREDENTIAL, LETTERS, OPEN, PER_ENTRY, PER_OPERATION, ROUTES, Route
from fhir_twin.security import tokens

pytestmark = pytest.mark.audited

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "p1-obs",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
}
# A concrete value for each placeholder of a pattern.
VALUES = {"{type}": "Observation", "{id}": "p1-obs", "{compartment}": "p1", "{vid}": "1"}


class Server:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.system = self.token("system/*.cruds")

    def token(self, scope: str, patient: str | None = None) -> dict[str, str]:
        repository = services_of(self.app).interactions.repository
        secret, _ = tokens.create(repository, f"test {scope}"[:128], scope, patient, None)
        return {"Authorization": f"Bearer {secret}"}

    def operations(self) -> dict[str, Operation]:
        operations: dict[str, Operation] = services_of(self.app).interactions.operations
        return operations


@pytest.fixture
def server(make_app: Any) -> Server:
    found = Server(make_app(auth_mode="tokens", doctor=False))
    for resource in ({"resourceType": "Patient", "id": "p1"}, OBSERVATION):
        answer = found.client.put(
            f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=found.system
        )
        assert answer.status_code == 201, answer.get_json()
    return found


def assert_forbidden(answer: TestResponse) -> None:
    assert answer.status_code == 403, answer.data
    if answer.request.method != "HEAD":
        assert answer.get_json()["resourceType"] == "OperationOutcome"


def path_of(route: Route) -> str:
    return "/".join(VALUES.get(part, part) for part in route.segments)


def test_every_route_declares_what_a_token_needs(server: Server) -> None:
    operations = server.operations()
    for route in (*ROUTES, *TWIN_ROUTES):
        declared = route.needs in LETTERS | {OPEN, PER_ENTRY, PER_OPERATION, ANY_CREDENTIAL}
        assert declared or route.needs.removeprefix("$") in operations, route
    assert all(route.handler is not None for route in ROUTES)


@pytest.mark.parametrize(
    "route", [route for route in ROUTES if route.needs in LETTERS and "{type}" in route.segments], ids=path_of
)
def test_a_route_is_refused_to_a_token_without_the_letter_it_declares(server: Server, route: Route) -> None:
    """The token holds every other letter on the type, and every letter on Patient."""
    others = "".join(letter for letter in "cruds" if letter != route.needs)
    headers = server.token(f"user/Observation.{others} user/Patient.cruds")
    for method in route.methods:
        assert_forbidden(server.client.open(f"/fhir/{path_of(route)}", method=method, headers=headers))
    stored = server.client.get("/fhir/Observation/p1-obs", headers=server.system).get_json()
    assert stored["meta"]["versionId"] == "1"


def test_the_twin_routes_need_what_twin_declares(server: Server) -> None:
    for route in TWIN_ROUTES:
        path = "/" + "/".join(
            {"{id}": "p1", "{field}": "heart_rate", "{model}": "news2"}.get(part, part) for part in route.segments
        )
        (method,) = route.methods - {"HEAD"}
        answer = server.client.open(path, method=method, headers=server.token("user/Patient.r"))
        if route.needs == "$twin":
            assert_forbidden(answer)
            elsewhere = server.client.get(path.replace("p1", "p2"), headers=server.token("patient/*.rs", "p1"))
            assert elsewhere.status_code == 404, path
        elif route.needs in LETTERS:
            # A search of Patient or AuditEvent: refused to a token with every other letter on it.
            others = "".join(letter for letter in "cruds" if letter != route.needs)
            assert route.resource_type is not None
            without = server.token(f"user/{route.resource_type}.{others} user/Observation.cruds")
            assert_forbidden(server.client.open(path, method=method, headers=without))
            granted = server.token(f"user/{route.resource_type}.{route.needs}")
            assert server.client.open(path, method=method, headers=granted).status_code != 403, path
        else:
            assert route.needs == ANY_CREDENTIAL
            assert answer.status_code != 403, path


def test_every_registered_operation_declares_a_permission(server: Server) -> None:
    operations = server.operations()
    assert {"validate", "everything", "lastn", "export", "twin", "predict", "whatif"} <= set(operations)
    assert [name for name, operation in operations.items() if operation.permission is None] == []


def _answer(_context: Context, _request: Request, _res_type: str | None, _res_id: str | None) -> Response:
    return Response(200, {}, {"resourceType": "Parameters"})


@pytest.mark.parametrize("path", ["$undeclared", "Observation/$undeclared", "Observation/p1-obs/$undeclared"])
def test_an_operation_declaring_no_permission_is_for_system_star_only(server: Server, path: str) -> None:
    levels = frozenset({"system", "type", "instance"})
    undeclared = Operation("undeclared", levels, frozenset({"GET", "POST"}), _answer, "urn:test:undeclared")
    operations = server.operations()
    operations["undeclared"] = undeclared
    try:
        for scope, patient in (("patient/*.cruds", "p1"), ("user/*.cruds", None), ("system/*.rs", None)):
            for method in ("GET", "POST"):
                answer = server.client.open(f"/fhir/{path}", method=method, headers=server.token(scope, patient))
                assert_forbidden(answer)
                assert "declares no permission" in answer.get_json()["issue"][0]["diagnostics"]
        for method in ("GET", "POST"):
            answer = server.client.open(f"/fhir/{path}", method=method, headers=server.system)
            assert answer.status_code == 200, answer.get_json()
    finally:
        del operations["undeclared"]


@pytest.mark.parametrize("path", ["$reindex-everything", "Observation/$new-op", "Observation/p1-obs/$new-op"])
def test_an_operation_the_server_does_not_offer_is_refused_to_a_token_holder(server: Server, path: str) -> None:
    """Refused (403) before it is looked up, so an unknown name is no open door; a system/*
    token learns that the server does not offer it (501)."""
    assert_forbidden(server.client.post(f"/fhir/{path}", headers=server.token("patient/Observation.rs", "p1")))
    assert_forbidden(server.client.post(f"/fhir/{path}", headers=server.token("user/*.cruds")))
    answer = server.client.post(f"/fhir/{path}", headers=server.system)
    assert answer.status_code == 501, answer.get_json()
    assert answer.get_json()["resourceType"] == "OperationOutcome"
