"""The web app for clinicians and auditors, at ``/app/`` (README "The web app").

Its pages are shells: Jinja templates that hold no record data, and scripts that read the token
from the browser's session storage and fetch everything through the FHIR and twin APIs with it.
So every value a page shows passed the same authentication, scopes, patient context and audit as
any other client's request, and the pages themselves need no credential.
"""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template

from fhir_twin.errors import NotFound
from fhir_twin.fhir.resource_types import is_valid_id


def web_app_blueprint() -> Blueprint:
    """The pages, and their scripts, styles and vendored chart library under ``/app/static/``."""
    blueprint = Blueprint(
        "web_app", __name__, template_folder="templates", static_folder="static/app", static_url_path="/app/static"
    )

    @blueprint.get("/")
    @blueprint.get("/app")
    def home() -> Response:
        return redirect("/app/", code=302)  # type: ignore[return-value]

    @blueprint.get("/app/")
    def sign_in() -> str:
        return render_template("app/sign_in.html", page="sign-in")

    @blueprint.get("/app/patients")
    def patients() -> str:
        return render_template("app/patients.html", page="patients")

    @blueprint.get("/app/patients/<patient_id>")
    def patient(patient_id: str) -> str:
        if not is_valid_id(patient_id):
            raise NotFound(f"{patient_id[:80]!r} is not a valid resource id")
        return render_template("app/patient.html", page="patient", patient_id=patient_id)

    @blueprint.get("/app/audit")
    def audit() -> str:
        return render_template("app/audit.html", page="audit")

    return blueprint
