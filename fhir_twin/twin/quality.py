"""A patient's data-quality summary: what the twin used, converted, flagged, and what is missing.

Completeness of a field is the share of its measurements that are usable; the twin's overall
completeness is the share of mapped fields with at least one usable value.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from fhir_twin.twin.body import Point
from fhir_twin.twin.mapping import Mapping


@dataclass(frozen=True)
class FieldQuality:
    total: int
    used: int
    converted: int
    duplicates: int
    flagged: dict[str, int] = field(default_factory=dict)

    @property
    def completeness(self) -> float:
        return round(self.used / self.total, 4) if self.total else 0.0


@dataclass(frozen=True)
class Quality:
    fields: dict[str, FieldQuality]
    missing: list[str]
    used: int
    converted: int
    flagged: int
    duplicates: int
    completeness: float


def quality(series: dict[str, list[Point]], mapping: Mapping) -> Quality:
    per_field = {}
    for name in mapping.fields:
        found = series.get(name, [])
        flags = Counter(point.flag for point in found if point.flag)
        per_field[name] = FieldQuality(
            total=len(found),
            used=sum(point.used for point in found),
            converted=sum(point.converted and point.used for point in found),
            duplicates=sum(point.duplicates for point in found),
            flagged=dict(sorted(flags.items())),
        )
    missing = [name for name, summary in per_field.items() if summary.used == 0]
    return Quality(
        fields=per_field,
        missing=missing,
        used=sum(summary.used for summary in per_field.values()),
        converted=sum(summary.converted for summary in per_field.values()),
        flagged=sum(sum(summary.flagged.values()) for summary in per_field.values()),
        duplicates=sum(summary.duplicates for summary in per_field.values()),
        completeness=round(1 - len(missing) / len(per_field), 4) if per_field else 0.0,
    )
