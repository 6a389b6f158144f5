"""Batch and transaction Bundles posted to the service base (R4 http.html#transaction).

Every entry becomes a request answered by the same ``route`` as a top-level one. A batch runs
its entries independently; a transaction runs them in one database transaction, in the order
the specification sets (DELETE, POST, PUT/PATCH, GET/HEAD), after giving new resources their ids
and rewriting the references between entries — any failure rolls everything back.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fhir_twin.bundles.entries import Entry, error_entry, parse_entries, response_entry
from fhir_twin.bundles.helper import HELPER
from fhir_twin.bundles.preparation import Job, prepare
from fhir_twin.bundles.references import conditional_parts, rewrite
from fhir_twin.config import Config
from fhir_twin.errors import FhirError, Invalid, Issue, PayloadTooLarge, PreconditionFailed, Unprocessable
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.interactions import Request, Response, unrecorded
from fhir_twin.store.repository import Repository

Route = Callable[[Request], Response]
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


class Bundles:
    """Processes ``POST [base]`` with a batch or transaction Bundle."""

    def __init__(self, route: Route, repository: Repository, config: Config) -> None:
        self.route = route
        self.repository = repository
        self.config = config
        # This process's helper, which validates and indexes part of a large transaction (``helper``).
        self.helper = HELPER if config.bundle_helper else None

    def process(self, request: Request) -> Response:
        bundle = request.body
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise Invalid("POST to the service base takes a Bundle of type batch or transaction")
        kind = bundle.get("type")
        if kind not in ("batch", "transaction"):
            message = f"Bundle.type must be batch or transaction to be processed, not {kind!r}"
            raise Invalid.at("Bundle.type", message)
        entries = parse_entries(bundle, request.base)
        if len(entries) > self.config.max_bundle_entries:
            raise PayloadTooLarge(
                f"The Bundle has {len(entries)} entries; this server takes at most {self.config.max_bundle_entries}"
            )
        answers = self._transaction(request, entries) if kind == "transaction" else self._batch(request, entries)
        return Response(
            200,
            {},
            {
                "resourceType": "Bundle",
                "id": str(uuid.uuid4()),
                "type": f"{kind}-response",
                "timestamp": format_instant(now()),
                "entry": answers,
            },
        )

    def _include_resource(self, request: Request, entry: Entry) -> bool:
        return entry.method in ("GET", "HEAD") or request.prefer("return") in ("representation", "operationoutcome")

    def _batch(self, request: Request, entries: list[Entry]) -> list[dict[str, Any]]:
        """Entries independent of each other: one failing does not stop the rest; its outcome
        names the entry, as a transaction's error does."""
        answers = []
        for entry in entries:
            try:
                answer = self.route(entry.request(request))
                answers.append(response_entry(answer, request.base, self._include_resource(request, entry)))
            except FhirError as error:
                answers.append(error_entry(_at(entry, error)))
        return answers

    def _transaction(self, request: Request, entries: list[Entry]) -> list[dict[str, Any]]:
        """All or nothing; the error names the failing entry (index and fullUrl).

        Ids that need no lookup are given, references rewritten and resources validated and
        indexed before the write lock is taken, so concurrent transactions only queue for the
        writes themselves (a large Bundle's shared with this process's helper, ``preparation``);
        conditional identities and references are resolved under the lock.
        """
        _refuse_duplicates(entries)
        mapping, conditional = _plain_identities(entries)
        # Conditional references met while rewriting: they are resolved under the lock.
        seen: list[str] = []

        def keep(reference: str) -> str:
            seen.append(reference)
            return reference

        jobs: list[Job] = []
        unrewritable: FhirError | None = None
        for entry in entries:
            if entry.resource is None or entry.method not in ("POST", "PUT"):
                continue
            if not conditional:
                try:
                    entry.resource = rewrite(entry.resource, mapping, keep)
                except FhirError as error:
                    # Raised once the entries before it are judged: the first failing entry is named.
                    unrewritable = _at(entry, error)
                    break
            jobs.append(Job(entry, rows=False))
        for job in jobs:
            # Rows are worth extracting now only when every reference is known.
            job.rows = not conditional and not seen and unrewritable is None
        prepare(jobs, request.base, self.helper, _at)
        if unrewritable is not None:
            raise unrewritable
        if seen:
            # Their targets are known only under the lock: so are the entries' index rows.
            conditional = True
        answers: dict[int, tuple[Entry, Response]] = {}
        with self.repository.transaction(write=True) as tx:
            # The resources updated by id: locked and read ahead together, not an entry at a time.
            tx.lock_current([_key(entry.path) for entry in entries if _by_id(entry) and entry.method == "PUT"])
            if conditional:
                mapping.update(self._conditional_identities(request, entries))
            for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
                try:
                    if conditional and entry.resource is not None and entry.method != "PATCH":
                        entry.resource = rewrite(entry.resource, mapping, lambda ref: self._resolve(request, ref))
                    answer = self.route(entry.request(request))
                except FhirError as error:
                    raise _at(entry, error) from None
                answers[entry.index] = entry, answer
        # Built once the write gate is open again: SQLite's other writers need not wait for them.
        return [
            response_entry(answer, request.base, self._include_resource(request, entry))
            for entry, answer in (answers[index] for index in range(len(entries)))
        ]

    def _conditional_identities(self, request: Request, entries: list[Entry]) -> dict[str, str]:
        """``fullUrl`` → ``Type/id`` for conditional creates and updates, found by search."""
        mapping: dict[str, str] = {}
        for entry in entries:
            if not entry.full_url:
                continue
            res_type = entry.path.split("/")[0]
            try:
                if entry.method == "POST" and "if-none-exist" in entry.headers:
                    existing = self._conditional_match(request, res_type, entry.headers["if-none-exist"])
                    target = existing or f"{res_type}/{uuid.uuid4()}"
                    entry.assigned_id = target.partition("/")[2]
                    mapping[entry.full_url] = target
                elif entry.method == "PUT" and "/" not in entry.path and entry.query:
                    found = self._conditional_match(request, res_type, "&".join(f"{k}={v}" for k, v in entry.query))
                    body_id = (entry.resource or {}).get("id")
                    target = found or f"{res_type}/{body_id if isinstance(body_id, str) else uuid.uuid4()}"
                    if found is None and entry.resource is not None:
                        entry.resource = {**entry.resource, "id": target.partition("/")[2]}
                    mapping[entry.full_url] = target
            except FhirError as error:
                raise _at(entry, error) from None
        return mapping

    def _conditional_match(self, request: Request, res_type: str, query: str | None) -> str | None:
        """``Type/id`` of the one resource ``query`` matches, None for none, 412 for several."""
        if not query:
            return None
        query = query.partition("?")[2] if "?" in query else query
        found = self._search(request, res_type, query)
        if len(found) > 1:
            raise PreconditionFailed(f"{res_type}?{query} matches {len(found)} resources; it must match at most one")
        return found[0] if found else None

    def _resolve(self, request: Request, reference: str) -> str:
        """A conditional reference must match exactly one resource (R4 http.html#trules)."""
        res_type, query = conditional_parts(reference)
        found = self._search(request, res_type, query)
        if len(found) != 1:
            raise (PreconditionFailed if found else Unprocessable)(
                f"The conditional reference {reference} matches {len(found)} resources; it must match exactly one"
            )
        return found[0]

    def _search(self, request: Request, res_type: str, query: str) -> list[str]:
        pairs = [*parse_qsl(query, keep_blank_values=True), ("_count", "2")]
        # A step of the entry that needs it, recorded with that entry.
        with unrecorded():
            answer = self.route(Request("GET", res_type, request.base, pairs, {"prefer": "handling=strict"}))
        body = answer.body if isinstance(answer.body, dict) else {}
        return [entry["fullUrl"].removeprefix(request.base.rstrip("/") + "/") for entry in body.get("entry", [])]


def _plain_identities(entries: list[Entry]) -> tuple[dict[str, str], bool]:
    """Ids that need no lookup — new ids for plain creates, the URL of plain updates — and
    whether a conditional identity is left to resolve under the lock (conditional references are
    found while rewriting)."""
    mapping: dict[str, str] = {}
    conditional = False
    for entry in entries:
        res_type = entry.path.split("/")[0]
        if entry.method == "POST" and "if-none-exist" not in entry.headers:
            entry.assigned_id = str(uuid.uuid4())
            if entry.full_url:
                mapping[entry.full_url] = f"{res_type}/{entry.assigned_id}"
        elif entry.method == "POST" or (entry.method == "PUT" and "/" not in entry.path and entry.query):
            conditional = conditional or entry.full_url is not None
        elif entry.method == "PUT" and entry.full_url and entry.full_url != entry.path:
            mapping[entry.full_url] = entry.path
    return mapping, conditional


def _by_id(entry: Entry) -> bool:
    """Whether the entry names its resource by type and id (no condition)."""
    return "/" in entry.path and not entry.query


def _key(path: str) -> tuple[str, str]:
    res_type, _, res_id = path.partition("/")
    return res_type, res_id.partition("/")[0]


def _refuse_duplicates(entries: list[Entry]) -> None:
    """Two entries claiming the same identity make a transaction ambiguous (R4 http.html#trules)."""
    seen: dict[str, int] = {}
    for entry in entries:
        identities = [entry.full_url] if entry.full_url else []
        if entry.method in ("PUT", "DELETE", "PATCH") and _by_id(entry):
            identities.append(entry.path)
        for identity in identities:
            if identity in seen:
                message = f"Bundle.entry[{entry.index}] and Bundle.entry[{seen[identity]}] both claim {identity}"
                raise Invalid.at(entry.where, message)
            seen[identity] = entry.index


def _at(entry: Entry, error: FhirError) -> FhirError:
    """The same error, saying which entry failed."""
    name = f"{entry.where} ({entry.full_url})" if entry.full_url else entry.where
    located = type(error)(
        f"{name}: {error.diagnostics}",
        issues=[
            Issue(i.code, f"{name}: {i.diagnostics}", i.severity, (entry.where, *i.expression)) for i in error.issues
        ],
        headers=error.headers,
    )
    located.status = error.status
    return located
