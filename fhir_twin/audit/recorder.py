"""Records an AuditEvent for every interaction the router reports (``interaction_completed``).

A write's record goes into the write's own transaction: it commits with the change or not at all.
Reads and refusals change nothing to commit with; their records are queued in memory and written
in batches by a thread (at most ``FLUSH_INTERVAL`` later, and before the process forks or exits),
which keeps auditing a read far cheaper than the read itself.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_twin.audit import chain
from fhir_twin.audit.event import Occurrence, audit_event
from fhir_twin.audit.throttle import Throttle
from fhir_twin.fhir.instant import format_instant
from fhir_twin.interactions.interaction import Completion
from fhir_twin.interactions.message import Response, Streamed
from fhir_twin.security.access import patients_in, patients_of
from fhir_twin.signals import interaction_completed
from fhir_twin.store import audit, audit_index
from fhir_twin.store.audit_index import audit_rows
from fhir_twin.store.repository import DatabaseTransaction, Repository
from fhir_twin.store.version import Version
from fhir_twin.store.worker import Worker, worker_repository

log = logging.getLogger("fhir_twin.audit")
# Half a second of reads makes a batch whose records share index pages and one commit: auditing
# costs a third less per read than at 0.2 s, and a kill -9 can lose at most this much of them.
FLUSH_INTERVAL = 0.5
# Past this many queued records the thread is woken rather than waiting for its interval.
FLUSH_AT = 500
_SEARCHES = ("search-type", "search-system", "history-type", "history-system", "history-instance", "operation")


# Credentials a client may put in a URL (RFC 6750 section 2.3, OAuth 2.0): refused by this
# server, and never kept in the trail, whose readers must not learn a live secret from it.
_CREDENTIALS = frozenset({"access_token", "refresh_token", "id_token", "client_secret", "client_assertion"})
# Search parameters after which an answer shows less of its resources than they hold.
_PARTIAL = ("_elements", "_summary")


@dataclass
class _Queued:
    occurrence: Occurrence
    # A read's answer, whose patients are worked out by the thread, off the request's path.
    body: Any = None
    # The answer shows less than the resources it came from (a 304, a search with ``_elements``
    # or ``_summary``): their patients are looked up in the stored versions.
    stored: bool = False
    # A streamed answer (an export file): the patients of the parts it sent, read again here.
    streamed: Streamed | None = None


class AuditRecorder(Worker):
    """The audit trail's writer for one server process."""

    name = "fhir-twin-audit"

    def __init__(self, repository: Repository, key: str = "", site: str = "") -> None:
        # Its own engine, disposed when the thread halts: a flush under way when the app's
        # engine is disposed leaves no connection behind in it.
        self.own = worker_repository(repository)
        super().__init__(repository, FLUSH_INTERVAL, own=self.own)
        self.key = key
        self.site = site
        self._queue: list[_Queued] = []
        self.throttle = Throttle()
        self._queue_lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def listen(self, sender: object) -> None:
        """Record the interactions ``sender`` (a router) reports."""
        interaction_completed.connect(self.completed, sender=sender)

    def completed(self, _sender: object, *, completion: Completion) -> None:
        occurrence = self._occurrence(completion)
        request, response, error, tx = completion.request, completion.response, completion.error, completion.tx
        if tx is not None and error is None:
            for version, index in completion.written:
                occurrence.resources.append(f"{version.res_type}/{version.res_id}/_history/{version.version}")
                if version.deleted:
                    # A delete has no index rows: the patients are those of what it deleted.
                    before = version.version - 1
                    occurrence.patients |= _patients_of_stored(tx, version.res_type, version.res_id, before)
                else:
                    occurrence.patients |= patients_in(version.res_type, version.res_id, index)
            if not completion.written and response is not None:
                # A conditional create that found its match, a read inside a transaction: what
                # was answered is what was accessed.
                location = response.headers.get("Location") or response.headers.get("Content-Location")
                if location and completion.interaction.name != "read":
                    occurrence.resources.append(location.removeprefix(request.base).strip("/"))
                if response.body is not None and response.status < 300:
                    occurrence.patients |= _patients(response.body)
            # Written with the rest of the transaction's records when its block ends.
            tx.gather(self.record, occurrence)
            return
        if error is not None and error.status == 401 and not self.throttle.admit(occurrence):
            return
        if response is not None and response.streamed is not None:
            # Queued once sent (or dropped), naming the patients of what was sent.
            streamed = response.streamed

            def sent() -> None:
                self._queue_up(_Queued(occurrence, streamed=streamed))

            streamed.when_sent(sent)
            return
        body = response.body if response is not None and response.status < 300 else None
        stored = response is not None and (
            response.status == 304 or (response.status < 300 and any(name in _PARTIAL for name, _ in request.query))
        )
        self._queue_up(_Queued(occurrence, body, stored))

    def _queue_up(self, item: _Queued) -> None:
        with self._queue_lock:
            self._queue.append(item)
            size = len(self._queue)
        if size >= FLUSH_AT:
            self.wake()

    def record(self, tx: DatabaseTransaction, occurrences: list[Occurrence]) -> None:
        """Store an AuditEvent per occurrence in ``tx`` and chain them."""
        write_records(tx, occurrences, self.key)

    def flush(self, everything: bool = False) -> int:
        """Write every queued record now, with the summaries of ended throttle windows (of all,
        ``everything``); how many were."""
        with self._flush_lock:
            with self._queue_lock:
                queued, self._queue = self._queue, []
            queued += [_Queued(summary) for summary in self.throttle.summaries(everything)]
            if not queued:
                return 0
            try:
                for item in queued:
                    if item.body is not None:
                        item.occurrence.patients |= _patients(item.body)
                    if item.streamed is not None:
                        item.occurrence.patients |= item.streamed.patients(self.own)
                        item.streamed = None  # looked up once, even if the write below fails
                looked_up = [item for item in queued if item.stored]
                if looked_up:
                    with self.own.transaction() as tx:
                        for item in looked_up:
                            for res_type, res_id, version in _shown(item):
                                item.occurrence.patients |= _patients_of_stored(tx, res_type, res_id, version)
                records = Records([item.occurrence for item in queued])
                with self.own.transaction(write=True) as tx:
                    store_records(tx, records, self.key)
            except Exception:
                with self._queue_lock:
                    self._queue = queued + self._queue
                raise
            return len(queued)

    def run_pass(self, owner: str, should_stop: Callable[[], bool]) -> None:
        self.flush()

    def pause(self, timeout: float = 30.0) -> None:
        super().pause(timeout)
        self._drain()

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        self._drain()

    def _drain(self) -> None:
        """Write what is queued, then close the thread's engine: paused because the app's engine
        was disposed, or the process forks or exits, no connection may be left behind."""
        try:
            self.flush(everything=True)
        except Exception:
            log.exception("Queued audit records could not be written")
        finally:
            self.own.engine.dispose()

    def _occurrence(self, completion: Completion) -> Occurrence:
        principal, interaction, request = completion.principal, completion.interaction, completion.request
        response, error = completion.response, completion.error
        occurrence = new_occurrence(
            interaction=interaction.name,
            action=interaction.action,
            status=error.status if error is not None else (response.status if response is not None else 200),
            agent=principal.name if principal is not None else "fhir-twin",
            agent_kind=principal.kind if principal is not None else "server",
            user=principal.user if principal is not None else None,
            address=principal.address if principal is not None else None,
            diagnostics=error.diagnostics if error is not None else None,
            operation=interaction.operation,
            site=self.site or request.base,
        )
        res_type, res_id = interaction.resource_type, interaction.resource_id
        if res_type == "Patient" and res_id:
            occurrence.patients.add(res_id)
        if interaction.compartment:
            occurrence.patients.add(interaction.compartment)
        # What a read names is what it read; a refused write names what it would have changed.
        named = interaction.name in ("read", "vread", "history-instance", "operation") or error is not None
        if res_type and res_id and named:
            version = _version(response) or interaction.version_id
            occurrence.resources.append(f"{res_type}/{res_id}" + (f"/_history/{version}" if version else ""))
        if interaction.name in _SEARCHES and request.query:
            query = [(name, "[redacted]" if name.lower() in _CREDENTIALS else value) for name, value in request.query]
            occurrence.query = f"{request.path}?{urlencode(query)}"
        elif interaction.name in _SEARCHES and interaction.name != "operation":
            # A search of everything of a type is a query too (BALP Query pattern).
            occurrence.query = request.path
        return occurrence


def write_records(tx: DatabaseTransaction, occurrences: list[Occurrence], key: str) -> None:
    """Store an AuditEvent per occurrence in ``tx`` and chain them (HMAC under ``key`` if set)."""
    store_records(tx, Records(occurrences), key)


class Records:
    """The AuditEvents of some occurrences, their index rows and their digests, made ready to
    store: a batch of reads' records is made before the recorder's write transaction, so on
    SQLite the write gate, which creates and updates queue at, is held only to insert them."""

    def __init__(self, occurrences: list[Occurrence]) -> None:
        self.versions: list[tuple[Version, dict[str, Any]]] = []
        self.records: list[dict[str, Any]] = []
        self.entities: list[dict[str, Any]] = []
        self.links: list[tuple[str, str]] = []
        for occurrence in occurrences:
            event = audit_event(occurrence)
            event["meta"] = {"versionId": "1", "lastUpdated": format_instant(occurrence.recorded)}
            body = _encoded(event)
            recorded = occurrence.recorded
            self.versions.append((Version("AuditEvent", occurrence.event_id, 1, recorded, "POST", 201, body), event))
            record, named = audit_rows(event, recorded.replace(microsecond=recorded.microsecond // 1000 * 1000))
            self.records.append(record)
            self.entities += named
            self.links.append((occurrence.event_id, chain.digest(body)))


def store_records(tx: DatabaseTransaction, records: Records, key: str) -> None:
    """Insert ``records`` in ``tx`` and chain them after the trail's last link."""
    for version, event in records.versions:
        # Indexed in the audit trail's own tables (store.audit_index), not the generic ones.
        tx.write(version, [], event)
    audit_index.write(tx.connection, records.records, records.entities)
    audit.append(tx, records.links, lambda previous, body_digest: chain.link(previous, body_digest, key))


def _encoded(event: dict[str, Any]) -> str:
    """The event as compact JSON, as stored bodies are. orjson writes the same text as
    ``json.dumps(event, ensure_ascii=False, separators=(",", ":"))`` (plain JSON: no decimals)
    in a tenth of the time, and every read pays for one; text it refuses (a lone surrogate in a
    diagnostic) is written by the standard library instead."""
    try:
        return orjson.dumps(event).decode("utf-8")
    except orjson.JSONEncodeError:
        return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def new_occurrence(**details: Any) -> Occurrence:
    """An Occurrence of now, with a fresh time-ordered id (RFC 9562 UUIDv7) of the same
    millisecond. Every audited request makes one on its own thread: one clock reading for both
    and the id written out directly cost about a third of ``uuid6.uuid7()`` with ``now()``."""
    tick = _tick()
    event_id = _uuid7(tick, int.from_bytes(os.urandom(8), "big") & _RAND_B)
    return Occurrence(event_id=event_id, recorded=_EPOCH + timedelta(milliseconds=tick >> 12), **details)


_EPOCH = datetime(1970, 1, 1)
_RAND_B = (1 << 62) - 1
_last_tick = 0
_tick_lock = threading.Lock()


def _tick() -> int:
    """Unix time in 1/4096 ms, above the last this process gave: RFC 9562 section 6.2, method 3
    (the 12 bits of ``rand_a`` hold the millisecond's fraction), so the ids of one process sort
    in the order they were made even within one millisecond."""
    global _last_tick
    milliseconds, rest = divmod(time.time_ns(), 1_000_000)
    tick = milliseconds << 12 | rest * 4096 // 1_000_000
    with _tick_lock:
        _last_tick = tick = max(tick, _last_tick + 1)
    return tick


def _uuid7(tick: int, rand_b: int) -> str:
    """RFC 9562 section 5.7: 48 bits of Unix milliseconds, the version (7), ``rand_a`` (here the
    millisecond's fraction), the variant (binary 10) and 62 random bits."""
    value = (tick >> 12 & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (tick & 0xFFF) << 64 | 0b10 << 62 | rand_b
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _version(response: Response | None) -> str | None:
    if response is None:
        return None
    etag = response.headers.get("ETag", "")
    return etag.removeprefix("W/").strip('"') or None


def _patients_of_stored(tx: DatabaseTransaction, res_type: str, res_id: str, version: int | None) -> set[str]:
    """The patients whose compartment a stored version (the current one for None) is in."""
    if version is not None and version < 1:
        return set()
    found = tx.version(res_type, res_id, version) if version is not None else tx.current(res_type, res_id)
    return patients_of(_parsed(found.body)) if found is not None and found.body else set()


def _shown(item: _Queued) -> list[tuple[str, str, int | None]]:
    """The stored resources behind an answer that shows less of them: a Bundle's entries, or the
    resource a 304 stood for."""
    if item.body is None:
        named = [reference.split("/") for reference in item.occurrence.resources]
        return [(parts[0], parts[1], int(parts[3]) if parts[3:4] and parts[3].isdigit() else None) for parts in named]
    try:
        bundle = _parsed(item.body) if isinstance(item.body, str | bytes) else item.body
    except ValueError:
        return []  # not JSON (an export file): its lines showed whole resources
    shown: list[tuple[str, str, int | None]] = []
    for entry in bundle.get("entry", []) if isinstance(bundle, dict) else []:
        resource: Any = entry.get("resource") if isinstance(entry, dict) else None
        if resource is not None and not isinstance(resource, dict):
            resource = _parsed(getattr(resource, "encoded_json", resource))
        if isinstance(resource, dict) and isinstance(resource.get("id"), str):
            shown.append((str(resource.get("resourceType")), resource["id"], None))
    return shown


def _parsed(text: str | bytes) -> Any:
    """JSON text as Python values. The recorder's thread parses every answer it audits, so it
    uses orjson (about eight times faster, so it holds the GIL the request threads need for
    less); JSON orjson refuses but the standard library reads (an escaped lone surrogate, RFC 8259
    section 8.2) is read by the latter, and text neither reads raises ``ValueError``."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _patients(body: Any) -> set[str]:
    """The patients whose records an answer holds: the resource read, or a Bundle's entries."""
    try:
        resource = _parsed(body) if isinstance(body, str | bytes) else body
    except ValueError:
        return set()
    if not isinstance(resource, dict):
        return set()
    if resource.get("resourceType") != "Bundle":
        return patients_of(resource)
    found: set[str] = set()
    for entry in resource.get("entry", []):
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if inner is not None:
            found |= _patients(getattr(inner, "encoded_json", inner))
    return found
