"""Each command builds only what it uses: none but ``serve`` makes the web app, and none starts
the server's background threads (exports, live assessment, the audit trail's reads)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = """
import sys, threading
started = []
start = threading.Thread.start
def recorded(thread):
    started.append(thread.name)
    start(thread)
threading.Thread.start = recorded
from fhir_twin.cli import main
try:
    main({arguments!r})
except SystemExit as exit:
    print("EXIT", exit.code)
print("FLASK", "flask" in sys.modules)
print("THREADS", *sorted(name for name in started if name.startswith("fhir-twin")))
"""

COMMANDS = [
    ["token", "list"],
    ["audit", "report", "--patient", "p1"],
    ["migrate"],
    ["reindex"],
    ["models", "list"],
    ["twin", "rebuild"],
    ["load", "{patients}"],
    ["assess"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_command_makes_no_app_and_starts_no_thread(database_url: str, tmp_path: Path, command: list[str]) -> None:
    patients = tmp_path / "Patient.ndjson"
    patients.write_text(json.dumps({"resourceType": "Patient", "id": "p1"}) + "\n")
    arguments = [part.format(patients=patients) for part in command] + ["--database", database_url]
    environment = {**os.environ, "FHIR_TWIN_DATA_DIR": str(tmp_path), "FHIR_TWIN_AUDIT": "true"}
    probe = PROBE.format(arguments=arguments)
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True, env=environment
    )
    assert "EXIT 0" in done.stdout, done.stdout + done.stderr
    assert "FLASK False" in done.stdout
    assert done.stdout.rsplit("THREADS", 1)[1].split() == []
