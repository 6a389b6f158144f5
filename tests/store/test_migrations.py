"""The migrations build exactly the schema ``store/schema.py`` describes, on both databases."""

from __future__ import annotations

import json
from datetime import datetime

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from fhir_twin.search.extract import extract
from fhir_twin.store.database import HEAD, MIGRATIONS, make_engine, migrate
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import INDEX_TABLES, audit_entity, audit_record, metadata
from fhir_twin.store.version import Version


def test_migrated_schema_matches_the_table_definitions(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_the_head_the_server_checks_for_is_the_newest_migration() -> None:
    config = AlembicConfig()
    config.set_main_option("script_location", MIGRATIONS)
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD


def test_the_upgrade_moves_stored_audit_events_to_the_audit_index(database_url: str) -> None:
    """AuditEvents stored before the audit trail had its own index (revision 0007) keep every
    search row, now in ``audit_record``/``audit_entity``, and leave the generic tables."""
    engine = make_engine(database_url)
    try:
        config = AlembicConfig()
        config.set_main_option("script_location", MIGRATIONS)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            # A database another test migrated is taken back down; a new one is brought up.
            if MigrationContext.configure(connection).get_current_revision() is None:
                command.upgrade(config, "0007")
            else:
                command.downgrade(config, "0007")
        event = {
            "resourceType": "AuditEvent",
            "id": "before-upgrade",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "rest"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
            "action": "R",
            "recorded": "2026-11-30T12:00:00.123Z",
            "outcome": "0",
            "agent": [
                {
                    "who": {"identifier": {"system": "urn:fhir-twin:api-token", "value": "ehr"}},
                    "name": "ehr",
                    "requestor": True,
                },
                {"who": {"display": "fhir-twin"}, "name": "fhir-twin", "requestor": False},
            ],
            "source": {"site": "", "observer": {"display": "fhir-twin"}},
            "entity": [
                {
                    "what": {"reference": "Patient/p1"},
                    "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                    "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
                }
            ],
        }
        body = json.dumps(event)
        repository = Repository(engine)
        with repository.transaction(write=True) as tx:
            tx.write(
                Version("AuditEvent", "before-upgrade", 1, datetime(2026, 11, 30, 12), "POST", 201, body),
                extract(event),
            )
        migrate(engine)
        with engine.connect() as connection:
            generic = sum(
                connection.execute(select(func.count()).where(table.c.res_type == "AuditEvent")).scalar_one()
                for table in INDEX_TABLES
            )
            patients = (
                connection.execute(
                    select(audit_entity.c.target_id).where(
                        audit_entity.c.res_id == "before-upgrade", audit_entity.c.patient
                    )
                )
                .scalars()
                .all()
            )
            agent = connection.execute(
                select(audit_record.c.agent).where(audit_record.c.res_id == "before-upgrade")
            ).scalar_one()
        assert (generic, patients, agent) == (0, ["p1"], "ehr")
    finally:
        engine.dispose()
