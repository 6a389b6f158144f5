"""A large transaction Bundle validated and indexed by the request's thread and the process's
helper together (``bundles/helper.py``): the same answers, stored state and errors as without it,
a helper that dies or hangs replaced (a stopped one holding up no request), none started when
switched off or for small Bundles, and none left behind when ``fhir-twin serve`` or
``fhir-twin load`` ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from fhir_twin.bundles import helper as helper_module
from fhir_twin.bundles import preparation
from fhir_twin.bundles.entries import parse_entries
from fhir_twin.bundles.helper import HELPER, Helper
from fhir_twin.bundles.preparation import Job, prepare
from fhir_twin.errors import FhirError
from tests.live_server import FHIR_TWIN, LiveServer, make_token

SYNTHEA = Path(__file__).resolve().parents[2] / "fixtures" / "synthea" / "sosd-medium-Norma_Pagan.json"
FHIR_JSON = {"Content-Type": "application/fhir+json"}
BASE = "http://example.org/fhir"


@pytest.fixture(autouse=True)
def no_helper_left() -> Iterator[None]:
    """Each test starts without a helper in this process and leaves none."""
    HELPER.stop()
    yield
    HELPER.stop()


def ready(helper: Helper = HELPER, seconds: float = 120) -> None:
    """Wait until ``helper`` says it is ready (starting it if it is not running)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with helper.session() as session:
            if session is not None:
                return
        time.sleep(0.05)
    pytest.fail("the helper never became ready")


def baskets(count: int, *, bad: tuple[int, ...] = ()) -> dict[str, Any]:
    """A transaction of ``count`` Basic resources referring to the first; ``bad`` ones invalid."""
    first = f"urn:uuid:{uuid.uuid4()}"
    entries = []
    for number in range(count):
        resource: dict[str, Any] = {
            "resourceType": "Basic",
            "identifier": [{"system": "urn:fhir-twin-test:helper", "value": str(number)}],
            "code": {"coding": [{"system": "urn:fhir-twin-test:helper", "code": "entry"}]},
            "created": "2024-03-01",
        }
        if number:
            resource["subject"] = {"reference": first}
        if number in bad:
            resource["created"] = f"not a date {number}"
        entries.append(
            {
                "fullUrl": first if number == 0 else f"urn:uuid:{uuid.uuid4()}",
                "resource": resource,
                "request": {"method": "POST", "url": "Basic"},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def jobs_of(bundle: dict[str, Any]) -> list[Job]:
    return [Job(entry, rows=True) for entry in parse_entries(bundle, BASE)]


def local_count(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A counter of the entries the request's thread does itself. Each also takes the thread 2 ms
    longer, so the helper answers its chunks before the thread gets to them even on a loaded
    machine (the thread never waits for it: a helper given no CPU in time would do nothing)."""
    counted = [0]
    here = preparation._here

    def counting(*args: Any) -> None:
        counted[0] += 1
        time.sleep(0.002)
        here(*args)

    monkeypatch.setattr(preparation, "_here", counting)
    return counted


def test_the_helper_gives_the_rows_and_judgement_the_request_would(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = json.loads(SYNTHEA.read_text())
    alone, shared = jobs_of(bundle), jobs_of(bundle)
    prepare(alone, BASE, None, lambda _entry, error: error)
    ready()
    local = local_count(monkeypatch)

    prepare(shared, BASE, HELPER, lambda _entry, error: error)

    assert 0 < local[0] < len(shared), "the helper did part of the work"
    assert all(job.entry.validated for job in shared)
    assert [job.entry.index_rows for job in shared] == [job.entry.index_rows for job in alone]
    assert sum(len(job.entry.index_rows or []) for job in shared) > len(shared)


def test_chunks_and_answers_larger_than_the_socket_buffers_go_through() -> None:
    """A megabyte a chunk each way: the two sides never wait on each other's full buffers."""
    bundle = baskets(100)
    for number, item in enumerate(bundle["entry"]):
        item["resource"]["identifier"] = [
            {"system": "urn:fhir-twin-test:helper", "value": f"{number}-{index}-" + "x" * 100} for index in range(300)
        ]
    alone, shared = jobs_of(bundle), jobs_of(bundle)
    prepare(alone, BASE, None, lambda _entry, error: error)
    ready()

    prepare(shared, BASE, HELPER, lambda _entry, error: error)

    assert [job.entry.index_rows for job in shared] == [job.entry.index_rows for job in alone]


@pytest.mark.parametrize("bad", [(10,), (150,), (10, 150), (140, 141, 199)], ids=str)
def test_an_invalid_bundle_gets_the_same_outcome_and_writes_nothing(make_app: Any, bad: tuple[int, ...]) -> None:
    on, off = make_app().test_client(), make_app(bundle_helper=False).test_client()
    posted = json.dumps(baskets(200, bad=bad))
    ready()

    with_helper = on.post("/fhir", data=posted, headers=FHIR_JSON)
    without = off.post("/fhir", data=posted, headers=FHIR_JSON)

    assert with_helper.status_code == without.status_code == 400
    assert with_helper.get_json() == without.get_json()
    assert f"Bundle.entry[{bad[0]}]" in with_helper.get_json()["issue"][0]["diagnostics"]
    assert on.get("/fhir/Basic?_summary=count").get_json()["total"] == 0


def test_a_large_bundle_is_stored_and_indexed_with_the_helper(make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client: FlaskClient = make_app().test_client()
    ready()
    local = local_count(monkeypatch)

    answer = client.post("/fhir", data=json.dumps(baskets(300)), headers=FHIR_JSON)

    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    assert local[0] < 300
    assert client.get("/fhir/Basic?code=urn:fhir-twin-test:helper|entry&_summary=count").get_json()["total"] == 300
    found = client.get("/fhir/Basic?identifier=urn:fhir-twin-test:helper|299").get_json()
    (match,) = found["entry"]
    subject = match["resource"]["subject"]["reference"]
    assert client.get(f"/fhir/Basic?_id={subject.split('/')[1]}&_summary=count").get_json()["total"] == 1
    assert client.get(f"/fhir/Basic?subject={subject}&_summary=count").get_json()["total"] == 299


def test_a_helper_that_dies_mid_bundle_leaves_the_work_to_the_request(caplog: pytest.LogCaptureFixture) -> None:
    bundle = baskets(300, bad=(290,))
    ready()
    alone, shared = jobs_of(bundle), jobs_of(bundle)
    with pytest.raises(FhirError) as expected:
        prepare(alone, BASE, None, lambda _entry, error: error)

    with HELPER.session() as session:
        assert session is not None
        (pid,) = helpers(os.getpid())
        os.kill(pid, signal.SIGKILL)
        assert settle(pipe_closed, 30), "dead before the Bundle goes on"
        with pytest.raises(FhirError) as found:
            preparation._shared(shared, BASE, session, lambda _entry, error: error)

    assert found.value.issues == expected.value.issues
    assert f"The Bundle helper (process {pid}) ended" in caplog.text
    assert [job.entry.index_rows for job in shared[:290]] == [job.entry.index_rows for job in alone[:290]]


def test_a_killed_helper_is_replaced_and_the_bundle_answered(make_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    client = make_app().test_client()
    ready()
    (first,) = helpers(os.getpid())
    os.kill(first, signal.SIGKILL)
    assert settle(pipe_closed, 30), "dead before the Bundle"

    answer = client.post("/fhir", data=json.dumps(baskets(100)), headers=FHIR_JSON)

    assert answer.status_code == 200
    assert f"The Bundle helper (process {first}) ended: it is replaced" in caplog.text
    ready()
    assert list(helpers(os.getpid())) not in ([], [first])
    assert client.post("/fhir", data=json.dumps(baskets(100)), headers=FHIR_JSON).status_code == 200
    assert client.get("/fhir/Basic?_summary=count").get_json()["total"] == 200


def large_chunks(count: int) -> dict[str, Any]:
    """``baskets(count)`` of about 32 KB a resource: a chunk is a megabyte, more than the pipe holds."""
    bundle = baskets(count)
    for number, item in enumerate(bundle["entry"]):
        item["resource"]["identifier"] = [
            {"system": "urn:fhir-twin-test:helper", "value": f"{number}-{index}-" + "x" * 100} for index in range(300)
        ]
    return bundle


def gone(pid: int) -> bool:
    """Whether process ``pid`` is ended and reaped."""
    return pid not in processes()


def pipe_closed() -> bool:
    """Whether this process's helper, owing nothing, has closed its end of the pipe: every thread
    of it has exited (its main thread a zombie is not enough: the reading thread may still hold
    the pipe open, and a Bundle then sends into it unaware)."""
    connection = HELPER._connection
    return connection is not None and connection.poll(0)


def test_a_stopped_helper_holds_up_no_bundle_and_is_replaced(
    make_app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(helper_module, "STALL", 0.5)
    client = make_app().test_client()
    ready()
    (stopped,) = helpers(os.getpid())
    os.kill(stopped, signal.SIGSTOP)
    try:
        answer = client.post("/fhir", data=json.dumps(large_chunks(100)), headers=FHIR_JSON)

        assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
        assert gone(stopped), "the stopped helper was ended"
        assert f"The Bundle helper (process {stopped}) stopped reading or sending" in caplog.text
        assert client.get("/fhir/Basic?_summary=count").get_json()["total"] == 100
        assert client.post("/fhir", data=json.dumps(baskets(100)), headers=FHIR_JSON).status_code == 200
        ready()
        assert list(helpers(os.getpid())) not in ([], [stopped])
    finally:
        if not gone(stopped):
            os.kill(stopped, signal.SIGKILL)


def test_a_helper_that_answers_nothing_is_replaced(
    make_app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_app().test_client()
    ready()
    (stopped,) = helpers(os.getpid())
    os.kill(stopped, signal.SIGSTOP)
    try:
        # Its chunks fit in the pipe: sent, never answered, the request doing them itself.
        assert client.post("/fhir", data=json.dumps(baskets(200)), headers=FHIR_JSON).status_code == 200
        assert not gone(stopped)
        monkeypatch.setattr(helper_module, "HUNG_AFTER", 0.5)
        time.sleep(0.6)

        assert client.post("/fhir", data=json.dumps(baskets(100)), headers=FHIR_JSON).status_code == 200

        assert gone(stopped), "the helper owing answers was replaced"
        assert f"The Bundle helper (process {stopped}) stopped answering" in caplog.text
        assert client.get("/fhir/Basic?_summary=count").get_json()["total"] == 300
        monkeypatch.setattr(helper_module, "HUNG_AFTER", 30.0)
        ready()
        assert list(helpers(os.getpid())) not in ([], [stopped])
    finally:
        if not gone(stopped):
            os.kill(stopped, signal.SIGKILL)


def test_a_helper_never_ready_is_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    with HELPER.session() as session:
        assert session is None, "started, not ready yet"
    (stuck,) = helpers(os.getpid())
    os.kill(stuck, signal.SIGSTOP)
    try:
        monkeypatch.setattr(helper_module, "HUNG_AFTER", 0.5)
        time.sleep(0.6)

        with HELPER.session() as session:
            assert session is None, "a new one starting"

        assert gone(stuck)
        assert list(helpers(os.getpid())) not in ([], [stuck])
    finally:
        if not gone(stuck):
            os.kill(stuck, signal.SIGKILL)


def test_a_chunk_taken_back_before_it_was_begun_is_answered_with_nothing() -> None:
    """Every chunk is answered, so a working helper never owes one for long (``HUNG_AFTER``)."""
    busy = [(job.resource, True) for job in jobs_of(large_chunks(32))]
    later = [(job.resource, True) for job in jobs_of(baskets(32))]
    ready()
    with HELPER.session() as session:
        assert session is not None
        first = session.send(busy, BASE)
        second = session.send(later, BASE)
        session.drop(second)
        found: dict[int, Any] = {}
        deadline = time.monotonic() + 60
        while len(found) < 2 and time.monotonic() < deadline:
            found.update(session.answers())
            time.sleep(0.01)

    assert len(found[first]) == 32
    assert found[second] == []
    assert not HELPER._owed


def test_a_working_helper_is_kept_and_yields_the_cores_to_the_server(
    make_app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_app().test_client()
    ready()
    (first,) = helpers(os.getpid())
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, first) == min(19, own + helper_module.NICENESS)
    monkeypatch.setattr(helper_module, "HUNG_AFTER", 0.5)

    for _ in range(3):
        # One chunk sent, which the request's thread may reach first and take back.
        bundle = json.dumps(baskets(preparation.THRESHOLD))
        assert client.post("/fhir", data=bundle, headers=FHIR_JSON).status_code == 200
        time.sleep(0.7)
        with HELPER.session() as session:
            assert session is not None

    assert helpers(os.getpid()) == {first: os.getpid()}


def test_no_helper_for_small_bundles_nor_when_switched_off(make_app: Any) -> None:
    small = make_app().test_client()
    few = json.dumps(baskets(preparation.THRESHOLD - 1))
    assert small.post("/fhir", data=few, headers=FHIR_JSON).status_code == 200
    assert not helpers(os.getpid())
    off = make_app(bundle_helper=False).test_client()
    assert off.post("/fhir", data=json.dumps(baskets(100)), headers=FHIR_JSON).status_code == 200
    assert not helpers(os.getpid())
    assert small.post("/fhir", data=json.dumps(baskets(100)), headers=FHIR_JSON).status_code == 200
    assert len(helpers(os.getpid())) == 1


# --- processes left behind -----------------------------------------------------------------


def processes() -> dict[int, tuple[int, int, str]]:
    """Every live process: pid → parent, session and command line."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # After the ")": state, ppid, pgrp, session.
            fields = stat.read_text().rpartition(")")[2].split()
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if fields[0] != "Z":
            found[int(stat.parent.name)] = (int(fields[1]), int(fields[3]), command)
    return found


def session_processes(leader: int) -> list[str]:
    """The processes of the session ``leader`` started (LiveServer and the load below start
    theirs in a new session)."""
    return [f"{pid} {command}" for pid, (_, session, command) in processes().items() if session == leader]


def helpers(parent: int | None = None, session: int | None = None) -> dict[int, int]:
    """Helper processes (of ``parent``, or in ``session``): pid → parent."""
    return {
        pid: ppid
        for pid, (ppid, sid, command) in processes().items()
        if "fhir_twin.bundles.helper" in command and parent in (None, ppid) and session in (None, sid)
    }


def settle(check: Any, seconds: float = 60) -> Any:
    """``check()`` once it is true, else its last value."""
    deadline = time.monotonic() + seconds
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return value


def post(server: LiveServer, token: str, bundle: dict[str, Any]) -> int:
    request = urllib.request.Request(
        server.base,
        data=json.dumps(bundle).encode(),
        headers={**FHIR_JSON, "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_serve_replaces_a_killed_helper_and_leaves_none_after_sigterm(database_url: str) -> None:
    server = LiveServer(database_url, workers=2).start()
    assert server.process is not None
    leader = server.process.pid
    try:
        token = make_token(database_url)
        assert not helpers(session=leader), "no helper before a large Bundle"
        assert post(server, token, baskets(100)) == 200
        first = settle(lambda: helpers(session=leader))
        assert first, server.output()
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        assert post(server, token, baskets(100)) == 200
        assert post(server, token, baskets(100, bad=(70,))) == 400
        later = settle(lambda: set(helpers(session=leader)) - set(first))
        assert later, server.output()
        # Each in a worker, one at most per worker, none in gunicorn's master.
        parents = list(helpers(session=leader).values())
        assert leader not in parents
        assert len(parents) == len(set(parents))
    finally:
        server.stop()
    assert settle(lambda: not session_processes(leader), 30), session_processes(leader)


def test_load_leaves_no_helper_behind(database_url: str, tmp_path: Path) -> None:
    files = []
    for number in range(3):
        files.append(tmp_path / f"bundle-{number}.json")
        files[-1].write_text(json.dumps(baskets(200)))
    loading = subprocess.Popen(
        [FHIR_TWIN, "load", *map(str, files), "--database", database_url],
        env={**os.environ, "FHIR_TWIN_LOG_LEVEL": "WARNING", "FHIR_TWIN_AUTH_MODE": "none"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    output, _ = loading.communicate(timeout=300)

    assert loading.returncode == 0, output.decode()
    assert b"600 resources loaded" in output
    assert settle(lambda: not session_processes(loading.pid), 30), session_processes(loading.pid)
