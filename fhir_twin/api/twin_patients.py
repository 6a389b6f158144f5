"""The twin API beside the FHIR API (README "The twin API"): JSON documents whose shape the
marshmallow schemas of ``fhir_twin.twin.schemas`` define; errors are OperationOutcomes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from flask import Blueprint, Response, jsonify, request

from fhir_twin.api.paging import whole_number
from fhir_twin.errors import Invalid
from fhir_twin.fhir.resource_types import is_valid_id
from fhir_twin.ml.doctor import Doctor
from fhir_twin.ml.schemas import assessment_summary
from fhir_twin.twin.downsampling import MAX_POINTS, MIN_POINTS, downsample
from fhir_twin.twin.schemas import MeasuredSchema, SeriesSchema, TwinSchema
from fhir_twin.twin.twins import Twins, time_parameter


def _times(allowed: tuple[str, ...], also: tuple[str, ...] = ()) -> dict[str, datetime | None]:
    """The query's time parameters; anything else (but ``also``), a repeat or a bad value is a 400."""
    for name in request.args:
        if name not in allowed and name not in also:
            raise Invalid.at(name, f"Unknown parameter {name!r}; this endpoint takes {', '.join((*allowed, *also))}")
    found: dict[str, datetime | None] = {}
    for name in allowed:
        values = request.args.getlist(name)
        if len(values) > 1:
            raise Invalid.at(name, f"{name} may be given only once")
        found[name] = time_parameter(name, values[0], end=name != "from") if values else None
    return found


def _patient_id(patient_id: str) -> str:
    if not is_valid_id(patient_id):
        raise Invalid(f"{patient_id[:80]!r} is not a valid resource id")
    return patient_id


def twin_blueprint(twins: Twins, doctor: Doctor) -> Blueprint:
    """``/twin/patients/{id}`` and its series, from ``twins``, with ``doctor``'s assessments."""
    blueprint = Blueprint("twin", __name__)

    @blueprint.get("/twin/patients/<patient_id>")
    def twin(patient_id: str) -> Response:
        times = _times(("at", "recorded"))
        document = twins.document(_patient_id(patient_id), times["at"], times["recorded"])
        out = TwinSchema().dump(document)
        # The Digital Doctor's part of the twin: each model's newest assessment whose occurrence is
        # before the earlier of the two times. The Doctor dates an assessment when it makes it, so
        # before ``recorded`` that is the newest it had made by then.
        given = [moment for moment in (times["at"], times["recorded"]) if moment is not None]
        out["assessments"] = [
            assessment_summary(found) for found in doctor.latest(patient_id, min(given, default=None))
        ]
        return jsonify(out)

    @blueprint.get("/twin/patients/<patient_id>/series")
    def measured(patient_id: str) -> Response:
        times = _times(("at", "recorded"))
        found = twins.measured(_patient_id(patient_id), times["at"], times["recorded"])
        return jsonify(MeasuredSchema().dump({"patient": patient_id, **times, "fields": found}))

    @blueprint.get("/twin/patients/<patient_id>/series/<field>")
    def series(patient_id: str, field: str) -> Response:
        wanted = whole_number("points", 0, MIN_POINTS, MAX_POINTS) if "points" in request.args else None
        times = _times(("from", "to", "at", "recorded"), also=("points",))
        start, end = times["from"], times["to"]
        if start is not None and end is not None and start >= end:
            raise Invalid.at("from", "from must be before to")
        found = twins.series(_patient_id(patient_id), field, start, end, times["at"], times["recorded"])
        if wanted is None:
            return jsonify(SeriesSchema().dump(found))
        # A long series downsampled for a chart (twin.downsampling): flagged and converted points kept.
        kept = downsample(found.points, wanted)
        out = SeriesSchema().dump(replace(found, points=kept))
        out["total"] = len(found.points)
        out["downsampled"] = len(kept) < len(found.points)
        return jsonify(out)

    return blueprint
