"""``fhir-twin token`` and ``fhir-twin audit``: API credentials and the audit trail."""

from __future__ import annotations

import csv
import getpass
import io
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import click

from fhir_twin.cli.database_commands import DATABASE, open_repository
from fhir_twin.config import Config
from fhir_twin.fhir.instant import format_instant
from fhir_twin.security.principal import AUDITOR_SCOPES
from fhir_twin.security.scopes import scope_problem

if TYPE_CHECKING:
    from fhir_twin.audit.trail import Anchor
    from fhir_twin.store.repository import Repository

# The store and the audit trail (SQLAlchemy and the FHIR models) are imported by the commands that
# use them, so `fhir-twin --help` answers at once. Tokens live in the server's database.


def _when(value: str, name: str, ago: bool = False) -> datetime:
    """An ISO 8601 date or date-time (UTC when no offset), or a duration like ``30d`` from now
    (``ago``: before now)."""
    units = {"d": "days", "h": "hours", "m": "minutes"}
    if value[-1:] in units and value[:-1].isdigit():
        span = timedelta(**{units[value[-1]]: int(value[:-1])})
        return datetime.now(UTC).replace(tzinfo=None) + (-span if ago else span)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        message = f"{value!r} is neither a date, a date-time nor a duration like 30d"
        raise click.BadParameter(message, param_hint=name) from None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


@click.group()
def token() -> None:
    """API tokens for auth mode 'tokens': create, list, revoke."""


@token.command("create")
@click.option("--name", required=True, help="Who the token is for; the audit trail names it.")
@click.option("--scope", "scope", default="", help='SMART scopes, e.g. "patient/*.rs" or "system/*.cruds".')
@click.option("--role", type=click.Choice(["auditor"]), default=None, help="Add a role's scopes (auditor).")
@click.option("--patient", "patient_id", default=None, help="The launch patient of patient/ scopes.")
@click.option("--expires", default=None, help="When it expires: a date, a date-time, or from now like 90d.")
@DATABASE
def token_create(
    name: str, scope: str, role: str | None, patient_id: str | None, expires: str | None, database_url: str | None
) -> None:
    """Make a token and print its secret once: only a hash of it is kept."""
    from fhir_twin.security import tokens

    parts = scope.split()
    problems = [problem for part in parts if (problem := scope_problem(part)) is not None]
    if problems:
        raise click.BadParameter(problems[0], param_hint="--scope")
    if role == "auditor":
        parts += [part for part in AUDITOR_SCOPES.split() if part not in parts]
    if not parts:
        raise click.BadParameter("give at least one scope, or a role", param_hint="--scope")
    if any(part.startswith("patient/") for part in parts) and not patient_id:
        raise click.BadParameter("patient/ scopes need --patient, the patient they are held to", param_hint="--patient")
    if not 0 < len(name) <= tokens.NAME_LENGTH:
        raise click.BadParameter(f"give 1 to {tokens.NAME_LENGTH} characters", param_hint="--name")
    until = _when(expires, "--expires") if expires else None
    repository, _ = open_repository(database_url)
    try:
        secret, made = tokens.create(repository, name, " ".join(parts), patient_id, until)
    finally:
        repository.engine.dispose()
    click.echo(secret)
    click.echo(f"token {made.token_id} for {name!r}: {made.scope}", err=True)


@token.command("list")
@DATABASE
def token_list(database_url: str | None) -> None:
    """The tokens: id, name, scopes, patient, created, expires, state (never the secrets)."""
    from fhir_twin.store import tokens as stored_tokens

    repository, _ = open_repository(database_url)
    try:
        found = stored_tokens.listed(repository)
    finally:
        repository.engine.dispose()
    now = datetime.now(UTC).replace(tzinfo=None)
    for item in found:
        state = "revoked" if item.revoked else "expired" if item.expires and item.expires <= now else "active"
        expires = item.expires.isoformat(timespec="seconds") if item.expires else "never"
        click.echo(
            f"{item.token_id}  {item.name}  {item.scope}  patient={item.patient_id or '-'}  "
            f"created={item.created.isoformat(timespec='seconds')}  expires={expires}  {state}"
        )


@token.command("revoke")
@click.argument("name_or_id")
@DATABASE
def token_revoke(name_or_id: str, database_url: str | None) -> None:
    """Revoke the tokens with this id or name; a revoked token is refused from its next request."""
    from fhir_twin.store import tokens as stored_tokens

    repository, _ = open_repository(database_url)
    try:
        count = stored_tokens.revoke(repository, name_or_id)
    finally:
        repository.engine.dispose()
    if count == 0:
        raise click.ClickException(f"no live token has the id or name {name_or_id!r}")
    click.echo(f"revoked {count} token(s)")


@click.group()
def audit() -> None:
    """The audit trail: verify its hash chain, report who accessed a patient's record."""


def _anchor(_context: click.Context, _param: click.Parameter, value: str | None) -> Anchor | None:
    from fhir_twin.audit.trail import Anchor

    try:
        return Anchor.parse(value) if value is not None else None
    except ValueError as error:
        raise click.BadParameter(str(error)) from error


@audit.command("head")
@DATABASE
def audit_head(database_url: str | None) -> None:
    """Print the chain's last link as SEQ:LINK, to keep outside the database (a ticket, a log
    shipped elsewhere): `audit verify --anchor` then proves no record was removed from the end."""
    from fhir_twin.audit.trail import head

    repository, _ = open_repository(database_url)
    try:
        found = head(repository)
    finally:
        repository.engine.dispose()
    if found is None:
        raise click.ClickException("the audit trail is empty")
    click.echo(str(found))


def _period(_context: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    """A period like ``30s``, ``5m`` or ``1h``, in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    if value is None:
        return None
    try:
        seconds = float(value[:-1]) * units[value[-1:]] if value[-1:] in units else -1.0
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise click.BadParameter(f"{value!r} is not a period like 30s, 5m or 1h")
    return seconds


@audit.command("anchor")
@click.option("--to", "path", default=None, help="The file of checkpoints (default: audit_anchor_file).")
@click.option("--every", callback=_period, default=None, help="Keep running, a checkpoint every 30s, 5m, 1h...")
@DATABASE
def audit_anchor(path: str | None, every: float | None, database_url: str | None) -> None:
    """Append a signed checkpoint of the chain's head (record number, link, count, time) to a
    file outside the database: `audit verify` then catches records removed from the chain's end."""
    import threading
    from contextlib import nullcontext
    from pathlib import Path

    from fhir_twin.audit.anchor import public_key, take
    from fhir_twin.cli.termination import terminated

    repository, config = open_repository(database_url)
    target = Path(path) if path else config.resolved_audit_anchor_file
    if not config.audit_key:
        repository.engine.dispose()
        raise click.ClickException(
            f"no audit_key to sign with: set FHIR_TWIN_AUDIT_KEY, or start `fhir-twin serve` on a new "
            f"database to have one generated in {config.resolved_audit_key_file}"
        )
    # Only a scheduled run waits for SIGTERM; a single checkpoint ends on it as before.
    with terminated() if every is not None else nullcontext(threading.Event()) as stop:
        try:
            click.echo(f"checkpoints of the audit chain to {target}, Ed25519 public key {public_key(config.audit_key)}")
            while True:
                try:
                    checkpoint = take(repository, config.audit_key, target)
                except Exception as error:  # a scheduled run outlives a database outage
                    if every is None:
                        raise
                    click.echo(f"no checkpoint this time: {error}", err=True)
                else:
                    if checkpoint is None:
                        click.echo("the audit trail is empty: nothing to anchor", err=True)
                    else:
                        at, seq, count = checkpoint.at, checkpoint.seq, checkpoint.count
                        click.echo(f"{at} record {seq} {checkpoint.hash} ({count} records)")
                if every is None or stop.wait(every):
                    return
        except KeyboardInterrupt:
            return
        finally:
            repository.engine.dispose()


@audit.command("verify")
@click.option("--anchor", callback=_anchor, default=None, help="SEQ:LINK from an earlier `audit head`.")
@click.option("--anchors", "path", default=None, help="The file of checkpoints (default: audit_anchor_file).")
@DATABASE
def audit_verify(anchor: Anchor | None, path: str | None, database_url: str | None) -> None:
    """Check the whole chain; name the first record changed, removed or inserted (exit 1), and
    that the chain still holds the latest signed checkpoint (`audit anchor`), or ``--anchor``
    instead. The result is recorded, as the twin API's audit chain view shows it."""
    from pathlib import Path

    from fhir_twin.audit import anchor as checkpoints
    from fhir_twin.audit.trail import verify_recorded

    repository, config = open_repository(database_url)
    target = Path(path) if path else config.resolved_audit_anchor_file
    checkpoint = None
    try:
        # Kept with its result, which the twin API's audit chain view shows.
        if anchor is not None:
            verdict = verify_recorded(repository, config.audit_key, "cli", anchor)
        else:
            verdict, checkpoint = checkpoints.verify(repository, config.audit_key, target, "cli")
    finally:
        repository.engine.dispose()
    if verdict.finding is not None and verdict.finding.kind == "key":
        click.echo(f"CANNOT VERIFY: {verdict.finding.message} (set FHIR_TWIN_AUDIT_KEY to the trail's key)", err=True)
        sys.exit(1)
    if verdict.finding is not None and verdict.finding.kind == "checkpoint":
        click.echo(f"CHECKPOINT REJECTED: {verdict.finding.message}", err=True)
        sys.exit(1)
    if verdict.finding is not None:
        click.echo(f"TAMPERED after {verdict.checked} intact records: {verdict.finding.message}", err=True)
        sys.exit(1)
    click.echo(f"audit trail intact: {verdict.checked} records")
    if checkpoint is not None:
        click.echo(f"it holds the checkpoint of record {checkpoint.seq} taken {checkpoint.at} ({target})")
    elif anchor is None:
        click.echo(
            f"no checkpoint in {target}: records removed from the chain's end would go unnoticed "
            "(see `fhir-twin audit anchor`)",
            err=True,
        )


def _record_report(repository: Repository, config: Config, patient_id: str, start: datetime | None) -> None:
    """Reading the trail is an access to the patient's record too: it is audited, under the
    command's name and the login that ran it."""
    from fhir_twin.audit.recorder import new_occurrence, write_records

    query = {"patient": f"Patient/{patient_id}", **({"date": f"ge{format_instant(start)}"} if start else {})}
    occurrence = new_occurrence(
        interaction="search-type",
        action="E",
        status=200,
        agent="fhir-twin audit report",
        agent_kind="cli",
        user=login(),
        query=f"AuditEvent?{urlencode(query)}",
        patients={patient_id},
        site=config.base_url,
    )
    with repository.transaction(write=True) as tx:
        write_records(tx, [occurrence], config.audit_key)


def login() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@audit.command("report")
@click.option("--patient", "patient_id", required=True, help="The Patient id.")
@click.option("--since", default=None, help="Only from this date or date-time, or e.g. 30d ago.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@DATABASE
def audit_report(patient_id: str, since: str | None, fmt: str, database_url: str | None) -> None:
    """Who accessed a patient's record, when and how."""
    from fhir_twin.audit.trail import accesses

    start = _when(since, "--since", ago=True) if since else None
    repository, config = open_repository(database_url)
    try:
        columns = ["recorded", "agent", "user", "address", "interaction", "action", "outcome", "what"]
        rows = [{name: row.as_dict()[name] for name in columns} for row in accesses(repository, patient_id, start)]
        if config.audit:
            _record_report(repository, config, patient_id, start)
    finally:
        repository.engine.dispose()
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        click.echo(out.getvalue(), nl=False)
    else:
        widths = {name: max([len(name)] + [len(row[name]) for row in rows]) for name in columns}
        click.echo("  ".join(name.ljust(widths[name]) for name in columns))
        for row in rows:
            click.echo("  ".join(row[name].ljust(widths[name]) for name in columns))
        click.echo(f"{len(rows)} recorded interaction(s) with Patient/{patient_id}", err=True)
