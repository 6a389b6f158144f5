"""The history interaction for an instance, a type and the whole system (R4 http.html#history).

Newest first; ``_since`` keeps versions written at or after an instant, ``_at`` those current at
some point within a time; ``_count`` sizes a page. Pages are chained by a keyset cursor (the last
version's time and sequence), so inserts made while a client pages never shift what it sees.
Another parameter is refused or ignored as a search's unknown ones are (``search_handling``).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from http import HTTPStatus

from fhir_twin.config import Config
from fhir_twin.errors import Forbidden, Invalid, NotFound
from fhir_twin.fhir.bundle import Entry, bundle
from fhir_twin.fhir.instant import format_instant, now, parse_range
from fhir_twin.fhir.resource_types import AUDIT_TYPES, resource_types
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.paging import link
from fhir_twin.interactions.search import strict_handling
from fhir_twin.interactions.versioning import etag
from fhir_twin.search.parser import page_size
from fhir_twin.security.access import ALL, reach
from fhir_twin.security.context import current
from fhir_twin.store.repository import Repository, Version

_EPOCH = datetime(1970, 1, 1)
_KNOWN = {"_since", "_at", "_count", "_cursor", "_format", "_pretty"}


def history(
    repository: Repository, config: Config, request: Request, res_type: str | None, res_id: str | None
) -> Response:
    """A ``history`` Bundle with ``total`` and paging links."""
    since = _instant(request, "_since")
    at = _range(request, "_at")
    counts = request.params("_count")
    count = page_size(counts[-1] if counts else None, config.default_page_size, config.max_page_size)
    cursor = _cursor(request)
    unknown = sorted({name for name, _ in request.query if name not in _KNOWN})
    if unknown and strict_handling(config, request):
        taken = ", ".join(sorted(_KNOWN - {"_cursor", "_format", "_pretty"}))
        message = f"Unknown parameter {unknown[0]!r} for history, which takes {taken}"
        raise Invalid.at(unknown[0], message, "not-supported")
    types, compartment, held = _held_to(res_type, res_id)
    with repository.transaction() as tx:
        if res_id is not None and res_type is not None and not tx.exists(res_type, res_id):
            raise NotFound(f"{res_type}/{res_id} is not known")
        page = tx.history(
            res_type,
            res_id,
            since=since,
            at=at,
            count=count + 1,
            after=cursor,
            with_total=True,
            types=types,
            compartment=compartment,
            held=held,
        )
    versions = page.versions[:count]
    path = "/".join(part for part in (res_type, res_id) if part)
    url = f"{request.base}/{path + '/' if path else ''}_history"
    criteria = [(name, value) for name, value in request.query if name in ("_since", "_at")]
    links = {
        "self": link(
            request, url, [*criteria, ("_count", str(count))] + ([("_cursor", _token(cursor))] if cursor else [])
        )
    }
    if count and len(page.versions) > count:
        last = versions[-1]
        links["next"] = link(
            request, url, [*criteria, ("_count", str(count)), ("_cursor", _token((last.last_updated, last.seq)))]
        )
    entries = [_entry(request.base, version) for version in versions]
    return Response(200, {}, bundle("history", entries, links, page.total, str(uuid.uuid4()), format_instant(now())))


def _held_to(
    res_type: str | None, res_id: str | None
) -> tuple[tuple[str, ...] | None, str | None, tuple[str, ...] | None]:
    """What the current principal's history may span: the types it may search (a system
    history), the patient compartment it is held to, and which of the types that holds (None:
    all of them), so that neither the page, its ``total`` nor its ``next`` cursor tells of
    versions it may not see. 403 when it may search nothing."""
    principal = current()
    if principal is None or principal.trusted or res_id is not None:
        return None, None, None
    named = (res_type,) if res_type is not None else tuple(sorted(resource_types() - AUDIT_TYPES))
    reaches = {name: reach(principal, name, "s") for name in named}
    allowed = tuple(name for name, found in reaches.items() if found is not None)
    if not allowed:
        raise Forbidden("The credential's scopes do not allow searching the history of any resource type")
    types = allowed if res_type is None and len(allowed) < len(named) else None
    # One launch patient per credential; all its patient-scoped types share the compartment.
    held = tuple(name for name in allowed if reaches[name] != ALL)
    if not held:
        return types, None, None
    compartment = reaches[held[0]]
    return types, compartment, (None if len(held) == len(allowed) else held)


def _entry(base: str, version: Version) -> Entry:
    url = f"{base}/{version.res_type}/{version.res_id}"
    request_url = f"{version.res_type}/{version.res_id}" if version.method != "POST" else version.res_type
    return Entry(
        full_url=url,
        body=version.body,
        request={"method": version.method, "url": request_url},
        response={
            "status": f"{version.status} {HTTPStatus(version.status).phrase}",
            "etag": etag(version.version),
            "lastModified": format_instant(version.last_updated),
        },
    )


def _token(cursor: tuple[datetime, int]) -> str:
    stamp, seq = cursor
    return f"{(stamp - _EPOCH) // timedelta(microseconds=1)}-{seq}"


def _cursor(request: Request) -> tuple[datetime, int] | None:
    values = request.params("_cursor")
    if not values:
        return None
    try:
        micros, seq = (int(part) for part in values[-1].split("-"))
        if not 0 <= seq < 2**63:
            raise ValueError("sequence out of range")
        return _EPOCH + timedelta(microseconds=micros), seq
    except (ValueError, OverflowError):
        raise Invalid.at("_cursor", f"_cursor {values[-1]!r} is not a page position this server made") from None


def _instant(request: Request, name: str) -> datetime | None:
    window = _range(request, name)
    return window[0] if window else None


def _range(request: Request, name: str) -> tuple[datetime, datetime] | None:
    values = request.params(name)
    if not values:
        return None
    try:
        return parse_range(values[-1])
    except ValueError:
        raise Invalid.at(name, f"{name} must be a FHIR instant or dateTime, not {values[-1]!r}") from None
