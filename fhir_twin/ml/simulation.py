"""``$whatif``: hypothetical readings of the twin's Body fields, in the twin's own vocabulary.

A what-if names Body fields and values, ``systolic_bp=120`` in the field's canonical unit or
``smoking_status=never`` as one of the field's answers: the same names and values the twin
document shows, declared (``parameter``) and parsed (``value``) by the field's own definition, here
only. Each becomes a simulated reading that every
model reads in place of the field's latest (``reader.Reader``), and travels in the RiskAssessment
as a contained Observation its ``basis`` points at (R4 references.html#contained), never as a
reference to the real reading whose value it replaced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from fhir_twin.errors import Invalid
from fhir_twin.fhir.instant import format_instant
from fhir_twin.interactions.operations import Parameter
from fhir_twin.ml.assessment import SIMULATED
from fhir_twin.twin.body import Point
from fhir_twin.twin.document import TwinDocument
from fhir_twin.twin.mapping import Field

PREFIX = "whatif-"
UCUM = "http://unitsofmeasure.org"


@dataclass(frozen=True)
class Simulation:
    """Simulated readings by Body field, each with its field's definition."""

    points: dict[str, Point] = field(default_factory=dict)
    fields: dict[str, Field] = field(default_factory=dict)


def parse(changes: list[tuple[str, str]], document: TwinDocument, read: set[str]) -> Simulation:
    """The simulation ``changes`` describe: each name a Body field some chosen model ``read``s, given
    once, its value a finite number within the field's plausible range or one of its answers."""
    points: dict[str, Point] = {}
    fields: dict[str, Field] = {}
    for name, raw in changes:
        state = document.body.get(name)
        if state is None:
            known = ", ".join(sorted(read))
            raise Invalid.at(name, f"{name!r} is not a field of the twin's Body; the chosen models read: {known}")
        if name not in read:
            raise Invalid.at(name, f"No chosen model reads {name!r}; they read: {', '.join(sorted(read))}")
        if name in points:
            raise Invalid.at(name, f"{name} may be given only once")
        twin_field = state.field
        value, category = parse_value(twin_field, raw)
        latest = state.latest or state.unverified
        when = latest.time if latest is not None and latest.time is not None else document.reference_time
        points[name] = Point(
            time=when,
            value=value,
            category=category,
            unit=twin_field.unit if value is not None else None,
            original_value=raw,
            original_unit=twin_field.unit if value is not None else None,
            converted=False,
            flag=None,
            source=f"#{PREFIX}{name}",
        )
        fields[name] = twin_field
    return Simulation(points, fields)


def parameter(twin_field: Field) -> Parameter:
    """The ``$whatif`` parameter of a Body field, as ``parse_value`` reads it: a value in the field's
    unit, or one of its codes."""
    if twin_field.kind == "coded":
        codes = ", ".join(_answers(twin_field))
        return Parameter(twin_field.name, "in", "code", f"Hypothetical {twin_field.label}: one of {codes}.")
    return Parameter(twin_field.name, "in", "decimal", f"Hypothetical {twin_field.label}, in {twin_field.unit} (UCUM).")


def _answers(twin_field: Field) -> list[str]:
    return sorted({*twin_field.values.values(), *twin_field.texts.values()})


def parse_value(twin_field: Field, raw: str) -> tuple[float | None, str | None]:
    """A what-if value of ``twin_field``: a coded field's answer (as category), or a finite quantity in
    the field's canonical unit within its plausible range; anything else is a 400 naming the field."""
    if twin_field.kind == "coded":
        answers = _answers(twin_field)
        if raw not in answers:
            raise Invalid.at(twin_field.name, f"{twin_field.name} must be one of {', '.join(answers)}, not {raw!r}")
        return None, raw
    try:
        number = float(raw)
    except ValueError:
        raise Invalid.at(
            twin_field.name, f"{twin_field.name} must be a number in {twin_field.unit}, not {raw!r}"
        ) from None
    if not math.isfinite(number):
        raise Invalid.at(twin_field.name, f"{twin_field.name} must be a finite number, not {raw!r}")
    if twin_field.plausible is not None:
        low, high = (float(bound) for bound in twin_field.plausible)
        if not low <= number <= high:
            raise Invalid.at(
                twin_field.name,
                f"{twin_field.name} {raw} {twin_field.unit} is outside what the twin accepts as plausible "
                f"({low:g}-{high:g} {twin_field.unit})",
            )
    return number, None


def contained(simulation: Simulation, patient_id: str) -> list[dict[str, Any]]:
    """The simulated readings as Observations to contain in a RiskAssessment whose basis names them."""
    found = []
    for name, point in simulation.points.items():
        twin_field = simulation.fields[name]
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": f"{PREFIX}{name}",
            "meta": {"tag": [SIMULATED]},
            "status": "preliminary",
            "code": {"coding": [_code(twin_field)], "text": f"{twin_field.label} (hypothetical, what-if)"},
            "subject": {"reference": f"Patient/{patient_id}"},
        }
        if point.time is not None:
            observation["effectiveDateTime"] = format_instant(point.time)
        if point.value is not None:
            unit = twin_field.unit
            observation["valueQuantity"] = {"value": point.value, "unit": unit, "system": UCUM, "code": unit}
        else:
            answer = next((code for code, category in twin_field.values.items() if category == point.category), None)
            concept: dict[str, Any] = {"text": point.category}
            if answer is not None:
                concept["coding"] = [{"system": answer[0], "code": answer[1]}]
            observation["valueCodeableConcept"] = concept
        observation["note"] = [{"text": "A hypothetical value for a what-if assessment; not a measurement."}]
        found.append(observation)
    return found


def _code(twin_field: Field) -> dict[str, str]:
    """The field's code for a single reading: its first source that is not a panel component."""
    source = next((source for source in twin_field.sources if source.component is None), twin_field.sources[0])
    system, code = source.component or source.code
    return {"system": system, "code": code}
