"""Version headers: ETag, Last-Modified, Location and the preconditions that read them.

R4 http.html#versioning and #concurrency: ``ETag: W/"n"`` carries the version id; ``If-Match``
makes an update, patch or delete conditional on it (412 when stale); ``If-None-Match`` and
``If-Modified-Since`` make a read answer 304 when the client's copy is current.
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

from fhir_twin.errors import Invalid, PreconditionFailed
from fhir_twin.fhir.instant import format_http_date
from fhir_twin.interactions.message import Request
from fhir_twin.store.repository import Version

_ETAG = re.compile(r'\s*(?:W/)?"?([^",\s]*)"?\s*')


def etag(version: int) -> str:
    return f'W/"{version}"'


def version_headers(base: str, version: Version, location: bool = False) -> dict[str, str]:
    """ETag and Last-Modified for a stored version; Location too after a write."""
    headers = {"ETag": etag(version.version), "Last-Modified": format_http_date(version.last_updated)}
    if location:
        headers["Location"] = f"{base}/{version.res_type}/{version.res_id}/_history/{version.version}"
    return headers


def parse_etag(value: str, header: str) -> str:
    """The version id inside ``W/"n"`` (or a bare ``n``); 400 when there is none."""
    match = _ETAG.fullmatch(value)
    if not match or not match.group(1):
        raise Invalid(f'{header} must carry a version as W/"n", not {value!r}')
    return match.group(1)


def check_if_match(request: Request, current: Version | None) -> None:
    """Refuse a write whose ``If-Match`` names another version than the current one (412)."""
    value = request.header("if-match")
    if value is None:
        return
    wanted = parse_etag(value, "If-Match")
    if current is None or current.deleted:
        raise PreconditionFailed(f"If-Match asked for version {wanted}, but the resource does not exist")
    if wanted != str(current.version):
        raise PreconditionFailed(
            f"Version conflict: If-Match asked for version {wanted}, the current version is {current.version}"
        )


def not_modified(request: Request, current: Version) -> bool:
    """Whether a read may answer 304 (If-None-Match first, then If-Modified-Since, RFC 9110 13.2.2)."""
    none_match = request.header("if-none-match")
    if none_match is not None:
        tags = [parse_etag(tag, "If-None-Match") for tag in none_match.split(",") if tag.strip()]
        return "*" in tags or str(current.version) in tags
    modified_since = request.header("if-modified-since")
    if modified_since is not None:
        try:
            since = parsedate_to_datetime(modified_since)
        except (TypeError, ValueError):
            return False  # RFC 9110: an invalid date is ignored
        return current.last_updated.replace(microsecond=0) <= since.replace(tzinfo=None)
    return False
