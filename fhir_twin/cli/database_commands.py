"""The database a command works on: ``--database``, and ``fhir-twin migrate`` and ``reindex``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from fhir_twin.config import Config

if TYPE_CHECKING:
    from fhir_twin.services import Services
    from fhir_twin.store.repository import Repository

# Every command that opens the database takes it the same way.
DATABASE = click.option(
    "--database",
    "database_url",
    default=None,
    help="Database URL (default: FHIR_TWIN_DATABASE_URL, else SQLite in the data directory).",
)


def open_repository(database_url: str | None) -> tuple[Repository, Config]:
    """The server's database, migrated, for a command that needs nothing else."""
    from fhir_twin.store.database import make_engine
    from fhir_twin.store.database import migrate as run_migrations
    from fhir_twin.store.repository import Repository

    config = Config.from_env({"database_url": database_url})
    engine = make_engine(config.resolved_database_url)
    run_migrations(engine)
    return Repository(engine, config.referential_integrity), config


def services(config: Config) -> Services:
    """What the server builds on its database, without its threads (``services.build``), with a
    bad mapping file reported as a command error rather than a traceback."""
    from fhir_twin.services import build
    from fhir_twin.twin.mapping_file import MappingError

    try:
        return build(config, workers=False)
    except MappingError as error:
        raise click.ClickException(str(error)) from None


@click.command()
@DATABASE
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema to the newest version."""
    from fhir_twin.store.database import make_engine
    from fhir_twin.store.database import migrate as run_migrations

    config = Config.from_env({"database_url": database_url})
    engine = make_engine(config.resolved_database_url)
    try:
        run_migrations(engine)
    finally:
        engine.dispose()
    click.echo(f"schema is up to date on {safe_url(config.resolved_database_url)}")


@click.command()
@click.option("--type", "types", multiple=True, help="Only this resource type (repeatable).")
@DATABASE
def reindex(types: tuple[str, ...], database_url: str | None) -> None:
    """Rebuild the search index tables from the stored resources."""
    from tqdm import tqdm

    from fhir_twin.fhir.resource_types import is_resource_type
    from fhir_twin.store.reindex import live_count, stored_types
    from fhir_twin.store.reindex import reindex as run_reindex

    unknown = [name for name in types if not is_resource_type(name)]
    if unknown:
        raise click.BadParameter(f"unknown resource type {unknown[0]!r}", param_hint="--type")
    repository, _ = open_repository(database_url)
    engine = repository.engine
    try:
        chosen = list(types) or stored_types(engine)
        expected = {name: live_count(engine, name) for name in chosen}
        started = time.perf_counter()
        with tqdm(total=sum(expected.values()), unit="resource", disable=None) as bar:
            done = run_reindex(engine, chosen, lambda _name, count: bar.update(count))
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    missing = {name: expected[name] - done.get(name, 0) for name in chosen if done.get(name, 0) < expected[name]}
    total = sum(done.values())
    click.echo(f"indexed {total} resources of {len(chosen)} types in {seconds:.1f} s")
    if missing:
        details = ", ".join(f"{name}: {count} not indexed" for name, count in missing.items())
        raise click.ClickException(f"the index is incomplete ({details}); run reindex again")


def safe_url(url: str) -> str:
    """The URL without its password, for printing."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{rest.split('@', 1)[1]}"
    return url
