"""A CDS Hooks 2.0 service (cds-hooks.hl7.org/2.0) whose cards come from the Digital Doctor.

``GET /cds-services`` is discovery; ``POST /cds-services/{id}`` answers a ``patient-view`` call
with cards (``ml.cards``); ``POST /cds-services/{id}/feedback`` takes what the clinician did with
them. The data a call is answered from, in the order the specification prefers ("Providing FHIR
Resources to a CDS Service"):

1. ``prefetch``: the keys this service declared, each a resource or a searchset Bundle; a key the
   client left out (or sent as null) is fetched as below;
2. ``fhirServer``, another server, with the ``fhirAuthorization`` token (only over https, but for
   a server on this host: a token sent in clear text is a token given away), and only a server
   the settings allow (``security.cds_fhir_servers``), every page of each query (``cds_prefetch``);
3. this server's own store, when ``fhirServer`` is absent or is this server: the stored twin, as
   ``Patient/{id}/$predict`` reads it.

From 1 and 2 the Doctor runs on a twin built in memory (``twin.transient``); nothing of the
record is stored in any case (a card is a read: docs/clinical-safety.md H16), only which cards
were issued about which patient to whom (``store.cds_cards``), so their feedback names the patient.
Every call, and every feedback, is authorized as reading the patient's twin and audited as a read
of the Patient, the hook named as the operation.
Discovery is open, like ``/fhir/metadata``: it describes the service and holds no patient data
(the specification's example calls it without a JWT).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, g, jsonify, request

from fhir_twin.api.cds_prefetch import Tally, next_link, own_fetch, remote_fetch
from fhir_twin.config import Config
from fhir_twin.errors import FhirError, Invalid, NotFound
from fhir_twin.fhir import json
from fhir_twin.fhir.instant import now, parse_range
from fhir_twin.fhir.json import MAX_DEPTH
from fhir_twin.fhir.resource_types import is_valid_id
from fhir_twin.interactions import Interactions
from fhir_twin.interactions.interaction import Completion, Interaction
from fhir_twin.interactions.message import Request as FhirRequest
from fhir_twin.interactions.message import Response as FhirResponse
from fhir_twin.ml import cards
from fhir_twin.ml.doctor import Doctor
from fhir_twin.security.cds_fhir_servers import CdsFhirServers, parse_servers
from fhir_twin.security.cds_registration import parse_clients
from fhir_twin.security.principal import Principal
from fhir_twin.store import cds_cards
from fhir_twin.store.cds_cards import IssuedCard
from fhir_twin.twin.mapping_file import duration
from fhir_twin.twin.transient import document_of

PATIENT_VIEW = "fhir-twin-patient-view"
HOOK = "patient-view"
_LOCAL = re.compile(r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)")
_FEEDBACK_OUTCOMES = ("accepted", "overridden")


def prefetch_templates(types: frozenset[str]) -> dict[str, str]:
    """The prefetch templates: the Patient and every type the twin's mappings read (what the
    Doctor's models read: vital-sign and laboratory Observations, Conditions, MedicationRequests...)."""
    templates = {"patient": "Patient/{{context.patientId}}"}
    for res_type in sorted(types - {"Patient"}):
        templates[_key(res_type)] = f"{res_type}?patient={{{{context.patientId}}}}"
    return templates


def _key(res_type: str) -> str:
    return res_type[0].lower() + res_type[1:]


def cds_settings(config: Config) -> tuple[CdsFhirServers, timedelta]:
    """The FHIR servers calls may have read and how long issued cards are kept: a ValueError naming
    a bad setting, checked before the database is touched."""
    servers = CdsFhirServers(parse_servers(config.cds_fhir_servers), parse_clients(config.cds_clients))
    return servers, duration(config.cds_card_retention)


def cds_blueprint(
    doctor: Doctor, interactions: Interactions, config: Config, settings: tuple[CdsFhirServers, timedelta]
) -> Blueprint:
    blueprint = Blueprint("cds_hooks", __name__)
    templates = prefetch_templates(doctor.twins.mapping.types)
    servers, retention = settings
    repository = interactions.repository

    def service() -> dict[str, Any]:
        return {
            "hook": HOOK,
            "id": PATIENT_VIEW,
            "title": "fhir-twin Digital Doctor",
            "description": "Early warning (NEWS2), sepsis screening (qSOFA) and 10-year cardiovascular risk (Pooled "
            "Cohort Equations) from the patient's record, each with its rationale, inputs and status.",
            "prefetch": templates,
            "usageRequirements": "For adults. Cards are decision support: each says what it read and when, and "
            "whether it is final or preliminary; none replaces observation or judgement. Authenticate with an API "
            "token or JWT of this server that reads the patient, or as a registered CDS client (signed JWT).",
        }

    @blueprint.get("/cds-services")
    def discovery() -> Response:
        return jsonify({"services": [service()]})

    @blueprint.post("/cds-services/<service_id>")
    def call(service_id: str) -> Response:
        audited = _Audit(interactions, f"cds-hooks-{HOOK}")
        try:
            if service_id != PATIENT_VIEW:
                raise NotFound(f"No CDS service {service_id!r}; this server offers {PATIENT_VIEW}")
            body = _body()
            patient_id = _request(body, templates)
            audited.patient_id = patient_id
            interactions.guard.before(g.principal, _reading(patient_id), _fhir_request())
            said = _answer(doctor, interactions, config, servers, body, patient_id, templates)
            issued = now()
            to = g.principal.name
            cards_issued = [IssuedCard(card["uuid"], service_id, patient_id, issued, to) for card in said]
            cds_cards.record(repository, cards_issued, issued - retention)
        except FhirError as error:
            audited.report(error)
            raise
        audited.report(None)
        return jsonify({"cards": said})

    @blueprint.post("/cds-services/<service_id>/feedback")
    def feedback(service_id: str) -> Response:
        audited = _Audit(interactions, f"cds-hooks-{HOOK}-feedback")
        try:
            if service_id != PATIENT_VIEW:
                raise NotFound(f"No CDS service {service_id!r}; this server offers {PATIENT_VIEW}")
            items = _feedback(_body())
            known = cds_cards.issued(repository, service_id, (item["card"] for item in items))
            for index, item in enumerate(items):
                if item["card"] not in known:
                    raise Invalid.at(
                        f"feedback[{index}].card",
                        f"feedback[{index}].card is no card this service returned (or one older than "
                        f"cds_card_retention, {config.cds_card_retention}): feedback is about cards it returned",
                    )
            patients = sorted({card.patient_id for card in known.values()})
            for patient_id in patients:
                audited.patient_id = patient_id
                interactions.guard.before(g.principal, _reading(patient_id), _fhir_request())
        except FhirError as error:
            audited.report(error)
            raise
        # One record per patient the feedback is about (a client may send feedback on cards of
        # several calls at once): each names its patient.
        for patient_id in patients:
            audited.patient_id = patient_id
            audited.report(None)
        return jsonify({})

    return blueprint


class _Audit:
    """The call's record: a read of the Patient it is about, the hook as the operation."""

    def __init__(self, interactions: Interactions, operation: str) -> None:
        self.interactions = interactions
        self.operation = operation
        self.patient_id: str | None = None

    def report(self, error: FhirError | None) -> None:
        interaction = (
            Interaction("read", "R", operation=self.operation)
            if self.patient_id is None
            else replace(_reading(self.patient_id), operation=self.operation)
        )
        principal: Principal | None = g.get("principal")
        response = FhirResponse(200) if error is None else None
        self.interactions.report(Completion(principal, interaction, _fhir_request(), response, error))
        g.audited = True


def _reading(patient_id: str) -> Interaction:
    """Reading the patient's twin, as the Guard checks ``Patient/{id}/$twin``: the Patient, every
    type its mappings read, and only a patient-context token's own patient."""
    return Interaction("operation", "R", "Patient", patient_id, permission=None, operation="twin")


def _fhir_request() -> FhirRequest:
    return FhirRequest(request.method, request.path, request.url_root.rstrip("/") + "/fhir", [])


def _body() -> dict[str, Any]:
    if request.mimetype != "application/json" and not request.mimetype.endswith("+json"):
        raise Invalid(f"A CDS Hooks request is JSON (Content-Type: application/json), not {request.mimetype or 'none'}")
    body = json.loads(request.get_data(), MAX_DEPTH)
    if not isinstance(body, dict):
        raise Invalid("A CDS Hooks request is a JSON object")
    return body


def _request(body: dict[str, Any], templates: dict[str, str]) -> str:
    """The patient of a well-formed ``patient-view`` call (CDS Hooks 2.0 "HTTP Request"); a 400 naming what is wrong."""
    hook = body.get("hook")
    if not isinstance(hook, str):
        raise Invalid.at("hook", "The request names no hook")
    if hook != HOOK:
        raise Invalid.at("hook", f"{PATIENT_VIEW} answers the hook {HOOK}, not {hook[:60]!r}")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not _is_uuid(instance):
        raise Invalid.at("hookInstance", "hookInstance must be a UUID")
    context = body.get("context")
    if not isinstance(context, dict):
        raise Invalid.at("context", "The request has no context object")
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not is_valid_id(patient_id):
        raise Invalid.at("context.patientId", "patient-view needs context.patientId, a FHIR resource id")
    if "userId" in context and not isinstance(context["userId"], str):
        raise Invalid.at("context.userId", "context.userId must be a string (e.g. Practitioner/123)")
    server = body.get("fhirServer")
    if server is not None and (not isinstance(server, str) or not server.startswith(("https://", "http://"))):
        raise Invalid.at("fhirServer", "fhirServer must be the base URL of a FHIR server")
    if isinstance(server, str) and not server.startswith("https://") and not _LOCAL.match(server):
        raise Invalid.at("fhirServer", "fhirServer must use https: its token would travel in clear text")
    authorization = body.get("fhirAuthorization")
    if authorization is not None:
        if server is None:
            raise Invalid.at("fhirAuthorization", "fhirAuthorization needs fhirServer (CDS Hooks cds-r-1)")
        if not isinstance(authorization, dict) or not isinstance(authorization.get("access_token"), str):
            raise Invalid.at("fhirAuthorization", "fhirAuthorization must hold an access_token")
        if str(authorization.get("token_type", "")).lower() != "bearer":
            raise Invalid.at("fhirAuthorization.token_type", "fhirAuthorization.token_type must be Bearer")
    prefetch = body.get("prefetch")
    if prefetch is not None:
        if not isinstance(prefetch, dict):
            raise Invalid.at("prefetch", "prefetch must be an object of the keys this service declared")
        for key, value in prefetch.items():
            if key not in templates:
                raise Invalid.at(
                    f"prefetch.{key}", f"{key!r} is not a prefetch key of this service: {', '.join(templates)}"
                )
            _prefetched(key, value, patient_id)
    return patient_id


def _prefetched(key: str, value: Any, patient_id: str) -> list[dict[str, Any]] | None:
    """The resources of one prefetch value: the Patient, or a searchset Bundle's; None for null."""
    if value is None:
        return None
    if key == "patient":
        if not isinstance(value, dict) or value.get("resourceType") != "Patient" or value.get("id") != patient_id:
            raise Invalid.at("prefetch.patient", f"prefetch.patient must be the Patient {patient_id}")
        return [value]
    if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
        raise Invalid.at(f"prefetch.{key}", f"prefetch.{key} must be a Bundle (the search's answer)")
    entries = value.get("entry") or []
    if not isinstance(entries, list) or not all(
        isinstance(e, dict) and isinstance(e.get("resource", {}), dict) for e in entries
    ):
        raise Invalid.at(f"prefetch.{key}", f"prefetch.{key} must be a Bundle whose entries hold resources")
    return [entry["resource"] for entry in entries if "resource" in entry]


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _answer(
    doctor: Doctor,
    interactions: Interactions,
    config: Config,
    servers: CdsFhirServers,
    body: dict[str, Any],
    patient_id: str,
    templates: dict[str, str],
) -> list[dict[str, Any]]:
    """The cards, from prefetch, the client's FHIR server or this server's store."""
    base = (config.base_url or request.url_root.rstrip("/") + "/fhir").rstrip("/")
    app = base.removesuffix("/fhir")
    server = body.get("fhirServer")
    own = server is None or server.rstrip("/") == base
    if not own:
        servers.check(str(server), g.principal)
    prefetch = {key: value for key, value in (body.get("prefetch") or {}).items() if value is not None}

    def model_page(model: Any) -> str:
        return f"{app}/twin/models/{model.id}"

    patient_page = f"{app}/app/patients/{patient_id}" if own else None
    models = cards.MODELS
    if own and not prefetch:
        document = doctor.twins.document(patient_id)
        runs = doctor.runs_on(document, models)
        return cards.cards(runs, document, model_page, patient_page)
    tally = Tally()
    fetch = (
        own_fetch(interactions, base, tally) if own else remote_fetch(str(server), body.get("fhirAuthorization"), tally)
    )
    resources: dict[str, list[dict[str, Any]]] = {}
    for key, template in templates.items():
        # A prefetched search answered in part (it has a next page) is read whole instead.
        given = (
            _prefetched(key, prefetch[key], patient_id)
            if key in prefetch and next_link(prefetch[key]) is None
            else None
        )
        if given is not None:
            resources[key] = tally.add(given)
        else:
            resources[key] = fetch(template.replace("{{context.patientId}}", patient_id))
    patients = [found for found in resources.pop("patient") if found.get("resourceType") == "Patient"]
    if not patients:
        raise NotFound(f"Patient/{patient_id} is not known to {server or 'this server'}")
    everything = [resource for found in resources.values() for resource in found]
    document = document_of(patients[0], everything, doctor.twins.mapping, now(), "" if own else str(server))
    runs = doctor.runs_on(document, models)
    return cards.cards(runs, document, model_page, patient_page)


def _feedback(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of a feedback request (CDS Hooks 2.0 "Feedback"); a 400 naming what is wrong."""
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise Invalid.at("feedback", "feedback must be a non-empty array")
    for index, item in enumerate(items):
        at = f"feedback[{index}]"
        if not isinstance(item, dict):
            raise Invalid.at(at, f"{at} must be an object")
        if not isinstance(item.get("card"), str) or not _is_uuid(item["card"]):
            raise Invalid.at(f"{at}.card", f"{at}.card must be the uuid of a card")
        outcome = item.get("outcome")
        if outcome not in _FEEDBACK_OUTCOMES:
            raise Invalid.at(f"{at}.outcome", f"{at}.outcome must be accepted or overridden")
        timestamp = item.get("outcomeTimestamp")
        if not isinstance(timestamp, str) or not _is_instant(timestamp):
            raise Invalid.at(f"{at}.outcomeTimestamp", f"{at}.outcomeTimestamp must be an ISO 8601 instant")
        accepted = item.get("acceptedSuggestions")
        if accepted is not None and (
            outcome != "accepted"
            or not isinstance(accepted, list)
            or not all(isinstance(s, dict) and isinstance(s.get("id"), str) for s in accepted)
        ):
            raise Invalid.at(f"{at}.acceptedSuggestions", "acceptedSuggestions is a list of {id}, for an accepted card")
        reason = item.get("overrideReason")
        if reason is not None and (outcome != "overridden" or not isinstance(reason, dict)):
            raise Invalid.at(f"{at}.overrideReason", "overrideReason is an object, for an overridden card")
        if isinstance(reason, dict) and (
            ("reason" in reason and not isinstance(reason["reason"], dict))
            or ("userComment" in reason and not isinstance(reason["userComment"], str))
        ):
            raise Invalid.at(
                f"{at}.overrideReason", "overrideReason holds a reason (Coding) and a userComment (string)"
            )
    return items


def _is_instant(text: str) -> bool:
    if "T" not in text:
        return False
    try:
        parse_range(text)
    except ValueError:
        return False
    return True
