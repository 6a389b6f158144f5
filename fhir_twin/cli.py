"""The ``fhir-twin`` command: ``serve`` runs the FHIR server under gunicorn, ``migrate`` the schema."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click
from flask import Flask
from gunicorn.app.base import BaseApplication
from tqdm import tqdm

from fhir_twin.app import create_app
from fhir_twin.bundles.loading import files_in, load_file
from fhir_twin.config import Config
from fhir_twin.fhir.model import is_resource_type
from fhir_twin.store.database import make_engine
from fhir_twin.store.database import migrate as run_migrations
from fhir_twin.store.reindex import live_count, stored_types
from fhir_twin.store.reindex import reindex as run_reindex
from fhir_twin.store.repository import Repository
from fhir_twin.twin.mapping_file import MappingError, load_mappings
from fhir_twin.twin.twins import Twins


class _Server(BaseApplication):  # type: ignore[misc]
    """gunicorn with threaded workers; the app is built once in the master, before forking."""

    def __init__(self, app: Flask, options: dict[str, Any]) -> None:
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def _post_fork(_server: Any, worker: Any) -> None:
    # Connections opened in the master must not be shared with the forked workers.
    worker.app.application.extensions["fhir_twin.engine"].dispose(close=False)


@click.group()
@click.version_option(package_name="fhir-twin")
def main() -> None:
    """fhir-twin: an HL7 FHIR R4 server with a digital twin of every patient."""


@main.command()
@click.option("--host", default=lambda: os.environ.get("FHIR_TWIN_HOST", "127.0.0.1"), show_default="127.0.0.1")
@click.option("--port", type=int, default=lambda: int(os.environ.get("FHIR_TWIN_PORT", "8080")), show_default="8080")
@click.option("--database", "database_url", default=None, help="Database URL (default: SQLite in the data directory).")
@click.option("--data-dir", default=None, help="Folder for the embedded SQLite database.")
@click.option("--workers", type=int, default=lambda: int(os.environ.get("FHIR_TWIN_WORKERS", "2")), show_default="2")
@click.option("--threads", type=int, default=lambda: int(os.environ.get("FHIR_TWIN_THREADS", "4")), show_default="4")
def serve(host: str, port: int, database_url: str | None, data_dir: str | None, workers: int, threads: int) -> None:
    """Serve the FHIR API at http://HOST:PORT/fhir."""
    config = Config.from_env({"database_url": database_url, "data_dir": data_dir})
    app = _app(config)
    click.echo(f"fhir-twin serving http://{host}:{port}/fhir on {_safe_url(config.resolved_database_url)}")
    _Server(
        app,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "keepalive": 5,
            "post_fork": _post_fork,
            "accesslog": None,
        },
    ).run()


@main.command()
@click.option("--database", "database_url", default=None, help="Database URL (default: SQLite in the data directory).")
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema to the newest version."""
    config = Config.from_env({"database_url": database_url})
    engine = make_engine(config.resolved_database_url)
    try:
        run_migrations(engine)
    finally:
        engine.dispose()
    click.echo(f"schema is up to date on {_safe_url(config.resolved_database_url)}")


@main.command()
@click.option("--type", "types", multiple=True, help="Only this resource type (repeatable).")
@click.option("--database", "database_url", default=None, help="Database URL (default: SQLite in the data directory).")
def reindex(types: tuple[str, ...], database_url: str | None) -> None:
    """Rebuild the search index tables from the stored resources."""
    unknown = [name for name in types if not is_resource_type(name)]
    if unknown:
        raise click.BadParameter(f"unknown resource type {unknown[0]!r}", param_hint="--type")
    config = Config.from_env({"database_url": database_url})
    engine = make_engine(config.resolved_database_url)
    try:
        run_migrations(engine)
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


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--database", "database_url", default=None, help="Database URL (default: SQLite in the data directory).")
def load(paths: tuple[Path, ...], database_url: str | None) -> None:
    """Load Bundle files (transaction, batch, collection) and NDJSON files or folders of them."""
    app = _app(Config.from_env({"database_url": database_url, "log_level": "WARNING"}))
    route = app.extensions["fhir_twin.interactions"].route
    files = files_in(list(paths))
    results = []
    started = time.perf_counter()
    try:
        with tqdm(total=len(files), unit="file", disable=None) as bar:
            for path in files:
                results.append(load_file(route, "urn:fhir-twin:load", path, lambda _count: None))
                bar.update(1)
    finally:
        app.extensions["fhir_twin.engine"].dispose()
    seconds = time.perf_counter() - started
    resources = sum(result.resources for result in results)
    failed = [result for result in results if result.failures]
    rate = resources / max(seconds, 1e-9)
    click.echo(f"{len(files)} files, {resources} resources loaded in {seconds:.1f} s ({rate:.0f} resources/s)")
    for result in failed:
        click.echo(f"  {result.path}: {len(result.failures)} failures, first: {result.failures[0]}", err=True)
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(files)} files had failures")


@main.group()
def twin() -> None:
    """The digital twin: rebuild it from the stored resources."""


@twin.command()
@click.option("--patient", "patient_id", default=None, help="Only this patient's twin.")
@click.option("--check", is_flag=True, help="Only report whether the twin matches the stored history; change nothing.")
@click.option("--database", "database_url", default=None, help="Database URL (default: SQLite in the data directory).")
def rebuild(patient_id: str | None, check: bool, database_url: str | None) -> None:
    """Recompute twins, past states included, from every stored version of the mapped resources."""
    config = Config.from_env({"database_url": database_url})
    try:
        mapping = load_mappings(config.resolved_mappings_dir)
    except MappingError as error:
        raise click.ClickException(str(error)) from None
    engine = make_engine(config.resolved_database_url)
    try:
        run_migrations(engine)
        twins = Twins(Repository(engine, config.referential_integrity), mapping, config.base_url)
        total = None if patient_id else twins.version_count()
        started = time.perf_counter()
        with tqdm(total=total, unit="version", disable=None) as bar:
            result = twins.rebuild(patient_id, bar.update, check=check)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    scope = f"patient {patient_id}" if patient_id else "every patient"
    if result.differing is None:
        click.echo(f"rebuilt the twin of {scope} from {result.versions} resource versions in {seconds:.1f} s")
    elif result.differing:
        raise click.ClickException(
            f"the twin of {scope} differs from its stored history in {result.differing} fact rows; "
            "run fhir-twin twin rebuild to recompute it"
        )
    else:
        click.echo(f"the twin of {scope} matches its {result.versions} stored resource versions")


def _app(config: Config) -> Flask:
    """The app, with a bad mapping file reported as a command error rather than a traceback."""
    try:
        return create_app(config)
    except MappingError as error:
        raise click.ClickException(str(error)) from None


def _safe_url(url: str) -> str:
    """The URL without its password, for printing."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{rest.split('@', 1)[1]}"
    return url
