"""What the end-to-end tests share (``test_end_to_end*.py``): a real ``fhir-twin serve`` with the
MQTT bridge on a topic prefix and client id of the test's own, a patient with a monitor, a signed
ward Subscription, a device publishing to the real broker, and the counts that show nothing was
lost or duplicated."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import requests

from fhir_twin.config import Config
from fhir_twin.devices.mapping_file import load_device_mappings
from fhir_twin.devices.reading import READING_SYSTEM, read_message
from fhir_twin.devices.simulation import SimulatedMonitor, admission
from fhir_twin.twin.mapping_file import load_mappings
from tests.devices.conftest import BROKER
from tests.live_server import LiveServer, free_port, make_token
from tests.subscriptions.receiver import Receiver, eventually

SECRET = "ward-7-signing-key"
SECRET_URL = "https://www.medplum.com/fhir/StructureDefinition/subscription-secret"
CRITERIA = "RiskAssessment?method=news2&risk=high"
FAST_RETRIES = {"subscription_retry_delay_ms": "100", "subscription_max_attempts": "1000"}


@pytest.fixture(scope="module")
def monitor_kind() -> Any:
    config = Config()
    kinds = load_device_mappings(config.resolved_mappings_dir, load_mappings(config.resolved_mappings_dir))
    return kinds["vital_signs_monitor"]


class Ward:
    """One test's server settings, with a topic prefix and MQTT client id of its own (parallel
    runs never hear each other), a patient with a monitor, and a ward Subscription."""

    def __init__(self, database_url: str, broker: str) -> None:
        self.database_url = database_url
        unique = uuid.uuid4().hex[:12]
        self.prefix = f"e2e-{unique}/"
        self.settings = {
            "mqtt_url": broker,
            "mqtt_topic_prefix": self.prefix,
            "mqtt_client_id": f"fhir-twin-e2e-{unique}",
            "websocket_port": str(free_port()),
            **FAST_RETRIES,
        }
        self.device_id = f"mon-{unique}"
        self.token = make_token(database_url)
        self.patient = ""
        self.servers: list[LiveServer] = []
        self.stopped_output = ""  # of the server stopped mid-stream

    def server(self) -> LiveServer:
        server = LiveServer(self.database_url, **self.settings)
        self.servers.append(server)  # stopped afterwards even if it never answers
        return server.start()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/fhir+json"}

    def admit(self, server: LiveServer, receiver: Receiver) -> None:
        """The patient and its monitor (``Device.patient``), and the ward's signed Subscription."""
        answer = requests.post(
            server.base, json=admission(self.device_id, "Bedside"), headers=self.headers(), timeout=30
        )
        assert answer.status_code == 200, answer.text
        location = answer.json()["entry"][0]["response"]["location"]
        self.patient = location.split("/")[1]
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "deteriorating patients",
            "criteria": CRITERIA,
            "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"},
            "extension": [{"url": SECRET_URL, "valueString": SECRET}],
        }
        answer = requests.post(f"{server.base}/Subscription", json=subscription, headers=self.headers(), timeout=30)
        assert answer.status_code == 201, answer.text
        assert answer.json()["status"] == "active"

    def websocket_subscription(self, server: LiveServer) -> str:
        """A websocket Subscription on the same criteria as the ward's rest-hook; its id."""
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "ward board",
            "criteria": CRITERIA,
            "channel": {"type": "websocket"},
        }
        answer = requests.post(f"{server.base}/Subscription", json=subscription, headers=self.headers(), timeout=30)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def search(self, server: LiveServer, query: str) -> list[dict[str, Any]]:
        """Every resource the search (or history) finds, following its pages."""
        url: str | None = f"{server.base}/{query}"
        found = []
        while url:
            answer = requests.get(url, headers=self.headers(), timeout=30)
            assert answer.status_code == 200, answer.text
            bundle = answer.json()
            found += [entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry]
            url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        return found

    def stored_readings(self, server: LiveServer) -> Counter[str]:
        """How many Observations carry each reading identifier."""
        found = self.search(server, f"Observation?patient={self.patient}&_count=500")
        return Counter(
            identifier["value"]
            for observation in found
            for identifier in observation.get("identifier", [])
            if identifier["system"] == READING_SYSTEM
        )

    def owed(self, server: LiveServer) -> set[tuple[str, str]]:
        """Each version of a RiskAssessment the criteria match: what the ward is owed."""
        history = self.search(server, "RiskAssessment/_history?_count=500")
        return {
            (assessment["id"], assessment["meta"]["versionId"])
            for assessment in history
            if is_high_news2(assessment) and assessment["subject"]["reference"] == f"Patient/{self.patient}"
        }

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def is_high_news2(assessment: dict[str, Any]) -> bool:
    methods = {coding.get("code") for coding in assessment.get("method", {}).get("coding", [])}
    risks = {
        coding.get("code")
        for prediction in assessment.get("prediction", [])
        for coding in prediction.get("qualitativeRisk", {}).get("coding", [])
    }
    return "news2" in methods and "high" in risks


@pytest.fixture
def ward(database_url: str, broker: str) -> Iterator[Ward]:
    found = Ward(database_url, broker)
    yield found
    found.stop()


def deterioration(device_id: str, messages: int, seed: int) -> list[dict[str, Any]]:
    """A monitor's messages a few seconds apart, drifting from normal to a septic picture
    (``devices.simulation``), ending a little before now."""
    monitor = SimulatedMonitor(device_id, deteriorating=True, minutes=(messages - 1) * 5 / 60, rng=random.Random(seed))
    start = time.time() - messages * 5 - 30
    return [monitor.message(start + 5 * n) for n in range(messages)]


class Publisher:
    """A device's MQTT connection: QoS 1, each message waited for until the broker has it."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"e2e-monitor-{uuid.uuid4().hex[:8]}")
        self.client.connect(*BROKER)
        self.client.loop_start()
        self.published: list[bytes] = []

    def publish(self, payloads: list[dict[str, Any]], interval: float = 0.0) -> None:
        for payload in payloads:
            body = json.dumps(payload).encode()
            self.client.publish(self.topic, body, qos=1).wait_for_publish(5)
            self.published.append(body)
            if interval:
                time.sleep(interval)  # a device's pace, not a wait for the server

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def expected_readings(kind: Any, published: list[bytes]) -> set[str]:
    identifiers = set()
    for body in published:
        message = read_message(kind, body)
        identifiers |= {reading.identifier(message.device_id) for reading in message.readings}
    return identifiers


def notified(receiver: Receiver) -> Counter[tuple[str, str]]:
    return Counter((json.loads(got.body)["id"], json.loads(got.body)["meta"]["versionId"]) for got in receiver.received)


def wait_for_everything(ward: Ward, server: LiveServer, receiver: Receiver, expected: set[str]) -> None:
    """Until every reading is stored and every owed notification received (the Doctor may still
    be assessing the last readings: it is owed once they are all stored and it is done)."""

    def all_stored() -> bool:
        return set(ward.stored_readings(server)) >= expected

    def all_notified() -> bool:
        owed = ward.owed(server)
        return bool(owed) and owed <= set(notified(receiver))

    try:
        eventually(all_stored, timeout=30)
        eventually(all_notified, timeout=30)
    except AssertionError:
        outputs = f"--- stopped server:\n{ward.stopped_output}\n--- server:\n{server.output()}"
        raise AssertionError(
            f"{len(ward.stored_readings(server))} of {len(expected)} readings stored, "
            f"{len(notified(receiver))} notifications\n{outputs}"
        ) from None
    time.sleep(1.0)  # what might still come (a duplicate) comes now; the owed set settles


def restart_mid_stream(ward: Ward, receiver: Receiver, crash: bool) -> tuple[LiveServer, list[bytes]]:
    """Stream a deterioration while the server is stopped (``crash``: ``kill -9``; else SIGTERM)
    and started again on the same database and MQTT session; returns the second server and the
    readings published."""
    first = ward.server()
    ward.admit(first, receiver)
    publisher = Publisher(f"{ward.prefix}devices/monitor/bed-2/vitals")
    payloads = deterioration(ward.device_id, 30, seed=2)
    stream = threading.Thread(target=publisher.publish, args=(payloads, 0.05))
    stream.start()
    try:
        # Stop it once it has stored some of the stream and before it has the rest.
        eventually(lambda: len(ward.stored_readings(first)) >= 6, timeout=20)
        assert first.process is not None
        if crash:
            first.kill()
        else:
            first.process.terminate()
            assert first.process.wait(timeout=30) == 0, first.output()
        ward.stopped_output = first.output()
        first.stop()
        second = ward.server()
    finally:
        stream.join(30)
        publisher.close()
    assert len(publisher.published) == 30
    return second, publisher.published
