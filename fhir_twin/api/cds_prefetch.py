"""Reading a CDS Hooks service's prefetch queries (CDS Hooks 2.0 "Prefetch Template") when the
client did not send their answers: from this server's store as the caller, or from the client's
``fhirServer`` with its ``fhirAuthorization`` token. Every page is read, following each searchset's
``next`` link to the end: a record read in part could hide a reading or a diagnosis, so a record
larger than ``MAX_RESOURCES`` (or a search of more than ``MAX_PAGES`` pages) is refused with 412,
the status CDS Hooks gives a service that cannot get the data it needs ("HTTP Response"), never
scored in part (docs/clinical-safety.md H27).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fhir_twin.errors import FhirError, PreconditionFailed, ServiceUnavailable
from fhir_twin.fhir import json
from fhir_twin.fhir.json import MAX_DEPTH
from fhir_twin.interactions import Interactions, unrecorded
from fhir_twin.interactions.message import Request as FhirRequest

# The most resources one call reads, over every prefetch key: about 17 days of 15-minute vital
# signs, and what a twin built in memory holds without straining a worker.
MAX_RESOURCES = 10_000
# The page size of a query read here: the largest a page may be (``max_page_size``'s default).
PAGE_SIZE = 1000
# The most pages one query follows: a server whose next links never end is not read forever.
MAX_PAGES = 1_000
# Outbound reads of a client's FHIR server: a card that comes late is not shown (CDS Hooks
# clients wait a few seconds), so a slow server fails the call rather than hold a thread.
TIMEOUT_SECONDS = 10

Fetch = Callable[[str], list[dict[str, Any]]]


class Tally:
    """The resources one call has read, refused past ``MAX_RESOURCES``."""

    def __init__(self) -> None:
        self.limit = MAX_RESOURCES
        self.count = 0

    def add(self, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.count += len(found)
        if self.count > self.limit:
            raise PreconditionFailed(
                f"The patient's record holds more than the {self.limit} resources this service reads in one call; "
                "it gives no cards from part of a record"
            )
        return found


def own_fetch(interactions: Interactions, base: str, tally: Tally) -> Fetch:
    """A prefetch query read from this server as the caller (the Guard judges each page like any
    read), pages of the largest size followed to the end."""

    def fetch(query: str) -> list[dict[str, Any]]:
        path, _, text = query.partition("?")
        params = parse_qsl(text, keep_blank_values=True)
        if params:
            params.append(("_count", str(PAGE_SIZE)))
        found: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            with unrecorded():
                answer = interactions.route(FhirRequest("GET", path, base, params))
            if answer.status == 404 and not text:
                return []
            if answer.status >= 400:
                error = FhirError(f"Reading {query} here failed with {answer.status}")
                error.status = answer.status
                raise error
            page = answer.body if isinstance(answer.body, dict) else json.loads(answer.body or "{}")
            found += tally.add(resources(page))
            link = next_link(page)
            if link is None:
                return found
            parts = urlsplit(link)
            path = parts.path.removeprefix(urlsplit(base).path).lstrip("/")
            params = parse_qsl(parts.query, keep_blank_values=True)
        raise PreconditionFailed(f"Reading {query} here took more than {MAX_PAGES} pages")

    return fetch


def remote_fetch(server: str, authorization: Any, tally: Tally) -> Fetch:
    """A prefetch query read from the client's FHIR server with its token, following its pages.
    Redirects are not followed, nor a next link outside ``server``: the token goes to no other host."""
    base = server.rstrip("/")
    headers = {"Accept": "application/fhir+json"}
    if isinstance(authorization, dict):
        headers["Authorization"] = f"Bearer {authorization['access_token']}"

    def fetch(query: str) -> list[dict[str, Any]]:
        # requests (about 5 MB) loads with the first remote prefetch, not in every idle server.
        import requests

        url = f"{base}/{query}"
        found: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            try:
                answer = requests.get(url, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False)
            except requests.RequestException as error:
                raise ServiceUnavailable(
                    f"The FHIR server {server} could not be read: {type(error).__name__}"
                ) from error
            if answer.status_code == 404 and "?" not in query:
                return found
            if answer.status_code >= 300:
                raise ServiceUnavailable(f"The FHIR server {server} answered {answer.status_code} to {query}")
            try:
                page = json.loads(answer.content, MAX_DEPTH)
            except FhirError as error:
                raise ServiceUnavailable(f"The FHIR server {server} answered {query} with no JSON") from error
            found += tally.add(resources(page))
            link = next_link(page)
            if link is None:
                return found
            if not link.startswith(base + "/"):
                raise ServiceUnavailable(
                    f"The FHIR server {server} gave a next page outside itself for {query}: not followed"
                )
            url = link
        raise PreconditionFailed(f"The FHIR server {server} answered {query} in more than {MAX_PAGES} pages")

    return fetch


def next_link(page: Any) -> str | None:
    """A searchset Bundle's ``next`` link (R4 http.html#paging), None on its last page or a read."""
    if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
        return None
    for link in page.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            url: str = link["url"]
            return url
    return None


def resources(found: Any) -> list[dict[str, Any]]:
    """A read's resource, or a searchset's resources (stored bodies arrive as raw JSON text)."""
    if not isinstance(found, dict):
        return []
    if found.get("resourceType") != "Bundle":
        return [found]
    out = []
    for entry in found.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if resource is not None and not isinstance(resource, dict):
            resource = json.loads(resource.encoded_json)
        if isinstance(resource, dict) and (entry.get("search") or {}).get("mode", "match") == "match":
            out.append(resource)
    return out
