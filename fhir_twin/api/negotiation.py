"""Content negotiation (R4 http.html#mime-type): ``_format``, ``Accept`` and ``Content-Type``.

JSON (``application/fhir+json``, also plain ``application/json``) and XML
(``application/fhir+xml``) are served; anything else is 406 for responses and 415 for bodies.
"""

from __future__ import annotations

from enum import Enum

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

_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")
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
    accept = request.accept_mimetypes
    if not accept or not accept.values():
        return Format.JSON
    best = accept.best_match([*_JSON_TYPES, *_XML_TYPES])
    if best is None:
        raise NotAcceptable(
            f"None of the types in Accept ({request.headers.get('Accept')}) can be served; "
            f"use {Format.JSON.value} or {Format.XML.value}"
        )
    # With equal preference (e.g. */*), JSON is the default.
    if best in _XML_TYPES and accept[best] <= max(accept[name] for name in _JSON_TYPES):
        return Format.JSON
    return Format.XML if best in _XML_TYPES else Format.JSON


def body_kind(request: Request) -> str:
    """What the body is: ``json``, ``xml``, ``json-patch`` or ``form``; 415 for anything else."""
    mimetype = request.mimetype.lower()
    if not mimetype or mimetype in _JSON_TYPES:
        return "json"
    if mimetype in _XML_TYPES:
        return "xml"
    if mimetype == JSON_PATCH:
        return "json-patch"
    if mimetype == FORM:
        return "form"
    raise UnsupportedMediaType(
        f"Content-Type {request.mimetype!r} is not supported; send {Format.JSON.value} or {Format.XML.value}"
    )
