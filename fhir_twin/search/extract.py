"""The index rows of a resource: per search parameter, the values its expression selects.

Run on every write, as HAPI FHIR does: each search parameter of the resource's type selects
values with its FHIRPath expression (``fhirpath``) and each value becomes rows by the
conversions R4 search.html gives per parameter type (string, token, reference, date, number,
quantity, uri). A composite's components are evaluated on each element its expression selects
and stored under the composite's code as ``code#0``, ``code#1``…, one group per element
(search.html#composite). ``_id`` and ``_lastUpdated`` are answered from the resource table.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache, lru_cache
from itertools import count
from typing import Any

from fhir_twin.fhir.instant import parse_range
from fhir_twin.search.fhirpath import PRIMITIVES, Group, Selector, compile_expression, reference_target
from fhir_twin.search.index import (
    DateRow,
    IndexRow,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    UriRow,
)
from fhir_twin.search.parameters import ID, LAST_UPDATED, parameters_for
from fhir_twin.search.text import fold
from fhir_twin.search.ucum import canonical

UCUM = "http://unitsofmeasure.org"
ISO_4217 = "urn:iso:std:iso:4217"
_QUANTITIES = frozenset({"Quantity", "SimpleQuantity", "MoneyQuantity", "Age", "Count", "Distance", "Duration"})
_ABSOLUTE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")

# From one selected value: its rows, for a parameter name and a composite group.
Converter = Callable[[Any, str, int], list[IndexRow]]


@dataclass(frozen=True)
class _Component:
    param: str
    type: str
    expression: str


@dataclass(frozen=True)
class _Entry:
    """One parameter of a resource type, ready to run: ``components`` only for composites."""

    code: str
    type: str
    select: Selector
    components: tuple[_Component, ...] = ()


# The server base of the extraction under way (see ``extract``).
_BASE: ContextVar[str | None] = ContextVar("fhir_twin_extract_base", default=None)


def extract(resource: dict[str, Any], base: str | None = None) -> list[IndexRow]:
    """Every index row of ``resource``, each once, in parameter order.

    ``base`` is this server's base URL: an absolute reference into it is the local resource it
    names (R4 references.html), indexed as ``Type/id`` as well as by its URL.
    """
    token = _BASE.set(base.rstrip("/") + "/" if base else None)
    try:
        return _extract(resource)
    finally:
        _BASE.reset(token)


def _extract(resource: dict[str, Any]) -> list[IndexRow]:
    rows: list[IndexRow] = []
    groups = count(1)
    for entry in _plan(resource.get("resourceType", "")):
        if entry.type != "composite":
            _convert(entry.select(resource, resource), entry.type, entry.code, 0, rows)
            continue
        for base_type, elements in entry.select(resource, resource):
            for element in elements:
                _composite(entry.components, element, base_type, resource, next(groups), rows)
    return list(dict.fromkeys(rows))


def _composite(
    components: tuple[_Component, ...],
    element: Any,
    base_type: str | None,
    resource: dict[str, Any],
    group: int,
    rows: list[IndexRow],
) -> None:
    """The rows of one composite value; none unless every component has a value to match.

    All components are selected before any is converted: most elements miss one (an
    Observation without ``valueCodeableConcept``), and selecting is cheaper than making rows.
    """
    selections = []
    for component in components:
        selected = compile_expression(component.expression, base_type or "")(element, resource)
        if not selected:
            return
        selections.append(selected)
    found: list[IndexRow] = []
    for component, selected in zip(components, selections, strict=True):
        before = len(found)
        _convert(selected, component.type, component.param, group, found)
        if len(found) == before:
            return
    rows.extend(found)


def _convert(groups: list[Group], kind: str, param: str, group: int, rows: list[IndexRow]) -> None:
    for type_name, values in groups:
        convert = _converter(kind, type_name)
        if convert is not None:
            for value in values:
                rows.extend(convert(value, param, group))


@cache
def _plan(resource_type: str) -> tuple[_Entry, ...]:
    entries = []
    for code, parameter in parameters_for(resource_type).items():
        if code in (ID, LAST_UPDATED) or parameter.expression is None:
            continue
        components = tuple(
            _Component(f"{code}#{index}", part.parameter.type, part.expression)
            for index, part in enumerate(parameter.components)
        )
        if parameter.type == "composite" and not components:
            continue
        select = compile_expression(parameter.expression, resource_type)
        entries.append(_Entry(code, parameter.type, select, components))
    return tuple(entries)


@cache
def _converter(kind: str, type_name: str | None) -> Converter | None:
    """How a value of FHIR type ``type_name`` indexes as a ``kind`` parameter; None: it does not."""
    if type_name is None:
        return None
    by_type = _CONVERTERS[kind]
    if type_name in by_type:
        return by_type[type_name]
    if type_name in PRIMITIVES:
        return by_type.get("primitive")
    if type_name in _QUANTITIES:
        return by_type.get("Quantity")
    return by_type.get("Resource")


# --- string (search.html#string) ---------------------------------------------------------------


def _string_rows(param: str, parts: list[Any], group: int) -> list[IndexRow]:
    return [StringRow(param, fold(part), part, group) for part in parts if isinstance(part, str) and part]


def _string(value: Any, param: str, group: int) -> list[IndexRow]:
    return _string_rows(param, [value], group)


def _human_name(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    parts = [value.get("family"), *_list(value, "given"), *_list(value, "prefix"), *_list(value, "suffix")]
    return _string_rows(param, [*parts, value.get("text")], group)


def _address(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    keys = ("city", "district", "state", "postalCode", "country", "text")
    return _string_rows(param, [*_list(value, "line"), *(value.get(key) for key in keys)], group)


def _list(value: dict[str, Any], key: str) -> list[Any]:
    found = value.get(key)
    return found if isinstance(found, list) else []


def _str(value: dict[str, Any], key: str) -> str | None:
    found = value.get(key)
    return found if isinstance(found, str) else None


# --- token (search.html#token) -----------------------------------------------------------------


def _text(value: Any) -> str | None:
    return fold(value) if isinstance(value, str) and value else None


def _token_primitive(value: Any, param: str, group: int) -> list[IndexRow]:
    if isinstance(value, bool):
        return [TokenRow(param, None, "true" if value else "false", group=group)]
    if isinstance(value, str | int) and value != "":
        return [TokenRow(param, None, str(value), group=group)]
    return []


def _coding(value: dict[str, Any], param: str, group: int, concept_text: str | None = None) -> list[IndexRow]:
    system, code, display = _str(value, "system"), _str(value, "code"), value.get("display")
    if system is None and code is None and display is None:
        return []
    return [TokenRow(param, system, code, _text(display) or concept_text, group=group)]


def _codeable_concept(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    """A row per coding, its text the display or else the concept's; the concept's text also alone.

    ``:text`` matches "the display or text" of a code (search.html#modifiers): a row per coding
    serves ``system|code`` and the display, the text-only row serves ``CodeableConcept.text``.
    """
    text = _text(value.get("text"))
    rows = [
        row
        for coding in _list(value, "coding")
        if isinstance(coding, dict)
        for row in _coding(coding, param, group, text)
    ]
    if text:
        rows.append(TokenRow(param, None, None, text, group=group))
    return rows


def _identifier(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    """``system|value``, once per coding of the type (for ``:of-type``), with its text for ``:text``."""
    system, code = _str(value, "system"), _str(value, "value")
    if system is None and code is None:
        return []
    kind = value.get("type")
    if not isinstance(kind, dict):
        kind = {}
    text = _text(kind.get("text"))
    codings = [coding for coding in _list(kind, "coding") if isinstance(coding, dict)] or [{}]
    return [
        TokenRow(param, system, code, text, _str(coding, "system"), _str(coding, "code"), group) for coding in codings
    ]


def _contact_point(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    """R4 matches a ContactPoint token on its value alone; ``ContactPoint.system`` is no code system."""
    code = value.get("value")
    return [TokenRow(param, None, code, group=group)] if isinstance(code, str) else []


# --- reference (search.html#reference) ---------------------------------------------------------


def _reference(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    """``Type/id`` locally, else the absolute URL; ``#contained`` targets are not indexed, identifiers are."""
    target = value.get("reference")
    identifier = value.get("identifier")
    if not isinstance(identifier, dict):
        identifier = {}
    system, code = _str(identifier, "system"), _str(identifier, "value")
    target_type = target_id = url = None
    if isinstance(target, str) and not target.startswith("#"):
        if _ABSOLUTE.match(target):
            url = target
            local = _BASE.get()
            if local and target.startswith(local) and (parsed := reference_target(target[len(local) :])):
                target_type, target_id = parsed
        elif parsed := reference_target(target):
            target_type, target_id = parsed
    if target_type is None and url is None and code is None:
        return []
    return [ReferenceRow(param, target_type, target_id, url, system, code, group)]


def _canonical(value: Any, param: str, group: int) -> list[IndexRow]:
    """A canonical or uri reference, kept whole (a ``|version`` suffix included)."""
    return [ReferenceRow(param, None, None, value, group=group)] if isinstance(value, str) and value else []


def _embedded(value: Any, param: str, group: int) -> list[IndexRow]:
    """A resource an expression selects itself (``Bundle.entry[0].resource``) is a reference to it."""
    if isinstance(value, dict) and isinstance(value.get("id"), str) and isinstance(value.get("resourceType"), str):
        return [ReferenceRow(param, value["resourceType"], value["id"], group=group)]
    return []


# --- date (search.html#date) -------------------------------------------------------------------


def _range(value: Any) -> tuple[datetime, datetime] | None:
    return _parsed_range(value) if isinstance(value, str) else None


@lru_cache(maxsize=4096)
def _parsed_range(value: str) -> tuple[datetime, datetime] | None:
    """Cached: the resources of one encounter share their instants, so a Bundle indexes the same
    text many times (in the Synthea Bundles of ``bench/``, 9 of 10 dates were seen before)."""
    try:
        return parse_range(value)
    except ValueError:
        return None


def _date(value: Any, param: str, group: int) -> list[IndexRow]:
    found = _range(value)
    return [DateRow(param, *found, group)] if found else []


def _period_range(value: dict[str, Any]) -> tuple[datetime, datetime] | None:
    """An open end reaches the end of the calendar (search.html#date, Period)."""
    start, end = _range(value.get("start")), _range(value.get("end"))
    if start is None and end is None:
        return None
    return (start[0] if start else datetime.min), (end[1] if end else datetime.max)


def _period(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    found = _period_range(value)
    return [DateRow(param, *found, group)] if found else []


def _timing(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    """From the first to the last event, else the repeat's bounds."""
    events = [found for event in _list(value, "event") if (found := _range(event))]
    if events:
        return [DateRow(param, min(low for low, _ in events), max(high for _, high in events), group)]
    repeat = value.get("repeat")
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
    return _period(bounds, param, group) if isinstance(bounds, dict) else []


# --- number and quantity (search.html#number, #quantity) --------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)


def _number(value: Any, param: str, group: int) -> list[IndexRow]:
    number = _decimal(value)
    return [NumberRow(param, number, group)] if number is not None else []


def _quantity(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    number = _decimal(value.get("value"))
    if number is None:
        return []
    system, code = _str(value, "system"), _str(value, "code")
    converted = canonical(number, code) if system == UCUM and code else None
    canonical_value, canonical_code = converted or (None, None)
    return [QuantityRow(param, number, system, code, _str(value, "unit"), canonical_value, canonical_code, group)]


def _money(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    number = _decimal(value.get("value"))
    if number is None:
        return []
    return [QuantityRow(param, number, ISO_4217, _str(value, "currency"), None, group=group)]


def _range_quantities(value: dict[str, Any], param: str, group: int) -> list[IndexRow]:
    return [
        row
        for end in ("low", "high")
        if isinstance(value.get(end), dict)
        for row in _quantity(value[end], param, group)
    ]


# --- uri (search.html#uri) ---------------------------------------------------------------------


def _uri(value: Any, param: str, group: int) -> list[IndexRow]:
    return [UriRow(param, value, group)] if isinstance(value, str) and value else []


_CONVERTERS: dict[str, dict[str, Converter]] = {
    "string": {"primitive": _string, "HumanName": _human_name, "Address": _address},
    "token": {
        "primitive": _token_primitive,
        "Coding": _coding,
        "CodeableConcept": _codeable_concept,
        "Identifier": _identifier,
        "ContactPoint": _contact_point,
    },
    "reference": {"Reference": _reference, "primitive": _canonical, "Resource": _embedded},
    "date": {"date": _date, "dateTime": _date, "instant": _date, "Period": _period, "Timing": _timing},
    "number": {"primitive": _number},
    "quantity": {"Quantity": _quantity, "Money": _money, "Range": _range_quantities},
    "uri": {"primitive": _uri},
}
