"""The HTTP server under ``fhir-twin serve``: gunicorn's master and worker processes, each worker
running waitress on the shared listening socket.

Why waitress: a gthread worker gives a connection a thread as soon as it is accepted, so a few
idle keep-alive or half-sent connections hold every thread and the server stops answering.
waitress reads each request in full in its event loop (spooling large bodies to a temporary
file) and only then hands it to a thread, closes connections quiet for longer than the read
time-out, and stops accepting past a connection limit. Why gunicorn around it: the GIL lets one
process use one core; gunicorn forks the app built once in the master, restarts a worker that
dies and stops them all on SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from gunicorn.app.base import BaseApplication
from gunicorn.workers.base import Worker
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask

from fhir_twin.errors import Issue
from fhir_twin.fhir.outcome import operation_outcome

if TYPE_CHECKING:
    from flask import Flask

    from fhir_twin.services import Services

# waitress's own limit on the request line and headers: far above the app's (8 kB URL, 16 kB of
# headers), so the app answers an oversized request with its OperationOutcome, not waitress.
HEADER_LIMIT = 256 * 1024
# How often (seconds) idle connections are looked for and closed; also the event loop's wake-up.
CLEANUP_INTERVAL = 1
# How long (seconds) a worker leaves a new connection to one holding fewer (``AcceptBalance``).
BALANCE_DEFER = 0.002


class OperationOutcomeErrorTask(ErrorTask):
    """What waitress refuses itself, before the app sees the request (a header it cannot parse, a
    request line and headers past ``HEADER_LIMIT``, a body past its limit), answered as an
    OperationOutcome like every other error, not as waitress's plain text."""

    def execute(self) -> None:
        # types-waitress says ``request`` is the Error; waitress passes the parser, which holds it.
        error = self.request.error  # type: ignore[attr-defined]
        code = {413: "too-costly", 431: "too-long"}.get(error.code, "structure")
        body = orjson.dumps(operation_outcome([Issue(code, f"{error.reason}: {error.body}")]))
        self.status = f"{error.code} {error.reason}"
        # types-waitress types ``response_headers`` as a Sequence; waitress makes it a list.
        self.response_headers.append(("Content-Type", "application/fhir+json; charset=utf-8"))  # type: ignore[attr-defined]
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class OperationOutcomeChannel(HTTPChannel):
    error_task_class = OperationOutcomeErrorTask


@dataclass(frozen=True)
class Limits:
    """What one worker process allows its clients."""

    # Seconds a connection may stay silent (idle between requests, or mid-request) before it is closed.
    read_timeout: int = 30
    # Open connections one worker process keeps; past it, new ones wait in the listen backlog.
    max_connections: int = 1000
    # Largest body waitress buffers; the app's own, lower limit answers 413 first.
    max_body_bytes: int = 64 * 1024 * 1024


def worker_class(limits: Limits, balance: AcceptBalance) -> type[Worker]:
    """gunicorn's worker class for these limits and this balance (gunicorn takes a class, not an instance)."""
    return type("WaitressWorker", (WaitressWorker,), {"limits": limits, "balance": balance})


class AcceptBalance:
    """New connections go to the worker process holding the fewest.

    Every worker waits on the one listening socket, and whichever wakes first accepts: at once a
    client's few keep-alive connections (an EHR's pool, a benchmark's threads) could all land on
    one worker, which the GIL holds to one core while the other idles (two connections of
    ``bench/crud.py`` read 848–866 times a second on one worker, 1,713–1,870 on two). So each
    worker publishes how many connections it holds in memory shared by all (made in the master
    before it forks), and a worker holding more than another leaves each new connection to it for
    a moment (``_Share``). A slot of no running worker counts as holding every connection; a
    worker beyond the slots (gunicorn's TTIN adds workers) has none, and accepts at once.
    """

    ABSENT = 2**31 - 1

    def __init__(self, workers: int) -> None:
        # Anonymous memory mapped shared, so forked workers see one another's counts.
        self._memory = mmap.mmap(-1, 4 * max(workers, 1))
        self.counts = memoryview(self._memory).cast("i")
        for slot in range(len(self.counts)):
            self.counts[slot] = self.ABSENT

    def pre_fork(self, server: Any, worker: Any) -> None:
        """gunicorn's hook in the master: the new worker takes a slot no living worker holds."""
        taken = {getattr(other, "balance_slot", None) for other in server.WORKERS.values()}
        worker.balance_slot = next((slot for slot in range(len(self.counts)) if slot not in taken), None)
        self.leave(worker.balance_slot)

    def child_exit(self, _server: Any, worker: Any) -> None:
        """gunicorn's hook in the master when a worker has exited, however it ended."""
        self.leave(worker.balance_slot)

    def leave(self, slot: int | None) -> None:
        if slot is not None:
            self.counts[slot] = self.ABSENT

    def share(self, slot: int | None, fixed: int) -> _Share:
        """One worker's part; ``fixed`` is how many of its sockets are not connections. Without a
        slot, a count of its own that no other worker sees: it never defers."""
        counts = self.counts if slot is not None else memoryview(bytearray(4)).cast("i")
        return _Share(counts, slot or 0, fixed)


class _Share:
    """One worker's part of ``AcceptBalance``: it reports its connections, and when a connection
    comes while another worker holds fewer, leaves it to that one for ``BALANCE_DEFER`` seconds
    (the listening socket out of its poll), then takes it if it is still waiting: the other is
    busy, and a burst of connections is accepted at full speed by both."""

    def __init__(self, counts: Any, slot: int, fixed: int) -> None:
        self.counts = counts
        self.slot = slot
        self.fixed = fixed
        # When this worker last left a waiting connection to another; None when it has not.
        self.deferred_at: float | None = None
        # Whether the listening socket was polled once after the deferral ended.
        self.looked = False

    def report(self, sockets: int) -> float | None:
        """Publish this worker's connections; how long the loop may wait (None: as it likes)."""
        self.counts[self.slot] = sockets - self.fixed
        if self.deferred_at is None:
            return None
        left = self.deferred_at + BALANCE_DEFER - time.monotonic()
        if left > 0:
            return left
        if self.looked:  # polled once since the deferral ended, with nothing waiting: the other took it
            self.deferred_at = None
            self.looked = False
            return None
        self.looked = True
        return 0.0

    def gate(self, readable: Callable[[], bool]) -> Callable[[], bool]:
        """The listening socket's ``readable``: not while a deferral runs."""

        def balanced() -> bool:
            if self.deferred_at is not None and time.monotonic() < self.deferred_at + BALANCE_DEFER:
                return False
            return readable()

        return balanced

    def accept(self, handle_accept: Callable[[], None]) -> Callable[[], None]:
        """The listening socket's ``handle_accept``: first defer to a worker holding fewer."""

        def balanced() -> None:
            if self.deferred_at is None:
                mine = self.counts[self.slot]
                if any(other < mine for other in self.counts):
                    self.deferred_at = time.monotonic()
                    return
            self.deferred_at = None
            self.looked = False
            handle_accept()

        return balanced


class WaitressWorker(Worker):
    """A gunicorn worker whose requests waitress reads in full and answers from its thread pool."""

    limits = Limits()
    balance: AcceptBalance  # set by ``worker_class``
    balance_slot: int | None = 0  # set by ``AcceptBalance.pre_fork``

    def run(self) -> None:
        _allow_open_files(self.limits.max_connections + 64)
        # waitress warns of every request that waits for a thread; at saturation that is every
        # request, and waiting is what the queue is for: a flood in the log, not news.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        socket_map: dict[int, Any] = {}
        server = create_server(
            self.wsgi,
            map=socket_map,
            sockets=[listener.sock for listener in self.sockets],
            threads=self.cfg.threads,
            channel_timeout=self.limits.read_timeout,
            cleanup_interval=CLEANUP_INTERVAL,
            connection_limit=self.limits.max_connections,
            max_request_header_size=HEADER_LIMIT,
            max_request_body_size=self.limits.max_body_bytes,
            # Forwarded headers reach the app as sent, as they did under gunicorn.
            clear_untrusted_proxy_headers=False,
            ident="fhir-twin",
        )
        _SignalWake(self.PIPE[0], socket_map)
        share = self.balance.share(self.balance_slot, len(socket_map))
        for dispatcher in socket_map.values():
            if getattr(dispatcher, "accepting", False):
                dispatcher.channel_class = OperationOutcomeChannel
                dispatcher.readable = share.gate(dispatcher.readable)
                dispatcher.handle_accept = share.accept(dispatcher.handle_accept)
        beat = 0.0
        while self.alive:
            # The loop turns once per socket event, several times a request: the heartbeat to the
            # master (a file's mtime) and the parent check are system calls, made once a second.
            if time.monotonic() - beat >= CLEANUP_INTERVAL:
                beat = time.monotonic()
                self.notify()
                if self.ppid != os.getppid():
                    self.log.info("parent changed, shutting down: %s", self)
                    break
            deferring = share.report(len(socket_map))
            wasyncore.loop(timeout=CLEANUP_INTERVAL if deferring is None else deferring, map=socket_map, count=1)
        self.balance.leave(self.balance_slot)
        self._drain(server, socket_map)

    def _drain(self, server: Any, socket_map: dict[int, Any]) -> None:
        """Stop accepting, finish the requests under way (up to gunicorn's graceful time-out), close."""
        for dispatcher in list(socket_map.values()):
            if getattr(dispatcher, "accepting", False):
                dispatcher.close()
        deadline = time.monotonic() + self.cfg.graceful_timeout
        while time.monotonic() < deadline and any(getattr(d, "requests", None) for d in socket_map.values()):
            self.notify()
            wasyncore.loop(timeout=0.1, map=socket_map, count=1)
        server.task_dispatcher.shutdown(timeout=max(deadline - time.monotonic(), 0))
        wasyncore.close_all(socket_map)


class _SignalWake(wasyncore.file_dispatcher):
    """gunicorn's signal pipe (its wake-up fd) watched by the event loop: a SIGTERM or SIGQUIT ends
    the loop's wait at once, so the worker stops without waiting out ``CLEANUP_INTERVAL``."""

    def writable(self) -> bool:
        return False

    def handle_read(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.socket.recv(64)


def _allow_open_files(needed: int) -> None:
    """Raise this process's open-file limit towards ``needed`` (one descriptor per connection)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


class Server(BaseApplication):
    """gunicorn with waitress workers; the app is built once in the master, before forking."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def post_fork(services: Services) -> Callable[[Any, Any], None]:
    """gunicorn's hook in each forked worker, before it serves, for the app built on ``services``."""

    def hook(_server: Any, _worker: Any) -> None:
        # Connections opened in the master must not be shared with the forked workers.
        services.repository.engine.dispose(close=False)
        # Each worker process runs its own background threads from the start, so queued exports and
        # assessments are worked off even before it serves a request.
        services.ensure_running()

    return hook
