"""``Patient/{id}/$twin``: the twin for FHIR clients, as a ``Parameters`` resource.

Parameters: ``at`` (optional dateTime) for the twin in clinical time, ``recorded`` (optional
dateTime) for the twin as the server held it; both are echoed when given. Each Body field is a
``field`` parameter (name, label, value as a UCUM Quantity or a code, time, stale, count,
source, and an ``unverified`` part for a newer flagged reading: value, time, flag, source);
each case entry a ``case`` parameter; the data-quality summary a ``quality`` parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_twin.errors import Invalid
from fhir_twin.fhir.instant import format_instant
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Parameter, Permission, parameters
from fhir_twin.twin.body import Point
from fhir_twin.twin.document import TwinDocument
from fhir_twin.twin.measurement import UCUM
from fhir_twin.twin.twins import Twins, time_parameter

DEFINITION = "urn:fhir-twin:OperationDefinition/Patient-twin"


def twin_permission(twins: Twins, creates: tuple[str, ...] = ()) -> Permission:
    """What showing a patient's twin needs: reading the Patient, every type its mappings feed from
    (so a type added to the mappings is guarded at once) and the Doctor's RiskAssessments; a
    patient-context token, only for its own patient."""
    reads = ("Patient", *sorted(twins.mapping.types - {"Patient"}), "RiskAssessment")
    return Permission(reads=reads, creates=creates, patient=True)


def twin_operation(twins: Twins) -> Operation:
    def handle(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
        given = parameters(request)
        names = ("at", "recorded")
        unknown = [name for name, _ in given if name not in names]
        if unknown:
            raise Invalid.at(unknown[0], f"$twin takes only 'at' and 'recorded', not {unknown[0]!r}")
        times: dict[str, datetime | None] = {}
        for name in names:
            values = [value for found, value in given if found == name]
            if len(values) > 1:
                raise Invalid.at(name, f"{name} may be given only once")
            times[name] = time_parameter(name, values[0], end=True) if values else None
        document = twins.document(str(res_id), times["at"], times["recorded"])
        return Response(200, {}, as_parameters(document))

    return Operation(
        name="twin",
        levels=frozenset({"instance"}),
        methods=frozenset({"GET", "POST"}),
        handler=handle,
        definition=DEFINITION,
        types=frozenset({"Patient"}),
        permission=twin_permission(twins),
        affects_state=False,
        description="The patient's Digital Twin as a Parameters resource: the Digital Body's fields, the "
        "Digital Case and a data-quality summary. Nothing is stored.",
        parameters=(
            Parameter(
                "at",
                "in",
                "dateTime",
                "Clinical time: the twin as the record described the patient then, from what was observed up to it.",
            ),
            Parameter(
                "recorded",
                "in",
                "dateTime",
                "Server time: the twin as the server knew the patient at that instant, from the versions stored then.",
            ),
            Parameter(
                "return",
                "out",
                "Parameters",
                "`patient` (Reference), `referenceTime` (instant), `at` and `recorded` (instant, when given), one "
                "`field` per Body field (parts `name`, `label`, `count`, `value` as a UCUM Quantity or a code, `time`, "
                "`source`, `stale`, and `unverified` for a newer flagged reading: `value`, `time`, `flag`, `source`), "
                "one `case` per Case entry "
                "(parts `kind`, `source`, `code`, `status`, `start`, `end`) and `quality` (parts `completeness`, "
                "`used`, `converted`, `flagged`, `duplicates`, `missing`).",
                min=1,
            ),
        ),
    )


def as_parameters(document: TwinDocument) -> dict[str, Any]:
    out: list[dict[str, Any]] = [
        {"name": "patient", "valueReference": {"reference": document.patient.source}},
        *(
            {"name": name, "valueInstant": format_instant(moment)}
            for name, moment in (("at", document.at), ("recorded", document.recorded))
            if moment is not None
        ),
        {"name": "referenceTime", "valueInstant": format_instant(document.reference_time)},
    ]
    for name, state in document.body.items():
        parts: list[dict[str, Any]] = [
            {"name": "name", "valueCode": name},
            {"name": "label", "valueString": state.field.label},
            {"name": "count", "valueInteger": state.count},
        ]
        if state.latest is not None:
            parts.extend(_reading(state.latest, state.field.unit))
        if state.stale is not None:
            parts.append({"name": "stale", "valueBoolean": state.stale})
        unverified = state.unverified
        if unverified is not None:
            reading = _reading(unverified, state.field.unit)
            reading.insert(-1, {"name": "flag", "valueCode": unverified.flag})
            parts.append({"name": "unverified", "part": reading})
        out.append({"name": "field", "part": parts})
    for kind, items in document.case.items():
        for item in items:
            parts = [
                {"name": "kind", "valueCode": kind},
                {"name": "source", "valueReference": {"reference": item.source}},
            ]
            if item.code and "|" in item.code:
                system, code = item.code.split("|", 1)
                coding = {"system": system, "code": code} if system else {"code": code}
                if item.display:
                    coding["display"] = item.display
                parts.append({"name": "code", "valueCoding": coding})
            elif item.display:
                parts.append({"name": "code", "valueString": item.display})
            if item.status:
                parts.append({"name": "status", "valueCode": item.status})
            if item.start is not None:
                parts.append({"name": "start", "valueDateTime": format_instant(item.start)})
            if item.end is not None:
                parts.append({"name": "end", "valueDateTime": format_instant(item.end)})
            out.append({"name": "case", "part": parts})
    quality = document.quality
    quality_parts: list[dict[str, Any]] = [
        {"name": "completeness", "valueDecimal": quality.completeness},
        {"name": "used", "valueInteger": quality.used},
        {"name": "converted", "valueInteger": quality.converted},
        {"name": "flagged", "valueInteger": quality.flagged},
        {"name": "duplicates", "valueInteger": quality.duplicates},
        *({"name": "missing", "valueCode": name} for name in quality.missing),
    ]
    out.append({"name": "quality", "part": quality_parts})
    return {"resourceType": "Parameters", "parameter": out}


def _reading(point: Point, unit: str | None) -> list[dict[str, Any]]:
    """A point's value (a UCUM Quantity in the field's unit, a category code, or, when the twin
    could not read it as either, the value and unit as sent), time and source."""
    parts: list[dict[str, Any]] = []
    if point.value is not None:
        quantity = {"value": point.value, "unit": unit, "system": UCUM, "code": unit}
        parts.append({"name": "value", "valueQuantity": quantity})
    elif point.category is not None:
        parts.append({"name": "value", "valueCode": point.category})
    elif point.original_value is not None:
        sent = " ".join(text for text in (point.original_value, point.original_unit) if text)
        parts.append({"name": "value", "valueString": sent})
    if point.time is not None:
        parts.append({"name": "time", "valueDateTime": format_instant(point.time)})
    parts.append({"name": "source", "valueReference": {"reference": point.source}})
    return parts
