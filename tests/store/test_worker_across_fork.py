"""Worker threads are paused across ``fork`` (no lock may be held into the child) and the parent
goes on with them: gunicorn's master serves no request, so nothing else would resume its audit
recorder, and the device bridge's audited reads would wait in memory."""

from __future__ import annotations

import time
from collections.abc import Callable

from fhir_twin.store import worker
from fhir_twin.store.repository import Repository


class Counting(worker.Worker):
    name = "fhir-twin-test-counting"

    def __init__(self, repository: Repository) -> None:
        super().__init__(repository, poll_interval=0.01)
        self.passes = 0

    def run_pass(self, owner: str, should_stop: Callable[[], bool]) -> None:
        self.passes += 1


def test_the_parent_resumes_the_threads_it_paused_for_a_fork(repository: Repository) -> None:
    running, enabled_only = Counting(repository), Counting(repository)
    running.start()
    enabled_only.enable()
    try:
        worker._pause_for_fork()  # as os.register_at_fork calls it, before the fork
        assert not running.running
        worker._resume_after_fork()  # and after it, in the parent
        assert running.running
        assert not enabled_only.running  # a thread left to the forked processes stays theirs
        before = running.passes
        running.wake()
        worker_deadline_passes(running, before)
    finally:
        running.stop()
        enabled_only.stop()


def test_a_forked_child_does_not_resume_the_parents_threads(repository: Repository) -> None:
    running = Counting(repository)
    running.start()
    try:
        worker._pause_for_fork()
        worker._PAUSED_FOR_FORK.clear()  # as os.register_at_fork calls it in the child
        worker._resume_after_fork()
        assert not running.running
    finally:
        running.stop()


def worker_deadline_passes(counting: Counting, before: int) -> None:
    deadline = time.monotonic() + 10
    while counting.passes <= before:
        assert time.monotonic() < deadline, "the resumed thread ran no pass"
        time.sleep(0.01)
