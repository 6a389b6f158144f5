"""Engines: a pooled PostgreSQL connection that the server closed is never handed to a request."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from fhir_twin.store.database import make_engine


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
