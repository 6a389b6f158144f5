"""The audit views of the twin API, for a credential that may search AuditEvent (the auditor
role): the accesses to one patient's record with filters, as JSON pages or a CSV download, and a
summary per client. Each reads the trail through ``audit.trail.accesses`` (which ``fhir-twin
audit report`` uses too), whose filters are AuditEvent search values run on the audit index."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from itertools import islice
from typing import Any

from flask import Blueprint, Response, jsonify, request, stream_with_context

from fhir_twin.api.paging import links, whole_number
from fhir_twin.api.security import shown
from fhir_twin.audit.trail import Access, Filters, access_count, accesses, clients
from fhir_twin.config import Config
from fhir_twin.errors import Invalid, NotFound
from fhir_twin.fhir.instant import parse_range
from fhir_twin.fhir.resource_types import is_valid_id
from fhir_twin.search.parser import parse
from fhir_twin.store.repository import Repository

_FILTERS = ("patient", "identifier", "agent", "action", "outcome", "from", "to")
_PAGING = ("_count", "_offset", "_format")
ACTIONS = ("C", "R", "U", "D", "E")
OUTCOMES = ("0", "4", "8", "12")
CSV_COLUMNS = ("time", "agent", "user", "action", "interaction", "outcome", "address", "what", "event")
# OWASP "CSV Injection": a cell a spreadsheet would read as a formula is made text.
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def audit_blueprint(repository: Repository, config: Config) -> Blueprint:
    blueprint = Blueprint("twin_audit", __name__)

    @blueprint.get("/twin/audit/accesses")
    def accesses_view() -> Response:
        patient_id, filters = _filters(repository, _PAGING)
        shown([patient_id])
        if _wants_csv():
            return _csv(repository, patient_id, filters)
        count = whole_number("_count", config.default_page_size, 1, config.max_page_size)
        offset = whole_number("_offset", 0, 0, 10**9)
        total = access_count(repository, patient_id, filters)
        page = islice(accesses(repository, patient_id, filters=filters, newest_first=True), offset, offset + count)
        rows = [_row(access) for access in page]
        return jsonify(
            {
                "patient": patient_id,
                "total": total,
                "offset": offset,
                "count": len(rows),
                "accesses": rows,
                "links": links(total, offset, count),
            }
        )

    @blueprint.get("/twin/audit/summary")
    def summary_view() -> Response:
        patient_id, filters = _filters(repository, ())
        shown([patient_id])
        found = [
            {
                "agent": client.agent,
                "count": client.count,
                "actions": client.actions,
                "failures": client.failures,
                "first": client.first,
                "last": client.last,
            }
            for client in clients(repository, patient_id, filters)
        ]
        return jsonify({"patient": patient_id, "clients": found})

    return blueprint


def _filters(repository: Repository, also: tuple[str, ...]) -> tuple[str, Filters]:
    """The patient (by ``patient`` or ``identifier``, exactly one) and the filters; 400 naming a
    parameter that is unknown, repeated or not a value it takes."""
    for name in request.args:
        if name not in _FILTERS and name not in also:
            allowed = ", ".join((*_FILTERS, *also))
            raise Invalid.at(name, f"Unknown parameter {name!r}; this endpoint takes {allowed}")
    values: dict[str, str] = {}
    for name in _FILTERS:
        given = request.args.getlist(name)
        if len(given) > 1:
            raise Invalid.at(name, f"{name} may be given only once")
        if given:
            values[name] = given[0]
    if ("patient" in values) == ("identifier" in values):
        raise Invalid.at("patient", "Give exactly one of patient (a Patient id) and identifier (system|value)")
    if "action" in values and values["action"] not in ACTIONS:
        raise Invalid.at("action", f"action must be one of {', '.join(ACTIONS)}, not {values['action'][:20]!r}")
    if "outcome" in values and values["outcome"] not in OUTCOMES:
        raise Invalid.at("outcome", f"outcome must be one of {', '.join(OUTCOMES)}, not {values['outcome'][:20]!r}")
    for name in ("from", "to"):
        if name in values:
            try:
                parse_range(values[name])
            except ValueError:
                raise Invalid.at(name, f"{name} {values[name][:40]!r} is not a FHIR dateTime") from None
    if "patient" in values:
        patient_id = values["patient"].removeprefix("Patient/")
        if not is_valid_id(patient_id):
            raise Invalid.at("patient", f"{patient_id[:80]!r} is not a valid resource id")
    else:
        patient_id = _identified(repository, values["identifier"])
    filters = Filters(
        values.get("agent"), values.get("action"), values.get("outcome"), values.get("from"), values.get("to")
    )
    return patient_id, filters


def _identified(repository: Repository, identifier: str) -> str:
    """The one Patient with ``identifier`` (a token search value, ``system|value``), found by a
    Patient search; the trail names patients by id."""
    query = parse(("Patient",), [("identifier", identifier)], strict=True, default_count=2, max_count=2)
    with repository.transaction() as tx:
        found = tx.search(query, "").matches
    if not found:
        raise NotFound(f"No Patient has the identifier {identifier[:80]!r}")
    if len(found) > 1:
        raise Invalid.at("identifier", f"More than one Patient has the identifier {identifier[:80]!r}; give patient")
    return found[0].res_id


def _row(access: Access) -> dict[str, Any]:
    return {
        "time": access.recorded,
        "agent": access.agent,
        "user": access.user or None,
        "action": access.action,
        "interaction": access.interaction,
        "outcome": access.outcome,
        "address": access.address or None,
        "what": access.what,
        "event": access.event,
    }


def _wants_csv() -> bool:
    formats = request.args.getlist("_format")
    if formats:
        return formats[-1] in ("csv", "text/csv")
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


def _csv(repository: Repository, patient_id: str, filters: Filters) -> Response:
    """Every matching access, oldest first, streamed: one header row, then a row each."""

    def lines() -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for access in accesses(repository, patient_id, filters=filters):
            row = _row(access)
            writer.writerow([_cell(row[name]) for name in CSV_COLUMNS])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        yield out.getvalue()

    filename = f"accesses-{patient_id}.csv"
    return Response(
        stream_with_context(lines()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _cell(value: str | None) -> str:
    text = value or ""
    return "'" + text if text.startswith(_FORMULA) else text
