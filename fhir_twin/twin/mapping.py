"""What the mapping files say, as values: twin fields, their sources, units and rules.

A ``Field`` is one series of the Digital Body (heart rate, HbA1c, smoking status, ...); a
``CaseKind`` is one list of the Digital Case (conditions, encounters, ...). ``Mapping`` holds
them all with the lookups the write path needs: the fields a code feeds, the types mapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from functools import cached_property

Code = tuple[str, str]  # (system, code)

# Resources in these states are not part of the record at all: they leave the twin
# (R4 valueset-observation-status: "entered-in-error", "cancelled").
REMOVED_STATUSES = frozenset({"entered-in-error", "cancelled"})


@dataclass(frozen=True)
class Conversion:
    """``canonical = (value + offset) * factor``, from one accepted UCUM unit."""

    unit: str
    factor: Fraction
    offset: Fraction = Fraction(0)

    def apply(self, value: Fraction) -> Fraction:
        return (value + self.offset) * self.factor


@dataclass(frozen=True)
class Source:
    """An Observation code that feeds a field; ``component`` picks one component's value."""

    code: Code
    component: Code | None = None


@dataclass(frozen=True)
class Field:
    """One measurement series of the Digital Body."""

    name: str
    label: str
    kind: str  # "quantity" or "coded"
    sources: tuple[Source, ...]
    unit: str | None = None
    conversions: dict[str, Conversion] = field(default_factory=dict)
    plausible: tuple[Fraction, Fraction] | None = None
    statuses: frozenset[str] = frozenset({"final", "amended", "corrected"})
    stale_after: timedelta | None = None
    # For coded fields: the category each answer code stands for, and answers matched by text.
    values: dict[Code, str] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    file: str = ""


@dataclass(frozen=True)
class CaseKind:
    """One list of the Digital Case, read from one resource type by FHIRPath expressions."""

    name: str
    label: str
    resource: str
    code: str
    status: str | None = None
    start: str | None = None
    end: str | None = None
    # Element -> codes: a resource with one of them there is not part of the record.
    removed: dict[str, frozenset[str]] = field(default_factory=dict)
    details: dict[str, str] = field(default_factory=dict)
    file: str = ""


@dataclass(frozen=True)
class Mapping:
    fields: dict[str, Field]
    case: dict[str, CaseKind]

    @cached_property
    def by_code(self) -> dict[Code, list[tuple[Field, Source]]]:
        """The fields each Observation code feeds, and how."""
        found: dict[Code, list[tuple[Field, Source]]] = {}
        for twin_field in self.fields.values():
            for source in twin_field.sources:
                found.setdefault(source.code, []).append((twin_field, source))
        return found

    @cached_property
    def case_of(self) -> dict[str, list[CaseKind]]:
        """The case lists each resource type feeds."""
        found: dict[str, list[CaseKind]] = {}
        for kind in self.case.values():
            found.setdefault(kind.resource, []).append(kind)
        return found

    @cached_property
    def types(self) -> frozenset[str]:
        """Every resource type that feeds the twin."""
        return frozenset(self.case_of) | ({"Observation"} if self.fields else set())
