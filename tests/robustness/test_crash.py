"""``kill -9`` of the server in the middle of a large transaction, then a restart: the Bundle is
all there or not at all (R4 http.html#transaction), the database is intact, the server serves."""

from __future__ import annotations

import http.client
import json
import select
import sqlite3
import time
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy

from tests.live_server import LiveServer, make_token

ENTRIES = 2000
# Polls 5 ms apart that must all find the server writing before the kill.
HELD = 20


@pytest.fixture
def server(database_url: str) -> Iterator[LiveServer]:
    started = LiveServer(database_url, workers=1, threads=2)
    try:
        yield started.start()
    finally:
        started.stop()


def _transaction(system: str) -> bytes:
    entries = [
        {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": {
                "resourceType": "Basic",
                "identifier": [{"system": system, "value": str(number)}],
                "code": {"coding": [{"system": "urn:fhir-twin-test:crash", "code": "entry"}]},
                "created": "2024-03-01",
            },
            "request": {"method": "POST", "url": "Basic"},
        }
        for number in range(ENTRIES)
    ]
    return json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()


def _writing(database_url: str, seconds: float = 60) -> None:
    """Wait until the server has held a write transaction open for ``HELD`` polls in a row: on
    PostgreSQL a backend with a transaction id (given at its first write), on SQLite the write
    lock. A short write of the server's own (the audit trail's queue) does not last that long."""
    deadline = time.monotonic() + seconds
    held = 0
    if database_url.startswith("sqlite"):
        path = sqlalchemy.engine.make_url(database_url).database
        probe = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            while time.monotonic() < deadline:
                try:
                    probe.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:  # "database is locked": the server is writing
                    held += 1
                    if held == HELD:
                        return
                else:
                    probe.execute("ROLLBACK")
                    held = 0
                time.sleep(0.005)
        finally:
            probe.close()
    else:
        engine = sqlalchemy.create_engine(database_url)
        try:
            with engine.connect() as connection:
                while time.monotonic() < deadline:
                    writers = connection.exec_driver_sql(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
                    ).scalar_one()
                    connection.rollback()
                    held = held + 1 if writers else 0
                    if held == HELD:
                        return
                    time.sleep(0.005)
        finally:
            engine.dispose()
    pytest.fail("the server never started writing the transaction")


def _counts(database_url: str, system: str) -> dict[str, int]:
    """Rows of the Bundle's resources in the resource, version and index tables."""
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as connection:
            counts = {
                table: connection.execute(
                    sqlalchemy.text(f"SELECT count(*) FROM {table} WHERE res_type = 'Basic'")
                ).scalar_one()
                for table in ("resource", "resource_version")
            }
            counts["idx_token identifier"] = connection.execute(
                sqlalchemy.text("SELECT count(*) FROM idx_token WHERE param = 'identifier' AND system = :system"),
                {"system": system},
            ).scalar_one()
            counts["idx_token code"] = connection.execute(
                sqlalchemy.text("SELECT count(*) FROM idx_token WHERE res_type = 'Basic' AND param = 'code'")
            ).scalar_one()
            if connection.dialect.name == "sqlite":
                assert connection.exec_driver_sql("PRAGMA integrity_check").scalars().all() == ["ok"]
                assert connection.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    finally:
        engine.dispose()
    return counts


def _get(url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_kill_during_a_transaction_leaves_all_or_nothing(server: LiveServer, database_url: str) -> None:
    token = make_token(database_url)
    system = f"urn:fhir-twin-test:crash:{uuid.uuid4().hex}"
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request(
        "POST",
        "/fhir",
        _transaction(system),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    _writing(database_url)
    assert connection.sock is not None
    answered, _, _ = select.select([connection.sock], [], [], 0)
    assert not answered, "the server answered before the kill: the kill did not land mid-transaction"
    server.kill()
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        connection.getresponse()
    connection.close()

    server.start()  # the same port and database, a new process
    counts = _counts(database_url, system)
    assert set(counts.values()) in ({0}, {ENTRIES}), counts  # all or nothing, tables in agreement
    found = _get(f"{server.base}/Basic?identifier={system}|&_summary=count", token)
    assert found["total"] == counts["resource"]

    created = urllib.request.Request(
        f"{server.base}/Basic",
        data=json.dumps({"resourceType": "Basic", "code": {"text": "after the crash"}}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
        method="POST",
    )
    with urllib.request.urlopen(created, timeout=30) as response:
        assert response.status == 201
        location = response.headers["Location"]
    assert _get(location, token)["code"]["text"] == "after the crash"
