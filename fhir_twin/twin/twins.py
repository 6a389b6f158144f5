"""``Twins``: the twin of a patient now or at a past time, its series, and rebuilding from history.

Two times, which may be combined (README "The twin API"): ``at`` is clinical time — the body
and case as the data effective before it describe them, from the record as the server knows it
— and ``recorded`` is server time — the twin as the server held it then. A record migrated
today shows its 2019 readings at ``at=2020-01-01`` and nothing at ``recorded=2020-01-01``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fhir_twin.errors import Gone, Invalid, NotFound
from fhir_twin.fhir import json
from fhir_twin.fhir.instant import now, parse_range
from fhir_twin.store import twin_facts as store
from fhir_twin.store.repository import DatabaseTransaction, Repository
from fhir_twin.store.version import Version
from fhir_twin.twin.body import Point, points
from fhir_twin.twin.document import TwinDocument, build
from fhir_twin.twin.facts import facts_of
from fhir_twin.twin.mapping import Field, Mapping
from fhir_twin.twin.sync import fact_rows


@dataclass(frozen=True)
class Rebuild:
    """How many versions a rebuild read; with a check, how many fact rows differed."""

    versions: int
    differing: int | None


class _Discard(Exception):
    """Ends a checking rebuild's transaction without committing it."""

    def __init__(self, result: Rebuild) -> None:
        self.result = result


@dataclass(frozen=True)
class Series:
    patient: str
    field: Field
    start: datetime | None
    end: datetime | None
    at: datetime | None
    points: list[Point]
    recorded: datetime | None = None


class Twins:
    def __init__(self, repository: Repository, mapping: Mapping, base_url: str = "") -> None:
        self.repository = repository
        self.mapping = mapping
        self.base_url = base_url

    def document(self, patient_id: str, at: datetime | None = None, recorded: datetime | None = None) -> TwinDocument:
        """The patient's twin: now, in clinical time just before ``at``, as the server held it
        just before ``recorded``, or both. Staleness and age are judged at ``at``, else at
        ``recorded``, else now."""
        with self.repository.transaction() as tx:
            patient = self._patient(tx, patient_id, recorded)
            measurements = store.measurement_rows(tx.connection, patient_id, at=at, recorded=recorded)
            entries = store.case_rows(tx.connection, patient_id, at=at, recorded=recorded)
        body = json.loads(patient.body or "{}")
        source = f"Patient/{patient_id}/_history/{patient.version}"
        reference = at or recorded or now()
        return build(body, source, measurements, entries, self.mapping, at, recorded, reference)

    def measured(self, patient_id: str, at: datetime | None = None, recorded: datetime | None = None) -> list[Field]:
        """The mapped fields with readings in the patient's document at the same times, by name
        (the order of the document's keys): those whose series and data-quality total are not
        empty. A page asks for them to fetch each series while the document is being built."""
        with self.repository.transaction() as tx:
            self._patient(tx, patient_id, recorded)
            found = store.measured_fields(tx.connection, patient_id, at=at, recorded=recorded)
        return [self.mapping.fields[name] for name in sorted(found) if name in self.mapping.fields]

    def series(
        self,
        patient_id: str,
        name: str,
        start: datetime | None,
        end: datetime | None,
        at: datetime | None,
        recorded: datetime | None = None,
    ) -> Series:
        """One field's points in ``[start, end)`` and before ``at``, as the server held them
        just before ``recorded``; duplicates folded."""
        twin_field = self.mapping.fields.get(name)
        if twin_field is None:
            known = ", ".join(sorted(self.mapping.fields))
            raise NotFound(f"The twin has no field {name!r}; fields: {known}")
        with self.repository.transaction() as tx:
            self._patient(tx, patient_id, recorded)
            rows = store.measurement_rows(
                tx.connection, patient_id, at=at, recorded=recorded, field=name, start=start, end=end
            )
        return Series(patient_id, twin_field, start, end, at, points(rows, twin_field), recorded)

    @staticmethod
    def _patient(tx: DatabaseTransaction, patient_id: str, recorded: datetime | None) -> Version:
        """The Patient version current at ``recorded`` (now when None): clinical time does not
        change who the patient is, only what the record says happened by then."""
        version = store.version_at(tx.connection, "Patient", patient_id, recorded)
        when = " at that time" if recorded is not None else ""
        if version is None:
            raise NotFound(f"Patient/{patient_id} is not known{when}")
        if version.deleted:
            raise Gone(f"Patient/{patient_id} was deleted{when}")
        return version

    def version_count(self) -> int:
        """How many stored versions a full rebuild reads."""
        with self.repository.transaction() as tx:
            return store.count_versions(tx.connection, self.mapping.types)

    def rebuild(
        self, patient_id: str | None = None, progress: Callable[[int], object] | None = None, check: bool = False
    ) -> Rebuild:
        """Recompute twin facts from every stored version (of one patient's resources). Runs as
        one write transaction, so it never shows half; with ``check`` it only counts the rows
        that differ from the live twin and changes nothing."""
        try:
            with self.repository.transaction(write=True) as tx:
                store.lock_facts(tx.connection)
                before = store.fact_table_rows(tx.connection) if check else None
                count = self._rebuild(tx, patient_id, progress)
                if before is None:
                    return Rebuild(count, None)
                after = store.fact_table_rows(tx.connection)
                differing = 0
                for name, rows in before.items():
                    old, new = Counter(rows), Counter(after[name])
                    differing += sum(((old - new) + (new - old)).values())
                raise _Discard(Rebuild(count, differing))
        except _Discard as discarded:
            return discarded.result

    def _rebuild(
        self, tx: DatabaseTransaction, patient_id: str | None, progress: Callable[[int], object] | None
    ) -> int:
        count = 0
        connection = tx.connection
        sources = None if patient_id is None else store.sources_of(connection, patient_id, self.mapping.types)
        store.clear_facts(connection, sources)
        previous: Version | None = None
        for version in store.versions_of(connection, self.mapping.types, sources):
            if previous is not None and (previous.res_type, previous.res_id) == (version.res_type, version.res_id):
                closed = version.last_updated
            else:
                closed = None
            if previous is not None:
                self._restore(tx, previous, closed)
            previous = version
            count += 1
            if progress is not None:
                progress(1)
            if count % 2000 == 0:
                tx.flush()
        if previous is not None:
            self._restore(tx, previous, None)
        tx.flush()
        return count

    def _restore(self, tx: DatabaseTransaction, version: Version, closed: datetime | None) -> None:
        body = json.loads(version.body) if version.body is not None else None
        measurements, entries = fact_rows(facts_of(body, self.mapping, self.base_url))
        for row in (*measurements, *entries):
            row["valid_to"] = closed
        store.stage_facts(tx, version, measurements, entries)


def time_parameter(name: str, value: str, *, end: bool) -> datetime:
    """A ``from``/``to``/``at``/``recorded`` value: the start of the time it names, or its end
    for the others (``at=2024-05-01`` is the twin as that day ended)."""
    try:
        low, high = parse_range(value)
    except ValueError:
        raise Invalid.at(name, f"{name} must be a FHIR date, dateTime or instant, not {value[:40]!r}") from None
    return high if end else low
