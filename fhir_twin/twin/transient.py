"""A twin built in memory from resources that are not this server's: a CDS client's prefetch or
what its FHIR server answered (CDS Hooks 2.0 "Prefetch", "FHIR Resource Access").

The resources go through the same fact extraction as a stored version (``facts.facts_of``) and
the same document builder as the stored twin, so a model reads them exactly as it would read them
after a write here; nothing is stored. Each resource counts as its own version (``meta.versionId``,
else 1), the version a ``basis`` reference names.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from fhir_twin.twin.document import TwinDocument, build
from fhir_twin.twin.facts import facts_of
from fhir_twin.twin.mapping import Mapping
from fhir_twin.twin.sync import fact_rows


def document_of(
    patient: dict[str, Any],
    resources: Iterable[dict[str, Any]],
    mapping: Mapping,
    reference_time: datetime,
    base_url: str = "",
) -> TwinDocument:
    """The twin of ``patient`` from ``resources``: those about another patient add nothing to it
    (a prefetch holds one patient's record; anything else must not enter it). ``base_url`` is the
    resources' server, so its absolute references name its patients."""
    patient_id = str(patient["id"])
    measurements: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for resource in resources:
        facts = facts_of(resource, mapping, base_url)
        if facts is None or facts.patient_id != patient_id:
            continue
        source = {
            "res_type": resource["resourceType"],
            "res_id": str(resource.get("id") or ""),
            "res_version": _version(resource),
        }
        found, case = fact_rows(facts)
        measurements += [{**source, **row} for row in found]
        entries += [{**source, **row} for row in case]
    # The orders the stored twin reads its rows in (``store.twin_facts``): by field then time, by
    # kind then start, readings without a time first.
    measurements.sort(
        key=lambda row: (row["field"], row["effective"] is not None, row["effective"] or datetime.min, row["res_id"])
    )
    entries.sort(key=lambda row: (row["kind"], row["start"] is not None, row["start"] or datetime.min, row["res_id"]))
    return build(
        patient,
        f"Patient/{patient_id}/_history/{_version(patient)}",
        measurements,
        entries,
        mapping,
        None,
        None,
        reference_time,
    )


def _version(resource: dict[str, Any]) -> int:
    """The resource's version as its server numbers it, when a whole number; else 1."""
    version = (resource.get("meta") or {}).get("versionId")
    return int(version) if isinstance(version, str) and version.isdigit() else 1
