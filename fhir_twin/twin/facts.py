"""One resource version -> the twin facts it contributes, and the patient they belong to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_twin.search.fhirpath import reference_target
from fhir_twin.twin.case import CaseEntry, case_entries
from fhir_twin.twin.mapping import REMOVED_STATUSES, Mapping
from fhir_twin.twin.measurement import Measurement, measurements


@dataclass(frozen=True)
class Facts:
    patient_id: str
    measurements: list[Measurement]
    entries: list[CaseEntry]


def patient_of(resource: dict[str, Any], base_url: str = "") -> str | None:
    """The Patient a resource is about: its ``subject`` (every mapped R4 type names it so).

    A relative reference names a patient of this server, and so does an absolute one under the
    configured ``base_url``; any other absolute URL may name a patient elsewhere that has the
    same id, whose data must not enter a local twin (R4 references.html#literal).
    """
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if not isinstance(reference, str):
        return None
    if base_url and reference.startswith(base_url.rstrip("/") + "/"):
        reference = reference[len(base_url.rstrip("/")) + 1 :]
    if "://" in reference or reference.startswith("urn:"):
        return None
    target = reference_target(reference)
    return target[1] if target and target[0] == "Patient" else None


def facts_of(resource: dict[str, Any] | None, mapping: Mapping, base_url: str = "") -> Facts | None:
    """What ``resource`` adds to its patient's twin; None when it adds nothing."""
    if resource is None:
        return None
    res_type = resource.get("resourceType")
    if res_type not in mapping.types:
        return None
    patient_id = patient_of(resource, base_url)
    if patient_id is None:
        return None
    found = []
    if res_type == "Observation" and resource.get("status") not in REMOVED_STATUSES:
        found = measurements(resource, mapping)
    entries = case_entries(resource, mapping.case_of.get(res_type, []))
    if not found and not entries:
        return None
    return Facts(patient_id, found, entries)
