"""The server anchoring its own audit chain: a signed checkpoint (``audit.anchor``) every
``audit_anchor_every`` seconds, appended to ``audit_anchor_to``, written only when the chain has
grown since the last one, so an idle server adds no line.

One writer per server: the thread runs in the process that builds the app (gunicorn's master
under ``fhir-twin serve``, as the device bridge), never in the server processes it forks: a
thread is not copied by ``fork``, and a child lets go of the thread's connections without
closing them (they stay the parent's). A failed checkpoint (the database away, no key) is logged
and tried again at the next interval.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from pathlib import Path

from fhir_twin.audit.anchor import Checkpoint, CheckpointError, latest, public_key, take
from fhir_twin.store.repository import Repository
from fhir_twin.store.worker import when_disposed, worker_repository

log = logging.getLogger("fhir_twin.audit")


class AnchorSchedule:
    """Takes a checkpoint of the audit chain every ``every`` seconds into ``path``."""

    name = "fhir-twin-audit-anchor"

    def __init__(self, repository: Repository, audit_key: str, path: Path, every: float) -> None:
        self.own = worker_repository(repository)
        self.audit_key = audit_key
        self.path = path
        self.every = every
        # The record the last checkpoint in ``path`` anchors: read from the file at the first pass.
        self._last: int | None = None
        self._read_file = False
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._forked = False
        _SCHEDULES.add(self)
        when_disposed(repository, self.stop)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running or self._forked:
            return
        log.info("Checkpoints of the audit chain every %s s to %s", self.every, self.path)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(self._stopping,), name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """End the thread and close its connections (in a forked child, which has neither: nothing)."""
        if self._forked:
            return
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.own.engine.dispose()

    def run_once(self) -> Checkpoint | None:
        """Append a checkpoint if the chain grew since the last one in the file; the one written."""
        if not self._read_file:
            self._last = self._anchored()
            self._read_file = True
        checkpoint = take(self.own, self.audit_key, self.path, after=self._last)
        if checkpoint is not None:
            self._last = checkpoint.seq
            log.info(
                "Audit checkpoint of record %s (%s records) appended to %s", checkpoint.seq, checkpoint.count, self.path
            )
        return checkpoint

    def _anchored(self) -> int | None:
        """The record the file's last checkpoint anchors; None without one, or when the file
        cannot be trusted (``audit verify`` names why; anchoring goes on)."""
        if not self.audit_key:
            return None
        try:
            found = latest(self.path, public_key(self.audit_key))
        except CheckpointError as error:
            log.warning("The audit checkpoints already in %s are not trusted: %s", self.path, error)
            return None
        return None if found is None else found.seq

    def _loop(self, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                self.run_once()
            except Exception as error:
                log.warning("No audit checkpoint this time (the next in %s s): %s", self.every, error)
            stopping.wait(self.every)

    def _after_fork(self) -> None:
        self._forked = True
        self.own.engine.dispose(close=False)


_SCHEDULES: weakref.WeakSet[AnchorSchedule] = weakref.WeakSet()


def _forget_in_child() -> None:
    for schedule in list(_SCHEDULES):
        schedule._after_fork()


os.register_at_fork(after_in_child=_forget_in_child)
