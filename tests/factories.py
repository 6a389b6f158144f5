"""What many tests build: FHIR resources, requests through the test client, the router on a
bare Repository. One definition each, so a change of the server's conventions is one edit here.

Builders return plain dicts and take keyword overrides, so a test states only what it relies on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

import jwt
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhir_twin.app import services_of
from fhir_twin.bundles import Bundles
from fhir_twin.config import Config
from fhir_twin.fhir.json import dumps
from fhir_twin.interactions import Interactions, Request, Response
from fhir_twin.ml.scores.atp3 import Atp3Inputs
from fhir_twin.ml.scores.pooled_cohort import PooledCohortInputs
from fhir_twin.security import tokens
from fhir_twin.store.repository import Repository

BASE = "http://localhost/fhir"
FHIR_JSON = "application/fhir+json; charset=utf-8"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
HEART_RATE = "8867-4"
AMBULATORY = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}

# The Pooled Cohort Equations' worked example (Goff DC Jr et al., 2013 ACC/AHA Guideline on the
# Assessment of Cardiovascular Risk, Circulation 2014;129(25 Suppl 2):S49-73, Table A): the
# pooled cohorts' mean profile, scored for each sex and race there (white man: 5.3 %).
PCE_WORKED = PooledCohortInputs(
    age=55, total_cholesterol=213, hdl=50, systolic_bp=120, bp_treated=False, smoker=False, diabetes=False
)
PCE_WHITE_MALE = replace(PCE_WORKED, sex="male", race="white")
# The same man for the ATP III (Framingham) hard-CHD equation.
ATP3_WORKED = Atp3Inputs(
    age=55, sex="male", total_cholesterol=213, hdl=50, systolic_bp=120, bp_treated=False, smoker=False, diabetes=False
)


# The fixture files: the official R4 examples (one resource each), the EHR transaction Bundles
# (Synthea and carebundle), and every Synthea Bundle, with the shared test data's.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
OFFICIAL_EXAMPLES = sorted((FIXTURES / "official-r4-examples").glob("[!_]*.json"))
EHR_BUNDLES = sorted((FIXTURES / "synthea").glob("*.json")) + sorted((FIXTURES / "carebundle").glob("*.json"))
SHARED_SYNTHEA = Path(__file__).resolve().parents[2] / "shared" / "fhir-test-data" / "synthea"
SYNTHEA_BUNDLES = sorted((FIXTURES / "synthea").glob("*.json")) + sorted(SHARED_SYNTHEA.glob("tietai-*.json"))


# --- resources -------------------------------------------------------------------------------


def observation(
    code: str | dict[str, Any] | None = None,
    *,
    res_id: str | None = None,
    patient: str | None = None,
    subject: str | dict[str, Any] | None = None,
    when: str | None = None,
    value: float | None = None,
    unit: str = "/min",
    code_text: str | None = None,
    **elements: Any,
) -> dict[str, Any]:
    """A final Observation. ``code`` is a LOINC code (or a whole CodeableConcept); without one,
    ``code_text`` alone names it ("heart rate" unless told). Its subject is ``patient`` (an id) or
    ``subject`` (a reference, or a whole Reference); ``when`` is its effectiveDateTime and
    ``value`` a UCUM quantity in ``unit``."""
    if isinstance(code, dict):
        concept = code
    else:
        concept = {} if code is None else {"coding": [{"system": LOINC, "code": code}]}
        if code_text is not None or code is None:
            concept["text"] = "heart rate" if code_text is None else code_text
    body: dict[str, Any] = {"resourceType": "Observation"}
    if res_id is not None:
        body["id"] = res_id
    body.update(status="final", code=concept)
    if patient is not None:
        subject = f"Patient/{patient}"
    if subject is not None:
        body["subject"] = {"reference": subject} if isinstance(subject, str) else subject
    if when is not None:
        body["effectiveDateTime"] = when
    if value is not None:
        body["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    return {**body, **elements}


def patient(res_id: str | None = None, **elements: Any) -> dict[str, Any]:
    """A Patient with only the elements given."""
    return {"resourceType": "Patient", **({} if res_id is None else {"id": res_id}), **elements}


def encounter(res_id: str, patient: str, **elements: Any) -> dict[str, Any]:
    """A finished ambulatory Encounter of ``patient``."""
    subject = {"reference": f"Patient/{patient}"}
    return {
        "resourceType": "Encounter",
        "id": res_id,
        "status": "finished",
        "class": AMBULATORY,
        "subject": subject,
        **elements,
    }


def batch_of_reads(*urls: str) -> dict[str, Any]:
    """A batch Bundle that GETs each of ``urls`` (relative to the base), in order."""
    entries = [{"request": {"method": "GET", "url": url}} for url in urls]
    return {"resourceType": "Bundle", "type": "batch", "entry": entries}


# --- through the test client -----------------------------------------------------------------


def put(
    client: FlaskClient,
    resource: dict[str, Any],
    status: int | Collection[int] = 201,
    headers: dict[str, str] | None = None,
) -> Any:
    """PUT ``resource`` at its id, which must answer ``status`` (one code or any of several);
    the JSON answered."""
    response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource, headers=headers)
    assert response.status_code in ((status,) if isinstance(status, int) else status), response.get_json()
    return response.get_json()


def bearer(app: Flask, scope: str, patient: str | None = None, *, name: str | None = None) -> dict[str, str]:
    """Headers bearing a new API token of ``app`` with ``scope`` (launched for ``patient``);
    named ``name``, else after its scope and patient."""
    repository = services_of(app).interactions.repository
    label = name or " ".join(["test", scope, *([patient] if patient else [])])[:128]
    secret, _ = tokens.create(repository, label, scope, patient, None)
    return {"Authorization": f"Bearer {secret}"}


def signed_jwt(
    key: Any, issuer: str, audience: str, *, algorithm: str = "RS256", kid: str | None = "rsa-1", **claims: Any
) -> str:
    """A JWT of the backend client "backend-app", valid for five minutes, signed with ``key``;
    ``claims`` add to or replace those, and one given as None is left out."""
    payload = {"iss": issuer, "aud": audience, "exp": int(time.time()) + 300, "client_id": "backend-app"} | claims
    headers = {"kid": kid} if kid else None
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=algorithm, headers=headers)


class Server:
    """An app in auth mode "tokens" and a system token (``system/*.cruds``) that sets up and
    checks the store, so a test of another token sees exactly what that token may."""

    def __init__(self, app: Flask, system: dict[str, str] | None = None) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.system = system or bearer(app, "system/*.cruds")

    def token(self, scope: str, patient: str | None = None, *, name: str | None = None) -> dict[str, str]:
        return bearer(self.app, scope, patient, name=name)

    def put(self, resource: dict[str, Any]) -> None:
        put(self.client, resource, headers=self.system)

    def read(self, path: str) -> TestResponse:
        """``path`` as the system token sees it."""
        return self.client.get(f"/fhir/{path}", headers=self.system)

    def count(self, query: str) -> int:
        """How many resources ``query`` matches, as the system token sees it."""
        answer = self.read(query)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()["total"]


def router(repository: Repository, config: Config) -> Interactions:
    """The FHIR router on ``repository`` with batch and transaction Bundles plugged in, as the
    app wires it (without the twin, the Doctor, the audit trail or authentication)."""
    return Interactions(repository, config, bundles=lambda route: Bundles(route, repository, config).process)


def send(interactions: Interactions, method: str, target: str, body: Any = None, **headers: str) -> Response:
    """Route ``method target`` (``Type/id`` or ``Type?a=b&c=d``, relative to ``BASE``) as the
    API would hand it over: header names lower-case, the query split but not decoded."""
    path, _, text = target.partition("?")
    query = [(key, value) for key, _, value in (pair.partition("=") for pair in text.split("&") if pair)]
    return interactions.route(Request(method, path, BASE, query, headers, body))


def response_json(response: Response) -> Any:
    """The body of an answer as plain JSON values, as a client would read it (a built Bundle
    embeds stored bodies unparsed)."""
    return json.loads(response.body if isinstance(response.body, str) else dumps(response.body))


def seed_clinic(server: Server) -> None:
    """What the security tests share: Organization/org with Practitioner/doc, and its patients
    p1 (Alpha) and p2 (Beta), each with a finished Encounter ``{patient}-enc``."""
    server.put({"resourceType": "Organization", "id": "org", "name": "Clinic"})
    server.put({"resourceType": "Practitioner", "id": "doc", "name": [{"family": "Doc"}]})
    for res_id, family in (("p1", "Alpha"), ("p2", "Beta")):
        server.put(patient(res_id, name=[{"family": family}], managingOrganization={"reference": "Organization/org"}))
        server.put(encounter(f"{res_id}-enc", res_id))


def condition(res_id: str, patient: str, text: str = "Hypertension") -> dict[str, Any]:
    """A Condition of ``patient`` named by text alone."""
    return {
        "resourceType": "Condition",
        "id": res_id,
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient}"},
    }


def outcome(response: TestResponse, status: int, code: str = "invalid") -> dict[str, Any]:
    """The one error issue of a JSON OperationOutcome answered with ``status``: its ``code``,
    and diagnostics that say what went wrong."""
    assert response.status_code == status, response.get_json()
    assert response.headers["Content-Type"] == FHIR_JSON
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    (issue,) = body["issue"]
    assert (issue["severity"], issue["code"]) == ("error", code)
    assert issue["diagnostics"]
    return issue
