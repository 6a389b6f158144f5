"""``fhir-twin token``: API tokens made, listed and revoked from the command line, and used as
bearer tokens against a server in auth mode ``tokens`` on the same database."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner, Result
from flask import Flask

from fhir_twin import cli

pytestmark = pytest.mark.audited


def token(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli.main, ["token", *args, "--database", database_url])


def create(database_url: str, *args: str) -> str:
    """The secret ``token create`` prints."""
    result = token(database_url, "create", *args)
    assert result.exit_code == 0, result.output
    secret = result.stdout.splitlines()[0]
    assert secret.startswith("ftw_")
    return secret


def status(app: Flask, secret: str, path: str = "/fhir/Patient") -> int:
    return app.test_client().get(path, headers={"Authorization": f"Bearer {secret}"}).status_code


def listed(database_url: str) -> dict[str, str]:
    """``token list``, one line per token, keyed by name."""
    result = token(database_url, "list")
    assert result.exit_code == 0, result.output
    return {line.split()[1]: line for line in result.stdout.splitlines()}


def test_create_prints_a_secret_that_authenticates(make_app: Any, database_url: str) -> None:
    result = token(database_url, "create", "--name", "ehr", "--scope", "system/*.rs")
    assert result.exit_code == 0, result.output
    secret = result.stdout.splitlines()[0]
    assert secret.startswith("ftw_")
    assert len(secret) > 40
    # Only the secret goes to stdout, so it can be captured by a script; the note goes to stderr.
    assert result.stdout == secret + "\n"
    assert "'ehr'" in result.stderr
    assert "system/*.rs" in result.stderr
    assert secret not in result.stderr
    app = make_app(auth_mode="tokens")
    assert status(app, secret) == 200
    # Its scopes hold: read and search, not create.
    response = app.test_client().post(
        "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Authorization": f"Bearer {secret}"}
    )
    assert response.status_code == 403
    assert response.get_json()["issue"][0]["code"] == "forbidden"


def test_each_token_has_its_own_secret(make_app: Any, database_url: str) -> None:
    first = create(database_url, "--name", "ehr", "--scope", "system/*.rs")
    second = create(database_url, "--name", "ehr", "--scope", "system/*.rs")
    assert first != second
    app = make_app(auth_mode="tokens")
    assert status(app, first) == 200
    assert status(app, second) == 200


def test_database_holds_only_a_hash(database_url: str) -> None:
    secret = create(database_url, "--name", "ehr", "--scope", "system/*.rs")
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sqlalchemy.text("SELECT * FROM api_token")).mappings().all()
    finally:
        engine.dispose()
    assert len(rows) == 1
    row = dict(rows[0])
    assert row["name"] == "ehr"
    assert row["scope"] == "system/*.rs"
    assert row["revoked"] is None
    assert row["expires"] is None
    for column, value in row.items():
        assert value is None or secret not in str(value), column
        # Nor the random part without its prefix.
        assert value is None or secret.removeprefix("ftw_") not in str(value), column
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()


def test_list_shows_name_scope_and_state_never_the_secret(database_url: str) -> None:
    secret = create(database_url, "--name", "ehr", "--scope", "system/*.rs user/Observation.cruds")
    result = token(database_url, "list")
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    assert secret.removeprefix("ftw_") not in result.output
    line = listed(database_url)["ehr"]
    assert "system/*.rs user/Observation.cruds" in line
    assert "patient=-" in line
    assert "expires=never" in line
    assert line.endswith("active")


def test_list_of_no_tokens_is_empty(database_url: str) -> None:
    result = token(database_url, "list")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""


def test_revoke_refuses_the_token(make_app: Any, database_url: str) -> None:
    secret = create(database_url, "--name", "ehr", "--scope", "system/*.rs")
    other = create(database_url, "--name", "lab", "--scope", "system/*.rs")
    app = make_app(auth_mode="tokens")
    assert status(app, secret) == 200
    result = token(database_url, "revoke", "ehr")
    assert result.exit_code == 0, result.output
    assert "revoked 1 token(s)" in result.stdout
    response = app.test_client().get("/fhir/Patient", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "revoked" in response.headers["WWW-Authenticate"]
    assert status(app, other) == 200
    tokens = listed(database_url)
    assert tokens["ehr"].endswith("revoked")
    assert tokens["lab"].endswith("active")


def test_revoke_by_id(make_app: Any, database_url: str) -> None:
    result = token(database_url, "create", "--name", "ehr", "--scope", "system/*.rs")
    assert result.exit_code == 0, result.output
    secret = result.stdout.splitlines()[0]
    found = re.search(r"token (\w+) for", result.stderr)
    assert found is not None
    token_id = found.group(1)
    assert listed(database_url)["ehr"].startswith(token_id)
    assert token(database_url, "revoke", token_id).exit_code == 0
    assert status(make_app(auth_mode="tokens"), secret) == 401


def test_revoke_by_name_revokes_every_token_of_that_name(make_app: Any, database_url: str) -> None:
    first = create(database_url, "--name", "ehr", "--scope", "system/*.rs")
    second = create(database_url, "--name", "ehr", "--scope", "system/*.rs")
    result = token(database_url, "revoke", "ehr")
    assert result.exit_code == 0, result.output
    assert "revoked 2 token(s)" in result.stdout
    app = make_app(auth_mode="tokens")
    assert status(app, first) == 401
    assert status(app, second) == 401


def test_revoke_unknown_fails(database_url: str) -> None:
    result = token(database_url, "revoke", "nobody")
    assert result.exit_code != 0
    assert "nobody" in result.stderr


def test_revoke_twice_fails_the_second_time(database_url: str) -> None:
    create(database_url, "--name", "ehr", "--scope", "system/*.rs")
    assert token(database_url, "revoke", "ehr").exit_code == 0
    again = token(database_url, "revoke", "ehr")
    assert again.exit_code != 0
    assert "ehr" in again.stderr


@pytest.mark.parametrize("scope", ["patient/Observation.zz", "system/*.rs openid"])
def test_bad_scope_is_a_usage_error(database_url: str, scope: str) -> None:
    result = token(database_url, "create", "--name", "ehr", "--scope", scope, "--patient", "p1")
    assert result.exit_code == 2, result.output
    bad = scope.split()[-1]
    assert f"'{bad}' is not a SMART resource scope" in result.stderr
    assert "--scope" in result.stderr
    assert listed(database_url) == {}


def test_a_granular_scope_is_accepted(database_url: str) -> None:
    scope = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    result = token(database_url, "create", "--name", "ehr", "--scope", scope, "--patient", "p1")
    assert result.exit_code == 0, result.output
    assert scope in result.stderr


@pytest.mark.parametrize(
    ("scope", "problem"),
    [
        ("user/Observation.rs?nonsense=1", "the query is not a search of Observation"),
        ("user/Observation.rs?_count=1", "not result parameters"),
        ("user/*.rs?category=laboratory", "only a scope on one resource type"),
        ("user/Observation.read?category=laboratory", "only a SMART v2 scope"),
        ("user/Observation.rs?", "the query after '?' is empty"),
        ("user/Observation.", "grants no permission"),
    ],
)
def test_a_granular_scope_that_cannot_be_honoured_is_refused(database_url: str, scope: str, problem: str) -> None:
    result = token(database_url, "create", "--name", "ehr", "--scope", scope)
    assert result.exit_code == 2, result.output
    assert problem in result.stderr
    assert listed(database_url) == {}


def test_bad_scope_creates_no_token(database_url: str) -> None:
    result = token(database_url, "create", "--name", "ehr", "--scope", "patient/Observation.zz")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert listed(database_url) == {}


def test_patient_scope_needs_a_patient(database_url: str) -> None:
    result = token(database_url, "create", "--name", "app", "--scope", "patient/Observation.rs")
    assert result.exit_code == 2, result.output
    assert "--patient" in result.stderr
    assert "patient/ scopes need --patient" in result.stderr
    assert result.stdout == ""
    assert listed(database_url) == {}


def test_no_scope_and_no_role_is_a_usage_error(database_url: str) -> None:
    result = token(database_url, "create", "--name", "app")
    assert result.exit_code == 2, result.output
    assert "give at least one scope, or a role" in result.stderr


def test_patient_token_reads_only_its_patient(make_app: Any, database_url: str) -> None:
    app = make_app(auth_mode="tokens")
    writer = create(database_url, "--name", "ehr", "--scope", "system/*.cruds")
    client = app.test_client()
    for patient_id in ("p1", "p2"):
        response = client.put(
            f"/fhir/Patient/{patient_id}",
            json={"resourceType": "Patient", "id": patient_id},
            headers={"Authorization": f"Bearer {writer}"},
        )
        assert response.status_code == 201
    secret = create(database_url, "--name", "app", "--scope", "patient/*.rs", "--patient", "p1")
    assert "patient=p1" in listed(database_url)["app"]
    assert status(app, secret, "/fhir/Patient/p1") == 200
    assert status(app, secret, "/fhir/Patient/p2") == 404


def test_auditor_role(make_app: Any, database_url: str) -> None:
    result = token(database_url, "create", "--name", "auditor", "--role", "auditor")
    assert result.exit_code == 0, result.output
    secret = result.stdout.splitlines()[0]
    assert "user/AuditEvent.rs user/Provenance.rs" in listed(database_url)["auditor"]
    app = make_app(auth_mode="tokens")
    assert status(app, secret, "/fhir/AuditEvent") == 200
    assert status(app, secret, "/fhir/Provenance") == 200
    response = app.test_client().get("/fhir/Patient", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 403
    assert response.get_json()["issue"][0]["diagnostics"] == "The credential's scopes do not allow search on Patient"


def test_auditor_role_adds_to_the_scopes_given(database_url: str) -> None:
    create(database_url, "--name", "auditor", "--role", "auditor", "--scope", "user/AuditEvent.rs system/Patient.r")
    line = listed(database_url)["auditor"]
    assert "user/AuditEvent.rs system/Patient.r user/Provenance.rs" in line


def test_expired_token_is_refused(make_app: Any, database_url: str) -> None:
    secret = create(database_url, "--name", "old", "--scope", "system/*.rs", "--expires", "2000-01-01")
    line = listed(database_url)["old"]
    assert "expires=2000-01-01T00:00:00" in line
    assert line.endswith("expired")
    response = (
        make_app(auth_mode="tokens").test_client().get("/fhir/Patient", headers={"Authorization": f"Bearer {secret}"})
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert "expired" in response.headers["WWW-Authenticate"]
    assert response.get_json()["issue"][0]["code"] == "login"


def test_expires_with_an_offset_is_kept_in_utc(database_url: str) -> None:
    create(database_url, "--name", "old", "--scope", "system/*.rs", "--expires", "2000-01-01T01:00:00+02:00")
    assert "expires=1999-12-31T23:00:00" in listed(database_url)["old"]


def test_expires_as_a_duration_from_now(make_app: Any, database_url: str) -> None:
    secret = create(database_url, "--name", "soon", "--scope", "system/*.rs", "--expires", "90d")
    line = listed(database_url)["soon"]
    assert line.endswith("active")
    found = re.search(r"expires=(\S+)", line)
    assert found is not None
    expires = datetime.fromisoformat(found.group(1))
    expected = datetime.now(UTC).replace(tzinfo=None) + timedelta(days=90)
    assert abs(expires - expected) < timedelta(minutes=5)
    assert status(make_app(auth_mode="tokens"), secret) == 200


def test_bad_expires_is_a_usage_error(database_url: str) -> None:
    result = token(database_url, "create", "--name", "x", "--scope", "system/*.rs", "--expires", "tomorrow")
    assert result.exit_code == 2, result.output
    assert "--expires" in result.stderr
    assert listed(database_url) == {}


def test_a_name_longer_than_the_table_holds_is_a_usage_error(database_url: str) -> None:
    result = token(database_url, "create", "--name", "x" * 129, "--scope", "system/*.rs")
    assert result.exit_code == 2
    assert "give 1 to 128 characters" in result.output
