"""Device windows' readings, held until their window is written (``devices/window.py``).

The bridge ``keep``s a batch's window readings in the transaction of the batch's other writes and
then acknowledges its messages, so an open window never holds MQTT messages in flight (a broker
stops sending to a client with too many unacknowledged) and a stopped bridge loses nothing. One
row per window and reading time, inserted or ignored: a redelivered reading counts once.

A bridge ``claim``s the windows that are due, compare-and-set as the Doctor's queue does
(``store/claims.py``), so of several bridges one writes each window, and a dead bridge's claim is
taken over; it deletes the rows it holds (``written``) in the transaction that writes the window.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from fhir_twin.store import claims
from fhir_twin.store.repository import DatabaseTransaction, Repository
from fhir_twin.store.schema import device_window_reading

CLAIM_BATCH = 50
_HELD = device_window_reading.c


@dataclass(frozen=True)
class HeldReading:
    """One reading of a window, as kept."""

    window: str
    device_id: str
    value: str
    code: str  # system|code
    unit: str
    grouping: str
    period: int | None
    start: int
    end: int
    at: int  # ms since the epoch
    number: float
    patient: str
    device: str


class DeviceWindows:
    """The readings of open device windows, on one database."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    @contextmanager
    def transaction(self) -> Iterator[DatabaseTransaction]:
        """A write transaction that the router's writes inside it join: one commit for all."""
        with self.repository.transaction(write=True) as tx:
            yield tx

    def keep(self, readings: list[tuple[HeldReading, datetime]]) -> None:
        """Hold ``readings`` (each with when its window is due), in the open transaction if any;
        a reading already held (a redelivery) is left as it is."""
        if not readings:
            return
        rows = {(reading.window, reading.at): {**reading.__dict__, "due": due} for reading, due in readings}
        dialect = postgresql if self.repository.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(device_window_reading).on_conflict_do_nothing(index_elements=["window", "at"])
        with self.repository.transaction(write=True) as tx:
            tx.connection.execute(statement, list(rows.values()))

    def claim(self, owner: str, at: datetime, limit: int = CLAIM_BATCH) -> list[str]:
        """Claim up to ``limit`` windows whose every reading is due at ``at``; their identifiers."""
        claimable = claims.claimable(device_window_reading, "window")
        due = select(_HELD.window).group_by(_HELD.window).having(func.max(_HELD.due) <= bindparam("due_by"))
        query = select(_HELD.window).where(claimable, _HELD.window.in_(due)).distinct().limit(limit)
        with self.repository.transaction() as tx:
            ready = list(tx.connection.execute(query, {**claims.claim_bounds(owner, at), "due_by": at}).scalars())
        return claims.take(self.repository, device_window_reading, "window", ready, owner, at) if ready else []

    def claimed(self, owner: str, windows: list[str]) -> list[HeldReading]:
        """The readings ``owner`` holds of ``windows``, in the order they were kept."""
        names = [name for name in HeldReading.__dataclass_fields__]
        query = (
            select(*(_HELD[name] for name in names))
            .where(_HELD.window.in_(windows), _HELD.claimed_by == owner)
            .order_by(_HELD.seq)
        )
        with self.repository.transaction() as tx:
            return [HeldReading(**row._asdict()) for row in tx.connection.execute(query)]

    def written(self, owner: str, windows: list[str]) -> None:
        """Forget the readings ``owner`` holds of ``windows``, in the open transaction if any (the
        one writing them); readings that came late, unclaimed, stay for a later pass."""
        with self.repository.transaction(write=True) as tx:
            tx.connection.execute(
                delete(device_window_reading).where(_HELD.window.in_(windows), _HELD.claimed_by == owner)
            )

    def count(self) -> int:
        """How many readings are held."""
        with self.repository.transaction() as tx:
            return int(tx.connection.execute(select(func.count()).select_from(device_window_reading)).scalar_one())
