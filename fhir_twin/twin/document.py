"""The twin document of one patient: who, Digital Body, Digital Case and data quality, as of a time.

Its reference time is when the document is judged: the clinical time ``at``, else the server
time ``recorded``, else now. Age, death and staleness are read at it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cached_property
from typing import Any

from fhir_twin.fhir.instant import parse_range
from fhir_twin.search.fhirpath import reference_target
from fhir_twin.twin.body import FieldState, Point, by_field, field_states, source_of
from fhir_twin.twin.mapping import Mapping
from fhir_twin.twin.quality import Quality, quality

US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
RACE_CODES = "urn:oid:2.16.840.1.113883.6.238"  # CDC Race & Ethnicity code system


@dataclass(frozen=True)
class PatientSummary:
    id: str
    source: str
    gender: str | None
    birth_date: str | None
    age: int | None
    deceased: bool
    race: str | None
    # US Core race codes (OMB categories and detailed, CDC Race & Ethnicity code system)
    race_codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CaseItem:
    kind: str
    source: str
    code: str | None
    display: str | None
    status: str | None
    start: datetime | None
    end: datetime | None
    details: dict[str, list[str]] = field(default_factory=dict)
    # Results of a report that the Body holds: reference, field, value, unit.
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TwinDocument:
    patient: PatientSummary
    at: datetime | None
    reference_time: datetime
    body: dict[str, FieldState]
    case: dict[str, list[CaseItem]]
    mapping: Mapping = field(repr=False, compare=False)
    # Every point of every field, flagged ones included, oldest first: what models that read more
    # than the latest value (a mean of recent readings, the highest LDL) read.
    series: dict[str, list[Point]] = field(default_factory=dict)
    # Server time: the twin as the server held it then (None: as it holds it now).
    recorded: datetime | None = None

    @cached_property
    def quality(self) -> Quality:
        """The data-quality summary, made when asked: the Doctor reads twins without it."""
        return quality(self.series, self.mapping)


def build(
    patient: dict[str, Any],
    patient_source: str,
    measurement_rows: list[dict[str, Any]],
    case_rows: list[dict[str, Any]],
    mapping: Mapping,
    at: datetime | None,
    recorded: datetime | None,
    reference_time: datetime,
) -> TwinDocument:
    series = by_field(measurement_rows, mapping)
    return TwinDocument(
        patient=summary(patient, patient_source, reference_time),
        at=at,
        reference_time=reference_time,
        body=field_states(series, mapping, reference_time),
        case=_case(case_rows, series, mapping),
        mapping=mapping,
        series=series,
        recorded=recorded,
    )


def summary(patient: dict[str, Any], source: str, reference_time: datetime) -> PatientSummary:
    """Who the patient is at ``reference_time``: the age then (None before the birth), and dead
    only if the record gives no time of death or one before then."""
    birth = patient.get("birthDate")
    age = None
    if isinstance(birth, str) and len(birth) >= 4:
        # A birthDate given to the year or month is taken at its middle: the age is then off by
        # at most half the precision the record gives.
        month = int(birth[5:7]) if len(birth) >= 7 else 7
        day = int(birth[8:10]) if len(birth) >= 10 else 15 if len(birth) >= 7 else 1
        born = date(int(birth[:4]), month, day)
        today = reference_time.date()
        years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
        age = years if years >= 0 else None
    died = patient.get("deceasedDateTime")
    deceased = bool(patient.get("deceasedBoolean")) or (isinstance(died, str) and _before(died, reference_time))
    return PatientSummary(
        patient["id"],
        source,
        patient.get("gender"),
        birth,
        age,
        deceased,
        _race(patient),
        race_codes=_race_codes(patient),
    )


def _before(value: str, reference_time: datetime) -> bool:
    """Whether a dateTime began before ``reference_time``; one that cannot be read counts."""
    try:
        return parse_range(value)[0] < reference_time
    except ValueError:
        return True


def _race(patient: dict[str, Any]) -> str | None:
    """US Core race in words: the extension's text (required by US Core), else every OMB category's
    display (or code), joined."""
    for extension in patient.get("extension") or []:
        if isinstance(extension, dict) and extension.get("url") == US_CORE_RACE:
            parts = [part for part in extension.get("extension") or [] if isinstance(part, dict)]
            text = next((part.get("valueString") for part in parts if part.get("url") == "text"), None)
            if isinstance(text, str) and text:
                return text
            categories = [
                part["valueCoding"].get("display") or part["valueCoding"].get("code")
                for part in parts
                if part.get("url") == "ombCategory" and isinstance(part.get("valueCoding"), dict)
            ]
            return ", ".join(str(category) for category in categories if category) or None
    return None


def _race_codes(patient: dict[str, Any]) -> tuple[str, ...]:
    """Every OMB category and detailed race code of the US Core race extension, in order."""
    codes: list[str] = []
    for extension in patient.get("extension") or []:
        if not isinstance(extension, dict) or extension.get("url") != US_CORE_RACE:
            continue
        for part in extension.get("extension") or []:
            coding = part.get("valueCoding") if isinstance(part, dict) else None
            if (
                part.get("url") in ("ombCategory", "detailed")
                and isinstance(coding, dict)
                and coding.get("system") == RACE_CODES
                and isinstance(coding.get("code"), str)
            ):
                codes.append(coding["code"])
    return tuple(codes)


def _local(reference: str) -> str:
    """``Type/id`` of a relative, absolute or version-specific reference."""
    target = reference_target(reference)
    return f"{target[0]}/{target[1]}" if target else reference


def _points_of(series: dict[str, list[Point]], named: set[str]) -> dict[str, list[tuple[str, Point]]]:
    """The points (with their field) of each ``Type/id`` that a case entry's results name, in
    series order. Only named sources are indexed, and none when no entry names results: a
    patient's series may hold 100,000 points (docs/performance.md §3.12)."""
    by_source: dict[str, list[tuple[str, Point]]] = {}
    if not named:
        return by_source
    for name, found in series.items():
        for point in found:
            reference = point.source.split("/_history/")[0]
            if reference in named:
                by_source.setdefault(reference, []).append((name, point))
    return by_source


def _case(rows: list[dict[str, Any]], series: dict[str, list[Point]], mapping: Mapping) -> dict[str, list[CaseItem]]:
    case: dict[str, list[CaseItem]] = {name: [] for name in mapping.case}
    entries = [(row, json.loads(row["details"]) if row["details"] else {}) for row in rows if row["kind"] in case]
    by_source = _points_of(series, {reference for _, details in entries for reference in details.get("results", [])})
    for row, details in entries:
        results = [
            {
                "reference": point.source,
                "field": name,
                "value": point.value,
                "category": point.category,
                "unit": point.unit,
            }
            for reference in details.get("results", [])
            for name, point in by_source.get(reference, [])
        ]
        case[row["kind"]].append(
            CaseItem(
                row["kind"],
                source_of(row),
                row["code"],
                row["display"],
                row["status"],
                row["start"],
                row["end"],
                details,
                results,
            )
        )
    return case
