"""Bundle entries as requests, and their answers as response entries (R4 bundle.html,
http.html#transaction): each entry goes through the same ``route`` as a top-level request."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_twin.errors import FhirError, Invalid
from fhir_twin.fhir import json
from fhir_twin.fhir.instant import format_http_date, format_instant, parse_range
from fhir_twin.fhir.outcome import operation_outcome
from fhir_twin.interactions import Request, Response
from fhir_twin.search.index import IndexRow

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
JSON_PATCH = "application/json-patch+json"


@dataclass
class Entry:
    """One request entry: where it sits in the Bundle, and the request it makes."""

    index: int
    full_url: str | None
    method: str
    path: str
    query: list[tuple[str, str]]
    resource: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    # Filled by a transaction before it routes the entry.
    assigned_id: str | None = None
    validated: bool = False
    index_rows: list[IndexRow] | None = None

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    def request(self, outer: Request) -> Request:
        """The request this entry stands for, under the Bundle request's ``Prefer`` header."""
        headers = dict(self.headers)
        if outer.header("prefer") is not None:
            headers["prefer"] = outer.header("prefer") or ""
        body: Any = self.resource
        patch_format = None
        if self.method == "PATCH":
            body, patch_format = _patch_body(self)
        return Request(
            self.method,
            self.path,
            outer.base,
            list(self.query),
            headers,
            body,
            patch_format,
            self.assigned_id,
            self.validated,
            self.index_rows,
        )


def parse_entries(bundle: dict[str, Any], base: str) -> list[Entry]:
    """Every entry of a batch or transaction Bundle; 400 naming the first malformed one."""
    raw = bundle.get("entry", [])
    if not isinstance(raw, list):
        raise Invalid.at("Bundle.entry", "Bundle.entry must be a list")
    return [_entry(index, item, base) for index, item in enumerate(raw)]


def _entry(index: int, item: Any, base: str) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(item, dict) or not isinstance(item.get("request"), dict):
        raise Invalid.at(f"{where}.request", f"{where} has no request")
    request = item["request"]
    method = str(request.get("method", "")).upper()
    if method not in METHODS:
        raise Invalid.at(f"{where}.request.method", f"{where}.request.method must be one of {', '.join(METHODS)}")
    url = request.get("url")
    if not isinstance(url, str) or not url.strip():
        raise Invalid.at(f"{where}.request.url", f"{where}.request.url is required")
    if url.startswith(base.rstrip("/") + "/"):
        url = url[len(base.rstrip("/")) + 1 :]
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise Invalid.at(f"{where}.request.url", f"{where}.request.url must be relative to this server, not {url!r}")
    resource = item.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise Invalid.at(f"{where}.resource", f"{where}.resource must be a resource")
    if method in ("POST", "PUT", "PATCH") and resource is None:
        raise Invalid.at(f"{where}.resource", f"{where} needs a resource for {method}")
    headers = {
        name: str(request[key])
        for key, name in (
            ("ifNoneExist", "if-none-exist"),
            ("ifMatch", "if-match"),
            ("ifNoneMatch", "if-none-match"),
            ("ifModifiedSince", "if-modified-since"),
        )
        if request.get(key) is not None
    }
    if "if-modified-since" in headers:
        headers["if-modified-since"] = _http_date(headers["if-modified-since"])
    full_url = item.get("fullUrl") if isinstance(item.get("fullUrl"), str) else None
    query = parse_qsl(parts.query, keep_blank_values=True)
    return Entry(index, full_url, method, parts.path.strip("/"), query, resource, headers)


def response_entry(answer: Response, base: str, include_resource: bool) -> dict[str, Any]:
    """``entry.response`` (status, location, etag, lastModified) and, if asked, the resource. A
    streamed body (an export file) is no resource: it is dropped unsent, which records it."""
    if answer.streamed is not None:
        answer.streamed.close()
    response: dict[str, Any] = {"status": f"{answer.status} {HTTPStatus(answer.status).phrase}"}
    location = answer.headers.get("Location")
    if location:
        response["location"] = location.removeprefix(base.rstrip("/") + "/")
    if "ETag" in answer.headers:
        response["etag"] = answer.headers["ETag"]
    if "Last-Modified" in answer.headers:
        stamp = parsedate_to_datetime(answer.headers["Last-Modified"]).replace(tzinfo=None)
        response["lastModified"] = format_instant(stamp)
    out: dict[str, Any] = {}
    if include_resource and answer.body is not None:
        body = answer.body
        if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
            response["outcome"] = body
        else:
            out["resource"] = json.RawJSON(body) if isinstance(body, str) else body
    out["response"] = response
    return out


def error_entry(error: FhirError) -> dict[str, Any]:
    """A batch entry that failed: its status and an OperationOutcome saying why."""
    return {
        "response": {
            "status": f"{error.status} {HTTPStatus(error.status).phrase}",
            "outcome": operation_outcome(error.issues),
        }
    }


def _patch_body(entry: Entry) -> tuple[Any, str | None]:
    """A PATCH entry carries its JSON Patch in a Binary, or its FHIRPath Patch as the Parameters
    resource itself (R4 http.html#patch, "in a transaction"; fhirpatch.html)."""
    resource = entry.resource or {}
    if resource.get("resourceType") == "Parameters":
        return resource, None
    if resource.get("resourceType") != "Binary" or resource.get("contentType") != JSON_PATCH:
        raise Invalid.at(
            f"{entry.where}.resource",
            f"{entry.where}: a PATCH entry needs a Parameters resource (FHIRPath Patch) or a Binary of {JSON_PATCH}",
        )
    try:
        return json.loads(base64.b64decode(str(resource.get("data", "")), validate=True), json.MAX_DEPTH), JSON_PATCH
    except (binascii.Error, ValueError):
        raise Invalid.at(
            f"{entry.where}.resource.data", f"{entry.where}: the Binary's data is not base64 JSON"
        ) from None


def _http_date(value: str) -> str:
    """``ifModifiedSince`` is a FHIR instant; the read interaction wants an HTTP-date."""
    try:
        return format_http_date(parse_range(value)[0])
    except ValueError:
        return value
