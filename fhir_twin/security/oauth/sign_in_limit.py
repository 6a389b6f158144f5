"""Throttling of password guessing at the sign-in page (OWASP Authentication Cheat Sheet,
"Protect Against Automated Attacks"; NIST SP 800-63B section 5.2.2, rate limiting): after
``USER_LIMIT`` failed sign-ins for one user name, or ``ADDRESS_LIMIT`` from one address, within
``WINDOW_SECONDS``, sign-ins for it are refused until that long after the last failure. The
counts are in the database, so every server process sees them; a successful sign-in clears
them for its user name and address."""

from __future__ import annotations

import math
from datetime import timedelta

from fhir_twin.fhir.instant import now
from fhir_twin.store import sign_in_failures
from fhir_twin.store.repository import Repository

USER_LIMIT = 5
# Higher: several people may sign in from behind one address (a hospital's proxy).
ADDRESS_LIMIT = 20
WINDOW_SECONDS = 900


def _subjects(username: str, address: str | None) -> list[tuple[str, int]]:
    found = [("user:" + username[:128], USER_LIMIT)]
    if address:
        found.append(("address:" + address[:128], ADDRESS_LIMIT))
    return found


def retry_after(repository: Repository, username: str, address: str | None) -> int | None:
    """Seconds before a sign-in as ``username`` from ``address`` is taken again; None when it is now."""
    moment = now()
    window = timedelta(seconds=WINDOW_SECONDS)
    waits = []
    for subject, limit in _subjects(username, address):
        failures, last = sign_in_failures.count(repository, subject, moment - window)
        if failures >= limit and last is not None:
            waits.append(max(1, math.ceil((last + window - moment).total_seconds())))
    return max(waits, default=None)


def failed(repository: Repository, username: str, address: str | None) -> None:
    moment = now()
    for subject, _ in _subjects(username, address):
        sign_in_failures.add(repository, subject, moment, moment - timedelta(seconds=WINDOW_SECONDS))


def succeeded(repository: Repository, username: str, address: str | None) -> None:
    sign_in_failures.clear(repository, *(subject for subject, _ in _subjects(username, address)))
