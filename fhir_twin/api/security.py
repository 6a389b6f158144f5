"""Authentication of every request to the FHIR and twin APIs, and SMART discovery.

Only the CapabilityStatement and ``.well-known/smart-configuration`` are open (SMART App Launch
v2 conformance.html): a client must be able to learn how to authenticate before it has. The
principal found is held for the whole request (``fhir_twin.security.context``), so the router
checks each interaction and Bundle entry against it. The twin API, which does not pass the
router, is authorized and reported to the audit trail here, once for all its routes.
"""

from __future__ import annotations

from contextvars import Token
from dataclasses import replace

from flask import Blueprint, Flask, Response, g, jsonify, request

from fhir_twin.config import Config
from fhir_twin.errors import FhirError, NotFound
from fhir_twin.interactions import Interactions
from fhir_twin.interactions.interaction import Interaction, classify
from fhir_twin.interactions.message import Request as FhirRequest
from fhir_twin.interactions.message import Response as FhirResponse
from fhir_twin.security.access import ALL, require
from fhir_twin.security.authentication import Authenticator
from fhir_twin.security.context import begin, end
from fhir_twin.security.discovery import smart_configuration
from fhir_twin.security.principal import Principal

_OPEN = ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration", "/fhir/metadata")


def register(app: Flask, authenticator: Authenticator, interactions: Interactions, config: Config) -> None:
    """Authenticate with ``authenticator``; report what the router did not to ``interactions``."""
    blueprint = Blueprint("smart", __name__)

    @blueprint.get("/.well-known/smart-configuration")
    @blueprint.get("/fhir/.well-known/smart-configuration")
    def discovery() -> Response:
        return jsonify(smart_configuration(config))

    app.register_blueprint(blueprint)

    @app.before_request
    def _authenticate() -> None:
        path = request.path.rstrip("/") or "/"
        if path in _OPEN or request.method == "OPTIONS" or not path.startswith(("/fhir", "/twin")):
            return
        try:
            principal = authenticator.authenticate(request.headers.get("Authorization"))
        except FhirError as error:
            stranger = Principal("unauthenticated", kind="anonymous", address=request.remote_addr)
            _report(interactions, stranger, _interaction(path), None, error)
            raise
        principal = replace(principal, address=request.remote_addr)
        g.principal = principal
        g.principal_token = begin(principal)
        if path.startswith("/twin/"):
            _authorize_twin(interactions, principal, path)

    @app.after_request
    def _audit_unreported(response: Response) -> Response:
        """Record what no interaction reported: the twin API's requests, and FHIR requests
        answered before the router saw them (a body that does not parse, 406, 413, 415, a
        method nothing serves) — every interaction leaves a record, failures too."""
        path = request.path.rstrip("/") or "/"
        if g.pop("audited", False) or path in _OPEN or request.method == "OPTIONS":
            return response
        if not path.startswith(("/fhir", "/twin")):
            return response
        error: FhirError | None = g.get("error")
        if error is None and response.status_code >= 400:
            error = FhirError(f"HTTP {response.status_code}")
            error.status = response.status_code
        answered = FhirResponse(response.status_code) if error is None else None
        _report(interactions, g.get("principal"), _interaction(path), answered, error)
        return response

    @app.teardown_request
    def _leave(_error: BaseException | None) -> None:
        token: Token[Principal | None] | None = g.pop("principal_token", None)
        if token is not None:
            end(token)


def _authorize_twin(interactions: Interactions, principal: Principal, path: str) -> None:
    """``/twin/patients/{id}...`` reads that patient's record; ``/twin/models`` reads no one's."""
    parts = path.strip("/").split("/")
    if len(parts) >= 3 and parts[1] == "patients":
        try:
            # The same permission as Patient/{id}/$twin, which serves the same document.
            needs = interactions.operations["twin"].permission
            assert needs is not None, "$twin declares the reads it needs"
            held = [require(principal, read, "r") for read in needs.reads]
            held_to = next((reach for reach in held if reach != ALL), ALL)
            if held_to != ALL and held_to != parts[2]:
                raise NotFound(f"Patient/{parts[2]} is not known")
        except FhirError as error:
            _report(interactions, principal, _interaction(path), None, error)
            raise


def _interaction(path: str) -> Interaction:
    if path.startswith("/fhir"):
        return classify(request.method, path.removeprefix("/fhir"))
    parts = path.strip("/").split("/")
    patient = parts[2] if len(parts) >= 3 and parts[1] == "patients" else None
    return Interaction("read", "R", "Patient" if patient else None, patient, operation="twin-api")


def _report(
    interactions: Interactions,
    principal: Principal | None,
    interaction: Interaction,
    response: FhirResponse | None,
    error: FhirError | None,
) -> None:
    base = request.url_root.rstrip("/") + "/fhir"
    path = request.path.removeprefix("/fhir")
    fhir_request = FhirRequest(request.method, path, base, list(request.args.items(multi=True)))
    interactions.report(principal, interaction, fhir_request, response, error, None, [])
    g.audited = True
