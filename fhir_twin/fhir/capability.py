"""The CapabilityStatement (R4 capabilitystatement.html) describing what this server does.

Built from the same facts the server acts on — the stored resource types, the interactions the
router serves, the search parameters the parser accepts — so it cannot claim what is not there.
"""

from __future__ import annotations

from typing import Any

from fhir_twin import __version__
from fhir_twin.fhir.model import resource_types

TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("history-system",)
FORMATS = ("json", "xml", "application/fhir+json", "application/fhir+xml")
PATCH_FORMATS = ("application/json-patch+json",)
COMMON_SEARCH_PARAMETERS = (
    ("_id", "token", "http://hl7.org/fhir/SearchParameter/Resource-id", "Logical id of this artifact"),
)


def capability_statement(base: str, date: str) -> dict[str, Any]:
    """The server's CapabilityStatement for requests answered at ``base``."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "fhir-twin",
        "kind": "instance",
        "software": {"name": "fhir-twin", "version": __version__},
        "implementation": {"description": "fhir-twin FHIR R4 server", "url": base},
        "fhirVersion": "4.0.1",
        "format": list(FORMATS),
        "patchFormat": list(PATCH_FORMATS),
        "rest": [
            {
                "mode": "server",
                "resource": [_resource(name) for name in sorted(resource_types())],
                "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
            }
        ],
    }


def _resource(resource_type: str) -> dict[str, Any]:
    return {
        "type": resource_type,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{resource_type}",
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "full-support",
        "conditionalUpdate": True,
        "conditionalDelete": "single",
        "searchParam": [
            {"name": name, "definition": definition, "type": kind, "documentation": text}
            for name, kind, definition, text in COMMON_SEARCH_PARAMETERS
        ],
    }
