"""``fhir-twin devices`` bridges the broker into ``--database``; ``devices simulate`` admits
patients with monitors and publishes their vital signs, a deteriorating one scored high."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner
from flask import Flask

from fhir_twin.cli import main
from tests.ml.doctor_data import wait_for


def test_a_simulated_ward_streams_through_the_standalone_bridge(
    broker: str, prefix: str, database_url: str, make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    bridge = fhir_twin(tmp_path, "devices", "--database", database_url, "--prefix", prefix)
    try:
        assert bridge.stdout is not None
        banner = bridge.stdout.readline()
        assert "fhir-twin devices: mqtt://127.0.0.1:1883" in banner and banner.endswith("subscribed\n")
        arguments = ["devices", "simulate", "--database", database_url, "--prefix", prefix]
        result = CliRunner().invoke(main, [*arguments, "--patients", "2", "--rate", "4", "--duration", "1.5"])
        assert result.exit_code == 0, result.output
        published = int(result.output.split("published ")[1].split()[0])
        client = make_app().test_client()
        started = time.monotonic()
        while True:
            total = client.get("/fhir/Observation?_summary=count").get_json()["total"]
            if total >= 6 * published or time.monotonic() - started > 20:
                break
            time.sleep(0.2)
        assert total == 6 * published  # six values a message, none lost, none twice
        patients = client.get("/fhir/Patient?name=Simulated&_sort=name").get_json()["entry"]
        assert [p["resource"]["name"][0]["family"] for p in patients] == ["Simulated 0", "Simulated 1"]
        wait_for(client, patients[0]["resource"]["id"], "news2", deadline=20)
        # A process manager stops it with SIGTERM: it ends as on Ctrl-C, with its counts.
        bridge.send_signal(signal.SIGTERM)
        output, _ = bridge.communicate(timeout=30)
        assert bridge.returncode == 0, output
        stopped = output.splitlines()[-1]
        assert stopped.startswith("fhir-twin devices: stopped; ")
        assert json.loads(stopped.split("; ", 1)[1])["written"] == 6 * published
    finally:
        if bridge.poll() is None:
            bridge.kill()
            bridge.communicate(timeout=30)


def test_simulate_until_terminated_ends_cleanly(broker: str, prefix: str, database_url: str, tmp_path: Path) -> None:
    arguments = ["devices", "simulate", "--database", database_url, "--prefix", prefix, "--patients", "1"]
    simulator = fhir_twin(tmp_path, *arguments)
    try:
        assert simulator.stdout is not None
        assert simulator.stdout.readline().startswith("publishing 1 monitors")
        time.sleep(1.5)
        simulator.send_signal(signal.SIGTERM)
        output, _ = simulator.communicate(timeout=30)
        assert simulator.returncode == 0, output
        assert int(output.split("published ")[1].split()[0]) >= 1
    finally:
        if simulator.poll() is None:
            simulator.kill()
            simulator.communicate(timeout=30)


def fhir_twin(data_dir: Path, *arguments: str) -> subprocess.Popen[str]:
    """The installed command, run as a service manager would, its output read line by line. A
    clean MQTT session: a persistent one would outlive the test at the broker, and two runs at
    once (CI's SQLite and PostgreSQL) would share its client id."""
    environment = {
        **os.environ,
        "FHIR_TWIN_DATA_DIR": str(data_dir),
        "FHIR_TWIN_AUDIT": "false",
        "FHIR_TWIN_MQTT_CLIENT_ID": "",
    }
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("fhir-twin")), *arguments],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
