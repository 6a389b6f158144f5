"""``fhir-twin serve`` runs the API under gunicorn with several waitress workers, settings from options
or ``FHIR_TWIN_*`` variables."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, process: subprocess.Popen[bytes], seconds: float = 60) -> bytes:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read()
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"no answer from {url}")


@pytest.mark.parametrize("database_from", ["option", "environment"])
def test_serve_answers_over_http(database_url: str, database_from: str) -> None:
    port = _free_port()
    command = [str(Path(sys.executable).with_name("fhir-twin")), "serve", "--port", str(port), "--workers", "2"]
    env = {**os.environ, "FHIR_TWIN_LOG_LEVEL": "WARNING", "FHIR_TWIN_AUTH_MODE": "none"}
    if database_from == "option":
        command += ["--database", database_url]
    else:
        env["FHIR_TWIN_DATABASE_URL"] = database_url
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        try:
            body = json.loads(_wait(f"http://127.0.0.1:{port}/fhir/metadata", process))
            assert body["resourceType"] == "CapabilityStatement"
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/fhir/Patient",
                data=json.dumps({"resourceType": "Patient", "gender": "female"}).encode(),
                headers={"Content-Type": "application/fhir+json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                assert response.status == 201
                location = response.headers["Location"]
            assert location.startswith(f"http://127.0.0.1:{port}/fhir/Patient/")
            with urllib.request.urlopen(location, timeout=10) as response:
                assert json.loads(response.read())["gender"] == "female"
        finally:
            process.terminate()
            output = process.communicate(timeout=30)[0].decode()
    assert "Using worker: WaitressWorker" in output
    assert output.count("Booting worker") == 2


def test_served_writes_are_assessed_live(database_url: str) -> None:
    """Under gunicorn every worker process runs the Digital Doctor's queue worker: a vital set
    posted over HTTP has its NEWS2 RiskAssessment soon after the 2xx."""
    port = _free_port()
    command = [str(Path(sys.executable).with_name("fhir-twin")), "serve", "--port", str(port), "--workers", "2"]
    env = {
        **os.environ,
        "FHIR_TWIN_LOG_LEVEL": "WARNING",
        "FHIR_TWIN_DATABASE_URL": database_url,
        "FHIR_TWIN_AUTH_MODE": "none",
    }
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 600))
    vitals = [("9279-1", 16, "/min"), ("2708-6", 98, "%"), ("3150-0", 21, "%"), ("8480-6", 120, "mm[Hg]")]
    vitals += [("8867-4", 70, "/min"), ("8310-5", 37.0, "Cel")]
    resources: list[dict[str, object]] = [
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/served"},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        }
        for code, value, unit in vitals
    ]
    resources.append(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "67775-7"}]},
            "subject": {"reference": "Patient/served"},
            "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "248234008"}]},
        }
    )
    entries = [
        {"resource": {"resourceType": "Patient", "id": "served"}, "request": {"method": "PUT", "url": "Patient/served"}}
    ]
    entries += [{"resource": resource, "request": {"method": "POST", "url": "Observation"}} for resource in resources]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
        try:
            _wait(f"http://127.0.0.1:{port}/fhir/metadata", process)
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/fhir",
                data=json.dumps(bundle).encode(),
                headers={"Content-Type": "application/fhir+json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                assert response.status == 200
            search = f"http://127.0.0.1:{port}/fhir/RiskAssessment?subject=Patient/served"
            deadline = time.monotonic() + 10
            found: list[dict[str, object]] = []
            while not found and time.monotonic() < deadline:
                with urllib.request.urlopen(search, timeout=10) as response:
                    found = [entry["resource"] for entry in json.loads(response.read()).get("entry", [])]
                time.sleep(0.1)
        finally:
            process.terminate()
            process.communicate(timeout=30)
    methods = sorted(resource["method"]["coding"][0]["code"] for resource in found)  # type: ignore[index]
    assert methods == ["news2"]  # qSOFA does not apply: no suspected infection is on record


def _served(database_url: str, *options: str) -> subprocess.Popen[bytes]:
    command = [str(Path(sys.executable).with_name("fhir-twin")), "serve", "--database", database_url, *options]
    env = {**os.environ, "FHIR_TWIN_LOG_LEVEL": "WARNING", "FHIR_TWIN_AUTH_MODE": "none"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _timed_get(url: str) -> float:
    started = time.monotonic()
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read())["resourceType"] == "Bundle"
    return time.monotonic() - started


def _raw(port: int, request: str) -> str:
    """Send ``request`` as is; the answer's status code, once its body is seen to be an OperationOutcome."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request.encode("latin-1"))
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.decode().partition("\r\n\r\n")
    assert "application/fhir+json" in head
    assert json.loads(body)["resourceType"] == "OperationOutcome"
    return head.split(" ", 2)[1]


def test_idle_and_half_sent_connections_do_not_starve_the_server(database_url: str) -> None:
    """200 connections that send nothing and 200 that send half a request and wait hold no
    request thread: requests are read in full before they take one, so another client is
    answered at once; clients that hang up mid-request change nothing; a connection silent for
    longer than the read time-out is closed."""
    port = _free_port()
    options = ("--port", str(port), "--workers", "2", "--threads", "4", "--read-timeout", "3")
    with _served(database_url, *options) as process:
        held: list[socket.socket] = []
        try:
            search = f"http://127.0.0.1:{port}/fhir/Patient?_count=1"
            _wait(search, process)
            for number in range(400):
                connection = socket.create_connection(("127.0.0.1", port), timeout=5)
                held.append(connection)
                if number % 4 == 1:  # the request line and part of the headers
                    connection.sendall(f"GET /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
                elif number % 4 == 3:  # the headers and a part of the announced body
                    connection.sendall(
                        f"POST /fhir/Patient HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                        "Content-Type: application/fhir+json\r\nContent-Length: 1000\r\n\r\n"
                        '{"resourceType": "Patient", '.encode()
                    )
            assert max(_timed_get(search) for _ in range(5)) < 1
            for connection in held[:100]:  # clients that give up mid-request, some abruptly
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                connection.close()
            assert max(_timed_get(search) for _ in range(5)) < 1
            assert process.poll() is None
            silent = held[-1]  # sent half a request, then nothing for longer than 3 s
            silent.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                assert silent.recv(1024) == b""
            # What the HTTP server refuses before the app sees it is an OperationOutcome too.
            assert _raw(port, "GET /fhir/Patient HTTP/1.1\r\nAccept: \x01\x1f\r\n\r\n") == "400"
        finally:
            for connection in held:
                connection.close()
            process.terminate()
            output = process.communicate(timeout=30)[0].decode()
    assert "Traceback" not in output


def test_keep_alive_connections_are_spread_over_the_workers(database_url: str) -> None:
    """A client's keep-alive connections go to the worker process holding the fewest
    (``http_server.AcceptBalance``), so two connections use both cores instead of one; a worker
    killed with its connections is replaced, and new connections go to the replacement."""
    port = _free_port()
    with _served(database_url, "--port", str(port), "--workers", "2", "--threads", "2") as process:
        held: list[http.client.HTTPConnection] = []
        try:
            _wait(f"http://127.0.0.1:{port}/fhir/metadata", process)
            workers = _serving_workers(process.pid, port)
            for _ in range(4):
                held.append(_to_the_fewest(workers, port))
            counts = _connections_of(workers, port)
            assert max(counts.values()) - min(counts.values()) <= 1, counts
            os.kill(workers[0], signal.SIGKILL)
            replaced = _serving_workers(process.pid, port, without=workers[0])
            assert workers[1] in replaced
            for _ in range(2):
                held.append(_to_the_fewest(replaced, port))
            for connection in held[-6:]:  # every connection but the killed worker's still answers
                with contextlib.suppress(OSError, http.client.HTTPException):
                    connection.request("GET", "/fhir/metadata")
                    connection.getresponse().read()
            assert _connections_of(replaced, port)[workers[1]] >= 2
        finally:
            for connection in held:
                connection.close()
            process.terminate()
            process.communicate(timeout=30)


def _to_the_fewest(workers: list[int], port: int) -> http.client.HTTPConnection:
    """A new connection, answered, on a worker that held the fewest. A worker holding more takes
    a connection the others leave waiting for ``BALANCE_DEFER`` (on a loaded machine the worker
    holding fewer may not run that soon), so a connection placed otherwise is closed and another
    opened, three times at most."""
    before: dict[int, int] = {}
    after: dict[int, int] = {}
    for _ in range(3):
        before = _connections_of(workers, port)
        connection = _answered_connection(port)
        after = _connections_of(workers, port)
        took = [pid for pid in workers if after[pid] > before[pid]]
        if len(took) == 1 and before[took[0]] == min(before.values()):
            return connection
        connection.close()
        _until(partial(_holding, workers, port, before))
    pytest.fail(f"three connections in a row went to a worker holding more: {before} -> {after}")


def _holding(workers: list[int], port: int, counts: dict[int, int]) -> bool:
    return _connections_of(workers, port) == counts


def _until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come about"
        time.sleep(0.02)


def _answered_connection(port: int) -> http.client.HTTPConnection:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/fhir/metadata")
    answer = connection.getresponse()
    assert answer.status == 200 and json.loads(answer.read())["resourceType"] == "CapabilityStatement"
    return connection


def _serving_workers(master: int, port: int, without: int | None = None) -> list[int]:
    """The master's two worker processes, once both serve: each has answered a connection."""
    deadline = time.monotonic() + 60
    seen: set[int] = set()
    while time.monotonic() < deadline:
        workers = [pid for pid in _children(master) if pid != without]
        connection = _answered_connection(port)
        seen.update(pid for pid, count in _connections_of(workers, port).items() if count)
        connection.close()
        if len(workers) == 2 and seen >= set(workers):
            return workers
        time.sleep(0.05)
    pytest.fail("the server's two workers did not both serve")


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return sorted(found)


def _connections_of(workers: list[int], port: int) -> dict[int, int]:
    """Established connections to ``port`` held by each worker, from /proc (Linux)."""
    established = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    established.add(f"socket:[{fields[9]}]")
    counts = {}
    for pid in workers:
        targets = set()
        with contextlib.suppress(FileNotFoundError):
            for descriptor in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    targets.add(os.readlink(descriptor))
        counts[pid] = len(targets & established)
    return counts
