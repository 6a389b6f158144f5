"""Two bridges on one broker and one database split the device stream (MQTT shared subscriptions):
each message is taken by one of them, so every reading is written once and none is lost."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import services_of
from fhir_twin.devices.bridge import DeviceBridge
from tests.devices.conftest import BROKER, settle
from tests.devices.test_bridge import now, observations, patient_with_monitor

MESSAGES = 40


def publish_stream(topic: str, count: int) -> None:
    """``count`` monitor messages, each at its own time, published at QoS 1 and acknowledged."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(*BROKER)
    client.loop_start()
    sent = [
        client.publish(topic, json.dumps({"deviceId": "mon-shared", "time": now(minutes=30 - i / 10), "hr": 60 + i}), 1)
        for i in range(count)
    ]
    for info in sent:
        info.wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def two_bridges(app: Flask, broker: str, prefix: str, request: pytest.FixtureRequest) -> Iterator[list[DeviceBridge]]:
    group = request.param
    bridges = [services_of(app).device_bridge(broker, prefix, shared_group=group) for _ in range(2)]
    for bridge in bridges:
        bridge.start()
        assert bridge.subscribed
    yield bridges
    for bridge in bridges:
        bridge.stop()


@pytest.mark.parametrize("two_bridges", ["ward-7"], indirect=True)
def test_two_bridges_in_a_group_split_the_stream_with_no_loss_and_no_duplicate(
    client: FlaskClient, two_bridges: list[DeviceBridge], prefix: str
) -> None:
    patient = patient_with_monitor(client, "mon-shared")
    assert two_bridges[0].subscription(next(iter(two_bridges[0].kinds.values()))).startswith(f"$share/ward-7/{prefix}")
    publish_stream(f"{prefix}devices/monitor/shared/vitals", MESSAGES)
    first, second = two_bridges
    settle_both(first, second, MESSAGES)
    assert first.counts["received"] > 0 and second.counts["received"] > 0, (first.counts, second.counts)
    assert first.counts["received"] + second.counts["received"] == MESSAGES
    assert first.counts["duplicates"] + second.counts["duplicates"] == 0
    values = sorted(o["valueQuantity"]["value"] for o in observations(client, f"patient={patient}"))
    assert values == [float(60 + i) for i in range(MESSAGES)]


@pytest.mark.parametrize("two_bridges", [""], indirect=True)
def test_without_a_group_each_bridge_takes_every_message_and_the_copies_are_folded(
    client: FlaskClient, two_bridges: list[DeviceBridge], prefix: str
) -> None:
    patient = patient_with_monitor(client, "mon-shared")
    publish_stream(f"{prefix}devices/monitor/shared/vitals", 5)
    for bridge in two_bridges:
        settle(bridge, 5)
        assert bridge.counts["received"] == 5
    assert sum(bridge.counts["written"] for bridge in two_bridges) == 5
    assert len(observations(client, f"patient={patient}")) == 5


def settle_both(first: DeviceBridge, second: DeviceBridge, handled: int, deadline: float = 10.0) -> None:
    """Wait until the two bridges together have committed ``handled`` messages."""
    started = time.monotonic()
    while first.counts["committed"] + second.counts["committed"] < handled:
        assert time.monotonic() - started < deadline, (dict(first.counts), dict(second.counts))
        time.sleep(0.02)
