"""``fhir-twin twin``: the digital twin recomputed from, or checked against, the stored history."""

from __future__ import annotations

import time

import click

from fhir_twin.cli.database_commands import DATABASE, open_repository
from fhir_twin.config import Config


@click.group()
def twin() -> None:
    """The digital twin: rebuild it from the stored resources."""


@twin.command()
@click.option("--patient", "patient_id", default=None, help="Only this patient's twin.")
@click.option("--check", is_flag=True, help="Only report whether the twin matches the stored history; change nothing.")
@DATABASE
def rebuild(patient_id: str | None, check: bool, database_url: str | None) -> None:
    """Recompute twins, past states included, from every stored version of the mapped resources."""
    from tqdm import tqdm

    from fhir_twin.twin.mapping_file import MappingError, load_mappings
    from fhir_twin.twin.twins import Twins

    try:
        # Before the database is touched: a mapping that cannot be used changes nothing.
        mapping = load_mappings(Config.from_env({"database_url": database_url}).resolved_mappings_dir)
    except MappingError as error:
        raise click.ClickException(str(error)) from None
    repository, config = open_repository(database_url)
    try:
        twins = Twins(repository, mapping, config.base_url)
        total = None if patient_id else twins.version_count()
        started = time.perf_counter()
        with tqdm(total=total, unit="version", disable=None) as bar:
            result = twins.rebuild(patient_id, bar.update, check=check)
        seconds = time.perf_counter() - started
    finally:
        repository.engine.dispose()
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
