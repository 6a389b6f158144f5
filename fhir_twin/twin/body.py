"""The Digital Body: each field's series, cleaned of duplicates, with its latest usable value.

Two sources reporting the same value at the same time (a blood-pressure panel and a stand-alone
systolic Observation, say) are one measurement, counted once; the point keeps how many
duplicates it absorbed.

A reading that carries a value the twin could not use as given (implausible, in an unknown unit,
not yet final, a bound, an unknown answer) is still the patient's newest reading when nothing
usable came after it: ``FieldState.unverified`` shows it, so no model or reader takes an older
value for the current one without being told (docs/clinical-safety.md, H1).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from fhir_twin.twin.mapping import Field, Mapping


class Point(NamedTuple):
    """One reading of a field. A named tuple, not a frozen dataclass: a document builds one per
    reading, up to 100,000 of them, and a tuple is made several times faster
    (docs/performance.md §3.12)."""

    time: datetime | None
    value: float | None
    category: str | None
    unit: str | None
    original_value: str | None
    original_unit: str | None
    converted: bool
    flag: str | None
    source: str  # version-specific reference, e.g. Observation/1/_history/2
    duplicates: int = 0

    @property
    def used(self) -> bool:
        return self.flag is None


# Flags of a reading that holds a value a clinician must verify; ``no-value`` and ``no-time``
# hold no reading (an absent value, or none that can be placed in time).
UNVERIFIED_FLAGS = frozenset({"implausible", "unit", "status", "comparator", "unknown-answer"})


@dataclass(frozen=True)
class FieldState:
    field: Field
    latest: Point | None
    count: int
    stale: bool | None  # None when there is no usable value
    # The newest reading when it is newer than ``latest`` (or there is none) and flagged: it needs
    # verification before any model may score the field.
    unverified: Point | None = None


def source_of(row: dict[str, Any]) -> str:
    return f"{row['res_type']}/{row['res_id']}/_history/{row['res_version']}"


def points(rows: list[dict[str, Any]], twin_field: Field) -> list[Point]:
    """``rows`` of one field, oldest first, duplicates folded into the first seen."""
    found: list[Point] = []
    seen: dict[tuple[Any, ...], int] = {}
    unit = twin_field.unit
    for row in rows:
        value = row["value"]
        category = row["category"]
        flag = row["flag"]
        key = (row["effective"], value, category, flag)
        if (value is not None or category is not None) and key in seen:
            position = seen[key]
            kept = found[position]
            found[position] = kept._replace(duplicates=kept.duplicates + 1)
            continue
        seen[key] = len(found)
        found.append(
            Point(
                time=row["effective"],
                value=value,
                category=category,
                unit=unit if value is not None else None,
                original_value=row["original_value"],
                original_unit=row["original_unit"],
                converted=row["converted"],
                flag=flag,
                source=f"{row['res_type']}/{row['res_id']}/_history/{row['res_version']}",
            )
        )
    return found


def field_states(series: dict[str, list[Point]], mapping: Mapping, reference: datetime) -> dict[str, FieldState]:
    """Every mapped field's latest usable value and whether it is stale at ``reference``."""
    states = {}
    for name, twin_field in mapping.fields.items():
        found = series.get(name, [])
        used = [point for point in found if point.used]
        latest = max(used, key=lambda point: point.time or datetime.min) if used else None
        stale = None
        if latest is not None and latest.time is not None:
            stale = twin_field.stale_after is not None and latest.time < reference - twin_field.stale_after
        states[name] = FieldState(twin_field, latest, len(used), stale, _unverified(found, latest))
    return states


def _unverified(found: list[Point], latest: Point | None) -> Point | None:
    """The newest flagged reading after ``latest`` (after nothing, when there is no usable value)."""
    after = latest.time if latest is not None and latest.time is not None else None
    flagged = [
        (point.time, point)
        for point in found
        if point.flag in UNVERIFIED_FLAGS and point.time is not None and (after is None or point.time > after)
    ]
    return max(flagged, key=lambda timed: timed[0])[1] if flagged else None


def by_field(rows: list[dict[str, Any]], mapping: Mapping) -> dict[str, list[Point]]:
    """Measurement rows (sorted by field, time) as points per mapped field."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["field"], []).append(row)
    return {name: points(group, mapping.fields[name]) for name, group in grouped.items() if name in mapping.fields}
