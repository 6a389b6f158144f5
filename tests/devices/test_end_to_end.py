"""Bedside monitor to ward system, end to end: a simulated deterioration published to the real
broker is taken by the bridge of a real ``fhir-twin serve`` (``mqtt_url`` set), scored by the
Digital Doctor and notified to a local HTTP receiver (rest-hook) and to a bound websocket client
(``ping``), and a server restarted in the middle of the
stream loses nothing and duplicates nothing.

What "nothing lost, nothing duplicated" means here (README "Devices over MQTT", "Subscriptions"):
every reading published is stored exactly once (Observations counted by their identifier); every
version of a high NEWS2 RiskAssessment is notified at least once, and exactly once across a
graceful restart (SIGTERM). A ``kill -9`` may send a notification twice (the receiver's 2xx
received, its outbox row not yet deleted), so after one the test asks for at least once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.devices import end_to_end
from tests.devices.end_to_end import (
    CRITERIA,
    SECRET,
    Publisher,
    Ward,
    deterioration,
    expected_readings,
    is_high_news2,
    notified,
    restart_mid_stream,
    wait_for_everything,
)
from tests.subscriptions.receiver import Receiver, eventually

ward = end_to_end.ward
monitor_kind = end_to_end.monitor_kind


def test_a_deterioration_over_mqtt_becomes_observations_an_assessment_and_a_signed_notification(
    ward: Ward, receiver: Receiver, monitor_kind: Any
) -> None:
    server = ward.server()
    ward.admit(server, receiver)
    # A ward board on the websocket channel, bound before the stream, is told of the same events.
    board = ward.websocket_subscription(server)
    pings: list[str] = []
    url = f"ws://127.0.0.1:{ward.settings['websocket_port']}/websocket"
    with connect(url, open_timeout=10) as socket:
        socket.send(f"bind {board} {ward.token}")
        assert socket.recv(timeout=10) == f"bound {board}"

        def listen() -> None:
            with contextlib.suppress(ConnectionClosed):
                for message in socket:
                    pings.append(str(message))

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        publisher = Publisher(f"{ward.prefix}devices/monitor/bed-1/vitals")
        try:
            publisher.publish(deterioration(ward.device_id, 12, seed=1))
        finally:
            publisher.close()
        expected = expected_readings(monitor_kind, publisher.published)
        assert len(expected) == 12 * 6
        wait_for_everything(ward, server, receiver, expected)
        owed = ward.owed(server)
        eventually(lambda: len(pings) >= len(owed), timeout=30)
    listener.join(10)
    assert pings == [f"ping {board}"] * len(owed)

    stored = ward.stored_readings(server)
    assert set(stored) == expected and set(stored.values()) == {1}
    observations = ward.search(server, f"Observation?patient={ward.patient}&code=8867-4&_count=500")
    assert all(o["device"]["reference"].startswith("Device/") for o in observations)
    assert {o["valueQuantity"]["unit"] for o in observations} == {"/min"}

    high = ward.search(server, f"{CRITERIA}&patient={ward.patient}")
    assert high, "the deterioration was not assessed high"
    assert notified(receiver).keys() == ward.owed(server)
    for got in receiver.received:
        assert got.path == "/hook"
        assert got.headers["content-type"] == "application/fhir+json"
        expected_signature = hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(got.headers["x-signature"], expected_signature)
        assessment = json.loads(got.body)
        assert assessment["resourceType"] == "RiskAssessment"
        assert assessment["subject"]["reference"] == f"Patient/{ward.patient}"
        assert is_high_news2(assessment)
        assert any(basis["reference"].startswith("Observation/") for basis in assessment.get("basis", []))


def test_a_graceful_restart_mid_stream_loses_nothing_and_duplicates_nothing(
    ward: Ward, receiver: Receiver, monitor_kind: Any
) -> None:
    second, published = restart_mid_stream(ward, receiver, crash=False)
    expected = expected_readings(monitor_kind, published)
    assert len(expected) == 30 * 6
    wait_for_everything(ward, second, receiver, expected)
    stored = ward.stored_readings(second)
    assert set(stored) == expected and set(stored.values()) == {1}
    counts = notified(receiver)
    assert counts.keys() == ward.owed(second)
    assert set(counts.values()) == {1}, "a graceful restart sent a notification twice"
