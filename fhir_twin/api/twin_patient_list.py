"""``/twin/patients``: the patients list of the web app, a search of Patient (``name``,
``identifier``, ``birthdate`` as FHIR search values, held to the credential's patient as any
Patient search is), each row with its newest NEWS2 and PCE assessments and last measurement,
sorted by a risk and paged in the database (``store.patient_list``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request

from fhir_twin.api.paging import links, whole_number
from fhir_twin.api.security import shown
from fhir_twin.config import Config
from fhir_twin.errors import Invalid
from fhir_twin.fhir.instant import format_instant
from fhir_twin.search.parser import parse
from fhir_twin.security.access import confine
from fhir_twin.security.context import current
from fhir_twin.store import patient_list
from fhir_twin.store.patient_list import Listed, Standing
from fhir_twin.store.repository import Repository

SEARCHED = ("name", "identifier", "birthdate")
_RESULT = ("_sort", "_count", "_offset")
# RCP NEWS2 Chart 2's clinical risk, in words (a band is never shown by colour alone).
_BAND_WORDS = {
    "low": "low clinical risk",
    "low-medium": "low-medium clinical risk (a single parameter scored 3)",
    "medium": "medium clinical risk",
    "high": "high clinical risk",
}


def patient_list_blueprint(repository: Repository, config: Config) -> Blueprint:
    blueprint = Blueprint("twin_patient_list", __name__)

    @blueprint.get("/twin/patients")
    def patients() -> Response:
        searched = []
        for name, value in request.args.items(multi=True):
            if name.split(":", 1)[0] in SEARCHED:
                searched.append((name, value))
            elif name not in _RESULT:
                allowed = ", ".join((*SEARCHED, *_RESULT))
                raise Invalid.at(name, f"Unknown parameter {name!r}; this endpoint takes {allowed}")
        sorts = request.args.getlist("_sort")
        if len(sorts) > 1:
            raise Invalid.at("_sort", "_sort may be given only once")
        sort = sorts[0] if sorts else "name"
        if sort not in patient_list.SORTS:
            raise Invalid.at("_sort", f"_sort {sort[:40]!r} is not one of {', '.join(patient_list.SORTS)}")
        count = whole_number("_count", config.default_page_size, 1, config.max_page_size)
        offset = whole_number("_offset", 0, 0, 10**9)
        query = parse(("Patient",), searched, strict=True, default_count=count, max_count=config.max_page_size)
        principal = current()
        if principal is not None:
            query = confine(query, principal)
        base = request.url_root.rstrip("/") + "/fhir"
        with repository.transaction() as tx:
            total, rows = patient_list.page(tx.connection, query, base, sort, offset, count)
        listed = [_row(row) for row in rows]
        shown([row["id"] for row in listed])
        return jsonify(
            {
                "total": total,
                "offset": offset,
                "count": len(listed),
                "patients": listed,
                "links": links(total, offset, count),
            }
        )

    return blueprint


def _row(row: Listed) -> dict[str, Any]:
    patient = json.loads(row.body)
    return {
        "id": patient["id"],
        "name": _name(patient),
        "birthDate": patient.get("birthDate"),
        "gender": patient.get("gender"),
        "identifier": _identifier(patient),
        "news2": _news2(row.news2),
        "pce": _pce(row.pce),
        "lastMeasured": _instant(row.measured),
    }


def _name(patient: dict[str, Any]) -> str | None:
    """The first name as text: its ``text``, else given names and family."""
    for name in patient.get("name", []):
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("given", []), *([name["family"]] if name.get("family") else [])]
        if parts:
            return " ".join(parts)
    return None


def _identifier(patient: dict[str, Any]) -> str | None:
    for identifier in patient.get("identifier", []):
        if identifier.get("value"):
            system = identifier.get("system")
            return f"{system}|{identifier['value']}" if system else str(identifier["value"])
    return None


def _instant(value: datetime | None) -> str | None:
    return format_instant(value) if value is not None else None


def _news2(found: Standing | None) -> dict[str, Any] | None:
    if found is None:
        return None
    score = int(found.score) if found.score is not None and found.score.is_integer() else found.score
    words = _BAND_WORDS.get(found.band or "", found.band or "no band")
    # A partial set scores a lower bound, as the RiskAssessment says (ml/scores/news2.py).
    text = (
        f"NEWS2 at least {score}: at least {words}, from an incomplete set"
        if found.bound
        else f"NEWS2 {score}: {words}"
    )
    return {
        "score": score,
        "bound": bool(found.bound),
        "risk": found.risk,
        "band": found.band,
        "text": text,
        "occurrence": _instant(found.occurrence),
        "status": found.status,
        "reference": f"RiskAssessment/{found.assessment_id}",
    }


def _pce(found: Standing | None) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "probability": found.probability,
        "percent": round(found.probability * 100, 1) if found.probability is not None else None,
        "risk": found.risk,
        "occurrence": _instant(found.occurrence),
        "status": found.status,
        "reference": f"RiskAssessment/{found.assessment_id}",
    }
