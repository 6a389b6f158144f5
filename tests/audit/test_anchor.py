"""The audit chain anchored outside the database: ``fhir-twin audit anchor`` appends signed
checkpoints of its head, ``audit verify`` and the twin API's verification check the chain against
the latest one, so records removed from the chain's end are caught; the audit key generated at the
server's first start and kept, mode 0600, outside the database.

The tampering is what someone with write access to the database (and the checkpoint file, but not
the key) could do with SQL and an editor.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import Flask

from fhir_twin import cli
from fhir_twin.app import services_of
from fhir_twin.audit import anchor, key
from fhir_twin.audit.anchor_schedule import AnchorSchedule
from fhir_twin.config import Config
from fhir_twin.store.repository import Repository
from tests.factories import bearer

pytestmark = pytest.mark.audited


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The server's data directory, as every command finds it (``FHIR_TWIN_DATA_DIR``)."""
    monkeypatch.setenv("FHIR_TWIN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("FHIR_TWIN_AUDIT_KEY", raising=False)
    monkeypatch.delenv("FHIR_TWIN_AUDIT_KEY_FILE", raising=False)
    monkeypatch.delenv("FHIR_TWIN_AUDIT_ANCHOR_FILE", raising=False)
    return tmp_path


@pytest.fixture
def key_path(database_url: str, data_dir: Path) -> Path:
    """Where the server keeps this database's audit key."""
    return Config.from_env({"database_url": database_url}).resolved_audit_key_file


@pytest.fixture
def anchors(database_url: str, data_dir: Path) -> Path:
    """Where ``audit anchor`` appends this database's checkpoints by default."""
    return Config.from_env({"database_url": database_url}).resolved_audit_anchor_file


@pytest.fixture
def server(make_app: Any, database_url: str, data_dir: Path, repository: Repository) -> Flask:
    """A server started as ``fhir-twin serve`` starts one on a new database: its key generated."""
    config, said = key.for_server(Config.from_env({"database_url": database_url}), repository)
    kept = Config.from_env({"database_url": database_url}).resolved_audit_key_file
    assert said.startswith(f"audit key generated at {kept}")
    app: Flask = make_app(auth_mode="tokens", doctor=False, audit_key=config.audit_key)
    activity(app, 3)
    return app


def activity(app: Flask, count: int) -> None:
    """``count`` writes (and a read of each), so ``2 * count`` audit records more."""
    client, ehr = app.test_client(), bearer(app, "system/*.cruds", name="ehr")
    for n in range(count):
        pid = f"p{n}-{time.monotonic_ns()}"
        assert client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid}, headers=ehr).status_code
        assert client.get(f"/fhir/Patient/{pid}", headers=ehr).status_code == 200
    recorder = services_of(app).recorder
    assert recorder is not None
    recorder.flush()


def run(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(cli.main, ["audit", *args, "--database", database_url])


def links(app: Flask) -> list[tuple[int, str, str]]:
    with services_of(app).repository.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT seq, res_id, link FROM audit_chain ORDER BY seq").all()
    return [(row[0], row[1], row[2]) for row in rows]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cut_tail(app: Flask, count: int) -> None:
    """Delete the last ``count`` records, links and AuditEvents with their index rows, as someone
    covering their tracks would: what is left is a whole, shorter chain."""
    ids = [res_id for _seq, res_id, _link in links(app)[-count:]]
    with services_of(app).repository.engine.begin() as connection:
        for table in ("audit_chain", "audit_entity", "audit_record", "resource_version", "resource"):
            connection.execute(
                sqlalchemy.text(f"DELETE FROM {table} WHERE res_id IN :ids").bindparams(
                    sqlalchemy.bindparam("ids", expanding=True)
                ),
                {"ids": ids},
            )


def test_anchor_appends_a_checkpoint_signed_with_ed25519(
    server: Flask, database_url: str, data_dir: Path, anchors: Path
) -> None:
    result = run(database_url, "anchor")
    assert result.exit_code == 0, result.output
    path = anchors
    [line] = lines(path)
    chain = links(server)
    assert (line["seq"], line["hash"], line["count"]) == (chain[-1][0], chain[-1][2], len(chain))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # The public key the command prints checks the signature, with nothing of this server's code.
    printed = result.stdout.split("Ed25519 public key ")[1].split()[0]
    assert printed == line["key"]
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(printed + "="))
    signed = {name: line[name] for name in ("at", "count", "hash", "seq")}
    message = b"fhir-twin audit checkpoint\n" + json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    public.verify(base64.urlsafe_b64decode(line["signature"] + "=" * (-len(line["signature"]) % 4)), message)

    activity(server, 1)
    assert run(database_url, "anchor", "--to", str(data_dir / "elsewhere.jsonl")).exit_code == 0
    assert len(lines(data_dir / "elsewhere.jsonl")) == 1
    assert len(lines(path)) == 1


def test_verify_passes_against_the_latest_checkpoint(server: Flask, database_url: str) -> None:
    assert run(database_url, "anchor").exit_code == 0
    activity(server, 1)
    assert run(database_url, "anchor").exit_code == 0
    activity(server, 1)
    result = run(database_url, "verify")
    assert result.exit_code == 0, result.output
    assert f"audit trail intact: {len(links(server))} records" in result.stdout
    assert f"holds the checkpoint of record {len(links(server)) - 2} " in result.stdout


def test_a_tail_cut_below_the_checkpoint_is_named(
    server: Flask, database_url: str, data_dir: Path, anchors: Path
) -> None:
    assert run(database_url, "anchor").exit_code == 0
    anchored = links(server)[-1][0]
    cut_tail(server, 3)
    # From the database alone the shorter chain is whole: that is the gap the checkpoint closes.
    alone = run(database_url, "verify", "--anchors", str(data_dir / "none.jsonl"))
    assert alone.exit_code == 0 and "no checkpoint in" in alone.stderr
    result = run(database_url, "verify")
    assert result.exit_code == 1
    assert "TAMPERED" in result.stderr
    assert f"the chain ends at record {anchored - 3}, before the anchored record {anchored}" in result.stderr
    assert "removed from its end" in result.stderr


def test_a_changed_record_fails_verification_with_a_checkpoint(server: Flask, database_url: str) -> None:
    assert run(database_url, "anchor").exit_code == 0
    _seq, res_id, _link = links(server)[1]
    where = "WHERE res_type = 'AuditEvent' AND res_id = :id"
    # BEGIN IMMEDIATE on SQLite: a deferred transaction that reads and then writes fails at once if
    # the recorder commits in between.
    engine = services_of(server).repository.engine
    with engine.connect().execution_options(fhir_write=True) as connection, connection.begin():
        body = connection.execute(sqlalchemy.text(f"SELECT body FROM resource_version {where}"), {"id": res_id})
        event = {**json.loads(body.scalar_one()), "outcome": "8"}
        connection.execute(
            sqlalchemy.text(f"UPDATE resource_version SET body = :body {where}"),
            {"id": res_id, "body": json.dumps(event)},
        )
    result = run(database_url, "verify")
    assert result.exit_code == 1
    assert f"AuditEvent/{res_id} (record 2) was changed" in result.stderr


def test_the_anchored_record_with_another_link_is_named(
    server: Flask, database_url: str, data_dir: Path, anchors: Path
) -> None:
    """A checkpoint whose link the chain no longer holds at that record, as after a chain rebuilt
    from there on."""
    assert run(database_url, "anchor").exit_code == 0
    path = anchors
    [line] = lines(path)
    config = Config.from_env({"database_url": database_url})
    other = anchor.Checkpoint(line["seq"], "f" * 64, line["count"], line["at"])
    signature = anchor.signing_key(config.audit_key).sign(other.signed())
    forged = {**other.__dict__, "key": line["key"], "signature": base64.urlsafe_b64encode(signature).decode()}
    path.write_text(json.dumps(forged) + "\n")
    result = run(database_url, "verify")
    assert result.exit_code == 1
    assert f"record {line['seq']}'s link is not the anchored one" in result.stderr


@pytest.mark.parametrize("change", ["seq", "key"])
def test_a_tampered_checkpoint_fails_its_signature(
    server: Flask, database_url: str, data_dir: Path, change: str, anchors: Path
) -> None:
    assert run(database_url, "anchor").exit_code == 0
    path = anchors
    [line] = lines(path)
    if change == "seq":
        # Moved back to hide records about to be removed.
        line["seq"], line["hash"] = links(server)[-3][0], links(server)[-3][2]
        expected = "line 1: its signature does not match its content"
    else:
        # Signed anew with a key of the forger's own.
        other = Ed25519PrivateKey.generate()
        checkpoint = anchor.Checkpoint(line["seq"], line["hash"], line["count"], line["at"])
        line["signature"] = base64.urlsafe_b64encode(other.sign(checkpoint.signed())).decode()
        line["key"] = "forger"
        expected = "line 1 is signed by another key"
    path.write_text(json.dumps(line) + "\n")
    result = run(database_url, "verify")
    assert result.exit_code == 1
    assert "CHECKPOINT REJECTED" in result.stderr and expected in result.stderr
    assert "intact" not in result.stdout


def test_the_twin_api_verifies_against_the_checkpoint(server: Flask, database_url: str) -> None:
    client, auditor = server.test_client(), bearer(server, "user/AuditEvent.rs", name="auditor")
    assert run(database_url, "anchor").exit_code == 0
    anchored = links(server)[-1][0]
    intact = client.post("/twin/audit/chain/verify", headers=auditor).get_json()
    assert intact["lastVerification"]["ok"] is True
    assert intact["checkpoint"]["seq"] == anchored
    cut_tail(server, 2)
    broken = client.post("/twin/audit/chain/verify", headers=auditor).get_json()
    assert broken["lastVerification"]["ok"] is False
    assert f"before the anchored record {anchored}" in broken["lastVerification"]["problem"]


def test_the_key_is_generated_once_kept_0600_and_read_back(
    database_url: str, data_dir: Path, repository: Repository, key_path: Path
) -> None:
    path = key_path
    first, said = key.for_server(Config.from_env({"database_url": database_url}), repository)
    assert said.startswith(f"audit key generated at {path} (mode 0600)")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.audit_key) == 64
    # A restart: the settings read it back, and nothing is generated again.
    again = Config.from_env({"database_url": database_url})
    assert again.audit_key == first.audit_key
    second, said = key.for_server(again, repository)
    assert second.audit_key == first.audit_key and said == f"audit key read from {path}"
    assert path.read_text().strip() == first.audit_key
    # A key given in the settings is the one used.
    given, said = key.for_server(replace(again, audit_key="given"), repository)
    assert given.audit_key == "given" and said == "audit key configured (audit_key)"


def test_no_key_is_generated_for_a_trail_written_without_one(
    make_app: Any, database_url: str, data_dir: Path, repository: Repository, key_path: Path
) -> None:
    activity(make_app(auth_mode="tokens", doctor=False), 1)
    config, said = key.for_server(Config.from_env({"database_url": database_url}), repository)
    assert config.audit_key == "" and said.startswith("WARNING: the audit trail was written without an audit_key")
    assert not key_path.exists()
    refused = run(database_url, "anchor")
    assert refused.exit_code == 1 and "no audit_key to sign with" in refused.output
    assert run(database_url, "verify").exit_code == 0


def test_anchor_every_period_keeps_writing_checkpoints(
    server: Flask, database_url: str, data_dir: Path, anchors: Path
) -> None:
    path = anchors
    command = "from fhir_twin.cli import main; main()"
    process = subprocess.Popen(
        [sys.executable, "-c", command, "audit", "anchor", "--every", "0.2s", "--database", database_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (not path.exists() or len(lines(path)) < 2):
            time.sleep(0.05)
        assert process.poll() is None, process.communicate()
        found = lines(path)
        assert len(found) >= 2 and found[0]["at"] <= found[1]["at"]
        assert {line["seq"] for line in found} == {links(server)[-1][0]}
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert stdout.count(b" record ") >= 2


def test_a_bad_period_is_refused(database_url: str, data_dir: Path) -> None:
    result = run(database_url, "anchor", "--every", "soon")
    assert result.exit_code == 2 and "'soon' is not a period like 30s, 5m or 1h" in result.output


def test_each_database_has_a_key_of_its_own(data_dir: Path, tmp_path: Path) -> None:
    """Two databases served from one data directory: a key generated for one is never read for
    the other (whose trail, written without it or under another, it would break)."""
    one = Config.from_env({"database_url": f"sqlite:///{tmp_path / 'one.db'}"})
    other = Config.from_env({"database_url": f"sqlite:///{tmp_path / 'other.db'}"})
    assert one.resolved_audit_key_file != other.resolved_audit_key_file
    assert one.resolved_audit_anchor_file != other.resolved_audit_anchor_file
    # The password is no part of the name: the same database under another password is the same.
    first = Config(database_url="postgresql+psycopg://ehr:old@db.example:5432/fhir")
    second = Config(database_url="postgresql+psycopg://ehr:new@db.example:5432/fhir")
    assert first.resolved_audit_key_file == second.resolved_audit_key_file
    assert "old" not in str(first.resolved_audit_key_file)


def test_a_server_refuses_to_write_under_a_key_the_trail_was_not_written_with(
    server: Flask, database_url: str, key_path: Path, repository: Repository
) -> None:
    # The key file lost: the keyed trail would go on without a key.
    kept = key_path.read_text()
    key_path.unlink()
    with pytest.raises(key.KeyMismatch, match="written under an audit_key, and none is configured"):
        key.for_server(Config.from_env({"database_url": database_url}), repository)
    # Another key given: as broken.
    with pytest.raises(key.KeyMismatch, match="not the one the trail was written with"):
        key.for_server(Config.from_env({"database_url": database_url, "audit_key": "another"}), repository)
    key_path.write_text(kept)
    config, said = key.for_server(Config.from_env({"database_url": database_url}), repository)
    assert config.audit_key == kept.strip() and said == f"audit key read from {key_path}"


def test_a_key_given_for_a_trail_written_without_one_is_refused(
    make_app: Any, database_url: str, data_dir: Path, repository: Repository
) -> None:
    activity(make_app(auth_mode="tokens", doctor=False), 1)
    with pytest.raises(key.KeyMismatch, match="written without an audit_key, and one is configured"):
        key.for_server(Config.from_env({"database_url": database_url, "audit_key": "new"}), repository)


def wait_for(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def anchored(path: Path) -> list[int]:
    return [line["seq"] for line in lines(path)] if path.exists() else []


def test_the_server_anchors_on_a_schedule_only_when_the_chain_grew(
    make_app: Any, database_url: str, data_dir: Path, repository: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    config, _ = key.for_server(Config.from_env({"database_url": database_url}), repository)
    path = data_dir / "scheduled" / "anchors.jsonl"
    with caplog.at_level(logging.INFO, "fhir_twin.audit"):
        app = make_app(
            auth_mode="tokens",
            doctor=False,
            audit_key=config.audit_key,
            audit_anchor_every=0.1,
            audit_anchor_to=str(path),
        )
        activity(app, 2)
        wait_for(lambda: anchored(path)[-1:] == [links(app)[-1][0]])
        written = anchored(path)
        time.sleep(0.5)  # five intervals, and the chain did not grow: no line more
        assert anchored(path) == written
        activity(app, 1)
        wait_for(lambda: anchored(path)[-1:] == [links(app)[-1][0]])
    seqs = anchored(path)
    assert seqs == sorted(set(seqs)) and len(seqs) > len(written)
    assert f"Checkpoints of the audit chain every 0.1 s to {path}" in caplog.text
    assert f"({len(links(app))} records) appended to {path}" in caplog.text
    # audit verify checks the chain against them, as against the command's.
    result = run(database_url, "verify", "--anchors", str(path))
    assert result.exit_code == 0, result.output
    assert f"it holds the checkpoint of record {seqs[-1]}" in result.output


def test_the_schedule_starts_from_the_files_last_checkpoint(
    server: Flask, database_url: str, anchors: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert run(database_url, "anchor").exit_code == 0
    config = Config.from_env({"database_url": database_url})
    schedule = AnchorSchedule(services_of(server).repository, config.audit_key, anchors, 60)
    try:
        # Nothing was recorded since the command's checkpoint: nothing to add.
        assert schedule.run_once() is None and len(lines(anchors)) == 1
        activity(server, 1)
        checkpoint = schedule.run_once()
        assert checkpoint is not None and checkpoint.seq == links(server)[-1][0]
        assert schedule.run_once() is None
        # A file that cannot be trusted is named, and anchoring goes on.
        anchors.write_text(anchors.read_text().replace('"count":', '"count":1'))
        untrusting = AnchorSchedule(services_of(server).repository, config.audit_key, anchors, 60)
        with caplog.at_level(logging.WARNING, "fhir_twin.audit"):
            assert untrusting.run_once() is not None
        assert f"The audit checkpoints already in {anchors} are not trusted" in caplog.text
        untrusting.stop()
    finally:
        schedule.stop()


def test_a_failed_checkpoint_is_logged_and_tried_again(
    server: Flask, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    schedule = AnchorSchedule(services_of(server).repository, "", data_dir / "a.jsonl", 0.05)
    with caplog.at_level(logging.WARNING, "fhir_twin.audit"):
        schedule.start()
        wait_for(lambda: caplog.text.count("No audit checkpoint this time") >= 2)
        schedule.stop()
    assert "no audit_key is configured" in caplog.text
    assert not schedule.running and not (data_dir / "a.jsonl").exists()


def test_the_schedule_is_off_by_default_and_needs_a_period(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Config().audit_anchor_every == 0
    with pytest.raises(ValueError, match="audit_anchor_every must be seconds, 0 or more, not -1"):
        Config(audit_anchor_every=-1)
    monkeypatch.setenv("FHIR_TWIN_AUDIT_ANCHOR_EVERY", "soon")
    with pytest.raises(ValueError, match="FHIR_TWIN_AUDIT_ANCHOR_EVERY must be a number, not 'soon'"):
        Config.from_env()
    monkeypatch.setenv("FHIR_TWIN_AUDIT_ANCHOR_EVERY", "300")
    config = Config.from_env({"database_url": database_url})
    assert config.audit_anchor_every == 300.0
    assert config.resolved_audit_anchor_to == config.resolved_audit_anchor_file


def test_serve_anchors_from_its_master_only(database_url: str, data_dir: Path, anchors: Path) -> None:
    """Two server processes, one writer of checkpoints: no record is anchored twice."""
    port = _free_port()
    command = [str(Path(sys.executable).with_name("fhir-twin")), "serve", "--port", str(port), "--workers", "2"]
    env = {
        **os.environ,
        "FHIR_TWIN_DATABASE_URL": database_url,
        "FHIR_TWIN_AUTH_MODE": "none",
        "FHIR_TWIN_LOG_LEVEL": "INFO",
        "FHIR_TWIN_AUDIT_ANCHOR_EVERY": "0.2",
    }
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        try:
            base = f"http://127.0.0.1:{port}/fhir"
            wait_for(lambda: _answers(f"{base}/metadata"), 60)
            for round_ in range(3):
                for _ in range(4):
                    assert _answers(f"{base}/Patient")
                wait_for(lambda done=round_: len(anchored(anchors)) > done)  # type: ignore[misc]
        finally:
            process.terminate()
            output = process.communicate(timeout=30)[0].decode()
    seqs = anchored(anchors)
    assert len(seqs) >= 3 and seqs == sorted(set(seqs)), seqs
    assert f"Checkpoints of the audit chain every 0.2 s to {anchors}" in output
    assert output.count("Checkpoints of the audit chain every") == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_a_forked_child_never_runs_the_schedule(server: Flask, data_dir: Path) -> None:
    """What a server process forked from the master does with the master's schedule: nothing."""
    config_key = services_of(server).recorder.key  # type: ignore[union-attr]
    schedule = AnchorSchedule(services_of(server).repository, config_key, data_dir / "child.jsonl", 0.05)
    schedule._after_fork()  # as os.register_at_fork calls it in a child
    schedule.start()
    assert not schedule.running
    schedule.stop()  # the parent's connections are left to the parent
    assert not (data_dir / "child.jsonl").exists()
