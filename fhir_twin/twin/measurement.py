"""Observation -> Digital Body measurements: unit normalisation, plausibility, status rules.

Cleaning is the first step of the twin (accuracy and completeness): every value is kept, in
its original form too, but only an unflagged one feeds a model. ``flag`` says why a value is
not used: ``implausible`` (outside the field's range), ``unit`` (no conversion from its unit),
``status`` (not a status the field accepts), ``no-value`` (absent, R4 observation.html
dataAbsentReason), ``comparator`` (``<0.3``: a bound, not a value), ``no-time`` (no effective
time), ``unknown-answer`` (a coded value the mapping does not know) or ``statistic`` (a summary
of several readings, such as a device's window mean: its components are coded in the R4
observation-statistics code system; no score reads a mean as a reading, docs/clinical-safety.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from fhir_twin.fhir.instant import parse_range
from fhir_twin.twin.mapping import Code, Field, Mapping, Source

UCUM = "http://unitsofmeasure.org"
STATISTICS = "http://terminology.hl7.org/CodeSystem/observation-statistics"


@dataclass(frozen=True)
class Measurement:
    field: str
    code: str  # the "system|code" that matched
    effective: datetime | None
    value: float | None  # canonical unit; None for coded fields and unusable quantities
    category: str | None  # coded fields
    original_value: str | None
    original_unit: str | None
    converted: bool
    flag: str | None

    @property
    def used(self) -> bool:
        return self.flag is None


def measurements(observation: dict[str, Any], mapping: Mapping) -> list[Measurement]:
    """The measurements one Observation gives, one per field at most."""
    found: dict[str, Measurement] = {}
    for coding in _codings(observation.get("code")):
        for twin_field, source in mapping.by_code.get(coding, ()):
            if twin_field.name in found:
                continue
            measurement = _measure(observation, twin_field, source)
            if measurement is not None:
                found[twin_field.name] = measurement
    return list(found.values())


def effective_time(observation: dict[str, Any]) -> datetime | None:
    """When it was measured: effective[x] (a period's start), else ``issued`` (R4 observation.html)."""
    period = observation.get("effectivePeriod") or {}
    for value in (
        observation.get("effectiveDateTime"),
        observation.get("effectiveInstant"),
        period.get("start"),
        period.get("end"),
        observation.get("issued"),
    ):
        if isinstance(value, str):
            try:
                return parse_range(value)[0]
            except ValueError:
                continue
    return None


def _measure(observation: dict[str, Any], twin_field: Field, source: Source) -> Measurement | None:
    holder: dict[str, Any] = observation
    if source.component is not None:
        component = next(
            (c for c in observation.get("component") or [] if source.component in _codings(c.get("code"))), None
        )
        if component is None:
            return None
        holder = component
    effective = effective_time(observation)
    status = observation.get("status")
    code = "|".join(source.component or source.code)
    if twin_field.kind == "coded":
        value: Measurement = _coded(holder, twin_field, code, effective)
    else:
        value = _quantity(holder, twin_field, code, effective)
    if value.flag is None and status not in twin_field.statuses:
        value = replace(value, flag="status")
    if value.flag is None and effective is None:
        value = replace(value, flag="no-time")
    if value.flag is None and source.component is None and _is_statistic(observation):
        value = replace(value, flag="statistic")
    return value


def _is_statistic(observation: dict[str, Any]) -> bool:
    components = [c for c in observation.get("component") or [] if isinstance(c, dict)]
    return any(system == STATISTICS for component in components for system, _ in _codings(component.get("code")))


def _quantity(holder: dict[str, Any], twin_field: Field, code: str, effective: datetime | None) -> Measurement:
    quantity = holder.get("valueQuantity")
    if not isinstance(quantity, dict):
        quantity = {}
    number = quantity.get("value")
    if not isinstance(number, int | float | Decimal) or isinstance(number, bool):
        return Measurement(twin_field.name, code, effective, None, None, None, None, False, "no-value")
    unit = _unit(quantity, twin_field)
    original = str(number)
    comparator = quantity.get("comparator")
    if isinstance(comparator, str):
        shown = quantity.get("code") or quantity.get("unit")
        return Measurement(
            twin_field.name, code, effective, None, None, comparator + original, shown, False, "comparator"
        )
    if unit == twin_field.unit:
        canonical, converted = Fraction(original), False
    elif unit in twin_field.conversions:
        canonical, converted = twin_field.conversions[unit].apply(Fraction(original)), True
    else:
        shown = quantity.get("code") or quantity.get("unit")
        return Measurement(twin_field.name, code, effective, None, None, original, shown, False, "unit")
    flag = None
    if twin_field.plausible and not twin_field.plausible[0] <= canonical <= twin_field.plausible[1]:
        flag = "implausible"
    try:
        number = float(canonical)
    except OverflowError:
        # A valid decimal whose unit conversion leaves the range of a double: no body holds it.
        return Measurement(twin_field.name, code, effective, None, None, original, unit, converted, "implausible")
    return Measurement(twin_field.name, code, effective, number, None, original, unit, converted, flag)


def _unit(quantity: dict[str, Any], twin_field: Field) -> str | None:
    """The UCUM code of a quantity; its human ``unit`` only when it names a unit the field knows."""
    system = quantity.get("system")
    if quantity.get("code") and system in (None, UCUM):
        return str(quantity["code"])
    unit = quantity.get("unit")
    if unit == twin_field.unit or unit in twin_field.conversions:
        return str(unit)
    return None


def _coded(holder: dict[str, Any], twin_field: Field, code: str, effective: datetime | None) -> Measurement:
    concept = holder.get("valueCodeableConcept")
    if not isinstance(concept, dict):
        return Measurement(twin_field.name, code, effective, None, None, None, None, False, "no-value")
    for coding in _codings(concept):
        if coding in twin_field.values:
            category = twin_field.values[coding]
            return Measurement(twin_field.name, code, effective, None, category, "|".join(coding), None, False, None)
    texts = [concept.get("text")] + [c.get("display") for c in concept.get("coding") or [] if isinstance(c, dict)]
    for text in texts:
        if isinstance(text, str) and text.casefold() in twin_field.texts:
            category = twin_field.texts[text.casefold()]
            return Measurement(twin_field.name, code, effective, None, category, text, None, False, None)
    shown = next((t for t in texts if isinstance(t, str)), None)
    codings = _codings(concept)
    if codings:
        shown = "|".join(codings[0])
    return Measurement(twin_field.name, code, effective, None, None, shown, None, False, "unknown-answer")


def _codings(concept: Any) -> list[Code]:
    if not isinstance(concept, dict):
        return []
    return [
        (c["system"], c["code"])
        for c in concept.get("coding") or []
        if isinstance(c, dict) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str)
    ]
