"""``POST /auth/launch``: how an EHR starts a SMART EHR launch over HTTP (app-launch.html, "Launch
App: EHR Launch"; the launch id is opaque, so how the EHR gets one is this server's choice). The
EHR authenticates with an API token that may read the Patient (and the Encounter) it puts in
context, and sends ``client_id``, ``patient`` and optionally ``encounter`` as a form; the answer
is ``201`` with the ``launch`` id, the ``iss`` and the app's launch ``url`` to open."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, jsonify, request

from fhir_twin.config import Config
from fhir_twin.errors import Forbidden, Invalid
from fhir_twin.security import access
from fhir_twin.security.authentication import Authenticator
from fhir_twin.store.repository import Repository


def register(app: Flask, repository: Repository, authenticator: Authenticator, config: Config) -> None:
    blueprint = Blueprint("smart_ehr_launch", __name__)

    @blueprint.post("/auth/launch")
    def create() -> Response:
        from fhir_twin.security.oauth import launch

        principal = authenticator.authenticate(request.headers.get("Authorization"))
        client_id, patient = request.form.get("client_id", ""), request.form.get("patient", "")
        encounter = request.form.get("encounter") or None
        if not client_id or not patient:
            raise Invalid("A launch needs the form parameters client_id and patient")
        if access.reach(principal, "Patient", "r") not in (access.ALL, patient):
            raise Forbidden(f"This token may not read Patient/{patient}, so it cannot launch an app for it")
        if encounter is not None and access.reach(principal, "Encounter", "r") not in (access.ALL, patient):
            raise Forbidden(f"This token may not read Encounter/{encounter}, so it cannot put it in context")
        iss = config.base_url.rstrip("/") if config.base_url else request.url_root.rstrip("/") + "/fhir"
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
