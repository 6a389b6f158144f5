"""Concurrent writers extend one chain: every record gets its own place, none is lost, and the
chain verifies. Two apps on one PostgreSQL database stand for two server processes."""

from __future__ import annotations

import os
import threading
from collections import Counter
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from fhir_twin import cli
from fhir_twin.app import services_of
from tests.factories import bearer

pytestmark = pytest.mark.audited

POSTGRES = bool(os.environ.get("FHIR_TWIN_TEST_DATABASE_URL"))


def hammer(apps: list[Flask], headers: dict[str, str], threads_per_app: int, creates: int) -> Counter[int]:
    """Each thread creates ``creates`` Patients and reads each back; the statuses answered."""
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = threading.Barrier(len(apps) * threads_per_app)

    def work(app: Flask, name: str) -> None:
        client = app.test_client()
        seen: Counter[int] = Counter()
        try:
            start.wait()
            for n in range(creates):
                created = client.post(
                    "/fhir/Patient",
                    json={"resourceType": "Patient", "name": [{"family": f"{name}-{n}"}]},
                    headers=headers,
                )
                seen[created.status_code] += 1
                if created.status_code == 201:
                    seen[client.get(f"/fhir/Patient/{created.get_json()['id']}", headers=headers).status_code] += 1
        except BaseException as error:  # reported by the test, not lost in the thread
            errors.append(error)
        with lock:
            statuses.update(seen)

    workers = [
        threading.Thread(target=work, args=(app, f"app{a}-thread{t}"))
        for a, app in enumerate(apps)
        for t in range(threads_per_app)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert not any(worker.is_alive() for worker in workers)
    assert not errors, errors
    return statuses


def chain_rows(app: Flask) -> list[tuple[int, str]]:
    with services_of(app).repository.engine.connect() as connection:
        return [
            (row[0], row[1]) for row in connection.exec_driver_sql("SELECT seq, res_id FROM audit_chain ORDER BY seq")
        ]


def check_trail(apps: list[Flask], database_url: str, expected: int) -> None:
    for app in apps:
        services_of(app).recorder.flush()
    rows = chain_rows(apps[0])
    assert [seq for seq, _ in rows] == list(range(1, expected + 1))
    assert len({res_id for _, res_id in rows}) == expected
    with services_of(apps[0]).repository.engine.connect() as connection:
        stored = connection.exec_driver_sql("SELECT COUNT(*) FROM resource WHERE res_type = 'AuditEvent'").scalar_one()
    assert stored == expected
    result = CliRunner().invoke(cli.main, ["audit", "verify", "--database", database_url])
    assert result.exit_code == 0, result.output
    assert f"intact: {expected} records" in result.stdout


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES, reason="two server processes on one database: PostgreSQL")
def test_two_servers_writing_at_once_keep_one_intact_chain(
    make_app: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FHIR_TWIN_AUDIT_KEY", raising=False)
    apps = [make_app(auth_mode="tokens", doctor=False) for _ in range(2)]
    ehr = bearer(apps[0], "system/*.cruds", name="ehr")
    # 2 servers x 2 threads x 10 creates, each read back: 40 creates and 40 reads.
    statuses = hammer(apps, ehr, threads_per_app=2, creates=10)
    assert statuses == {201: 40, 200: 40}
    check_trail(apps, database_url, 40 + 40)


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES, reason="two server processes on one database: PostgreSQL")
def test_two_keyed_servers_writing_at_once_keep_one_intact_chain(
    make_app: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FHIR_TWIN_AUDIT_KEY", "shared-key")
    apps = [make_app(auth_mode="tokens", doctor=False, audit_key="shared-key") for _ in range(2)]
    ehr = bearer(apps[0], "system/*.cruds", name="ehr")
    statuses = hammer(apps, ehr, threads_per_app=2, creates=10)
    assert statuses == {201: 40, 200: 40}
    check_trail(apps, database_url, 80)


def test_one_server_with_concurrent_threads_keeps_one_intact_chain(
    make_app: Any, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FHIR_TWIN_AUDIT_KEY", raising=False)
    app = make_app(auth_mode="tokens", doctor=False)
    ehr = bearer(app, "system/*.cruds", name="ehr")
    statuses = hammer([app], ehr, threads_per_app=4, creates=5)
    assert statuses == {201: 20, 200: 20}
    check_trail([app], database_url, 40)
