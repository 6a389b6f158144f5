"""Content negotiation (R4 http.html#mime-type): ``_format``, ``Accept`` and ``Content-Type``.

JSON (``application/fhir+json``, also plain ``application/json``) and XML
(``application/fhir+xml``) are served; anything else is 406 for responses and 415 for bodies.
"""

from __future__ import annotations

from enum import Enum
from functools import lru_cache

from flask import Request

from fhir_twin.errors import NotAcceptable, UnsupportedMediaType


class Format(Enum):
    JSON = "application/fhir+json"
    XML = "application/fhir+xml"

    @property
    def content_type(self) -> str:
        return f"{self.value}; charset=utf-8"


JSON_PATCH = "application/json-patch+json"
FORM = "application/x-www-form-urlencoded"

# NDJSON is accepted as the JSON family: Bulk Data clients ask for it when fetching export files.
_JSON_TYPES = (
    "application/fhir+json",
    "application/json",
    "application/json+fhir",
    "text/json",
    "application/fhir+ndjson",
    "application/ndjson",
)
_XML_TYPES = ("application/fhir+xml", "application/xml", "application/xml+fhir", "text/xml")
_FORMAT_PARAMETER = {
    "json": Format.JSON,
    "xml": Format.XML,
    **{name: Format.JSON for name in _JSON_TYPES},
    **{name: Format.XML for name in _XML_TYPES},
}


def response_format(request: Request) -> Format:
    """The format to answer in: ``_format`` wins over ``Accept``; JSON when nothing is said."""
    requested = request.args.get("_format")
    if requested is not None:
        found = _FORMAT_PARAMETER.get(requested.strip().lower().replace(" ", "+"))
        if found is None:
            raise NotAcceptable(f"_format={requested!r} is not supported; use json or xml")
        return found
    header = request.headers.get("Accept", "").strip()
    if not header:
        return Format.JSON
    return _accepted(header)


@lru_cache(maxsize=64)
def _accepted(header: str) -> Format:
    """The format an Accept header asks for; a client sends the same one with every request, so
    its answer is kept rather than parsed again each time."""
    json_quality = xml_quality = 0.0
    for media_type, quality in _accept_items(header):
        if media_type in _JSON_TYPES or media_type in ("*/*", "application/*"):
            json_quality = max(json_quality, quality)
        if media_type in _XML_TYPES or media_type in ("*/*", "application/*", "text/*"):
            xml_quality = max(xml_quality, quality)
    if json_quality == xml_quality == 0:
        raise NotAcceptable(
            f"None of the types in Accept ({header}) can be served; use {Format.JSON.value} or {Format.XML.value}"
        )
    # With equal preference (e.g. */*), JSON is the default.
    return Format.XML if xml_quality > json_quality else Format.JSON


def _accept_items(header: str) -> list[tuple[str, float]]:
    """``(media type, q)`` pairs of an Accept header; other parameters (``fhirVersion``,
    ``charset``) do not change the type (RFC 9110 section 12.5.1)."""
    items = []
    for part in header.split(","):
        media_type, *parameters = (piece.strip() for piece in part.split(";"))
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type:
            items.append((media_type.lower(), quality))
    return items


def body_kind(request: Request, path: str) -> str:
    """What the body is: ``json``, ``xml``, ``json-patch`` or ``form``; 415 naming the type sent
    and the types this request takes.

    A form body is a search's (R4 http.html#search: ``POST [type]/_search``) and a JSON Patch a
    PATCH's (R4 http.html#patch); anywhere else they are the wrong type, not a malformed resource.
    """
    mimetype = request.mimetype.lower()
    search = request.method == "POST" and path.rstrip("/").rsplit("/", 1)[-1] == "_search"
    if not mimetype or mimetype in _JSON_TYPES:
        return "json"
    if mimetype in _XML_TYPES:
        return "xml"
    if mimetype == JSON_PATCH and request.method == "PATCH":
        return "json-patch"
    if mimetype == FORM and search:
        return "form"
    accepted = [Format.JSON.value, Format.XML.value]
    if request.method == "PATCH":
        accepted.insert(0, JSON_PATCH)
    if search:
        accepted.insert(0, FORM)
    where = {
        JSON_PATCH: " (JSON Patch is taken by PATCH only)",
        FORM: " (a form is taken by POST [type]/_search only)",
    }.get(mimetype, "")
    raise UnsupportedMediaType(
        f"Content-Type {request.mimetype!r} is not accepted for {request.method} {request.path}{where}; "
        f"send {' or '.join(accepted)}"
    )
