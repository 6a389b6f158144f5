"""AuditEvent resources in the shape of IHE Basic Audit Log Patterns (BALP) RESTful events.

``type`` is DICOM's "rest" event type, ``subtype`` the R4 restful-interaction, ``action`` C R U D
E, ``outcome`` 0 success, 4 a refused or invalid request, 8 a server failure (R4 auditevent.html,
valueset-audit-event-outcome). Agents are the client (the token's name, or the JWT's client and
user) and this server; entities the resources touched with their versions, each patient whose
record was involved, and for a search the query itself (base64, as BALP's Query pattern has it).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_twin.fhir import balp
from fhir_twin.fhir.instant import format_instant


@dataclass
class Occurrence:
    """What happened, as the router saw it: everything an AuditEvent is built from."""

    event_id: str
    recorded: datetime
    interaction: str
    action: str
    status: int
    agent: str
    agent_kind: str = "token"
    user: str | None = None
    address: str | None = None
    diagnostics: str | None = None
    operation: str | None = None
    query: str | None = None
    # "Type/id/_history/v" of each resource touched.
    resources: list[str] = field(default_factory=list)
    patients: set[str] = field(default_factory=set)
    site: str = ""
    # Why it was done, when someone said so (a model version's activation): ``purposeOfEvent.text``.
    purpose: str | None = None


def outcome(status: int) -> str:
    """0 success; 4 a request refused (4xx, or 501: an operation this server does not offer);
    8 the server failed to carry out what it offers."""
    return "0" if status < 400 else "4" if status < 500 or status == 501 else "8"


def audit_event(occurrence: Occurrence) -> dict[str, Any]:
    """The AuditEvent recording ``occurrence``; ``meta`` is the store's to add."""
    subtype = [{"system": balp.RESTFUL_INTERACTION, "code": occurrence.interaction}]
    if occurrence.operation:
        subtype.append({"system": balp.OPERATION_SYSTEM, "code": occurrence.operation})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": occurrence.event_id,
        "type": balp.REST_TYPE,
        "subtype": subtype,
        "action": occurrence.action,
        "recorded": format_instant(occurrence.recorded),
        "outcome": outcome(occurrence.status),
    }
    if occurrence.status >= 400:
        event["outcomeDesc"] = f"{occurrence.status}: {occurrence.diagnostics or ''}".strip()
    if occurrence.purpose:
        event["purposeOfEvent"] = [{"text": occurrence.purpose}]
    event["agent"] = _agents(occurrence)
    event["source"] = {
        "site": occurrence.site,
        "observer": {"display": balp.SERVER_NAME},
        "type": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }
        ],
    }
    entities = [_resource_entity(reference) for reference in occurrence.resources]
    entities += [_patient_entity(patient) for patient in sorted(occurrence.patients)]
    if occurrence.query is not None:
        entities.append(
            {
                **_kind(balp.QUERY_ENTITY),
                "query": base64.b64encode(occurrence.query.encode("utf-8")).decode("ascii"),
            }
        )
    if entities:
        event["entity"] = entities
    return event


def _agents(occurrence: Occurrence) -> list[dict[str, Any]]:
    system = balp.TOKEN_SYSTEM if occurrence.agent_kind == "token" else balp.CLIENT_SYSTEM
    client: dict[str, Any] = {
        "type": {"coding": [{"system": balp.DCM, "code": "110153", "display": "Source Role ID"}]},
        "who": {"identifier": {"system": system, "value": occurrence.agent}, "display": occurrence.agent},
        "name": occurrence.agent,
        "requestor": True,
    }
    if occurrence.address:
        client["network"] = {"address": occurrence.address, "type": "2"}
    agents = [client]
    if occurrence.user:
        who: dict[str, Any] = (
            {"reference": occurrence.user}
            if "/" in occurrence.user and not occurrence.user.startswith("http")
            else {"identifier": {"system": balp.CLIENT_SYSTEM, "value": occurrence.user}}
        )
        agents.append(
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                            "code": "humanuser",
                            "display": "human user",
                        }
                    ]
                },
                "who": who,
                "name": occurrence.user,
                "requestor": True,
            }
        )
    agents.append(
        {
            "type": {"coding": [{"system": balp.DCM, "code": "110152", "display": "Destination Role ID"}]},
            "who": {"display": balp.SERVER_NAME},
            "name": balp.SERVER_NAME,
            "requestor": False,
            **({"network": {"address": occurrence.site, "type": "5"}} if occurrence.site else {}),
        }
    )
    return agents


def _kind(kind: tuple[tuple[str, str], tuple[str, str]]) -> dict[str, Any]:
    (type_code, type_display), (role_code, role_display) = kind
    return {
        "type": {"system": balp.ENTITY_TYPE, "code": type_code, "display": type_display},
        "role": {"system": balp.OBJECT_ROLE, "code": role_code, "display": role_display},
    }


def _resource_entity(reference: str) -> dict[str, Any]:
    return {"what": {"reference": reference}, **_kind(balp.RESOURCE_ENTITY)}


def _patient_entity(patient_id: str) -> dict[str, Any]:
    return {"what": {"reference": f"Patient/{patient_id}"}, **_kind(balp.PATIENT_ENTITY)}
