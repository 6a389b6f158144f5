"""The migrations build exactly the schema ``store/schema.py`` describes, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.schema import metadata


def test_migrated_schema_matches_the_table_definitions(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()
    assert differences == []
