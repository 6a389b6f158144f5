"""One app for a whole fuzzing module: Hypothesis runs many examples per test, and a fresh
database per example would cost seconds each. The database starts with the official examples, so
mutated bodies and their references meet resources that exist."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from flask import Flask

from fhir_twin.app import create_app, services_of
from tests.robustness.cases import EXAMPLES


def empty_database(postgres_database: str | None, directory: Path) -> str:
    """A new SQLite file, or the session's PostgreSQL database emptied (as ``database_url`` does
    for one test)."""
    if postgres_database is None:
        return f"sqlite:///{directory / 'fhir-twin.db'}"
    engine = sqlalchemy.create_engine(postgres_database)
    with engine.begin() as connection:
        tables = connection.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        ).scalars()
        for table in tables:
            connection.exec_driver_sql(f'TRUNCATE "{table}" RESTART IDENTITY CASCADE')
    engine.dispose()
    return postgres_database


def stored_versions(app: Flask) -> int:
    """Every version of every resource in the app's database: what a failed write must not change."""
    with services_of(app).repository.engine.connect() as connection:
        return connection.execute(sqlalchemy.text("SELECT count(*) FROM resource_version")).scalar_one()


@pytest.fixture(scope="module")
def fuzz_app(postgres_database: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    url = empty_database(postgres_database, tmp_path_factory.mktemp("fuzz"))
    settings: dict[str, Any] = {"database_url": url, "auth_mode": "none", "audit": False, "doctor": False}
    loader = create_app({**settings, "referential_integrity": False})
    # One transaction: one commit, where a PUT each would wait for a hundred.
    entries = [
        {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}
        for resource in EXAMPLES
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = loader.test_client().post("/fhir", data=json.dumps(bundle), content_type="application/fhir+json")
    assert response.status_code == 200, response.get_data(as_text=True)
    services_of(loader).repository.engine.dispose()
    app = create_app(settings)
    app.testing = True
    yield app
    services_of(app).repository.engine.dispose()
