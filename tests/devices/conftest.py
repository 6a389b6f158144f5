"""The real MQTT broker (Mosquitto at 127.0.0.1:1883, here and in CI), a bridge into a test app
under a topic prefix of its own (tests never hear each other), and a listener on its dead letters."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from flask import Flask

from fhir_twin.app import services_of
from fhir_twin.devices.bridge import DeviceBridge

BROKER = ("127.0.0.1", 1883)


@pytest.fixture(scope="session")
def broker() -> str:
    try:
        socket.create_connection(BROKER, timeout=2).close()
    except OSError as error:
        if os.environ.get("FHIR_TWIN_REQUIRE_MQTT"):
            raise
        pytest.skip(f"no MQTT broker at {BROKER[0]}:{BROKER[1]} ({error}); set FHIR_TWIN_REQUIRE_MQTT to fail instead")
    return f"mqtt://{BROKER[0]}:{BROKER[1]}"


class DeadLetters:
    """What arrives on the prefix's dead-letter topics."""

    def __init__(self, prefix: str) -> None:
        self.received: list[dict[str, Any]] = []
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda _c, _u, message: self.received.append(json.loads(message.payload))
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.connect(*BROKER)
        self.client.subscribe(f"{prefix}dead-letter/#", qos=1)
        self.client.loop_start()
        assert self._subscribed.wait(5)

    def wait(self, count: int, deadline: float = 5.0) -> list[dict[str, Any]]:
        started = time.monotonic()
        while len(self.received) < count and time.monotonic() - started < deadline:
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def dead_letters(broker: str, prefix: str) -> Iterator[DeadLetters]:
    listener = DeadLetters(prefix)
    yield listener
    listener.close()


@pytest.fixture
def make_bridge(broker: str, prefix: str) -> Iterator[Callable[[Flask], DeviceBridge]]:
    bridges: list[DeviceBridge] = []

    def make(app: Flask) -> DeviceBridge:
        bridge = services_of(app).device_bridge(broker, prefix)
        bridge.start()
        bridges.append(bridge)
        return bridge

    yield make
    for bridge in bridges:
        bridge.stop()


def publish(topic: str, payload: dict[str, Any] | bytes) -> None:
    """Publish at QoS 1 and wait until the broker has it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(*BROKER)
    client.loop_start()
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    client.publish(topic, body, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def settle(bridge: DeviceBridge, handled: int, deadline: float = 10.0) -> None:
    """Wait until ``handled`` messages were committed, held or dead-lettered."""
    started = time.monotonic()
    while True:
        done = sum(bridge.counts[key] for key in ("committed", "unassociated", "bad-payload", "rejected"))
        if done >= handled:
            return
        assert time.monotonic() - started < deadline, f"bridge handled {done} of {handled}: {dict(bridge.counts)}"
        time.sleep(0.02)
