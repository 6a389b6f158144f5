"""``fhir-twin launch``: an EHR launch made by hand (SMART app-launch.html, "Launch App: EHR
Launch"), for an app registered with a launch URI and the ``launch`` scope."""

from __future__ import annotations

import click

from fhir_twin.cli.database_commands import DATABASE, open_repository


@click.group()
def launch() -> None:
    """SMART EHR launches: open an app in the context of a patient (and encounter)."""


@launch.command("create")
@click.option("--client", "client_id", required=True, help="The client_id of the app to launch.")
@click.option("--patient", required=True, help="The id of the Patient in context.")
@click.option("--encounter", default=None, help="The id of an Encounter of that patient in context.")
@click.option(
    "--iss", default=None, help="This FHIR server's base URL [default: base_url, else http://127.0.0.1:8080/fhir]."
)
@DATABASE
def launch_create(
    client_id: str, patient: str, encounter: str | None, iss: str | None, database_url: str | None
) -> None:
    """Make a launch context (good for five minutes, for this app only); print the app's launch
    URL to open, and the launch id."""
    from fhir_twin.security.oauth import launch as ehr_launch

    repository, config = open_repository(database_url)
    base = (iss or config.base_url or "http://127.0.0.1:8080/fhir").rstrip("/")
    try:
        made = ehr_launch.create(repository, client_id, patient, encounter, base)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    finally:
        repository.engine.dispose()
    if made.url is not None:
        click.echo(f"url: {made.url}")
    else:
        click.echo("The client has no --launch-uri: hand the app iss and launch yourself.", err=True)
    click.echo(f"launch: {made.launch_id}")
