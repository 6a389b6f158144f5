"""Case resources -> Digital Case entries, read with the FHIRPath expressions a mapping names.

Expressions go through the search engine's evaluator, which compiles the common path forms to
plain dict walks, so the write path stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_twin.fhir.instant import parse_range
from fhir_twin.search.fhirpath import Group, compile_expression
from fhir_twin.twin.mapping import REMOVED_STATUSES, CaseKind


@dataclass(frozen=True)
class CaseEntry:
    kind: str
    code: str | None  # "system|code" of the first coding
    display: str | None
    status: str | None
    start: datetime | None
    end: datetime | None
    details: dict[str, list[str]] = field(default_factory=dict)


def case_entries(resource: dict[str, Any], kinds: list[CaseKind]) -> list[CaseEntry]:
    """The entries ``resource`` gives, one per case list it feeds; none once it is removed."""
    entries = []
    for kind in kinds:
        if _removed(resource, kind):
            continue
        code, display = _first_code(_select(kind.code, kind.resource, resource))
        status = _status(_select(kind.status, kind.resource, resource)) if kind.status else None
        if status in REMOVED_STATUSES:
            continue
        start = _time(_select(kind.start, kind.resource, resource), "start") if kind.start else None
        end = _time(_select(kind.end, kind.resource, resource), "end") if kind.end else None
        details = {}
        for name, expression in kind.details.items():
            texts = _texts(_select(expression, kind.resource, resource))
            if texts:
                details[name] = texts
        entries.append(CaseEntry(kind.name, code, display, status, start, end, details))
    return entries


def _select(expression: str, base: str, resource: dict[str, Any]) -> list[Group]:
    return compile_expression(expression, base)(resource, resource)


def _removed(resource: dict[str, Any], kind: CaseKind) -> bool:
    return any(_status(_select(element, kind.resource, resource)) in codes for element, codes in kind.removed.items())


def _values(groups: list[Group]) -> list[tuple[str | None, Any]]:
    return [(type_name, value) for type_name, values in groups for value in values]


def _first_code(groups: list[Group]) -> tuple[str | None, str | None]:
    for _, value in _values(groups):
        if isinstance(value, dict):
            codings = value.get("coding") if "coding" in value else [value]
            for coding in codings or []:
                if isinstance(coding, dict) and coding.get("code"):
                    code = f"{coding.get('system', '')}|{coding['code']}"
                    return code, coding.get("display") or value.get("text")
            if value.get("text"):
                return None, value["text"]
            reference = value.get("reference")
            if isinstance(reference, str):
                return None, value.get("display") or reference
        elif isinstance(value, str):
            return value, None
    return None, None


def _status(groups: list[Group]) -> str | None:
    code, _ = _first_code(groups)
    if code is None:
        return None
    return code.split("|", 1)[1] if "|" in code else code


def _time(groups: list[Group], bound: str) -> datetime | None:
    """A dateTime or a Period's ``bound``; an end given to the day (or coarser) is that day's end."""
    for _, value in _values(groups):
        text = value.get(bound) if isinstance(value, dict) else value
        if isinstance(text, str):
            try:
                low, high = parse_range(text)
            except ValueError:
                continue
            return high if bound == "end" and "T" not in text else low
    return None


def _texts(groups: list[Group]) -> list[str]:
    texts = []
    for _, value in _values(groups):
        if isinstance(value, dict):
            code, display = _first_code([(None, [value])])
            text = value.get("reference") if isinstance(value.get("reference"), str) else code or display
        else:
            text = str(value)
        if text:
            texts.append(text)
    return texts
