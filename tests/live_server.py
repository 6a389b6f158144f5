"""A real ``fhir-twin serve`` process on a free port, for tests that need HTTP, several server
processes or a crash: what real clients and operators meet, not the Flask test client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from fhir_twin.security import tokens
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.repository import Repository

FHIR_TWIN = str(Path(sys.executable).with_name("fhir-twin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_token(
    database_url: str, scope: str = "system/*.cruds", patient: str | None = None, name: str = "live-test"
) -> str:
    """A bearer token on ``database_url``: tokens live in the database the server uses; with
    ``patient``, a patient-context token confined to that patient."""
    engine = make_engine(database_url)
    try:
        migrate(engine)
        secret, _ = tokens.create(Repository(engine), name, scope, patient, None)
    finally:
        engine.dispose()
    return secret


class LiveServer:
    """``fhir-twin serve`` on ``database_url`` in a process group of its own (so a crash test can
    kill the master and its workers at once), its output kept in a file for failure messages."""

    def __init__(self, database_url: str, workers: int = 1, threads: int = 4, **settings: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}/fhir"
        self._args = ["--workers", str(workers), "--threads", str(threads)]
        self._env = {
            **os.environ,
            "FHIR_TWIN_LOG_LEVEL": "WARNING",
            "FHIR_TWIN_AUTH_MODE": "tokens",
            **{f"FHIR_TWIN_{name.upper()}": value for name, value in settings.items()},
        }
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> LiveServer:
        """Start it and wait until ``/metadata`` answers."""
        return self.launch().wait_ready()

    def launch(self) -> LiveServer:
        """Start the process without waiting: servers launched together start in parallel."""
        command = [FHIR_TWIN, "serve", "--port", str(self.port), "--database", self.database_url, *self._args]
        self.process = subprocess.Popen(
            command, env=self._env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def wait_ready(self, seconds: float = 60) -> LiveServer:
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the server exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.base}/metadata", timeout=2):
                    return self
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"no answer from {self.base}/metadata:\n{self.output()}")

    def output(self, tail: int | None = 4000) -> str:
        """The server's output so far: its last ``tail`` characters, or all of it."""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        return text if tail is None else text[-tail:]

    def kill(self) -> None:
        """``kill -9`` of the master and its workers: a crash, nothing gets to clean up."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
