"""Queued records (reads, refusals) outlive the app: disposing its engine, as tests do and as a
server process does when it forks or exits, writes them first."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy

from fhir_twin.app import services_of

pytestmark = pytest.mark.audited


def queued_read(make_app: Any) -> tuple[Any, sqlalchemy.Engine]:
    app = make_app(auth_mode="none", doctor=False)
    recorder = services_of(app).recorder
    # Only the dispose may write the record: no thread flushing it in between.
    recorder.stop()
    assert app.test_client().get("/fhir/Patient/nobody").status_code == 404
    return app, services_of(app).repository.engine


def test_disposing_the_engine_writes_the_queued_records(make_app: Any, database_url: str) -> None:
    _, engine = queued_read(make_app)
    engine.dispose()
    engine.dispose()  # closes what the first one's flush opened (see below)
    other = sqlalchemy.create_engine(database_url)
    try:
        with other.connect() as connection:
            assert connection.exec_driver_sql("SELECT COUNT(*) FROM audit_chain").scalar_one() == 1
    finally:
        other.dispose()


def test_disposing_the_engine_leaves_no_connection_open(make_app: Any) -> None:
    _, engine = queued_read(make_app)
    try:
        engine.dispose()
        assert engine.pool.checkedin() == 0
    finally:
        engine.dispose()
