"""Migration 0010 fills ``doctor_last``'s new columns from the stored RiskAssessments exactly as
the Doctor fills them when it records one, so the patients list sorts a database assessed
before the upgrade as it sorts one assessed after."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from flask import Flask
from sqlalchemy import Engine, select

from fhir_twin.app import services_of
from fhir_twin.store.database import MIGRATIONS, migrate
from fhir_twin.store.schema import doctor_last
from tests.ml.doctor_data import NEWS2_VECTORS, ago, cardiovascular_set, news2_set, patient, settle, transaction


def rows(engine: Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(select(doctor_last).order_by(*doctor_last.primary_key))]


def test_the_upgrade_fills_what_the_doctor_writes(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    resources: list[dict[str, Any]] = []
    for number, (vitals, _score, _risk) in enumerate(NEWS2_VECTORS):
        resources += [patient(f"p{number}"), *news2_set(f"p{number}", vitals, ago(minutes=5))]
    resources += cardiovascular_set("p0", ago(hours=1))
    transaction(client, resources)
    settle(app, deadline=30)
    engine = services_of(app).repository.engine
    recorded = rows(engine)
    assert {row[1] for row in recorded} >= {"news2", "pooled-cohort-ascvd"}
    assert all(row[3] is not None for row in recorded)  # the assessment each names
    services_of(app).close()
    config = AlembicConfig()
    config.set_main_option("script_location", MIGRATIONS)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    migrate(engine)
    assert rows(engine) == recorded
