"""``fhir-twin serve`` runs the API under gunicorn with several workers, settings from options
or ``FHIR_TWIN_*`` variables."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
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
    env = {**os.environ, "FHIR_TWIN_LOG_LEVEL": "WARNING"}
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
    assert "Using worker: gthread" in output
    assert output.count("Booting worker") == 2
