"""The ``fhir-twin`` command. Each command imports what it uses when it runs, so
``fhir-twin --help`` answers at once, and builds only what it needs: ``serve`` the app, ``load``,
``train``, ``evaluate`` and ``assess`` the server's services without their threads, the others a
repository."""

from __future__ import annotations

import click

from fhir_twin.cli.database_commands import migrate, reindex
from fhir_twin.cli.device_commands import devices
from fhir_twin.cli.doctor_commands import assess, cohort, evaluate, models, train
from fhir_twin.cli.launch_commands import launch
from fhir_twin.cli.load import load
from fhir_twin.cli.oauth_commands import client, user
from fhir_twin.cli.security_commands import audit, token
from fhir_twin.cli.serve import serve
from fhir_twin.cli.twin_commands import twin


@click.group()
@click.version_option(package_name="fhir-twin")
def main() -> None:
    """fhir-twin: an HL7 FHIR R4 server with a digital twin of every patient."""


for command in (
    token,
    audit,
    client,
    user,
    launch,
    serve,
    migrate,
    reindex,
    load,
    twin,
    train,
    evaluate,
    assess,
    models,
    cohort,
    devices,
):
    main.add_command(command)
