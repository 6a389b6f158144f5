"""A background worker thread per server process, for work queued in the database, and the
engine of its own that each one works on (``worker_repository``).

``start`` and ``stop`` run and end it for good. Disposing the app's engine (what tests do when
done with an app and gunicorn's ``post_fork`` does), a fork and interpreter exit ``pause`` it;
``ensure_running``, called before each request, resumes a paused worker, so a forked server
process runs its own once it serves. Subclasses say what one pass does.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable

from sqlalchemy import event

from fhir_twin.store import claims
from fhir_twin.store.database import make_engine
from fhir_twin.store.repository import Repository

log = logging.getLogger("fhir_twin.worker")


class Worker(ABC):
    """Runs ``run_pass`` every ``poll_interval`` seconds, or at once when ``wake`` is called."""

    name = "fhir-twin-worker"

    def __init__(self, repository: Repository, poll_interval: float, own: Repository | None = None) -> None:
        """``own`` is a repository on an engine of the thread's own, disposed when the thread halts."""
        self.repository = repository
        self.poll_interval = poll_interval
        self._own = own
        self._lock = threading.Lock()
        self._enabled = False
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        _WORKERS.add(self)
        when_disposed(repository, self.pause)

    @abstractmethod
    def run_pass(self, owner: str, should_stop: Callable[[], bool]) -> None:
        """One pass over the queued work; ``owner`` names this thread in claims."""

    @property
    def own_repository(self) -> Repository | None:
        """The repository on the thread's own engine, if it has one."""
        return self._own

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._lock:
            self._enabled = True
            self._spawn()

    def enable(self) -> None:
        """Enabled without a thread here: each process forked from this one starts its own
        (``ensure_running``)."""
        with self._lock:
            self._enabled = True

    def ensure_running(self) -> None:
        if self._enabled and not self.running:
            with self._lock:
                if self._enabled:
                    self._spawn()

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._enabled = False
            self._halt(timeout)

    def pause(self, timeout: float = 30.0) -> None:
        with self._lock:
            self._halt(timeout)

    def wake(self) -> None:
        self._wakeup.set()

    def _spawn(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping, self._wakeup = threading.Event(), threading.Event()
        owner = claims.owner()
        self._thread = threading.Thread(
            target=self._loop, args=(owner, self._stopping, self._wakeup), name=self.name, daemon=True
        )
        self._thread.start()

    def _halt(self, timeout: float) -> None:
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wakeup.set()
        thread.join(timeout)
        if thread.is_alive():
            log.warning("The %s thread did not stop within %s s", self.name, timeout)
        self._thread = None
        if self._own is not None:
            self._own.engine.dispose()

    def _loop(self, owner: str, stopping: threading.Event, wakeup: threading.Event) -> None:
        while not stopping.is_set():
            wakeup.clear()
            try:
                self.run_pass(owner, stopping.is_set)
            except Exception:
                log.exception("A %s pass failed; the next one starts in %s s", self.name, self.poll_interval)
            wakeup.wait(self.poll_interval)


_WORKERS: weakref.WeakSet[Worker] = weakref.WeakSet()


def when_disposed(repository: Repository, callback: Callable[[], None]) -> None:
    """Call ``callback`` once the repository's engine has been disposed (``Engine.dispose``)."""
    event.listen(repository.engine, "engine_disposed", lambda _engine: callback())


def worker_repository(repository: Repository) -> Repository:
    """A repository on an engine of its own, for a worker thread: disposed after the thread
    stops, it closes every connection the thread used, whenever the app's engine is disposed."""
    url = repository.engine.url.render_as_string(hide_password=False)
    own = Repository(make_engine(url), repository.referential_integrity)
    own.websocket = repository.websocket
    return own


def wake(repository: Repository, kind: type[Worker]) -> None:
    """Wake this process's workers of ``kind`` that serve ``repository``."""
    for worker in list(_WORKERS):
        if isinstance(worker, kind) and worker.repository is repository:
            worker.wake()


# The workers whose threads ran when this process last forked: the parent resumes them.
_PAUSED_FOR_FORK: list[Worker] = []


def _pause_all() -> None:
    """No worker thread may hold a lock across ``fork`` or be cut off mid-batch at exit."""
    for worker in list(_WORKERS):
        worker.pause()


def _pause_for_fork() -> None:
    _PAUSED_FOR_FORK[:] = [worker for worker in list(_WORKERS) if worker.running]
    _pause_all()


def _resume_after_fork() -> None:
    """The parent goes on with its threads: gunicorn's master serves no request, so nothing else
    would resume its audit recorder, and the records of the device bridge's reads would wait in
    memory until the next fork or exit."""
    for worker in _PAUSED_FOR_FORK:
        worker.ensure_running()
    _PAUSED_FOR_FORK.clear()


os.register_at_fork(before=_pause_for_fork, after_in_parent=_resume_after_fork, after_in_child=_PAUSED_FOR_FORK.clear)
atexit.register(_pause_all)
