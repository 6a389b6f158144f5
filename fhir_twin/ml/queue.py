"""Live assessment: a twin change queues its patient in the write's transaction; a worker thread
in each server process drains the queue: at once when the write was its own process's, else
within ``poll_interval`` of the commit.

The queue is a table (``store.doctor_state``), so a change committed just before a crash is still
assessed when a process next runs; rows are claimed compare-and-set, so several processes on
one database share the work without running a patient twice at once.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

from fhir_twin.ml.doctor import Doctor
from fhir_twin.signals import twin_changed
from fhir_twin.store import doctor_state as store
from fhir_twin.store.repository import DatabaseTransaction, Repository
from fhir_twin.store.worker import Worker, wake

POLL_INTERVAL = 0.2


class DoctorQueue:
    """Listens to ``twin_changed`` from one Repository; keep a reference to stay connected."""

    def __init__(self, repository: Repository) -> None:
        # Patients already queued by a transaction: a transaction Bundle of many Observations queues once.
        self._queued: weakref.WeakKeyDictionary[DatabaseTransaction, set[str]] = weakref.WeakKeyDictionary()
        self.repository = repository
        twin_changed.connect(self.on_changed, sender=repository)

    def on_changed(self, sender: object, *, tx: DatabaseTransaction, patients: set[str]) -> None:
        queued = self._queued.setdefault(tx, set())
        new = patients - queued
        if new:
            queued.update(new)
            store.enqueue(tx, new)
            # This process's worker starts at once after the commit; others find the rows by polling.
            tx.after_commit(self._wake)

    def _wake(self) -> None:
        wake(self.repository, DoctorWorker)


class DoctorWorker(Worker):
    """Assesses queued patients (``Doctor.work``) with a Doctor on an engine of the thread's own,
    so disposing the app's engine closes every connection the thread used."""

    name = "fhir-twin-doctor"

    def __init__(self, repository: Repository, doctor: Doctor, poll_interval: float = POLL_INTERVAL) -> None:
        super().__init__(repository, poll_interval, own=doctor.repository)
        self.doctor = doctor

    def run_pass(self, owner: str, should_stop: Callable[[], bool]) -> None:
        self.doctor.work(owner, should_stop)
