"""``_summary`` and ``_elements``: answering with part of each resource (R4 search.html#summary,
#elements). A subsetted resource carries the ``SUBSETTED`` security tag so nobody mistakes it
for the whole and writes it back."""

from __future__ import annotations

from typing import Any

from fhir_twin.fhir.definitions import table

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_ALWAYS = ("resourceType", "id", "meta")


def subset(resource: dict[str, Any], summary: str | None, elements: tuple[str, ...]) -> dict[str, Any] | None:
    """The part of ``resource`` to send, or None when it is sent whole."""
    resource_type = resource["resourceType"]
    if elements:
        keep = set(elements) | set(table()["mandatory"].get(resource_type, ()))
    elif summary == "true":
        keep = set(table()["summary"].get(resource_type, ()))
    elif summary == "text":
        keep = {"text", *table()["mandatory"].get(resource_type, ())}
    elif summary == "data":
        keep = set(resource) - {"text"}
    else:
        return None
    kept = {key: value for key, value in resource.items() if key in _ALWAYS or key in keep}
    meta = dict(kept.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return {"resourceType": resource_type, **{k: v for k, v in kept.items() if k != "resourceType"}}
