"""Test fixtures: an app on a fresh database, SQLite by default or the PostgreSQL that
``FHIR_TWIN_TEST_DATABASE_URL`` names (``.ci/run`` runs the suite once on each).

On PostgreSQL the suite makes its own database, so it never touches data it did not create; it
skips cleanly when no server answers, except under CI, where an unreachable server is a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import create_app, services_of
from fhir_twin.config import Config
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.repository import Repository
from tests.subscriptions.receiver import Receiver

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
POSTGRES_URL = os.environ.get("FHIR_TWIN_TEST_DATABASE_URL", "")


def pytest_report_header() -> str:
    return f"fhir-twin database: {'PostgreSQL ' + POSTGRES_URL if POSTGRES_URL else 'SQLite'}"


@pytest.fixture(scope="session", autouse=True)
def own_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The default data directory (where the audit key and checkpoints are kept) in the session's
    temporary folder: no test reads or writes the user's own."""
    before = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))
    yield
    if before is None:
        del os.environ["XDG_DATA_HOME"]
    else:
        os.environ["XDG_DATA_HOME"] = before


@pytest.fixture(autouse=True)
def own_data_home_per_test(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A data directory of each test's own, servers it starts included: a key one test's server
    generates for a database (the PostgreSQL run reuses one) is never read by another test."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.mktemp("data-home")))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str | None]:
    """A throw-away PostgreSQL database for this session, or None on SQLite runs."""
    if not POSTGRES_URL:
        yield None
        return
    admin_url = sqlalchemy.engine.make_url(POSTGRES_URL)
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"fhir_twin_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sqlalchemy.exc.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL reachable at {POSTGRES_URL}: {exc.orig}")
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite database that each test copies: a copy takes well under a
    millisecond, migrating a new file about 100 ms."""
    path = tmp_path_factory.mktemp("template") / "fhir-twin.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate(engine)
    finally:
        engine.dispose()
    return path


@pytest.fixture
def database_url(postgres_database: str | None, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated database with no resources in it."""
    if postgres_database is None:
        path = tmp_path / "fhir-twin.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    empty_postgres(postgres_database)
    yield postgres_database


@pytest.fixture(scope="module")
def module_database_url(
    postgres_database: str | None, tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> str:
    """A database with no resources in it, shared by one module's tests that only read."""
    if postgres_database is None:
        path = tmp_path_factory.mktemp("module") / "fhir-twin.db"
        shutil.copyfile(sqlite_template, path)
        return f"sqlite:///{path}"
    empty_postgres(postgres_database)
    return postgres_database


def empty_postgres(url: str) -> None:
    """Remove every row the tests before left in the session's PostgreSQL database."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        # DELETE, not TRUNCATE: on tables this small it takes about 1 ms where TRUNCATE's new files
        # take 40 ms or more, which over the suite is minutes. Foreign keys and triggers are not
        # fired in the replica role, so the order does not matter.
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        tables = (
            connection.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
            .scalars()
            .all()
        )
        for table in tables:
            connection.exec_driver_sql(f'DELETE FROM "{table}"')
        for sequence in connection.exec_driver_sql(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
        ).scalars():
            connection.exec_driver_sql(f'ALTER SEQUENCE "{sequence}" RESTART')
    engine.dispose()


@pytest.fixture
def make_app(database_url: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Build apps on the test database with extra settings; their engines are closed afterwards.

    Tests of other features run without credentials and, unless marked ``audited``, without the
    audit trail (which tests/audit and tests/security exercise), keeping the suite quick.
    """
    apps: list[Flask] = []
    audited = request.node.get_closest_marker("audited") is not None

    def build(**settings: Any) -> Flask:
        # Tests of other features run without credentials; tests/security sets the mode it tests.
        app = create_app({"database_url": database_url, "auth_mode": "none", "audit": audited, **settings})
        app.testing = True
        apps.append(app)
        return app

    yield build
    for app in apps:
        # Queued audit records are written and the recorder's engine closed first: a flush set
        # off by disposing the app's engine would leave a connection open behind it.
        recorder = services_of(app).recorder
        if recorder is not None:
            recorder.stop()
        services_of(app).repository.engine.dispose()


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def repository(database_url: str) -> Iterator[Repository]:
    """A Repository on the test database, without an app: for tests of the layers below Flask."""
    engine = make_engine(database_url)
    migrate(engine)  # a no-op on SQLite's migrated copy; a new PostgreSQL database needs it
    yield Repository(engine, Config().referential_integrity)
    engine.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local HTTP server recording the rest-hook notifications it is sent."""
    found = Receiver().start()
    yield found
    found.stop()
