"""``fhir-twin audit verify``: the hash chain names the first record changed, removed or inserted
behind the server's back; ``fhir-twin audit report``: who accessed a patient's record.

The tampering here is what someone with write access to the database could do: edit, delete and
insert rows with SQL.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin import cli
from fhir_twin.app import services_of
from fhir_twin.audit import chain, trail
from fhir_twin.security import tokens

pytestmark = pytest.mark.audited

ADDRESS = "10.9.8.7"
COLUMNS = ["recorded", "agent", "user", "address", "interaction", "action", "outcome", "what"]


@dataclass
class Trail:
    app: Flask
    client: FlaskClient
    database_url: str
    ehr: dict[str, str]

    @property
    def engine(self) -> sqlalchemy.Engine:
        return services_of(self.app).repository.engine

    def token(self, name: str, scope: str) -> dict[str, str]:
        secret, _ = tokens.create(services_of(self.app).interactions.repository, name, scope, None, None)
        return {"Authorization": f"Bearer {secret}"}

    def flush(self) -> None:
        services_of(self.app).recorder.flush()

    def links(self) -> list[tuple[int, str, str, str]]:
        """The chain: (seq, AuditEvent id, digest, link), in order."""
        self.flush()
        with self.engine.connect() as connection:
            rows = connection.exec_driver_sql("SELECT seq, res_id, digest, link FROM audit_chain ORDER BY seq").all()
        return [(row[0], row[1], row[2], row[3]) for row in rows]

    def body(self, res_id: str) -> str:
        with self.engine.connect() as connection:
            return connection.execute(
                sqlalchemy.text(
                    "SELECT body FROM resource_version WHERE res_type = 'AuditEvent' AND res_id = :id AND version = 1"
                ),
                {"id": res_id},
            ).scalar_one()

    def event(self, position: int) -> tuple[str, dict[str, Any]]:
        """The AuditEvent at ``position`` in the chain: its id and first stored body."""
        res_id = self.links()[position][1]
        return res_id, json.loads(self.body(res_id))

    def execute(self, sql: str, **params: Any) -> None:
        with self.engine.begin() as connection:
            connection.execute(sqlalchemy.text(sql), params)

    def rewrite(self, res_id: str, body: str) -> None:
        """Replace the stored body of AuditEvent ``res_id`` with SQL, leaving its chain link alone."""
        self.execute(
            "UPDATE resource_version SET body = :body WHERE res_type = 'AuditEvent' AND res_id = :id",
            body=body,
            id=res_id,
        )

    def edit_and_rechain(self, position: int) -> str:
        """Change the outcome of the record at ``position`` and rebuild every link from it on
        with plain SHA-256, as someone who can write the database but has no key would."""
        links = self.links()
        res_id, event = self.event(position)
        event["outcome"] = "8"
        body = json.dumps(event)
        self.rewrite(res_id, body)
        previous = links[position - 1][3] if position else chain.GENESIS
        for seq, each, digest, _ in links[position:]:
            digest = chain.digest(body) if each == res_id else digest
            previous = chain.link(previous, digest)
            self.execute("UPDATE audit_chain SET digest = :d, link = :l WHERE seq = :s", d=digest, l=previous, s=seq)
        return res_id

    def forge(self, version: int = 1, res_id: str | None = None, body: str | None = None) -> tuple[str, str]:
        """Store an AuditEvent with SQL, as the server would have; its id and body."""
        res_id = res_id or str(uuid.uuid4())
        if body is None:
            template = json.loads(self.body(self.links()[0][1]))
            body = json.dumps({**template, "id": res_id, "agent": [{"name": "mallory", "requestor": True}]})
        when = datetime.now(UTC).replace(tzinfo=None)
        params = {"id": res_id, "version": version, "when": when, "body": body}
        if version == 1:
            self.execute(
                "INSERT INTO resource (res_type, res_id, version, last_updated, deleted)"
                " VALUES ('AuditEvent', :id, :version, :when, false)",
                **params,
            )
        else:
            self.execute(
                "UPDATE resource SET version = :version WHERE res_type = 'AuditEvent' AND res_id = :id", **params
            )
        self.execute(
            "INSERT INTO resource_version (res_type, res_id, version, last_updated, method, status, body)"
            " VALUES ('AuditEvent', :id, :version, :when, 'POST', 201, :body)",
            **params,
        )
        return res_id, body

    def append_link(self, res_id: str, body: str, link: str) -> None:
        seq = self.links()[-1][0] + 1
        digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
        self.execute(
            "INSERT INTO audit_chain (seq, res_id, digest, link) VALUES (:seq, :id, :digest, :link)",
            seq=seq,
            id=res_id,
            digest=digest,
            link=link,
        )


def activity(app: Flask, database_url: str) -> Trail:
    """Patient/x written and read by ``ehr``, read and searched by ``nurse``, refused to the
    auditor; Patient/y written and read by ``ehr``: 7 records, 5 of them about Patient/x."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ADDRESS
    repository = services_of(app).interactions.repository
    secret, _ = tokens.create(repository, "ehr", "system/*.cruds", None, None)
    made = Trail(app, client, database_url, {"Authorization": f"Bearer {secret}"})
    nurse = made.token("nurse", "system/Patient.rs")
    auditor = made.token("auditor", "user/AuditEvent.rs")
    ehr = made.ehr
    for pid in ("x", "y"):
        assert (
            client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid}, headers=ehr).status_code
            == 201
        )
    assert client.get("/fhir/Patient/x", headers=ehr).status_code == 200
    assert client.get("/fhir/Patient/x", headers=nurse).status_code == 200
    assert client.get("/fhir/Patient?_id=x", headers=nurse).status_code == 200
    assert client.get("/fhir/Patient/x", headers=auditor).status_code == 403
    assert client.get("/fhir/Patient/y", headers=ehr).status_code == 200
    made.flush()
    assert len(made.links()) == 7
    return made


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FHIR_TWIN_AUDIT_KEY", raising=False)


@pytest.fixture
def recorded(make_app: Any, database_url: str, no_key: None) -> Trail:
    return activity(make_app(auth_mode="tokens", doctor=False), database_url)


def verify(database_url: str, *options: str) -> Result:
    return CliRunner().invoke(cli.main, ["audit", "verify", "--database", database_url, *options])


def head(database_url: str) -> str:
    result = CliRunner().invoke(cli.main, ["audit", "head", "--database", database_url])
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def tampered(result: Result, kind: str) -> str:
    """The finding of a verification that failed; checked to be of ``kind``."""
    assert result.exit_code == 1, result.output
    assert "intact:" not in result.stdout
    assert "TAMPERED" in result.stderr
    assert kind in result.stderr, result.stderr
    return result.stderr


# --- audit verify ---------------------------------------------------------------------------


def test_an_untouched_trail_is_intact(recorded: Trail) -> None:
    result = verify(recorded.database_url)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "audit trail intact: 7 records"
    # The trail grows; verify counts what is there now.
    recorded.client.get("/fhir/Patient/x", headers=recorded.ehr)
    recorded.flush()
    assert "intact: 8 records" in verify(recorded.database_url).stdout


def test_an_empty_trail_is_intact(make_app: Any, database_url: str, no_key: None) -> None:
    make_app(auth_mode="tokens", doctor=False)
    result = verify(database_url)
    assert result.exit_code == 0
    assert "intact: 0 records" in result.stdout


def test_an_edited_record_is_named(recorded: Trail) -> None:
    res_id, event = recorded.event(2)
    event["agent"][0]["name"] = "someone else"
    recorded.rewrite(res_id, json.dumps(event))
    message = tampered(verify(recorded.database_url), "changed")
    assert f"AuditEvent/{res_id}" in message
    assert "record 3" in message
    assert "after 2 intact records" in message


def test_an_edit_with_its_digest_recomputed_is_still_caught(recorded: Trail) -> None:
    res_id, event = recorded.event(4)
    event["outcome"] = "8"
    body = json.dumps(event)
    recorded.rewrite(res_id, body)
    recorded.execute("UPDATE audit_chain SET digest = :digest WHERE res_id = :id", digest=chain.digest(body), id=res_id)
    message = tampered(verify(recorded.database_url), "changed")
    assert f"AuditEvent/{res_id}" in message


def test_a_removed_record_is_named(recorded: Trail) -> None:
    _, res_id, _, _ = recorded.links()[3]
    recorded.execute("DELETE FROM audit_chain WHERE res_id = :id", id=res_id)
    recorded.execute("DELETE FROM resource_version WHERE res_type = 'AuditEvent' AND res_id = :id", id=res_id)
    recorded.execute("DELETE FROM resource WHERE res_type = 'AuditEvent' AND res_id = :id", id=res_id)
    message = tampered(verify(recorded.database_url), "removed")
    # Its event is gone with it: the record is named by its place in the chain.
    assert "record(s) 4 were removed" in message
    assert "after 3 intact records" in message


def test_removed_records_are_named_as_a_range(recorded: Trail) -> None:
    for _, res_id, _, _ in recorded.links()[1:4]:
        recorded.execute("DELETE FROM audit_chain WHERE res_id = :id", id=res_id)
    assert "record(s) 2-4 were removed" in tampered(verify(recorded.database_url), "removed")


def test_a_record_whose_event_was_deleted_is_named(recorded: Trail) -> None:
    _, res_id, _, _ = recorded.links()[5]
    recorded.execute("DELETE FROM resource_version WHERE res_type = 'AuditEvent' AND res_id = :id", id=res_id)
    recorded.execute("DELETE FROM resource WHERE res_type = 'AuditEvent' AND res_id = :id", id=res_id)
    message = tampered(verify(recorded.database_url), "removed")
    assert f"AuditEvent/{res_id} was removed" in message


def test_a_forged_record_appended_to_the_chain_is_named(recorded: Trail) -> None:
    res_id, body = recorded.forge()
    recorded.append_link(res_id, body, "f" * 64)
    message = tampered(verify(recorded.database_url), "inserted")
    assert f"AuditEvent/{res_id}" in message
    assert "record 8" in message
    assert "after 7 intact records" in message


def test_a_forged_record_outside_the_chain_is_named(recorded: Trail) -> None:
    res_id, _ = recorded.forge()
    message = tampered(verify(recorded.database_url), "inserted")
    assert f"AuditEvent/{res_id}" in message
    assert "not in the chain" in message


def test_a_forged_record_passes_as_the_server_would_have_chained_it_without_a_key(recorded: Trail) -> None:
    """Without ``audit_key`` the chain is plain SHA-256: whoever can edit the database can extend
    it. (The keyed test below shows the key is what stops this.)"""
    res_id, body = recorded.forge()
    recorded.append_link(res_id, body, chain.link(recorded.links()[-1][3], chain.digest(body)))
    assert verify(recorded.database_url).exit_code == 0


@pytest.fixture
def keyed(make_app: Any, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Trail:
    monkeypatch.setenv("FHIR_TWIN_AUDIT_KEY", "k")
    return activity(make_app(auth_mode="tokens", doctor=False, audit_key="k"), database_url)


def test_with_a_key_a_record_chained_without_it_is_caught(keyed: Trail) -> None:
    result = verify(keyed.database_url)
    assert result.exit_code == 0, result.output
    assert "intact: 7 records" in result.stdout

    res_id, body = keyed.forge()
    previous = keyed.links()[-1][3]
    keyed.append_link(res_id, body, chain.link(previous, chain.digest(body)))
    message = tampered(verify(keyed.database_url), "inserted")
    assert f"AuditEvent/{res_id}" in message
    assert "after 7 intact records" in message


def test_with_a_key_a_rewritten_chain_is_caught(keyed: Trail) -> None:
    """Edit a record and rebuild every link after it with plain SHA-256: the key is missing."""
    res_id = keyed.edit_and_rechain(1)
    message = tampered(verify(keyed.database_url), "")
    assert f"AuditEvent/{res_id}" in message


def test_a_keyed_trail_does_not_verify_without_its_key(keyed: Trail, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong key is named as such, not taken for a changed record."""
    monkeypatch.delenv("FHIR_TWIN_AUDIT_KEY")
    without = verify(keyed.database_url)
    assert without.exit_code == 1
    assert "CANNOT VERIFY" in without.stderr and "written under an audit_key, and none is configured" in without.stderr
    monkeypatch.setenv("FHIR_TWIN_AUDIT_KEY", "not-k")
    wrong = verify(keyed.database_url)
    assert wrong.exit_code == 1
    assert "is not the one the trail was written with" in wrong.stderr
    assert "TAMPERED" not in wrong.stderr


def test_a_trail_written_without_a_key_does_not_verify_under_one(
    recorded: Trail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_TWIN_AUDIT_KEY", "k")
    result = verify(recorded.database_url)
    assert result.exit_code == 1
    assert "written without an audit_key, and one is configured" in result.stderr


def test_with_the_right_key_a_changed_first_record_is_still_named(keyed: Trail) -> None:
    """Only the first link breaks when record 1's link is forged: that is tampering, not a key."""
    seq, res_id, _, _ = keyed.links()[0]
    keyed.execute("UPDATE audit_chain SET link = :l WHERE seq = :s", l="f" * 64, s=seq)
    message = tampered(verify(keyed.database_url), "")
    assert f"AuditEvent/{res_id}" in message


def test_head_prints_the_last_link_and_verify_holds_the_chain_to_it(recorded: Trail) -> None:
    seq, _, _, last = recorded.links()[-1]
    anchor = head(recorded.database_url)
    assert anchor == f"{seq}:{last}"
    result = verify(recorded.database_url, "--anchor", anchor)
    assert result.exit_code == 0, result.output
    # Later records leave an earlier anchor valid.
    assert recorded.client.get("/fhir/Patient/x", headers=recorded.ehr).status_code == 200
    recorded.flush()
    assert verify(recorded.database_url, "--anchor", anchor).exit_code == 0


def test_records_removed_from_the_end_are_caught_only_against_an_anchor(recorded: Trail) -> None:
    """Deleting the newest records with their links leaves a chain that is whole in itself: only
    a head kept outside the database shows that it was longer."""
    anchor = head(recorded.database_url)
    links = recorded.links()
    for _, res_id, _, _ in links[-2:]:
        recorded.execute("DELETE FROM audit_chain WHERE res_id = :id", id=res_id)
        recorded.execute("DELETE FROM resource_version WHERE res_type = 'AuditEvent' AND res_id = :id", id=res_id)
        recorded.execute("DELETE FROM resource WHERE res_type = 'AuditEvent' AND res_id = :id", id=res_id)

    assert verify(recorded.database_url).exit_code == 0
    message = tampered(verify(recorded.database_url, "--anchor", anchor), "removed")
    assert f"the chain ends at record {len(links) - 2}, before the anchored record {len(links)}" in message


def test_a_chain_rebuilt_without_a_key_is_caught_against_an_anchor(recorded: Trail) -> None:
    anchor = head(recorded.database_url)
    links = recorded.links()
    recorded.edit_and_rechain(1)

    assert verify(recorded.database_url).exit_code == 0
    message = tampered(verify(recorded.database_url, "--anchor", anchor), "changed")
    assert f"record {len(links)}'s link is not the anchored one" in message


@pytest.mark.parametrize("anchor", ["7", "x:" + "0" * 64, "3:abc", "0:" + "0" * 64, "3:" + "G" * 64])
def test_a_malformed_anchor_is_a_usage_error(recorded: Trail, anchor: str) -> None:
    result = verify(recorded.database_url, "--anchor", anchor)
    assert result.exit_code == 2
    assert "is not an anchor SEQ:LINK" in result.stderr


def test_head_of_an_empty_trail_says_so(make_app: Any, database_url: str, no_key: None) -> None:
    make_app(auth_mode="tokens", doctor=False)
    result = CliRunner().invoke(cli.main, ["audit", "head", "--database", database_url])
    assert result.exit_code == 1
    assert "the audit trail is empty" in result.stderr


def test_a_forged_later_version_of_a_record_is_caught(recorded: Trail) -> None:
    res_id, event = recorded.event(2)
    event["agent"][0]["name"] = "mallory"
    event["meta"]["versionId"] = "2"
    recorded.forge(version=2, res_id=res_id, body=json.dumps(event))
    # What the trail now shows:
    auditor = recorded.token("auditor-2", "user/AuditEvent.rs")
    shown = recorded.client.get(f"/fhir/AuditEvent/{res_id}", headers=auditor).get_json()
    assert shown["agent"][0]["name"] == "mallory"
    tampered(verify(recorded.database_url), res_id)


def test_a_record_marked_deleted_is_caught(recorded: Trail) -> None:
    _, res_id, _, _ = recorded.links()[2]
    recorded.execute(
        "UPDATE resource SET version = 2, deleted = true WHERE res_type = 'AuditEvent' AND res_id = :id", id=res_id
    )
    recorded.execute(
        "INSERT INTO resource_version (res_type, res_id, version, last_updated, method, status, body)"
        " SELECT res_type, res_id, 2, last_updated, 'DELETE', 204, NULL FROM resource_version"
        " WHERE res_type = 'AuditEvent' AND res_id = :id AND version = 1",
        id=res_id,
    )
    auditor = recorded.token("auditor-2", "user/AuditEvent.rs")
    assert recorded.client.get(f"/fhir/AuditEvent/{res_id}", headers=auditor).status_code == 410
    tampered(verify(recorded.database_url), res_id)


# --- audit report ---------------------------------------------------------------------------


def report(database_url: str, *options: str) -> Result:
    return CliRunner().invoke(cli.main, ["audit", "report", "--patient", "x", "--database", database_url, *options])


REPORT_AGENT = "fhir-twin audit report"


def rows_of(result: Result) -> list[dict[str, str]]:
    """The report's rows, less those of earlier reports (each report is itself recorded)."""
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list)
    return [row for row in rows if row["agent"] != REPORT_AGENT]


def test_report_table_lists_who_accessed_the_patient(recorded: Trail) -> None:
    result = report(recorded.database_url)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == COLUMNS
    assert len(lines) == 1 + 5
    body = "\n".join(lines[1:])
    for agent, interaction in [("ehr", "update"), ("ehr", "read"), ("nurse", "read"), ("nurse", "search-type")]:
        assert any(agent in line.split() and interaction in line.split() for line in lines[1:]), (agent, interaction)
    assert any("auditor" in line.split() and "403:" in line for line in lines[1:])
    assert ADDRESS in body
    assert "Patient/y" not in body
    assert "5 recorded interaction(s) with Patient/x" in result.stderr


def test_report_json(recorded: Trail) -> None:
    rows = rows_of(report(recorded.database_url, "--format", "json"))
    assert len(rows) == 5
    assert all(list(row) == COLUMNS for row in rows)
    assert Counter(row["agent"] for row in rows) == {"ehr": 2, "nurse": 2, "auditor": 1}
    assert Counter((row["agent"], row["interaction"], row["action"]) for row in rows) == {
        ("ehr", "update", "U"): 1,
        ("ehr", "read", "R"): 1,
        ("nurse", "read", "R"): 1,
        ("nurse", "search-type", "E"): 1,
        ("auditor", "read", "R"): 1,
    }
    assert {row["address"] for row in rows} == {ADDRESS}
    (refused,) = [row for row in rows if row["agent"] == "auditor"]
    assert refused["outcome"].startswith("403")
    assert all(row["outcome"] == "success" for row in rows if row is not refused)
    (search,) = [row for row in rows if row["interaction"] == "search-type"]
    assert "Patient?_id=x" in search["what"]
    (update,) = [row for row in rows if row["interaction"] == "update"]
    assert "Patient/x/_history/1" in update["what"].split()
    # Oldest first.
    recorded_at = [datetime.fromisoformat(row["recorded"]) for row in rows]
    assert recorded_at == sorted(recorded_at)


def test_report_csv_has_the_same_rows(recorded: Trail) -> None:
    as_json = rows_of(report(recorded.database_url, "--format", "json"))
    result = report(recorded.database_url, "--format", "csv")
    assert result.exit_code == 0, result.output
    reader = csv.DictReader(io.StringIO(result.stdout))
    assert reader.fieldnames == COLUMNS
    assert [row for row in reader if row["agent"] != REPORT_AGENT] == as_json


def test_report_since(recorded: Trail) -> None:
    everything = rows_of(report(recorded.database_url, "--format", "json"))
    assert rows_of(report(recorded.database_url, "--format", "json", "--since", "1d")) == everything
    assert rows_of(report(recorded.database_url, "--format", "json", "--since", "2h")) == everything
    assert rows_of(report(recorded.database_url, "--format", "json", "--since", "2000-01-01")) == everything
    assert rows_of(report(recorded.database_url, "--format", "json", "--since", "2999-01-01")) == []
    assert rows_of(report(recorded.database_url, "--format", "json", "--since", "2999-01-01T00:00:00+02:00")) == []
    table = report(recorded.database_url, "--since", "2999-01-01")
    assert table.exit_code == 0
    assert len(table.stdout.splitlines()) == 1
    assert "0 recorded interaction(s)" in table.stderr
    # Only what was recorded from then on: from the first record later than the one before it
    # (records a request apart can share a millisecond).
    first = next(i for i in range(2, len(everything)) if everything[i]["recorded"] > everything[i - 1]["recorded"])
    cut = everything[first]["recorded"]
    assert rows_of(report(recorded.database_url, "--format", "json", "--since", cut)) == everything[first:]


def test_a_report_is_itself_recorded_and_leaves_the_trail_intact(recorded: Trail) -> None:
    """Reading the trail is an access to the patient's record: the next report shows it."""
    before = len(recorded.links())
    assert report(recorded.database_url, "--format", "json", "--since", "2000-01-01").exit_code == 0

    links = recorded.links()
    assert len(links) == before + 1
    event = json.loads(recorded.body(links[-1][1]))
    assert event["action"] == "E" and event["outcome"] == "0"
    assert [coding["code"] for coding in event["subtype"]] == ["search-type"]
    requestor = next(agent for agent in event["agent"] if agent["requestor"])
    assert requestor["name"] == REPORT_AGENT
    whats = [entity["what"]["reference"] for entity in event["entity"] if "what" in entity]
    assert whats == ["Patient/x"]
    (query,) = [entity["query"] for entity in event["entity"] if "query" in entity]
    assert (
        base64.b64decode(query).decode()
        == "AuditEvent?patient=Patient%2Fx&date=ge2000-01-01T00%3A00%3A00.000%2B00%3A00"
    )

    shown = json.loads(report(recorded.database_url, "--format", "json").stdout)
    assert [row["agent"] for row in shown].count(REPORT_AGENT) == 1
    assert verify(recorded.database_url).exit_code == 0


def test_report_refuses_a_since_it_cannot_read(recorded: Trail) -> None:
    result = report(recorded.database_url, "--since", "last tuesday")
    assert result.exit_code == 2
    assert "--since" in result.output


def test_report_of_a_patient_nobody_accessed_is_empty(recorded: Trail) -> None:
    result = CliRunner().invoke(
        cli.main, ["audit", "report", "--patient", "z", "--format", "json", "--database", recorded.database_url]
    )
    assert rows_of(result) == []


def test_report_pages_through_long_trails(recorded: Trail, monkeypatch: pytest.MonkeyPatch) -> None:
    everything = rows_of(report(recorded.database_url, "--format", "json"))
    monkeypatch.setattr(trail, "_PAGE", 2)
    assert rows_of(report(recorded.database_url, "--format", "json")) == everything
