"""The Digital Doctor's models over HTTP (README "Models"): ``/twin/models`` lists every model with
its versions; ``/twin/models/{id}[?version=]`` adds a version's evaluation report and model card,
and for NEWS2 the chart's bands, so a chart draws the server's own cut-offs, never a copy."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, jsonify, request

from fhir_twin.errors import Invalid, NotFound
from fhir_twin.ml import fields
from fhir_twin.ml.catalog import Catalog
from fhir_twin.ml.schemas import ModelSchema, detail
from fhir_twin.ml.scores import news2


def models_blueprint(catalog: Catalog) -> Blueprint:
    """``/twin/models`` and ``/twin/models/{id}``, from ``catalog``."""
    blueprint = Blueprint("models", __name__)

    @blueprint.get("/twin/models")
    def models() -> Response:
        _only(())
        return jsonify({"models": ModelSchema(many=True).dump(catalog.entries())})

    @blueprint.get("/twin/models/<model_id>")
    def model(model_id: str) -> Response:
        _only(("version",))
        entry = catalog.entry(model_id)
        wanted = request.args.get("version", entry.active if entry.versions else None)
        version = next((v for v in entry.versions if v.version == wanted), None)
        if wanted is not None and entry.versions and version is None:
            known = ", ".join(v.version for v in entry.versions)
            raise NotFound(f"{model_id} has no version {wanted!r}; versions: {known}")
        if "version" in request.args and not entry.versions and wanted != entry.active:
            raise NotFound(
                f"{model_id} has version {entry.active} only" if entry.active else f"{model_id} is not trained"
            )
        report = json.loads(version.report) if version is not None else None
        out = detail(entry, version, report)
        if model_id == news2.MODEL.id:
            out["bands"] = news2_bands()
        return jsonify(out)

    return blueprint


def _only(allowed: tuple[str, ...]) -> None:
    for name in request.args:
        if name not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no parameters"
            raise Invalid.at(name, f"Unknown parameter {name!r}; this endpoint {takes}")
        if len(request.args.getlist(name)) > 1:
            raise Invalid.at(name, f"{name} may be given only once")


# The Body fields NEWS2 scores by a table of RCP Chart 1, with the table and the step each value is
# rounded to before scoring (``news2``: whole numbers, temperature to 0.1 °C). SpO2 is drawn on
# Scale 1: Scale 2 holds only for a prescribed target of 88-92 %, and its upper cells on oxygen.
_NEWS2_CHART: dict[str, tuple[tuple[tuple[float, int, str], ...], float]] = {
    fields.RESPIRATORY_RATE.name: (news2.RESPIRATORY_RATE, 1),
    fields.OXYGEN_SATURATION.name: (news2.SPO2_SCALE_1, 1),
    fields.SYSTOLIC_BP.name: (news2.SYSTOLIC_BP, 1),
    fields.HEART_RATE.name: (news2.PULSE, 1),
    fields.BODY_TEMPERATURE.name: (news2.TEMPERATURE, 0.1),
}


def news2_bands() -> dict[str, list[dict[str, Any]]]:
    """Per Body field, the cells of RCP NEWS2 Chart 1 as ranges of the measured value: ``from``
    (inclusive) to ``below`` (exclusive), ``null`` where open, with the points and the chart's
    label. A cell's edge lies half a rounding step above its upper value: 8.4/min rounds to 8 and
    scores as "≤8", 8.5/min rounds to 9."""
    bands: dict[str, list[dict[str, Any]]] = {}
    for field, (table, step) in _NEWS2_CHART.items():
        cells, start = [], None
        for upper, points, label in table:
            below = None if upper == float("inf") else round(upper + step / 2, 2)
            cells.append({"from": start, "below": below, "points": points, "label": label})
            start = below
        bands[field] = cells
    return bands
