"""Authentication of every request to the FHIR, twin and CDS Hooks APIs, and SMART discovery.

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
from fhir_twin.errors import FhirError
from fhir_twin.interactions import Interactions
from fhir_twin.interactions.interaction import Completion, Interaction
from fhir_twin.interactions.message import Request as FhirRequest
from fhir_twin.interactions.message import Response as FhirResponse
from fhir_twin.interactions.routes import ANY_CREDENTIAL, GET, LETTERS, POST, ROUTES, Match, Route, match
from fhir_twin.security.authentication import Authenticator
from fhir_twin.security.context import begin, end
from fhir_twin.security.discovery import smart_configuration
from fhir_twin.security.principal import Principal

_OPEN = ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration", "/fhir/metadata")
# The twin API in the route table's terms: a patient's twin is the document Patient/{id}/$twin
# serves, so it needs what $twin declares; the models and the caller's own description are no
# one's record; the patients list is a search of Patient, and the audit views (a verification too:
# it reads the whole trail) are searches of AuditEvent, each checked by the Guard as one.
TWIN_ROUTES = (
    *(
        Route(GET, pattern, "read", "R", "$twin", resource_type="Patient", operation="twin-api")
        for pattern in ("twin/patients/{id}", "twin/patients/{id}/series", "twin/patients/{id}/series/{field}")
    ),
    *(
        Route(GET, pattern, "read", "R", ANY_CREDENTIAL, operation="twin-api")
        for pattern in ("twin/models", "twin/models/{model}", "twin/me")
    ),
    Route(GET, "twin/patients", "search-type", "E", "s", resource_type="Patient", operation="twin-api"),
    *(
        Route(methods, pattern, "search-type", "E", "s", resource_type="AuditEvent", operation="twin-api")
        for methods, pattern in (
            (GET, "twin/audit/accesses"),
            (GET, "twin/audit/summary"),
            (GET, "twin/audit/chain"),
            (POST, "twin/audit/chain/verify"),
        )
    ),
)


def register(app: Flask, authenticator: Authenticator, interactions: Interactions, config: Config) -> None:
    """Authenticate with ``authenticator``; report what the router did not to ``interactions``."""
    blueprint = Blueprint("smart", __name__)

    @blueprint.get("/.well-known/smart-configuration")
    @blueprint.get("/fhir/.well-known/smart-configuration")
    def discovery() -> Response:
        base = config.base_url.rstrip("/") if config.base_url else request.url_root.rstrip("/") + "/fhir"
        return jsonify(smart_configuration(config, base))

    app.register_blueprint(blueprint)

    @app.before_request
    def _authenticate() -> None:
        path = request.path.rstrip("/") or "/"
        if path in _OPEN or request.method == "OPTIONS" or not path.startswith(("/fhir", "/twin", "/cds-services")):
            return
        if path == "/cds-services" and request.method == "GET":
            # CDS Hooks discovery describes the service and holds no one's record.
            return
        # A CDS Hooks call may bear a CDS client's JWT, whose audience is the service's URL.
        service = request.base_url.rstrip("/") if path.startswith("/cds-services/") else None
        try:
            principal = authenticator.authenticate(request.headers.get("Authorization"), service)
        except FhirError as error:
            stranger = Principal("unauthenticated", kind="anonymous", address=request.remote_addr)
            _report(interactions, stranger, _match(path).interaction, None, error)
            raise
        principal = replace(principal, address=request.remote_addr)
        g.principal = principal
        g.principal_token = begin(principal)
        if path.startswith("/twin/"):
            _authorize_twin(interactions, principal, _match(path))

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
        # What a twin view showed, for the record's patients (``shown``).
        answered = FhirResponse(response.status_code, body=g.pop("shown", None)) if error is None else None
        _report(interactions, g.get("principal"), _match(path).interaction, answered, error)
        return response

    @app.teardown_request
    def _leave(_error: BaseException | None) -> None:
        token: Token[Principal | None] | None = g.pop("principal_token", None)
        if token is not None:
            end(token)


def _authorize_twin(interactions: Interactions, principal: Principal, found: Match) -> None:
    """A twin route that needs what an operation declares is checked by the Guard as that
    operation on the same patient (it serves the same document), one that needs a SMART letter
    as the interaction it is (a search of Patient or AuditEvent); the others read no one's record."""
    if found.route is None:
        return
    if found.route.needs.startswith("$"):
        checked = replace(found.interaction, name="operation", operation=found.route.needs[1:])
    elif found.route.needs in LETTERS:
        checked = found.interaction
    else:
        return
    try:
        interactions.guard.before(principal, checked, _fhir_request())
    except FhirError as error:
        _report(interactions, principal, found.interaction, None, error)
        raise


def shown(patients: list[str]) -> None:
    """Name the patients whose records a twin view answered with, for its audit record, as a
    FHIR search's record names those of the resources in its Bundle."""
    entries = [{"resource": {"resourceType": "Patient", "id": patient_id}} for patient_id in patients]
    g.shown = {"resourceType": "Bundle", "type": "searchset", "entry": entries}


def _match(path: str) -> Match:
    """``path`` against the FHIR API's route table or the twin API's."""
    if path.startswith("/fhir"):
        return match(ROUTES, request.method, path.removeprefix("/fhir"))
    if path.startswith("/cds-services"):
        return Match(Interaction("read", "R", operation="cds-hooks"))
    found = match(TWIN_ROUTES, request.method, path)
    if found.route is None:
        return Match(Interaction("read", "R", operation="twin-api"))
    return found


def _report(
    interactions: Interactions,
    principal: Principal | None,
    interaction: Interaction,
    response: FhirResponse | None,
    error: FhirError | None,
) -> None:
    interactions.report(Completion(principal, interaction, _fhir_request(), response, error))
    g.audited = True


def _fhir_request() -> FhirRequest:
    base = request.url_root.rstrip("/") + "/fhir"
    path = request.path.removeprefix("/fhir")
    return FhirRequest(request.method, path, base, list(request.args.items(multi=True)))
