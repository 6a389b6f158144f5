"""One app for a whole fuzzing module: Hypothesis runs many examples per test, and a fresh
database per example would cost seconds each. The database starts with the official examples, so
mutated bodies and their references meet resources that exist."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy
from flask import Flask

from fhir_twin.app import create_app, services_of
from tests.robustness.cases import EXAMPLES


def stored_versions(app: Flask) -> int:
    """Every version of every resource in the app's database: what a failed write must not change."""
    with services_of(app).repository.engine.connect() as connection:
        return connection.execute(sqlalchemy.text("SELECT count(*) FROM resource_version")).scalar_one()


@pytest.fixture(scope="module")
def fuzz_app(module_database_url: str) -> Iterator[Flask]:
    settings: dict[str, Any] = {
        "database_url": module_database_url,
        "auth_mode": "none",
        "audit": False,
        "doctor": False,
    }
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
