"""The transport-neutral request and response every interaction speaks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fhir_twin.search.index import IndexRow
from fhir_twin.store.repository import Repository


@dataclass
class Request:
    """A FHIR request: ``path`` is relative to the base (``Patient/1/_history/2``).

    ``body`` is already parsed: a resource dict, or a JSON Patch list when ``patch_format`` says so.
    ``headers`` keys are lower-case.
    """

    method: str
    path: str
    base: str
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    patch_format: str | None = None
    # The id a create must use: a transaction Bundle chooses ids before writing, so entries
    # can refer to each other (R4 http.html#trules).
    assigned_id: str | None = None
    # Set when the body was validated (and its index extracted) before the request was routed:
    # a transaction does that outside its write lock.
    validated: bool = False
    index: list[IndexRow] | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def prefer(self, key: str) -> str | None:
        """A ``Prefer`` header preference (RFC 7240), e.g. ``return`` or ``handling``."""
        for part in (self.header("prefer") or "").split(","):
            name, _, value = part.strip().partition("=")
            if name.strip().lower() == key:
                return value.strip().strip('"').lower()
        return None

    def params(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]


class Streamed:
    """A body sent as it is read, part by part, never whole in memory (a Bulk Data export file).

    It counts the parts sent, and the ``when_sent`` callbacks run once the body is sent, or dropped
    unsent (a HEAD, a client gone): closed, as a WSGI server closes what it sends. With
    ``patients_of_sent`` (the patients whose records the first N parts hold) the audit trail
    names what was sent, worked out by its own thread afterwards: the download itself never waits
    for it."""

    def __init__(
        self, parts: Iterator[str], patients_of_sent: Callable[[Repository, int], set[str]] | None = None
    ) -> None:
        self._parts = parts
        self._patients_of_sent = patients_of_sent
        self.sent = 0
        self._when_sent: list[Callable[[], None]] = []
        self._closed = False

    def patients(self, repository: Repository) -> set[str]:
        """The patients whose records the parts sent hold, read again from ``repository`` (the
        audit thread's own, off the request's path)."""
        if self._patients_of_sent is None or not self.sent:
            return set()
        return self._patients_of_sent(repository, self.sent)

    def when_sent(self, callback: Callable[[], None]) -> None:
        self._when_sent.append(callback)

    def __iter__(self) -> Iterator[bytes]:
        for part in self._parts:
            # Counted once handed to the server: the audit trail errs towards naming a patient.
            self.sent += 1
            yield part.encode("utf-8")

    def close(self) -> None:
        """Once: stop reading, then run the ``when_sent`` callbacks."""
        if self._closed:
            return
        self._closed = True
        close = getattr(self._parts, "close", None)
        if close is not None:
            close()
        for callback in self._when_sent:
            callback()


@dataclass
class Response:
    """Status, headers and a body: stored JSON text, a dict to serialise, or nothing.

    ``content_type`` marks a body that is not a FHIR resource (e.g. NDJSON): sent as it is;
    ``streamed``, one sent as it is read, in place of ``body``.
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: str | dict[str, Any] | None = None
    content_type: str | None = None
    streamed: Streamed | None = None
