"""Engines: a pooled PostgreSQL connection that the server closed is never handed to a request."""

from __future__ import annotations

import fcntl
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from fhir_twin.store.database import WriteGate, make_engine
from fhir_twin.store.repository import Repository
from fhir_twin.store.version import Version


def test_a_connection_the_server_terminated_is_replaced(database_url: str) -> None:
    """A backend terminated between two transactions (as a server restart terminates them all)
    costs the next transaction nothing: the pool opens a new connection for it."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's pool; SQLite has no server to close connections")
    engine = make_engine(database_url)
    admin = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            before = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
            deadline = time.monotonic() + 10
            alive = text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid")
            while connection.execute(alive, {"pid": before}).scalar_one() and time.monotonic() < deadline:
                time.sleep(0.05)
        with engine.connect() as connection:
            after = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert after != before
    finally:
        engine.dispose()
        admin.dispose()


def test_a_process_forked_while_a_write_is_gated_does_not_keep_the_lock(tmp_path: Path) -> None:
    """serve's master writes (device readings, websocket pings) while it forks server processes: the
    child must not hold the SQLite write gate's flock for as long as it lives."""
    gate = WriteGate(str(tmp_path / "fhir-twin.db"))
    with gate:
        child = os.fork()
        if child == 0:  # the child lives on, as a server process would
            time.sleep(5)
            os._exit(0)
    try:
        # Once the child has run its fork hooks the lock is free, long before the child ends.
        deadline = time.monotonic() + 3
        with open(tmp_path / "fhir-twin.db.write-lock", "ab") as other:
            while True:
                try:
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    assert time.monotonic() < deadline, "the forked child kept the write gate's lock"
                    time.sleep(0.05)
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_a_read_of_one_statement_leaves_the_pooled_connection_transactional(repository: Repository) -> None:
    """A one-statement read runs outside a transaction (``one_statement``); the connection it
    used goes back to the pool as it was, so the next write on it still commits or rolls back
    whole."""
    for _ in range(3):  # the pool hands the same connection back
        with repository.transaction(one_statement=True) as tx:
            assert tx.current("Patient", "one-statement") is None
        with pytest.raises(RuntimeError), repository.transaction(write=True) as tx:
            tx.write(_patient("one-statement"), [])
            raise RuntimeError("the write fails after its insert")
    with repository.transaction(one_statement=True) as tx:
        assert tx.current("Patient", "one-statement") is None
    with repository.transaction(write=True) as tx:
        tx.write(_patient("one-statement"), [])
    with repository.transaction(one_statement=True) as tx:
        found = tx.current("Patient", "one-statement")
    assert found is not None and found.version == 1


def _patient(res_id: str) -> Version:
    body = f'{{"resourceType":"Patient","id":"{res_id}"}}'
    return Version("Patient", res_id, 1, datetime.now(UTC), "POST", 201, body)
