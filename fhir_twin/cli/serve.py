"""``fhir-twin serve``: the FHIR server under gunicorn, its app built once before forking."""

from __future__ import annotations

import click

from fhir_twin.cli import collector
from fhir_twin.cli.database_commands import DATABASE, safe_url
from fhir_twin.config import Config


@click.command()
@click.option("--host", envvar="FHIR_TWIN_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, envvar="FHIR_TWIN_PORT", default=8080, show_default=True)
@DATABASE
@click.option("--data-dir", default=None, help="Folder for the embedded SQLite database.")
@click.option("--workers", type=int, envvar="FHIR_TWIN_WORKERS", default=2, show_default=True)
@click.option("--threads", type=int, envvar="FHIR_TWIN_THREADS", default=4, show_default=True)
@click.option(
    "--read-timeout",
    type=click.IntRange(min=1),
    envvar="FHIR_TWIN_READ_TIMEOUT",
    default=30,
    show_default=True,
    help="Seconds a connection may stay silent, idle or mid-request, before it is closed.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    envvar="FHIR_TWIN_MAX_CONNECTIONS",
    default=1000,
    show_default=True,
    help="Open connections per worker process; more wait to be accepted.",
)
@click.option(
    "--auth-mode",
    type=click.Choice(["tokens", "jwt", "none"]),
    default=None,
    help="How requests authenticate (default: FHIR_TWIN_AUTH_MODE, else tokens).",
)
def serve(
    host: str,
    port: int,
    database_url: str | None,
    data_dir: str | None,
    workers: int,
    threads: int,
    read_timeout: int,
    max_connections: int,
    auth_mode: str | None,
) -> None:
    """Serve the FHIR API at http://HOST:PORT/fhir."""
    from fhir_twin.app import create_app, services_of
    from fhir_twin.http_server import AcceptBalance, Limits, Server, post_fork, worker_class
    from fhir_twin.twin.mapping_file import MappingError

    settings = {"database_url": database_url, "data_dir": data_dir, "auth_mode": auth_mode, "websocket_host": host}
    config = _with_audit_key(Config.from_env(settings))
    try:
        app = create_app(config, to_fork=True)
    except MappingError as error:
        raise click.ClickException(str(error)) from None
    # What building the app made lives as long as the process.
    collector.settle()
    click.echo(f"fhir-twin serving http://{host}:{port}/fhir on {safe_url(config.resolved_database_url)}")
    if config.websocket_port:
        click.echo(f"websocket Subscriptions at ws://{host}:{config.websocket_port}/websocket")
    balance = AcceptBalance(workers)
    Server(
        app,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            # Requests are read in full before they take one of the threads; see http_server.
            "worker_class": worker_class(Limits(read_timeout, max_connections, 4 * config.max_body_bytes), balance),
            "pre_fork": balance.pre_fork,
            "post_fork": post_fork(services_of(app)),
            "child_exit": balance.child_exit,
            "accesslog": None,
            # gunicorn 27's control socket would sit in the user's home, one path for every server
            # on the machine; nothing here uses it.
            "control_socket_disable": True,
        },
    ).run()


def _with_audit_key(config: Config) -> Config:
    """``config`` with the audit key generated at the first start if none is set, saying where it is."""
    from fhir_twin.audit.key import KeyMismatch, for_server
    from fhir_twin.store.database import make_engine, migrate
    from fhir_twin.store.repository import Repository

    engine = make_engine(config.resolved_database_url)
    try:
        migrate(engine)
        config, said = for_server(config, Repository(engine, config.referential_integrity))
    except KeyMismatch as error:
        raise click.ClickException(str(error)) from None
    finally:
        engine.dispose()
    click.echo(said, err=True)
    return config
