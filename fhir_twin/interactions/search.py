"""The search interaction: type, compartment and system level (R4 http.html#search, search.html).

Answers a ``searchset`` Bundle: matches (``search.mode = match``), then what ``_include`` and
``_revinclude`` added (``include``), each with its ``fullUrl``; ``self``, ``first`` and ``next``
links repeat the understood parameters, and ``next`` carries a keyset cursor. ``_summary=count``
and ``_count=0`` answer the total alone, with no ``next`` link to follow. A parameter a lenient
search ignored gets a warning in an OperationOutcome entry (``search.mode = outcome``,
search.html#errors).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from fhir_twin.config import SEARCH_HANDLING, Config
from fhir_twin.errors import Issue, NotFound
from fhir_twin.fhir import json
from fhir_twin.fhir.bundle import Entry, bundle
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.fhir.outcome import operation_outcome
from fhir_twin.fhir.subsetting import subset
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.paging import link
from fhir_twin.search.parameters import parameter, patient_compartment
from fhir_twin.search.parser import parse
from fhir_twin.search.query import AnyOf, Criterion, ReferenceValue, Search
from fhir_twin.security.access import confine
from fhir_twin.security.context import current
from fhir_twin.store.repository import Repository
from fhir_twin.store.version import Version


def strict_handling(config: Config, request: Request) -> bool:
    """Whether unknown parameters are refused: ``Prefer: handling=strict|lenient`` (R4
    search.html#errors, http.html), else the ``search_handling`` setting. Another value is
    ignored, as RFC 7240 section 2 says of preferences not understood, and as HAPI does."""
    preference = request.prefer("handling")
    chosen = preference if preference in SEARCH_HANDLING else config.search_handling
    return chosen == "strict"


def parse_request(
    config: Config, request: Request, resource_types: tuple[str, ...], strict: bool | None = None
) -> Search:
    """The search a request asks for; unknown parameters are refused or ignored by ``strict_handling``."""
    return parse(
        resource_types,
        request.query,
        strict=strict_handling(config, request) if strict is None else strict,
        default_count=config.default_page_size,
        max_count=config.max_page_size,
    )


def ignored_entry(ignored: tuple[tuple[str, str], ...]) -> list[Entry]:
    """An OperationOutcome entry warning of each parameter a lenient search ignored, or nothing."""
    if not ignored:
        return []
    issues = [Issue("not-supported", f"{why}. It was ignored.", "warning", (name,)) for name, why in ignored]
    body = json.dumps(operation_outcome(issues)).decode("utf-8")
    return [Entry(f"urn:uuid:{uuid.uuid4()}", body, search_mode="outcome")]


def compartment_condition(resource_type: str, patient_id: str) -> AnyOf:
    """``Patient/{id}/{type}``: resources linked to the patient by any compartment parameter
    (R4 compartmentdefinition-patient.html)."""
    codes = patient_compartment().get(resource_type)
    if not codes:
        raise NotFound(f"{resource_type} is not in the Patient compartment")
    criteria = []
    for code in codes:
        found = parameter(resource_type, code)
        if found is not None:
            criteria.append(Criterion(found, values=(ReferenceValue("Patient", patient_id),)))
    return AnyOf(tuple(criteria))


def search(
    repository: Repository,
    config: Config,
    request: Request,
    resource_types: tuple[str, ...],
    url: str,
    compartment: AnyOf | None = None,
) -> Response:
    query = parse_request(config, request, resource_types)
    if query.summary == "count":
        query = replace(query, count=0)
    principal = current()
    if principal is not None and not principal.trusted:
        query = confine(query, principal)
    if compartment is not None:
        query = replace(query, conditions=(compartment, *query.conditions))
    with repository.transaction() as tx:
        page = tx.search(query, request.base)
        wants_includes = (query.includes or query.revincludes) and query.summary != "count"
        extra = tx.included(query, page.matches) if wants_includes else []
    applied = list(query.applied)
    without_cursor = [(name, value) for name, value in applied if name != "_cursor"]
    links = {"self": link(request, url, applied)}
    if query.cursor is not None:
        links["first"] = link(request, url, without_cursor)
    if page.previous_cursor is not None:
        links["previous"] = link(request, url, [*without_cursor, ("_cursor", page.previous_cursor)])
    if page.next_cursor is not None:
        links["next"] = link(request, url, [*without_cursor, ("_cursor", page.next_cursor)])
    entries: list[Entry] = []
    if query.summary != "count":
        entries = [_entry(request.base, version, "match", query) for version in page.matches]
        entries += [_entry(request.base, version, "include", query) for version in extra]
    entries += ignored_entry(query.ignored)
    body = bundle("searchset", entries, links, page.total, str(uuid.uuid4()), format_instant(now()))
    return Response(200, {}, body)


def _entry(base: str, version: Version, mode: str, query: Search) -> Entry:
    body = version.body
    if body is not None and (query.summary in ("true", "text", "data") or query.elements):
        part: dict[str, Any] | None = subset(json.loads(body), query.summary, query.elements)
        if part is not None:
            body = json.dumps(part).decode("utf-8")
    return Entry(f"{base}/{version.res_type}/{version.res_id}", body, search_mode=mode)
