"""Engines: a pooled PostgreSQL connection that the server closed is never handed to a request."""

from __future__ import annotations

import fcntl
import os
import signal
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from fhir_twin.store.database import WriteGate, make_engine, migrate
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


def test_a_read_alone_leaves_the_pooled_connection_transactional(repository: Repository) -> None:
    """A read by id runs outside a transaction (``driver.first_row_alone``); the connection it
    used goes back to the pool as it was, so the next write on it still commits or rolls back
    whole."""
    for _ in range(3):  # the pool hands the same connection back
        assert repository.current("Patient", "one-statement") is None
        with pytest.raises(RuntimeError), repository.transaction(write=True) as tx:
            tx.write(_patient("one-statement"), [])
            raise RuntimeError("the write fails after its insert")
    assert repository.current("Patient", "one-statement") is None
    with repository.transaction(write=True) as tx:
        tx.write(_patient("one-statement"), [])
    found = repository.current("Patient", "one-statement")
    assert found is not None and found.version == 1


def test_a_read_alone_fails_as_sqlalchemy_fails_and_leaves_the_pool_usable(database_url: str, tmp_path: Path) -> None:
    """The driver's error is raised as SQLAlchemy raises it (callers handle one kind), and the
    connection it failed on serves the next read and write."""
    admin = None
    if database_url.startswith("sqlite"):
        database_url = f"sqlite:///{tmp_path / 'empty.db'}"  # the fixture's copy is migrated already
    else:  # the fixture's database is migrated already: a new one beside it
        admin = create_engine(database_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        unmigrated = f"fhir_twin_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{unmigrated}"')
        database_url = make_url(database_url).set(database=unmigrated).render_as_string(False)
    engine = make_engine(database_url)  # no schema yet: every read fails
    try:
        repository = Repository(engine)
        with pytest.raises(DBAPIError, match="resource"):
            repository.current("Patient", "p")
        with pytest.raises(DBAPIError, match="resource_version"):
            repository.version("Patient", "p", 1)
        migrate(engine)
        assert repository.current("Patient", "p") is None
        with repository.transaction(write=True) as tx:
            tx.write(_patient("p"), [])
        found = repository.version("Patient", "p", 1)
        assert found is not None and found.res_id == "p"
    finally:
        engine.dispose()
        if admin is not None:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{unmigrated}" WITH (FORCE)')
            admin.dispose()


def test_a_read_alone_replaces_a_connection_the_server_terminated(database_url: str) -> None:
    """A read by id takes its connection from the pool as a transaction does, so a backend
    terminated between two reads (a server restart) costs the next read nothing."""
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL's pool; SQLite has no server to close connections")
    engine = make_engine(database_url)
    admin = create_engine(database_url, poolclass=NullPool)
    try:
        migrate(engine)
        repository = Repository(engine)
        with repository.transaction(write=True) as tx:
            tx.write(_patient("restart"), [])
        assert repository.current("Patient", "restart") is not None
        with admin.connect() as connection:
            pids = text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            for pid in connection.execute(pids).scalars():
                connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            deadline = time.monotonic() + 10
            while connection.execute(pids).first() is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        found = repository.current("Patient", "restart")
        assert found is not None and found.version == 1
    finally:
        engine.dispose()
        admin.dispose()


def _patient(res_id: str) -> Version:
    body = f'{{"resourceType":"Patient","id":"{res_id}"}}'
    return Version("Patient", res_id, 1, datetime.now(UTC), "POST", 201, body)
