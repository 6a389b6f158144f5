"""The search interaction at type level (R4 http.html#search, search.html).

Answers a ``searchset`` Bundle whose entries carry ``fullUrl`` and ``search.mode = match``;
pages are chained by a keyset cursor (the last id served), so concurrent inserts never make a
client skip or repeat an entry.
"""

from __future__ import annotations

import uuid

from fhir_twin.config import Config
from fhir_twin.fhir.bundle import Entry, bundle
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.paging import link
from fhir_twin.search.query import SearchQuery, parse
from fhir_twin.store.repository import Repository


def parse_request(config: Config, request: Request, resource_type: str, strict: bool | None = None) -> SearchQuery:
    """The query a request asks for; ``Prefer: handling=strict`` refuses unknown parameters."""
    return parse(
        resource_type,
        request.query,
        strict=request.prefer("handling") == "strict" if strict is None else strict,
        default_count=config.default_page_size,
        max_count=config.max_page_size,
    )


def search(repository: Repository, config: Config, request: Request, resource_type: str) -> Response:
    query = parse_request(config, request, resource_type)
    with repository.unit() as unit:
        found = unit.search(resource_type, query.ids, query.cursor, query.count + 1)
    page = found[: query.count]
    url = f"{request.base}/{resource_type}"
    links = {"self": link(request, url, query.applied)}
    if len(found) > query.count:
        links["next"] = link(
            request, url, [*query.criteria, ("_count", str(query.count)), ("_cursor", page[-1].res_id)]
        )
    entries = [Entry(f"{url}/{version.res_id}", version.body, search_mode="match") for version in page]
    # The exact total is only cheap when the whole result fits on this first page.
    total = len(page) if query.cursor is None and len(found) <= query.count else None
    return Response(200, {}, bundle("searchset", entries, links, total, str(uuid.uuid4()), format_instant(now())))
