"""Claims on queued rows (the Doctor's queue, the Subscriptions outbox): a worker takes the rows
of one key (a patient, a subscription) compare-and-set, so two workers never work on one key at
once; a claim older than ``STALE_CLAIM`` is a dead worker's, and is taken over.

A claim names its owner's machine and process (``owner``), so a server starting after a crash
releases at once the claims of its machine's processes that are gone (``release_dead``) instead
of leaving a patient's assessments or a Subscription's notifications stalled for ``STALE_CLAIM``.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Table, Update, and_, bindparam, or_, select, update

from fhir_twin.store.repository import Repository

STALE_CLAIM = timedelta(minutes=2)


@cache
def claimable(table: Table, key: str) -> ColumnElement[bool]:
    """Rows of ``table`` that the owner bound as ``owner`` may claim: unclaimed or stale (claimed
    before the bound ``stale_before``, ``claim_bounds``), of a ``key`` no other owner holds. Not
    held by this owner: SQLite evaluates an update row by row, so a key's second row would
    otherwise see its first just claimed, and stay for a second pass.

    Built once per table, with bound parameters: the Doctor claims on every pass under a stream
    of writes, and building this expression and its statements anew each time cost more than
    running them."""
    rows = table.c
    other = table.alias("other")
    held = (
        select(other.c.seq)
        .where(
            other.c[key] == rows[key],
            other.c.claimed_by.is_not(None),
            other.c.claimed_by != bindparam("owner"),
            other.c.claimed_at >= bindparam("stale_before"),
        )
        .exists()
    )
    return and_(or_(rows.claimed_by.is_(None), rows.claimed_at < bindparam("stale_before")), ~held)


def claim_bounds(owner: str, at: datetime) -> dict[str, Any]:
    """The parameters of ``claimable`` for ``owner`` claiming at ``at``, and of the claim itself
    (``claim_time``; not ``at``, a column of the device windows' table)."""
    return {"owner": owner, "stale_before": at - STALE_CLAIM, "claim_time": at}


@cache
def take_one(table: Table, key: str) -> Update:
    """The compare-and-set claim of the ``claimable`` rows whose ``key`` is the bound
    ``key_value``, with ``claim_bounds``; a caller may narrow it further."""
    rows = table.c
    return (
        update(table)
        .where(rows[key] == bindparam("key_value"), claimable(table, key))
        .values(claimed_by=bindparam("owner"), claimed_at=bindparam("claim_time"))
    )


def take(repository: Repository, table: Table, key: str, keys: Iterable[str], owner: str, at: datetime) -> list[str]:
    """Claim for ``owner`` the rows of each of ``keys`` that are still ``claimable``, compare-and-set:
    a key another owner claimed since it was chosen no longer matches, and is left out."""
    statement, bounds = take_one(table, key), claim_bounds(owner, at)
    taken: list[str] = []
    with repository.transaction(write=True) as tx:
        for value in keys:
            if tx.connection.execute(statement, {**bounds, "key_value": value}).rowcount:
                taken.append(value)
    return taken


def owner() -> str:
    """A new claimant's name: machine, process id, and a token of its own."""
    return f"{_machine()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def release_dead(repository: Repository, tables: Iterable[Table]) -> None:
    """Hand back the claims in ``tables`` of this machine's processes that no longer run."""
    prefix = _machine() + ":"
    with repository.transaction(write=True) as tx:
        for table in tables:
            rows = table.c
            held = tx.connection.execute(
                select(rows.claimed_by).distinct().where(rows.claimed_by.startswith(prefix, autoescape=True))
            ).scalars()
            dead = [name for name in held if not _running(name[len(prefix) :].partition(":")[0])]
            if dead:
                tx.connection.execute(
                    update(table).where(rows.claimed_by.in_(dead)).values(claimed_by=None, claimed_at=None)
                )


def _machine() -> str:
    """The host name, and the process-id namespace where Linux shows it: containers that share a
    host name (host networking) number their processes apart."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()[:64]}{'/' + namespace if namespace else ''}"


def _running(pid: str) -> bool:
    """Whether process ``pid`` of this machine runs; a zombie (dead, not yet reaped) does not."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True  # someone else's, or not a process id: not ours to judge
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True
