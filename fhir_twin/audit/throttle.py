"""A bound on the records of requests refused for want of a valid credential (401), per address.

Anyone who can reach the server can send requests without a credential; recording each of them
would let a flood grow the trail (and its indexes) without limit. The first ``LIMIT`` of an
address's refusals in each ``WINDOW`` are recorded one by one; the rest of the window are
counted and recorded as one AuditEvent when it ends, which says how many there were.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from uuid6 import uuid7

from fhir_twin.audit.event import Occurrence
from fhir_twin.fhir.instant import format_instant, now

LIMIT = 60
WINDOW = 60.0


@dataclass
class _Window:
    start: float
    recorded: int = 0
    # The refusals past the limit: how many, and the last of them (the summary's model).
    suppressed: int = 0
    last: Occurrence | None = None
    first_at: str = ""


class Throttle:
    """Per address, which refusals to record one by one, and the summaries of the others."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._windows: dict[str, _Window] = {}
        self._ended: list[_Window] = []
        self._lock = threading.Lock()

    def admit(self, occurrence: Occurrence) -> bool:
        """Whether ``occurrence`` is recorded one by one; if not, it is counted for its summary."""
        key = occurrence.address or ""
        at = self.clock()
        with self._lock:
            found = self._windows.get(key)
            if found is None or at - found.start >= self.window:
                if found is not None and found.suppressed:
                    self._ended.append(found)
                found = self._windows[key] = _Window(at)
            if found.recorded < self.limit:
                found.recorded += 1
                return True
            if not found.suppressed:
                found.first_at = format_instant(occurrence.recorded)
            found.suppressed += 1
            found.last = occurrence
            return False

    def summaries(self, everything: bool = False) -> list[Occurrence]:
        """One Occurrence per ended window that held unrecorded refusals (``everything``: the
        windows still open as well, when the process stops); ended windows are forgotten."""
        at = self.clock()
        with self._lock:
            ended, self._ended = self._ended, []
            for key, found in list(self._windows.items()):
                if everything or at - found.start >= self.window:
                    del self._windows[key]
                    if found.suppressed:
                        ended.append(found)
        return [_summary(found) for found in ended]


def _summary(found: _Window) -> Occurrence:
    assert found.last is not None
    address = found.last.address or "an unknown address"
    return replace(
        found.last,
        event_id=str(uuid7()),
        recorded=now(),
        resources=[],
        patients=set(),
        query=None,
        diagnostics=(
            f"{found.suppressed} more requests without a valid credential from {address}, "
            f"from {found.first_at} to {format_instant(found.last.recorded)}, were not recorded one by one"
        ),
    )
