"""``POST /auth/launch``: how an EHR starts a SMART EHR launch over HTTP (app-launch.html, "Launch
App: EHR Launch"; the launch id is opaque, so how the EHR gets one is this server's choice). The
EHR authenticates with an API token that may read the Patient (and the Encounter) it puts in
context, and sends ``client_id``, ``patient`` and optionally ``encounter`` as a form; the answer
is ``201`` with the ``launch`` id, the ``iss`` and the app's launch ``url`` to open.

Whether it may is a read of each through the router, as the token's own request would be: its
scopes (narrowed ones included), compartment and audit apply, so the audit trail records who
put which patient in context."""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus

from flask import Blueprint, Flask, Response, jsonify, request

from fhir_twin.config import Config
from fhir_twin.errors import FhirError, Forbidden, Invalid
from fhir_twin.interactions.message import Request
from fhir_twin.interactions.message import Response as FhirResponse
from fhir_twin.security.authentication import Authenticator
from fhir_twin.security.context import acting_as
from fhir_twin.security.principal import Principal
from fhir_twin.store.repository import Repository


def register(
    app: Flask,
    repository: Repository,
    authenticator: Authenticator,
    route: Callable[[Request], FhirResponse],
    config: Config,
) -> None:
    blueprint = Blueprint("smart_ehr_launch", __name__)

    @blueprint.post("/auth/launch")
    def create() -> Response:
        from fhir_twin.security.oauth import launch

        principal = authenticator.authenticate(request.headers.get("Authorization"))
        client_id, patient = request.form.get("client_id", ""), request.form.get("patient", "")
        encounter = request.form.get("encounter") or None
        if not client_id or not patient:
            raise Invalid("A launch needs the form parameters client_id and patient")
        iss = config.base_url.rstrip("/") if config.base_url else request.url_root.rstrip("/") + "/fhir"
        _read(route, principal, f"Patient/{patient}", iss)
        if encounter is not None:
            _read(route, principal, f"Encounter/{encounter}", iss)
        try:
            made = launch.create(repository, client_id, patient, encounter, iss)
        except ValueError as error:
            raise Invalid(str(error)) from None
        answer = {"launch": made.launch_id, "iss": iss, "expires_in": launch.LAUNCH_SECONDS}
        if made.url is not None:
            answer["url"] = made.url
        response = jsonify(answer)
        response.status_code = 201
        response.headers["Cache-Control"] = "no-store"
        return response

    app.register_blueprint(blueprint)


def _read(route: Callable[[Request], FhirResponse], principal: Principal, reference: str, base: str) -> None:
    """400 when ``reference`` is not there to read (missing, deleted, or outside what the token
    reaches, alike), 403 when the token may not read its type."""
    try:
        with acting_as(principal):
            status = route(Request("GET", reference, base)).status
    except FhirError as error:
        status = error.status
    if status in (HTTPStatus.NOT_FOUND, HTTPStatus.GONE, HTTPStatus.BAD_REQUEST):
        raise Invalid(f"There is no {reference} this token may read to put in context")
    if status != HTTPStatus.OK:
        raise Forbidden(f"This token may not read {reference}, so it cannot put it in context")
