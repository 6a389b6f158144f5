"""SQLite's WAL checkpoints, run by a thread of each server process rather than by the commits.

In WAL mode a commit appends the pages it changed to the write-ahead log; a checkpoint copies
them back into the database file and syncs both (sqlite.org/wal.html, "Checkpointing"). By
default the commit that takes the log past 1,000 pages runs that checkpoint itself, while it
still holds the write gate every writer queues at: about half a millisecond of each
create's commit on this server, and every writer waits for it. ``PASSIVE`` checkpoints from
this thread copy the pages beside the writers instead. The log is only written from its start
again once a checkpoint has copied all of it (sqlite.org/walformat.html, "WAL Reset"), which
writers that never pause would not let a checkpoint beside them do; so past ``RESTART_FROM``
pages the thread copies the last few pages holding the write gate, and the log starts over.

A process that runs no checkpointer (a CLI command; ``serve``'s master, whose device bridge's
writes the server processes' checkpointers copy back once they serve) still checkpoints in its
commits, past ``database.WAL_BACKSTOP`` pages, so the log stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable

from fhir_twin.store.database import write_gate
from fhir_twin.store.repository import Repository
from fhir_twin.store.worker import Worker, worker_repository

# Seconds between checkpoints: a few dozen creates' pages at the busiest this server writes, far
# fewer than ``WAL_BACKSTOP``. How many pages wait is not asked first: SQLite keeps it in its
# WAL-index file, and a read of that file through a descriptor of this process's own would drop
# SQLite's locks on it when closed (POSIX advisory locks belong to the process, not the descriptor).
INTERVAL = 0.1
# Pages of log (8 MB) past which a pass copies the rest holding the write gate: writers then wait
# only while the pages written since the pass began are copied.
RESTART_FROM = 2_000


class WalCheckpointer(Worker):
    """Checkpoints the SQLite database's write-ahead log every ``INTERVAL`` seconds."""

    name = "fhir-twin-checkpoint"

    def __init__(self, repository: Repository) -> None:
        # An engine of its own, disposed when the thread halts, as every worker's: a pass under
        # way when the app's engine is disposed must leave no connection behind in it.
        self.own = worker_repository(repository)
        super().__init__(repository, INTERVAL, own=self.own)
        self._gate = write_gate(self.own.engine)

    def run_pass(self, owner: str, should_stop: Callable[[], bool]) -> None:
        _busy, log, copied = checkpoint(self.own)
        if log >= RESTART_FROM and copied < log:
            with self._gate:
                checkpoint(self.own)


def checkpoint(repository: Repository) -> tuple[int, int, int]:
    """One ``PASSIVE`` checkpoint: it copies what it can without waiting for readers or writers
    (nor calling the busy handler). Returns SQLite's (busy, pages in the log, pages copied back)."""
    connection = repository.engine.raw_connection()
    try:
        driver = connection.driver_connection
        assert driver is not None
        # On the driver: SQLAlchemy's connection would open a transaction, in which SQLite
        # refuses to checkpoint.
        row = driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        connection.close()
    return int(row[0]), int(row[1]), int(row[2])
