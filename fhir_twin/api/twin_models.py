"""The Digital Doctor's models over HTTP (README "Models"): ``/twin/models`` lists every model with
its versions; ``/twin/models/{id}[?version=]`` adds a version's evaluation report and model card."""

from __future__ import annotations

import json

from flask import Blueprint, Response, jsonify, request

from fhir_twin.errors import Invalid, NotFound
from fhir_twin.ml.catalog import Catalog
from fhir_twin.ml.schemas import ModelSchema, detail


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
        return jsonify(detail(entry, version, report))

    return blueprint


def _only(allowed: tuple[str, ...]) -> None:
    for name in request.args:
        if name not in allowed:
            takes = f"takes {', '.join(allowed)}" if allowed else "takes no parameters"
            raise Invalid.at(name, f"Unknown parameter {name!r}; this endpoint {takes}")
        if len(request.args.getlist(name)) > 1:
            raise Invalid.at(name, f"{name} may be given only once")
