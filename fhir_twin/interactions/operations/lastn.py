"""``Observation/$lastn`` (R4 observation-operation-lastn.html): for each code, the ``max`` (default
1) most recent Observations meeting the other parameters, grouped by code, newest first.

Every parameter but ``max`` is an Observation search parameter with search semantics: ``patient``,
``subject``, ``category``, ``code`` (a comma list is an OR), and any other. Where the spec leaves a
choice: without ``patient`` or ``subject`` the answer spans every patient (R4 lets a server allow
it); the answer is one unpaged Bundle, bounded by ``max`` per code, so ``_count``, ``_cursor``,
``_sort`` and the other result parameters are refused; unknown parameters are refused or ignored
as a search's are (``search_handling``, ``Prefer: handling=``).
"""

from __future__ import annotations

import re
import uuid

from fhir_twin.errors import Invalid
from fhir_twin.fhir.bundle import Entry, bundle
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Permission, parameters
from fhir_twin.interactions.paging import link
from fhir_twin.interactions.search import ignored_entry, strict_handling
from fhir_twin.search.parser import parse
from fhir_twin.search.query import Criterion, TokenValue
from fhir_twin.security.access import confine
from fhir_twin.security.context import current
from fhir_twin.store import lastn as store

RESULT_PARAMETERS = frozenset(
    {"_count", "_cursor", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_type"}
)
# No group holds more Observations than this; a larger max means the same and keeps the SQL in range.
MAX_LIMIT = 1_000_000_000


def lastn(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    given = parameters(request)
    for name, value in given:
        if not isinstance(value, str):
            raise Invalid.at(name, f"$lastn takes no resource; {name!r} must be a value")
        if re.split(r"[:.]", name, maxsplit=1)[0] in RESULT_PARAMETERS:
            raise Invalid.at(name, f"$lastn answers one unpaged Bundle and does not support {name}", "not-supported")
    most = _max([value for name, value in given if name == "max"])
    query = parse(
        ("Observation",),
        [(name, value) for name, value in given if name != "max"],
        strict=strict_handling(context.config, request),
        default_count=context.config.default_page_size,
        max_count=context.config.max_page_size,
    )
    principal = current()
    if principal is not None and not principal.trusted:
        query = confine(query, principal)
    codes = tuple(
        value
        for condition in query.conditions
        if isinstance(condition, Criterion) and condition.parameter.code == "code" and condition.modifier is None
        for value in condition.values
        if isinstance(value, TokenValue)
    )
    with context.repository.transaction() as tx:
        found = store.lastn(tx, query, request.base, most, codes)
    entries = [
        Entry(f"{request.base}/{version.res_type}/{version.res_id}", version.body, search_mode="match")
        for version in found
    ]
    entries += ignored_entry(query.ignored)
    links = {"self": link(request, f"{request.base}/Observation/$lastn", [("max", str(most)), *query.applied])}
    body = bundle("searchset", entries, links, len(entries), str(uuid.uuid4()), format_instant(now()))
    return Response(200, {}, body)


def _max(given: list[str]) -> int:
    """``max``: a positive whole number, once; 1 when absent."""
    if not given:
        return 1
    if len(given) > 1:
        raise Invalid.at("max", "max may be given only once")
    value = given[0]
    digits = value.lstrip("0")
    if not (value.isascii() and value.isdigit()) or not digits:
        raise Invalid.at("max", f"max must be a positive whole number, not {value[:40]!r}")
    return MAX_LIMIT if len(digits) > len(str(MAX_LIMIT)) else min(int(digits), MAX_LIMIT)


LASTN = Operation(
    name="lastn",
    levels=frozenset({"type"}),
    methods=frozenset({"GET", "POST"}),
    handler=lastn,
    definition="http://hl7.org/fhir/OperationDefinition/Observation-lastn",
    types=frozenset({"Observation"}),
    permission=Permission(searches=("Observation",)),
)
