"""A transaction's resources validated and indexed before its write lock is taken, in the
request's thread and, for a large Bundle, in this process's helper too (``helper``).

The request's thread goes through the entries from the first; the helper is sent chunks from the
last, at most ``IN_FLIGHT`` at a time, while enough is left for the thread that both end at about
the same time. An entry the thread reaches is taken from the helper's answers if they are in, else
done there and then: the thread never waits for the helper. So the entries are judged in the
Bundle's order, as without the helper, and the first invalid one raises its error (the helper
leaves an entry it cannot do to the thread, which raises).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_twin.bundles.entries import Entry
from fhir_twin.bundles.helper import Answers, Helper, HelperLost, Session
from fhir_twin.errors import FhirError
from fhir_twin.fhir.validation import validate_resource
from fhir_twin.search.extract import extract
from fhir_twin.search.index import IndexRow

# Fewer resources than this are not worth a helper's round trips (measured: docs/performance.md
# section 4, 2026-12-07).
THRESHOLD = 64
CHUNK = 32
IN_FLIGHT = 2


@dataclass
class Job:
    """An entry whose resource is validated, and whether its index rows are extracted too."""

    entry: Entry
    rows: bool

    @property
    def resource(self) -> dict[str, Any]:
        # Jobs are made of POST and PUT entries, which all have a resource (``parse_entries``).
        assert self.entry.resource is not None
        return self.entry.resource


def prepare(
    jobs: list[Job], base: str, helper: Helper | None, located: Callable[[Entry, FhirError], FhirError]
) -> None:
    """Validate (and index) every job's resource; the first that fails raises its error as
    ``located`` names it."""
    if helper is None or len(jobs) < THRESHOLD:
        for job in jobs:
            _here(job, base, located)
        return
    with helper.session() as session:
        _shared(jobs, base, session, located)


def _shared(
    jobs: list[Job], base: str, session: Session | None, located: Callable[[Entry, FhirError], FhirError]
) -> None:
    answered: dict[int, list[IndexRow] | None] = {}
    # The helper's chunks not answered yet: id → the jobs' positions.
    owed: dict[int, range] = {}
    back = len(jobs)
    for front, job in enumerate(jobs):
        if session is not None:
            try:
                for chunk, answers in session.answers():
                    _take(answered, owed.pop(chunk), answers)
                for chunk, positions in list(owed.items()):
                    if positions.start == front:
                        # Reached: done here from now on, answers taken while they come in time.
                        session.drop(chunk)
                while session.owed < IN_FLIGHT and back - front >= CHUNK * (session.owed + 2):
                    positions = range(back - CHUNK, back)
                    items = [(jobs[at].resource, jobs[at].rows) for at in positions]
                    owed[session.send(items, base)] = positions
                    back = positions.start
            except HelperLost:
                session = None
        if front in answered:
            rows = answered.pop(front)
            job.entry.validated = True
            if job.rows:
                job.entry.index_rows = rows
        else:
            _here(job, base, located)


def _take(answered: dict[int, list[IndexRow] | None], positions: range, answers: Answers) -> None:
    for at, rows in zip(positions, answers, strict=False):
        answered[at] = rows


def _here(job: Job, base: str, located: Callable[[Entry, FhirError], FhirError]) -> None:
    try:
        validate_resource(job.resource)
    except FhirError as error:
        raise located(job.entry, error) from None
    job.entry.validated = True
    if job.rows:
        job.entry.index_rows = extract(job.resource, base)
