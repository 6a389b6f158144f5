"""``fhir-twin client`` and ``fhir-twin user``: who may use the SMART authorization server (/auth)."""

from __future__ import annotations

import getpass
import secrets
import sys
from typing import IO

import click

from fhir_twin.cli.database_commands import DATABASE, open_repository

# Scopes a client may be registered with besides resource scopes (SMART scopes-and-launch-context.html).
_LAUNCH_SCOPES = {
    "openid",
    "fhirUser",
    "profile",
    "launch",
    "launch/patient",
    "launch/encounter",
    "offline_access",
    "online_access",
}


@click.group()
def client() -> None:
    """SMART App Launch clients: create, list, delete."""


@client.command("create")
@click.option("--name", required=True, help="The app's name, shown on the consent page.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Where codes go (repeatable).")
@click.option("--public/--confidential", default=True, help="Public (PKCE only) or confidential (a secret).")
@click.option("--scopes", required=True, help='What it may ask for, e.g. "launch/patient openid patient/*.rs".')
@click.option(
    "--jwks",
    "jwks_file",
    type=click.File("r"),
    default=None,
    help="A JWK Set file of its public keys: it authenticates with private_key_jwt (RS384/ES384).",
)
@click.option("--backend", is_flag=True, help="A backend service: client_credentials with system/ scopes only.")
@click.option("--launch-uri", default=None, help="The app's launch URL, which an EHR launch opens.")
@DATABASE
def client_create(
    name: str,
    redirect_uris: tuple[str, ...],
    public: bool,
    scopes: str,
    jwks_file: IO[str] | None,
    backend: bool,
    launch_uri: str | None,
    database_url: str | None,
) -> None:
    """Register a client; print its client_id, and a confidential one's secret once (kept hashed)."""
    from fhir_twin.fhir.instant import now
    from fhir_twin.security.oauth.grants import digest
    from fhir_twin.security.scopes import is_scope
    from fhir_twin.store import oauth

    bad = [part for part in scopes.split() if part not in _LAUNCH_SCOPES and not is_scope(part)]
    if bad or not scopes.split():
        raise click.BadParameter(f"{(bad or [''])[0]!r} is not a SMART scope", param_hint="--scopes")
    if jwks_file is not None and not public:
        raise click.UsageError("--jwks takes the place of a secret: leave out --confidential")
    jwks = _jwks(jwks_file, backend, scopes, redirect_uris)
    for uri in redirect_uris:
        if not uri.startswith(("https://", "http://")):
            raise click.BadParameter(f"{uri!r} is not an http(s) URL", param_hint="--redirect-uri")
    if launch_uri is not None and not launch_uri.startswith(("https://", "http://")):
        raise click.BadParameter(f"{launch_uri!r} is not an http(s) URL", param_hint="--launch-uri")
    if not 0 < len(name) <= 128:
        raise click.BadParameter("give 1 to 128 characters", param_hint="--name")
    client_id = secrets.token_urlsafe(16)
    secret = None if public else secrets.token_urlsafe(32)
    repository, _ = open_repository(database_url)
    try:
        oauth.add_client(
            repository,
            oauth.StoredClient(
                client_id,
                name,
                digest(secret) if secret else None,
                " ".join(redirect_uris),
                scopes,
                now(),
                jwks,
                launch_uri,
            ),
        )
    finally:
        repository.engine.dispose()
    click.echo(f"client_id: {client_id}")
    if secret is not None:
        click.echo(f"client_secret: {secret}")
        click.echo("The secret is shown once; only a hash of it is kept.", err=True)


def _jwks(jwks_file: IO[str] | None, backend: bool, scopes: str, redirect_uris: tuple[str, ...]) -> str | None:
    """The checked JWK Set of a private_key_jwt client, None for another; a backend service has
    no redirect URI and only system/ scopes, any other client at least one redirect URI."""
    if backend:
        if jwks_file is None:
            raise click.UsageError("a --backend client needs --jwks: it authenticates with private_key_jwt")
        if redirect_uris:
            raise click.BadParameter("a backend service takes no redirect URI", param_hint="--redirect-uri")
        wrong = [part for part in scopes.split() if not part.startswith("system/")]
        if wrong:
            raise click.BadParameter(f"{wrong[0]!r}: a backend service has system/ scopes only", param_hint="--scopes")
    elif not redirect_uris:
        raise click.UsageError("give --redirect-uri (or --backend for a backend service)")
    if jwks_file is None:
        return None
    from fhir_twin.security.oauth import client_keys

    try:
        return client_keys.parse(jwks_file.read())
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--jwks") from None


@client.command("list")
@DATABASE
def client_list(database_url: str | None) -> None:
    """The clients: id, name, kind, redirect URIs, scopes (never secrets)."""
    from fhir_twin.store import oauth

    repository, _ = open_repository(database_url)
    try:
        found = oauth.clients(repository)
    finally:
        repository.engine.dispose()
    for item in found:
        kind = "public" if item.secret_hash is None else "confidential"
        if item.jwks is not None:
            kind = "private_key_jwt" if item.redirect_uris else "backend"
        click.echo(f"{item.client_id}  {item.name}  {kind}  {item.redirect_uris}  {item.scope}")


@client.command("delete")
@click.argument("client_id")
@DATABASE
def client_delete(client_id: str, database_url: str | None) -> None:
    """Remove a client; every token issued to it is revoked."""
    from fhir_twin.store import oauth

    repository, _ = open_repository(database_url)
    try:
        found = oauth.delete_client(repository, client_id)
    finally:
        repository.engine.dispose()
    if not found:
        raise click.ClickException(f"no client has the id {client_id!r}")
    click.echo(f"deleted client {client_id}; its tokens are revoked")


@click.group()
def user() -> None:
    """People who sign in at the SMART authorization server."""


@user.command("create")
@click.argument("username")
@click.option("--fhir-user", default=None, help="Their FHIR record: Practitioner/123, Patient/p1...")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@DATABASE
def user_create(username: str, fhir_user: str | None, password_stdin: bool, database_url: str | None) -> None:
    """Make a user; the password (prompted, or from standard input) is kept as an Argon2 hash."""
    from fhir_twin.security.oauth import users

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise click.ClickException("the passwords differ")
    repository, _ = open_repository(database_url)
    try:
        users.create(repository, username, password, fhir_user)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    finally:
        repository.engine.dispose()
    click.echo(f"user {username!r} created" + (f" as {fhir_user}" if fhir_user else ""))
