"""``/twin/me``: who the credential is and what the web app may show it. Each ``can`` is the
Guard's own answer for the interaction behind that view (a Patient search, an AuditEvent search,
``Patient/{id}/$whatif``), so the app never offers what the server would refuse."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from fhir_twin.errors import Forbidden, Invalid, NotFound
from fhir_twin.interactions import Interactions
from fhir_twin.interactions.interaction import Interaction
from fhir_twin.interactions.message import Request
from fhir_twin.security.context import current
from fhir_twin.security.principal import Principal

# Any valid id: an instance-level operation needs one; a patient token's is its own patient.
_SOME_PATIENT = "example"


def may(interactions: Interactions, principal: Principal, interaction: Interaction) -> bool:
    """Whether the Guard lets ``principal`` run ``interaction`` (False only on its 403)."""
    try:
        interactions.guard.before(principal, interaction, Request("GET", "", ""))
    except Forbidden:
        return False
    except NotFound:
        return True  # the interaction is allowed; the instance is not there or not its own
    return True


def caller_blueprint(interactions: Interactions) -> Blueprint:
    blueprint = Blueprint("twin_caller", __name__)

    @blueprint.get("/twin/me")
    def me() -> Response:
        principal = current()
        if principal is None:  # pragma: no cover - the authentication hook always sets one
            raise Invalid("No credential")
        patients = Interaction("search-type", "E", "Patient", permission="s")
        audit = Interaction("search-type", "E", "AuditEvent", permission="s")
        whatif = Interaction("operation", "E", "Patient", principal.patient or _SOME_PATIENT, operation="whatif")
        return jsonify(
            {
                "name": principal.name,
                "kind": principal.kind,
                "user": principal.user,
                "scopes": principal.scope.split(),
                "patient": principal.patient,
                "can": {
                    "patients": may(interactions, principal, patients),
                    "audit": may(interactions, principal, audit),
                    "whatif": may(interactions, principal, whatif),
                },
            }
        )

    return blueprint
