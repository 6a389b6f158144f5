"""A second process that validates and indexes part of a large transaction Bundle's resources,
so one client's Bundle uses both cores of the machine (issue 18).

Validation and index extraction are pure functions of a resource and the base, and half of a
transaction's time (docs/performance.md section 4, "the write gate"); in one server process the
GIL keeps them on one core. Each process that needs a helper starts its own, at most one: a
server process at its first large Bundle, ``fhir-twin load`` likewise; a forked child (gunicorn's
worker) forgets one it inherits. The helper is a new interpreter started by ``posix_spawn``: no
fork of a process with threads, and unlike multiprocessing's ``spawn`` nothing of the parent's
``__main__`` is run again (a script without a main guard would repeat its writes there) and no
resource-tracker process comes with it. Its start-up imports every fhir.resources model; until it
says it is ready, requests do all the work themselves. It serves one Bundle at a time: a second
concurrent Bundle of the process works alone, both cores being busy then anyway; and it runs at a
lower priority than the server, so a request's thread gets a core first (``NICENESS``).

The helper is only ever a shortcut: what it sends back is what the request's thread would have
computed; an entry it could not do (invalid, or anything raised) and everything a dead helper
owed are done again by the request, which so raises the same error as ever. A helper that died
is replaced at the next large Bundle; so is one that hangs: every chunk sent is answered (a chunk
taken back before the helper began it, with nothing), so one owed for ``HUNG_AFTER`` (or a helper
not ready by then) means the helper stopped working, and a message it stops sending or reading
half-way for ``STALL`` breaks its pipe, so a stopped helper never holds up a request. It ends
with its server process, however that ends: its pipe closes.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fhir_twin.fhir.validation import validate_resource
from fhir_twin.search.extract import extract
from fhir_twin.search.index import IndexRow

if TYPE_CHECKING:
    # multiprocessing loads with the first helper: an idle server's processes go without it.
    from multiprocessing.connection import Connection

# A resource to validate, and whether its index rows are wanted too.
Item = tuple[dict[str, Any], bool]
# Per item, in order, its rows (None when not wanted); shorter than the items from the first
# one that could not be done.
Answers = list[list[IndexRow] | None]

log = logging.getLogger(__name__)

_READY = "ready"
# Seconds a message may make no progress through the pipe, either way: a helper that stops
# reading or sending half-way (stopped, or out of memory) is taken for lost then.
STALL = 5.0
# Seconds a chunk may go unanswered, or a new helper not ready, before it is taken for hung and
# replaced. A live helper answers a chunk within milliseconds and starts in about two seconds.
HUNG_AFTER = 30.0
# The helper is a shortcut for idle cores: at this niceness Linux's scheduler gives it about a
# tenth of a core's time beside a busy server thread, and all of an idle core. At the default,
# several Bundles at once (each worker's helper busy) took the CPU from the requests' threads,
# whose writes every Bundle waits on: four clients ingested a fifth less than one did
# (docs/performance.md section 3.21; 5 was measured worse, 19 no better).
NICENESS = 10
# The helper's interpreter: its lower priority first (its imports take a second or two of CPU),
# this checkout's package next, then ``serve`` on the socket passed.
_MAIN = (
    f"import os, sys; os.nice({NICENESS}); sys.path.insert(0, sys.argv[1]); "
    "from fhir_twin.bundles.helper import serve; serve(int(sys.argv[2]))"
)


class HelperLost(Exception):
    """The helper died or its pipe broke: the request does the rest itself."""


class Helper:
    """This process's helper: started on first use, used by one Bundle at a time (``session``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._connection: Connection | None = None
        self._ready = False
        # Chunk ids, increasing over the helper's life: a reply to a Bundle that went on without
        # it is recognised and dropped.
        self._next_chunk = 0
        # When each chunk not answered yet was sent, and when the helper was started: a helper
        # that owes one or the other for ``HUNG_AFTER`` is replaced.
        self._owed: dict[int, float] = {}
        self._started = 0.0

    @contextmanager
    def session(self) -> Iterator[Session | None]:
        """The helper for one Bundle, or None: busy with another Bundle, or not ready yet (then
        it is started, if it was not, for the Bundles to come)."""
        if not self._lock.acquire(blocking=False):
            yield None
            return
        session = None
        try:
            if self._usable():
                session = Session(self)
            yield session
        finally:
            if session is not None:
                session.close()
            self._lock.release()

    def stop(self) -> None:
        """End the helper, if there is one, and reap it."""
        with self._lock:
            self._end()

    def _usable(self) -> bool:
        if self._pid is not None and not self._alive(self._pid):
            log.warning("The Bundle helper (process %s) ended: it is replaced", self._pid)
            self._end()
        if self._pid is not None and self._ready:
            try:
                self._drain()
            except HelperLost:
                self._end()
        if self._pid is not None and self._hung():
            log.warning("The Bundle helper (process %s) stopped answering: it is replaced", self._pid)
            self._end()
        if self._pid is None:
            self._start()
            return False
        if not self._ready:
            try:
                self._ready = self._take_ready()
            except HelperLost:
                self._end()
        return self._ready

    def _hung(self) -> bool:
        since = min(self._owed.values(), default=None) if self._ready else self._started
        return since is not None and time.monotonic() - since > HUNG_AFTER

    def _drain(self) -> None:
        """Take in the answers a Bundle that went on without them left in the pipe."""
        try:
            while self._owed and self._pipe().poll(0):
                self._receive()
        except (EOFError, OSError) as error:
            raise HelperLost from error

    def _receive(self) -> tuple[int, Answers]:
        """The next answer in the pipe (its chunk no longer owed)."""
        chunk, answers = self._pipe().recv()
        self._owed.pop(chunk, None)
        return chunk, answers

    def _start(self) -> None:
        """A new interpreter (``posix_spawn``: no fork of this process and its threads, nothing of
        its ``__main__`` run again), given one end of a socket pair."""
        from multiprocessing.connection import Connection

        ours, theirs = socket.socketpair()
        # Blocking, but never for longer than ``STALL`` without progress (socket(7)).
        stall = struct.pack("ll", int(STALL), int(STALL % 1 * 1_000_000))
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, stall)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, stall)
        with ours, theirs:
            os.set_inheritable(theirs.fileno(), True)
            root = str(Path(__file__).resolve().parents[2])
            argv = [sys.executable, "-c", _MAIN, root, str(theirs.fileno())]
            self._pid = os.posix_spawn(sys.executable, argv, os.environ)
            self._connection, self._ready = Connection(ours.detach()), False
            self._started = time.monotonic()

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            return os.waitpid(pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def _take_ready(self) -> bool:
        connection = self._pipe()
        try:
            return connection.poll() and connection.recv() == _READY
        except (EOFError, OSError) as error:
            raise HelperLost from error

    def _pipe(self) -> Connection:
        if self._connection is None:
            raise HelperLost
        return self._connection

    def _end(self) -> None:
        pid, connection = self._pid, self._connection
        self._pid, self._connection, self._ready = None, None, False
        self._owed.clear()
        if connection is not None:
            connection.close()
        if pid is not None:
            try:
                # It keeps nothing: ended at once, whatever it was doing, even stopped (SIGKILL
                # ends a stopped process; SIGTERM would wait for it to be continued).
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass

    def _forget(self) -> None:
        """In a forked child: the helper is the parent's. Its pipe is closed here (the parent's
        end stays open) and the child starts its own when it needs one."""
        self._lock = threading.Lock()
        if self._connection is not None:
            self._connection.close()
        self._pid, self._connection, self._ready = None, None, False
        self._owed = {}


class Session:
    """One Bundle's use of the helper: chunks of items sent, answers taken as they come."""

    def __init__(self, helper: Helper) -> None:
        self._helper = helper
        self._first = helper._next_chunk
        # Looked at between every two entries: a poll object made once, not a selector per look.
        self._incoming = select.poll()
        self._incoming.register(helper._pipe().fileno(), select.POLLIN)
        # Sent and not answered; of those, the ones the request took back.
        self._waiting: set[int] = set()
        self._dropped: set[int] = set()

    @property
    def owed(self) -> int:
        """Chunks sent, not answered and not taken back."""
        return len(self._waiting - self._dropped)

    def send(self, items: list[Item], base: str) -> int:
        """Send a chunk; its id."""
        chunk = self._helper._next_chunk
        self._helper._next_chunk += 1
        self._write(("work", chunk, base, items))
        self._waiting.add(chunk)
        self._helper._owed[chunk] = time.monotonic()
        return chunk

    def drop(self, chunk: int) -> None:
        """The request does this chunk itself: the helper skips it if it has not started it (if it
        has, its answer still comes)."""
        if chunk in self._waiting and chunk not in self._dropped:
            self._dropped.add(chunk)
            self._write(("drop", chunk))

    def answers(self) -> list[tuple[int, Answers]]:
        """The answers in so far, without waiting."""
        found = []
        try:
            while self._waiting and self._incoming.poll(0):
                chunk, answers = self._helper._receive()
                if chunk >= self._first:
                    self._waiting.discard(chunk)
                    found.append((chunk, answers))
        except (EOFError, OSError) as error:
            self._lost(error)
            raise HelperLost from error
        return found

    def close(self) -> None:
        """Take back every chunk not answered: the next Bundle's session ignores their answers."""
        try:
            for chunk in sorted(self._waiting):
                self.drop(chunk)
        except HelperLost:
            pass

    def _write(self, message: tuple[Any, ...]) -> None:
        try:
            self._helper._pipe().send(message)
        except (OSError, ValueError) as error:
            self._lost(error)
            raise HelperLost from error

    def _lost(self, error: BaseException) -> None:
        # A stalled pipe (``STALL``) times out as BlockingIOError; a dead helper's closes (EOF).
        why = "stopped reading or sending" if isinstance(error, BlockingIOError) else "ended"
        log.warning("The Bundle helper (process %s) %s: it is replaced", self._helper._pid, why)
        self._waiting.clear()
        self._helper._end()


def serve(fd: int) -> None:
    """The helper process: chunks in, their answers out, in order; a chunk taken back before it
    was begun is answered with nothing, so every chunk is answered. A thread of its own reads what
    comes from the first moment, so the server process's sends never wait on a helper busy sending
    (two full socket buffers, each side waiting for the other), and the helper exits as soon as
    the pipe closes, even in the middle of its start-up. Only this thread sends."""
    # A terminal's Ctrl-C reaches the whole process group: the server process decides, the helper
    # ends with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from multiprocessing.connection import Connection

    connection = Connection(fd)
    pending: dict[int, tuple[str, list[Item]] | None] = {}
    arrived = threading.Condition()
    threading.Thread(target=_read, args=(connection, pending, arrived), daemon=True).start()
    from fhir_twin.fhir.resource_types import resource_types

    resource_types()
    try:
        connection.send(_READY)
        while True:
            with arrived:
                while not pending:
                    arrived.wait()
                chunk = next(iter(pending))
                work = pending.pop(chunk)
            if work is None:
                connection.send((chunk, []))
            else:
                base, items = work
                connection.send((chunk, _answer(items, base)))
    except OSError:
        os._exit(0)


def _read(
    connection: Connection, pending: dict[int, tuple[str, list[Item]] | None], arrived: threading.Condition
) -> None:
    """The helper's reading thread: chunks queued, dropped ones emptied (answered with nothing);
    the end at the pipe's."""
    try:
        while True:
            kind, chunk, *rest = connection.recv()
            with arrived:
                if kind == "work":
                    pending[chunk] = (rest[0], rest[1])
                    arrived.notify()
                elif chunk in pending:
                    pending[chunk] = None
    except (EOFError, OSError):
        os._exit(0)


def _answer(items: list[Item], base: str) -> Answers:
    answers: Answers = []
    for resource, rows in items:
        try:
            validate_resource(resource)
            answers.append(extract(resource, base) if rows else None)
        except Exception:  # the request's process does this entry again and answers for it
            break
    return answers


HELPER = Helper()
os.register_at_fork(after_in_child=HELPER._forget)
