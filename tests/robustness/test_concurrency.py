"""Two ``fhir-twin serve`` processes on one PostgreSQL database, written at once (R4
http.html#concurrency): ``If-Match`` writers lose no update and conditional creates create once."""

from __future__ import annotations

import itertools
import json
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import empty_postgres
from tests.live_server import LiveServer, make_token

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("FHIR_TWIN_TEST_DATABASE_URL"), reason="two server processes on one database: PostgreSQL"
    ),
]

COUNTER = "urn:fhir-twin-test:counter"


class Servers:
    """Two servers on one database and a token both accept."""

    def __init__(self, bases: list[str], token: str) -> None:
        self.bases = bases
        self.token = token

    def call(self, server: int, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, str, Any]:
        """One request to server ``server``: its status, ETag and JSON body."""
        request = urllib.request.Request(
            f"{self.bases[server]}/{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/fhir+json", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.headers.get("ETag", ""), json.loads(response.read())
        except urllib.error.HTTPError as answer:
            return answer.code, "", json.loads(answer.read() or b"null")


@pytest.fixture(scope="module")
def servers(postgres_database: str) -> Iterator[Servers]:
    empty_postgres(postgres_database)
    token = make_token(postgres_database)
    started = [LiveServer(postgres_database, workers=1, threads=4) for _ in range(2)]
    try:
        for server in started:
            server.launch()
        for server in started:
            server.wait_ready()
        yield Servers([server.base for server in started], token)
    finally:
        for server in started:
            server.stop()


def _race(workers: int, work: Any) -> None:
    """Run ``work(number)`` in ``workers`` threads released at once; re-raise the first failure."""
    barrier = threading.Barrier(workers)
    failures: list[BaseException] = []

    def run(number: int) -> None:
        try:
            barrier.wait()
            work(number)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(number,)) for number in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]


def test_if_match_writers_on_two_servers_lose_no_update(servers: Servers) -> None:
    writers, increments = 8, 5
    basic = {
        "resourceType": "Basic",
        "code": {"text": "counter"},
        "extension": [{"url": COUNTER, "valueInteger": 0}],
    }
    status, _, created = servers.call(0, "POST", "Basic", basic)
    assert status == 201
    path = f"Basic/{created['id']}"
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def increment(number: int) -> None:
        server = number % 2  # half the writers on each server
        done = 0
        for attempt in itertools.count():
            assert attempt < 500, "a writer never got its update in"
            status, etag, current = servers.call(server, "GET", path)
            assert status == 200, current
            current["extension"][0]["valueInteger"] += 1
            status, _, answer = servers.call(server, "PUT", path, current, **{"If-Match": etag})
            with lock:
                statuses[status] += 1
            assert status in (200, 412), answer  # 412: another writer got there first; read again
            if status == 200:
                done += 1
                if done == increments:
                    return

    _race(writers, increment)

    assert statuses[200] == writers * increments
    status, _, final = servers.call(1, "GET", path)
    assert final["extension"][0]["valueInteger"] == writers * increments
    assert final["meta"]["versionId"] == str(writers * increments + 1)
    status, _, history = servers.call(0, "GET", f"{path}/_history?_count=1000")
    versions = sorted(int(entry["resource"]["meta"]["versionId"]) for entry in history["entry"])
    assert versions == list(range(1, writers * increments + 2))
    counts = sorted(entry["resource"]["extension"][0]["valueInteger"] for entry in history["entry"])
    assert counts == list(range(writers * increments + 1))  # each version one more than the last


def _create_at_once(servers: Servers, writers: int, value: str) -> list[tuple[int, str]]:
    """``writers`` conditional creates of one Patient from both servers at once: status and id."""
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:fhir-twin-test:mrn", "value": value}]}
    condition = {"If-None-Exist": f"identifier=urn:fhir-twin-test:mrn|{value}"}
    answers: list[tuple[int, str]] = []

    def create(number: int) -> None:
        status, _, body = servers.call(number % 2, "POST", "Patient", patient, **condition)
        answers.append((status, body.get("id", "")))

    _race(writers, create)
    return answers


def test_conditional_creates_on_two_servers_create_once(servers: Servers) -> None:
    writers, rounds = 8, 5
    for _ in range(rounds):
        value = uuid.uuid4().hex
        answers = _create_at_once(servers, writers, value)
        assert sorted(status for status, _ in answers) == [200] * (writers - 1) + [201]
        assert len({res_id for _, res_id in answers}) == 1  # every answer names the one Patient
        _, _, found = servers.call(0, "GET", f"Patient?identifier=urn:fhir-twin-test:mrn|{value}")
        assert found["total"] == 1
