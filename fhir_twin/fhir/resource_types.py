"""The resource types this server stores and their fhir.resources (R4B) models.

fhir.resources ships no 4.0.1 package; R4B's JSON matches R4 for the resources we serve, so
every type R4B defines is a type this server stores.
"""

from __future__ import annotations

import re
from functools import cache

from fhir.resources.R4B import fhirtypes, get_fhir_model_class
from fhir.resources.R4B.domainresource import DomainResource
from fhir.resources.R4B.resource import Resource
from fhir_core.fhirabstractmodel import FHIRAbstractModel

# R4 datatypes.html#id
ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


# The server's own record of what was done (the audit trail). What spans every type (system
# search and history, $everything, $export) leaves it out unless it is asked for by name: each
# read of it is itself audited, so a client polling system history would never see the end.
AUDIT_TYPES = frozenset({"AuditEvent"})


@cache
def resource_types() -> frozenset[str]:
    """Every concrete resource type R4B defines (Patient, Observation, ... 141 in all)."""
    names: set[str] = set()
    for attribute in dir(fhirtypes):
        if not (attribute.endswith("Type") and attribute[0].isupper()):
            continue
        try:
            model = get_fhir_model_class(attribute[: -len("Type")])
        except (ValueError, AttributeError):
            continue
        if issubclass(model, Resource) and model not in (Resource, DomainResource):
            names.add(attribute[: -len("Type")])
    return frozenset(names)


def is_resource_type(name: str) -> bool:
    return name in resource_types()


def model_class(resource_type: str) -> type[FHIRAbstractModel]:
    """The pydantic model of a known resource type."""
    return get_fhir_model_class(resource_type)


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None
