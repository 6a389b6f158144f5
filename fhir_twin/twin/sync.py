"""Live sync: every stored version of a mapped resource updates its patient's twin, in the
write's own transaction, so a client that got its 2xx reads a twin that already shows it."""

from __future__ import annotations

import json
from typing import Any

from fhir_twin.signals import twin_changed, version_written
from fhir_twin.store.repository import DatabaseTransaction, Repository
from fhir_twin.store.twin_facts import close_facts, holds_facts, stage_facts
from fhir_twin.store.version import Version
from fhir_twin.twin.facts import Facts, facts_of
from fhir_twin.twin.mapping import Mapping


class TwinSync:
    """Listens to ``version_written`` from one Repository; keep a reference to stay connected."""

    def __init__(self, repository: Repository, mapping: Mapping, base_url: str = "") -> None:
        self.mapping = mapping
        self.base_url = base_url
        version_written.connect(self.on_written, sender=repository)

    def on_written(
        self, sender: object, *, tx: DatabaseTransaction, version: Version, resource: dict[str, Any] | None
    ) -> None:
        if version.res_type == "Patient":
            # A new Patient whose twin holds no facts yet gives nothing to read to any model, which
            # all read measurements or case entries (``ml/fields.py``): no change to tell of.
            if version.version > 1 or holds_facts(tx, version.res_id):
                self._changed(sender, tx, {version.res_id})
            return
        if version.res_type not in self.mapping.types:
            return
        facts = facts_of(resource, self.mapping, self.base_url)
        if facts is None and version.version == 1:
            return
        patients = close_facts(tx, version) if version.version > 1 else set()
        stage_facts(tx, version, *fact_rows(facts))
        if facts is not None and (facts.measurements or facts.entries):
            patients.add(facts.patient_id)
        self._changed(sender, tx, patients)

    @staticmethod
    def _changed(sender: object, tx: DatabaseTransaction, patients: set[str]) -> None:
        if patients and twin_changed.receivers:
            twin_changed.send(sender, tx=tx, patients=patients)


def fact_rows(facts: Facts | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows ``store.twin_facts`` keeps for ``facts``."""
    if facts is None:
        return [], []
    measurements = []
    for measurement in facts.measurements:
        # Its fields are plain values: a copy of them, not ``asdict``'s deep one (a tenth of the time).
        row = dict(vars(measurement))
        row["patient_id"] = facts.patient_id
        measurements.append(row)
    entries = []
    for entry in facts.entries:
        entries.append(
            {
                "patient_id": facts.patient_id,
                "kind": entry.kind,
                "code": entry.code,
                "display": entry.display,
                "status": entry.status[:64] if entry.status else None,
                "start": entry.start,
                "end": entry.end,
                "details": json.dumps(entry.details, sort_keys=True) if entry.details else None,
            }
        )
    return measurements, entries
