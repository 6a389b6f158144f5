"""The OperationDefinition (R4 operationdefinition.html) of each operation this server defines.

Operations HL7 defines (``$validate``, ``$everything``, ...) point at HL7's canonical URL; those
the server adds (``$twin``, ``$predict``, ``$whatif``) have a canonical under ``OWN``. Their
definitions are built from the ``Operation`` the router dispatches on, so ``affectsState`` is
the very flag that refuses GET, and served as HAPI FHIR serves its own: read at
``OperationDefinition/{id}`` (the canonical's last segment), never stored, and not found by
search, which reads the store only; the CapabilityStatement's ``operation.definition`` leads to
them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fhir_twin import __version__
from fhir_twin.interactions.operations import Operation, Parameter

OWN = "urn:fhir-twin:OperationDefinition/"


def definition_id(operation: Operation) -> str | None:
    """``Patient-predict`` for ``urn:fhir-twin:OperationDefinition/Patient-predict``; None when
    the definition is another publisher's."""
    if not operation.definition.startswith(OWN):
        return None
    return operation.definition.removeprefix(OWN)


def served(operations: Iterable[Operation]) -> dict[str, Operation]:
    """The operations whose definition the server serves, by the definition's id."""
    return {res_id: operation for operation in operations if (res_id := definition_id(operation)) is not None}


def operation_definition(operation: Operation) -> dict[str, Any]:
    """The R4 OperationDefinition of ``operation``, one the server defines (``served``)."""
    res_id = operation.definition.removeprefix(OWN)
    resource: dict[str, Any] = {
        "resourceType": "OperationDefinition",
        "id": res_id,
        "url": operation.definition,
        "version": __version__,
        # opd-0: a name usable as an identifier, [A-Z]([A-Za-z0-9_]){0,254}.
        "name": "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", res_id) if part),
        "title": f"${operation.name}",
        "status": "active",
        "kind": "operation",
        "publisher": "fhir-twin",
    }
    if operation.description:
        resource["description"] = operation.description
    resource["affectsState"] = operation.affects_state
    resource["code"] = operation.name
    if operation.types is not None:
        resource["resource"] = sorted(operation.types)
    resource["system"] = "system" in operation.levels
    resource["type"] = "type" in operation.levels
    resource["instance"] = "instance" in operation.levels
    if operation.parameters:
        resource["parameter"] = [_parameter(parameter) for parameter in operation.parameters]
    return resource


def _parameter(parameter: Parameter) -> dict[str, Any]:
    return {
        "name": parameter.name,
        "use": parameter.use,
        "min": parameter.min,
        "max": parameter.max,
        "documentation": parameter.documentation,
        "type": parameter.type,
    }
