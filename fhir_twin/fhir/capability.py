"""The CapabilityStatement (R4 capabilitystatement.html) describing what this server does.

Built from the same facts the server acts on — the stored resource types, the interactions of
the router's route table, the search parameters the parser accepts, the operations offered — so
it cannot claim what is not there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from fhir_twin import __version__
from fhir_twin.fhir.resource_types import resource_types

FORMATS = ("json", "xml", "application/fhir+json", "application/fhir+xml")
# JSON Patch, and FHIRPath Patch as a Parameters resource in either FHIR format (R4 fhirpatch.html).
PATCH_FORMATS = ("application/json-patch+json", "application/fhir+json", "application/fhir+xml")
PATCH_DOCUMENTATION = (
    "JSON Patch (application/json-patch+json) or FHIRPath Patch (a Parameters resource of add, insert, delete, "
    "replace and move operations, as application/fhir+json or application/fhir+xml); in a Bundle entry a Binary "
    "of JSON Patch or the Parameters resource itself."
)
# R4 search.html: what the search implementation understands, stated once for every type.
SEARCH_DOCUMENTATION = (
    "Search parameters come from the official R4 SearchParameter definitions. Modifiers: string :exact "
    ":contains; token :not :text :of-type :in :not-in :above :below (value sets and code systems the server "
    "holds: the packaged R4 ones and stored ones); reference :[type] :identifier and chaining; uri :below :above; "
    ":missing on every type. Prefixes eq ne gt lt ge le sa eb ap on number, date and quantity. Result "
    "parameters: _sort _count _include _revinclude (:iterate) _summary _elements _total; _has; keyset paging. "
    "_count=0 and _summary=count answer the total alone, with no next link. A value no resource can hold (an "
    "id with characters ids cannot have, text with a NUL) finds nothing."
)


def search_handling_documentation(handling: str) -> str:
    """How unknown or unsupported search parameters are treated under the server's ``search_handling``
    (R4 search.html#errors); ``Prefer: handling=`` chooses per request."""
    if handling == "strict":
        default = "are refused with a 400 naming them and the valid ones"
    else:
        default = "are ignored, with a warning in an OperationOutcome entry (search.mode outcome)"
    return (
        f"Unknown or unsupported search parameters (_text _content _list _filter _query _contained) {default}; "
        "the header Prefer: handling=strict or handling=lenient chooses per request."
    )


# R4 extension (valueUri) on CapabilityStatement.rest: where websocket Subscriptions' clients connect.
WEBSOCKET_EXTENSION = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"
WEBSOCKET_PATH = "/websocket"


def websocket_extension(base: str, port: int) -> dict[str, str]:
    """The ``capabilitystatement-websocket`` extension: the websocket server on ``port`` of the
    host that answered ``base`` (``wss`` when ``base`` is https: a TLS proxy in front)."""
    parts = urlsplit(base)
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    scheme = "wss" if parts.scheme == "https" else "ws"
    return {"url": WEBSOCKET_EXTENSION, "valueUri": f"{scheme}://{host}:{port}{WEBSOCKET_PATH}"}


SearchParameterRow = tuple[str, str, str]  # code, type, definition URL
OperationRow = tuple[str, str]  # name, definition URL
# Written by the server only: the audit trail.
READ_ONLY_TYPES = ("AuditEvent",)
# What a client of a type must know beyond the interactions listed.
RESOURCE_DOCUMENTATION = {
    "OperationDefinition": (
        "Besides the stored ones, the definition of each operation this server defines (an operation.definition "
        "urn:fhir-twin:OperationDefinition/{id}) is read at OperationDefinition/{id}: built from the operation "
        "itself, it is not stored, cannot be written, and is not found by search."
    ),
}


# Topic-based Subscriptions (Subscriptions R5 Backport IG, capabilitystatements.html): the server
# CapabilityStatement it instantiates and the profiles it supports.
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport"
BACKPORT_SERVER = f"{BACKPORT}/CapabilityStatement/backport-subscription-server-r4b"
SUPPORTED_PROFILES = {
    "Subscription": (f"{BACKPORT}/StructureDefinition/backport-subscription",),
    "Bundle": (f"{BACKPORT}/StructureDefinition/backport-subscription-notification-r4b",),
}


def capability_statement(
    base: str,
    date: str,
    search_parameters: Mapping[str, list[SearchParameterRow]],
    operations: Mapping[str, list[OperationRow]],
    system_interactions: Sequence[str],
    type_interactions: Sequence[str],
) -> dict[str, Any]:
    """The server's CapabilityStatement for requests answered at ``base``; ``operations`` by
    resource type, the key ``""`` holding the system-level ones; the ``restful-interaction``
    codes served at system and at type level."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "fhir-twin",
        "kind": "instance",
        "software": {"name": "fhir-twin", "version": __version__},
        "implementation": {"description": "fhir-twin FHIR R4 server", "url": base},
        "instantiates": [BACKPORT_SERVER],
        "fhirVersion": "4.0.1",
        "format": list(FORMATS),
        "patchFormat": list(PATCH_FORMATS),
        "rest": [
            {
                "mode": "server",
                "documentation": SEARCH_DOCUMENTATION,
                "resource": [
                    _resource(name, search_parameters.get(name, []), operations.get(name, []), type_interactions)
                    for name in sorted(resource_types())
                ],
                "interaction": [{"code": code} for code in system_interactions],
                "operation": _operations(operations.get("", [])),
            }
        ],
    }


def _operations(rows: list[OperationRow]) -> list[dict[str, str]]:
    return [{"name": name, "definition": definition} for name, definition in sorted(rows)]


def _resource(
    resource_type: str,
    search_parameters: list[SearchParameterRow],
    operations: list[OperationRow],
    interactions: Sequence[str],
) -> dict[str, Any]:
    documentation = RESOURCE_DOCUMENTATION.get(resource_type)
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        **(
            {"supportedProfile": list(SUPPORTED_PROFILES[resource_type])} if resource_type in SUPPORTED_PROFILES else {}
        ),
        **({"documentation": documentation} if documentation else {}),
        "interaction": [
            {"code": code, "documentation": PATCH_DOCUMENTATION} if code == "patch" else {"code": code}
            for code in interactions
            if resource_type not in READ_ONLY_TYPES or code not in ("create", "update", "patch", "delete")
        ],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchInclude": ["*"],
        "searchRevInclude": ["*"],
        "searchParam": [
            {"name": code, "definition": definition, "type": kind}
            for code, kind, definition in sorted(search_parameters)
        ],
        "operation": _operations(operations),
    }
