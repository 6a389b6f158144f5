"""``fhir-twin load``: Bundle and NDJSON files written through the FHIR router, with progress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fhir_twin.cli import collector
from fhir_twin.cli.database_commands import DATABASE, services
from fhir_twin.config import Config
from fhir_twin.security.principal import Principal

if TYPE_CHECKING:
    from fhir_twin.bundles.loading import FileResult

LOADER = Principal("fhir-twin load", kind="cli", trusted=True)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@DATABASE
@click.option(
    "--referential-integrity/--no-referential-integrity",
    default=None,
    help="Check that every local reference resolves, once the whole load is written "
    "(default: FHIR_TWIN_REFERENTIAL_INTEGRITY, else on).",
)
def load(paths: tuple[Path, ...], database_url: str | None, referential_integrity: bool | None) -> None:
    """Load Bundle files (transaction, batch, collection) and NDJSON files or folders of them.

    All the files are one load: they may refer to each other in any order, and references are
    checked once everything is written; a reference that resolves nowhere is reported as a
    failure of its file. Each Bundle commits on its own (see fhir_twin.bundles.loading).
    """
    from fhir_twin.bundles.loading import Load, files_in
    from fhir_twin.fhir.resource_types import resource_types
    from fhir_twin.security.context import acting_as

    config = Config.from_env(
        {"database_url": database_url, "log_level": "WARNING", "referential_integrity": referential_integrity}
    )
    # Loaded patients stay queued for assessment, as the twin changes; the server's processes
    # assess them (no thread of the server's runs here).
    built = services(config)
    # As serve does: every fhir.resources model (the first resource validated would import them all,
    # inside the load), and with the services frozen out of the collector's full collections.
    resource_types()
    collector.settle()
    interactions = built.interactions
    files = files_in(list(paths))
    started = time.perf_counter()
    try:
        # The operator at the console may write anything; the audit trail names the load.
        with acting_as(LOADER), _LoadProgress(len(files)) as progress:
            results = Load(
                interactions.route, interactions.repository, "urn:fhir-twin:load", progress.add, progress.file_done
            ).run(files)
    finally:
        built.close()
    seconds = time.perf_counter() - started
    resources = sum(result.resources for result in results)
    failed = [result for result in results if result.failures]
    rate = resources / max(seconds, 1e-9)
    click.echo(f"{len(files)} files, {resources} resources loaded in {seconds:.1f} s ({rate:.0f} resources/s)")
    for result in failed:
        click.echo(f"  {result.path}: {len(result.failures)} failures, first: {result.failures[0]}", err=True)
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(files)} files had failures")


class _LoadProgress:
    """Progress of a load in resources written: a tqdm bar on a terminal; otherwise (a log, a
    pipe, CI) a plain line after each file and every ``EVERY`` seconds within a long one."""

    EVERY = 10.0

    def __init__(self, files: int) -> None:
        self.files = files
        self.files_done = 0
        self.resources = 0
        from tqdm import tqdm

        self.started = self.last_line = time.perf_counter()
        self.bar = tqdm(unit=" resources", disable=None)
        self.plain = self.bar.disable

    def __enter__(self) -> _LoadProgress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.bar.close()

    def add(self, count: int) -> None:
        self.resources += count
        self.bar.update(count)
        if self.plain and time.perf_counter() - self.last_line >= self.EVERY:
            self._line("")

    def file_done(self, result: FileResult) -> None:
        self.files_done += 1
        failures = f", {len(result.failures)} failures" if result.failures else ""
        retry = f" (attempt {result.attempt})" if result.attempt > 1 else ""
        self.bar.set_postfix_str(f"file {min(self.files_done, self.files)}/{self.files}", refresh=False)
        if self.plain:
            self._line(f": {result.path.name} {result.resources} resources{failures}{retry}")

    def _line(self, detail: str) -> None:
        self.last_line = time.perf_counter()
        rate = self.resources / max(self.last_line - self.started, 1e-9)
        files = f"{min(self.files_done, self.files)}/{self.files} files"
        click.echo(f"loading: {self.resources} resources, {files}, {rate:.0f} resources/s{detail}", err=True)
