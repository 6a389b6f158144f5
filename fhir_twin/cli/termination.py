"""SIGTERM for the commands that run until stopped (``devices``, ``devices simulate``,
``audit anchor --every``): process managers (systemd, Docker, Kubernetes) stop a service with it,
and Python's default handler would end the process at once, with what it holds unwritten."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def terminated() -> Iterator[threading.Event]:
    """An event SIGTERM sets, so the command ends as on Ctrl-C, after writing what it holds. The
    handler before is put back after (the command may run inside another program, a test's)."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)
