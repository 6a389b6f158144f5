"""The SMART App Launch authorization server's endpoints under ``/auth``: ``authorize`` (sign in,
then consent and pick the patient for ``launch/patient``), ``token``, ``revoke``, ``introspect`` and
``jwks`` (SMART app-launch.html, standalone launch; the OAuth rules are in
``security/oauth/grants.py``). Mounted in ``tokens`` auth mode: the tokens it issues are API
tokens the FHIR API's Guard enforces. Authlib is loaded by the first request to ``/auth``."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, jsonify, render_template, request

from fhir_twin.config import Config
from fhir_twin.store import oauth
from fhir_twin.store.repository import Repository

if TYPE_CHECKING:
    from fhir_twin.api.smart_authorization_server import SmartServer
    from fhir_twin.store.oauth_launch import StoredLaunch

# The OAuth parameters of an authorization request carried through the sign-in and consent forms.
_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "launch",
)
_PICKER_SIZE = 200


def register(app: Flask, repository: Repository, config: Config) -> None:
    built: list[SmartServer] = []
    lock = threading.Lock()

    def server() -> SmartServer:
        with lock:
            if not built:
                from fhir_twin.api.smart_authorization_server import SmartServer

                built.append(SmartServer(app, repository, config))
        return built[0]

    blueprint = Blueprint("smart_auth", __name__, template_folder="templates")

    @blueprint.get("/auth/authorize")
    def authorize() -> Any:
        checked = _check(server())
        if isinstance(checked, Response):
            return checked
        return render_template("auth/sign_in.html", **_page(server()))

    @blueprint.post("/auth/authorize")
    def decide() -> Any:
        from itsdangerous import BadSignature

        from fhir_twin.security.oauth import sign_in_limit, users
        from fhir_twin.security.oauth.grants import CODE_SECONDS, Consent

        smart = server()
        checked = _check(smart)
        if isinstance(checked, Response):
            return checked
        grant, ehr = checked
        asked = _asked()
        if "ticket" not in request.form:
            username, address = request.form.get("username", ""), request.remote_addr
            wait = sign_in_limit.retry_after(repository, username, address)
            if wait is not None:
                page = _page(smart, problem=f"Too many failed sign-ins: try again in {-(-wait // 60)} minutes.")
                return render_template("auth/sign_in.html", **page), 429, {"Retry-After": str(wait)}
            found = users.authenticate(repository, username, request.form.get("password", ""))
            if found is None:
                sign_in_limit.failed(repository, username, address)
                page = _page(smart, problem="The user name or password is wrong.")
                return render_template("auth/sign_in.html", **page), 401
            sign_in_limit.succeeded(repository, username, address)
            ticket = smart.tickets.dumps({"user": found.username, "asked": asked})
            return render_template("auth/consent.html", ticket=ticket, **_consent(smart, found, ehr))
        try:
            signed = smart.tickets.loads(request.form["ticket"], max_age=CODE_SECONDS)
        except BadSignature:
            return _refused("The sign-in has expired or is not valid: sign in again", 400)
        found = oauth.user(repository, signed["user"])
        if signed["asked"] != asked or found is None:
            return _refused("The sign-in was for another authorization request", 400)
        if request.form.get("decision") != "allow":
            return smart.create_authorization_response(grant_user=None, grant=grant)
        if ehr is not None:
            own = _patient(found, None)
            if own is not None and own != ehr.patient_id:
                return _refused("The EHR launched this app for another patient's record", 403)
            consent = Consent(found, ehr.patient_id, ehr.encounter_id)
            return smart.create_authorization_response(grant_user=consent, grant=grant)
        patient = _patient(found, request.form.get("patient"))
        launch = "launch/patient" in (request.values.get("scope") or "").split()
        if launch and (patient is None or not oauth.patient_exists(repository, patient)):
            page = _consent(smart, found, problem="Pick a patient this app may see.")
            return render_template("auth/consent.html", ticket=request.form["ticket"], **page), 400
        return smart.create_authorization_response(grant_user=Consent(found, patient), grant=grant)

    @blueprint.post("/auth/token")
    def token() -> Any:
        return server().create_token_response()

    @blueprint.post("/auth/revoke")
    def revoke() -> Any:
        return server().create_endpoint_response("revocation")

    @blueprint.post("/auth/introspect")
    def introspect() -> Any:
        return server().create_endpoint_response("introspection")

    @blueprint.get("/auth/jwks")
    def jwks() -> Response:
        from fhir_twin.security.oauth import signing_key

        return jsonify(signing_key.public_jwks(server().signing_key))

    app.register_blueprint(blueprint)


def _check(server: SmartServer) -> Any:
    """Authlib's checks of the request (client, redirect_uri, scope, PKCE), then SMART's: ``aud``
    must be this FHIR server (app-launch.html, "aud" guards against a token meant elsewhere),
    and an EHR launch's ``launch`` (``security/oauth/launch.py``). Errors found before the
    redirect URI is trusted are answered here, never redirected. The grant to answer with and
    the EHR launch's context (None for a standalone launch), or the refusal."""
    from authlib.oauth2 import OAuth2Error

    from fhir_twin.security.oauth import launch

    try:
        grant = server.get_consent_grant(end_user=None)
    except OAuth2Error as error:
        return server.handle_error_response(request, error)
    if request.values.get("aud", "").rstrip("/") != server.issuer():
        return _refused(f"aud must be this FHIR server's base URL, {server.issuer()}", 400)
    if not grant.request.scope:
        return _refused("scope names nothing this client is registered for", 400)
    try:
        return grant, launch.requested(server.repository, grant)
    except OAuth2Error as error:
        return server.handle_error_response(request, error)


def _refused(description: str, status: int) -> Response:
    answer = jsonify({"error": "invalid_request", "error_description": description})
    answer.status_code = status
    return answer


def _asked() -> dict[str, str]:
    return {name: request.values[name] for name in _PARAMETERS if name in request.values}


def _page(server: SmartServer, problem: str | None = None) -> dict[str, Any]:
    client = oauth.client(server.repository, request.values["client_id"])
    return {"asked": _asked(), "client_name": client.name if client else "", "problem": problem}


def _consent(
    server: SmartServer, found: oauth.StoredUser, ehr: StoredLaunch | None = None, problem: str | None = None
) -> dict[str, Any]:
    """The consent page: the scopes asked, and a patient picker for ``launch/patient`` unless
    the user is a patient (then it is their own record) or the EHR launch set the patient."""
    scopes = list(dict.fromkeys((request.values.get("scope") or "").split()))  # each once, as asked
    picker: list[tuple[str, str]] = []
    own = _patient(found, None)
    if "launch/patient" in scopes and own is None and ehr is None:
        picker = [(patient_id, _name(body)) for patient_id, body in oauth.patients(server.repository, _PICKER_SIZE)]
    page = {**_page(server, problem), "scopes": scopes, "picker": picker, "own": own, "user": found.username}
    return {**page, "ehr": ehr}


def _patient(found: oauth.StoredUser, picked: str | None) -> str | None:
    """A patient user's own record; otherwise the one picked."""
    if found.fhir_user and found.fhir_user.startswith("Patient/"):
        return found.fhir_user.removeprefix("Patient/")
    return picked or None


def _name(body: str) -> str:
    """A Patient's first name as text, for the picker."""
    names = json.loads(body).get("name") or [{}]
    first = names[0]
    return first.get("text") or " ".join([*first.get("given", []), first.get("family", "")]).strip()
