"""Device readings over MQTT become Observations of the device's patient, through the router."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import services_of
from fhir_twin.devices import bridge as bridge_module
from fhir_twin.devices.bridge import DeviceBridge
from fhir_twin.devices.reading import DEVICE_SYSTEM
from fhir_twin.errors import Invalid
from fhir_twin.interactions.message import Request, Response
from tests.devices.conftest import DeadLetters, publish, settle
from tests.ml.doctor_data import assessments

MakeBridge = Callable[[Flask], DeviceBridge]


def now(minutes: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def create(client: FlaskClient, resource: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
    assert response.status_code == 201, response.json
    return str(response.json["id"])


def patient_with_monitor(client: FlaskClient, device_id: str) -> str:
    patient = create(client, {"resourceType": "Patient", "name": [{"family": "Bedside"}]})
    create(
        client,
        {
            "resourceType": "Device",
            "identifier": [{"system": DEVICE_SYSTEM, "value": device_id}],
            "patient": {"reference": f"Patient/{patient}"},
        },
    )
    return patient


def observations(client: FlaskClient, query: str) -> list[dict[str, Any]]:
    bundle = client.get(f"/fhir/Observation?{query}&_count=100").json
    return [entry["resource"] for entry in bundle.get("entry", [])]


def test_a_reading_becomes_an_observation_of_the_devices_patient(
    app: Flask, client: FlaskClient, make_bridge: MakeBridge, prefix: str
) -> None:
    patient = patient_with_monitor(client, "mon-1")
    bridge = make_bridge(app)
    when = now(minutes=1)
    publish(f"{prefix}devices/monitor/bed-1/vitals", {"deviceId": "mon-1", "time": when, "hr": 88, "temp": 37.9})
    settle(bridge, 1)
    found = {o["code"]["coding"][0]["code"]: o for o in observations(client, f"patient={patient}")}
    assert set(found) == {"8867-4", "8310-5"}
    heart = found["8867-4"]
    assert heart["code"]["coding"][0]["system"] == "http://loinc.org"
    assert heart["valueQuantity"] == {
        "value": 88.0,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    assert heart["device"]["reference"].startswith("Device/")
    assert heart["status"] == "final"
    twin = client.get(f"/twin/patients/{patient}").json
    assert twin["body"]["heart_rate"]["latest"]["value"] == 88.0
    assert twin["body"]["body_temperature"]["latest"]["value"] == 37.9


def test_a_redelivered_message_writes_nothing_new(
    app: Flask, client: FlaskClient, make_bridge: MakeBridge, prefix: str
) -> None:
    patient = patient_with_monitor(client, "mon-2")
    bridge = make_bridge(app)
    message = {"deviceId": "mon-2", "time": now(), "spo2": 94}
    for _ in range(3):
        publish(f"{prefix}devices/monitor/bed-2/vitals", message)
    settle(bridge, 3)
    assert len(observations(client, f"patient={patient}")) == 1
    assert bridge.counts["written"] == 1
    assert bridge.counts["duplicates"] == 2


def test_a_bad_payload_is_dead_lettered_with_its_reason_and_the_bridge_goes_on(
    app: Flask, client: FlaskClient, make_bridge: MakeBridge, prefix: str, dead_letters: DeadLetters
) -> None:
    patient = patient_with_monitor(client, "ox-1")
    bridge = make_bridge(app)
    topic = f"{prefix}devices/oximeter/ox-1/reading"
    publish(topic, b"{not json")
    publish(topic, {"device": {"serial": "ox-1"}, "measuredAt": now(), "spo2": "ninety"})
    publish(topic, {"device": {"serial": "ox-1"}, "measuredAt": "yesterday", "spo2": 97})
    publish(topic, {"device": {"serial": "ox-1"}, "measuredAt": now(), "spo2": 97, "pulse": 71})
    settle(bridge, 4)
    assert bridge.counts["bad-payload"] == 3
    reasons = [letter["detail"] for letter in dead_letters.wait(3)]
    assert len(reasons) == 3, reasons
    assert reasons[0].startswith("not JSON")
    assert "spo2" in reasons[1] and "not a number" in reasons[1]
    assert "time 'yesterday'" in reasons[2]
    assert {letter["reason"] for letter in dead_letters.received} == {"bad-payload"}
    assert dead_letters.received[0]["payload"] == "{not json"
    assert len(observations(client, f"patient={patient}")) == 2


def test_an_unassociated_devices_readings_are_held_until_it_has_a_patient(
    app: Flask, client: FlaskClient, make_bridge: MakeBridge, prefix: str, dead_letters: DeadLetters
) -> None:
    patient = create(client, {"resourceType": "Patient", "name": [{"family": "Later"}]})
    bridge = make_bridge(app)
    topic = f"{prefix}devices/monitor/bed-9/vitals"
    publish(topic, {"deviceId": "mon-9", "time": now(2), "hr": 101})
    publish(topic, {"deviceId": "mon-9", "time": now(1), "hr": 102})
    settle(bridge, 2)
    assert bridge.counts["unassociated"] == 2
    assert [letter["reason"] for letter in dead_letters.wait(2)] == ["unassociated", "unassociated"]
    assert observations(client, "code=8867-4") == []
    devices = client.get(f"/fhir/Device?identifier={DEVICE_SYSTEM}|mon-9").json
    assert devices["total"] == 1
    device = devices["entry"][0]["resource"]
    assert "patient" not in device

    device["patient"] = {"reference": f"Patient/{patient}"}
    assert client.put(f"/fhir/Device/{device['id']}", json=device).status_code == 200
    publish(topic, {"deviceId": "mon-9", "time": now(), "hr": 103})
    settle(bridge, 3)
    assert [o["valueQuantity"]["value"] for o in observations(client, f"patient={patient}")] == [103.0]


@pytest.mark.audited
def test_the_bridge_writes_as_the_device_principal_and_is_audited(
    make_app: Callable[..., Flask], make_bridge: MakeBridge, prefix: str
) -> None:
    app = make_app()
    client = app.test_client()
    patient_with_monitor(client, "mon-a")
    bridge = make_bridge(app)
    publish(f"{prefix}devices/monitor/a/vitals", {"deviceId": "mon-a", "time": now(), "rr": 18})
    settle(bridge, 1)
    events = client.get("/fhir/AuditEvent?agent-name=fhir-twin devices&_count=50").json
    assert events.get("total", len(events.get("entry", []))) >= 1, events


def test_a_deterioration_streamed_by_a_monitor_is_scored_by_the_doctor(
    app: Flask, client: FlaskClient, make_bridge: MakeBridge, prefix: str
) -> None:
    patient = patient_with_monitor(client, "mon-d")
    bridge = make_bridge(app)
    topic = f"{prefix}devices/monitor/d/vitals"
    stable = {"hr": 72, "rr": 14, "spo2": 98, "nibp": {"systolic": 124, "diastolic": 78}, "temp": 36.8}
    worse = {"hr": 131, "rr": 27, "spo2": 89, "nibp": {"systolic": 88, "diastolic": 50}, "temp": 39.4}
    publish(topic, {"deviceId": "mon-d", "time": now(20), **stable})
    publish(topic, {"deviceId": "mon-d", "time": now(1), **worse})
    settle(bridge, 2)
    # The stable set may be assessed first (a batch of its own): wait for the deterioration's.
    started = time.monotonic()
    while True:
        found = assessments(client, patient, "news2")
        risks = [a["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] for a in found]
        if "high" in risks or time.monotonic() - started > 10:
            break
        time.sleep(0.05)
    assert "high" in risks, risks


def test_the_server_runs_the_bridge_when_mqtt_url_is_set(
    make_app: Callable[..., Flask], broker: str, prefix: str
) -> None:
    app = make_app(mqtt_url=broker, mqtt_topic_prefix=prefix, mqtt_client_id="")
    bridge = services_of(app).bridge
    assert bridge is not None and bridge.running
    try:
        client = app.test_client()
        patient = patient_with_monitor(client, "mon-s")
        publish(f"{prefix}devices/monitor/s/vitals", {"deviceId": "mon-s", "time": now(), "hr": 64})
        settle(bridge, 1)
        assert [o["valueQuantity"]["value"] for o in observations(client, f"patient={patient}")] == [64.0]
    finally:
        bridge.stop()


def test_without_mqtt_url_there_is_no_bridge(app: Flask) -> None:
    assert services_of(app).bridge is None


def test_a_reading_the_server_refuses_is_dead_lettered_and_holds_back_no_other(
    app: Flask, client: FlaskClient, make_bridge: MakeBridge, prefix: str, dead_letters: DeadLetters
) -> None:
    """The router refuses a batch by raising (as it does for an invalid transaction Bundle): the
    batch's transaction rolls back whole, each message is retried alone, the one refused goes to
    the dead letters with the server's reason and the others are written."""
    good = patient_with_monitor(client, "mon-ok")
    refused = patient_with_monitor(client, "mon-bad")
    bridge = make_bridge(app)
    route = bridge.route

    def refusing(request: Request) -> Response:
        if f"Patient/{refused}" in json.dumps(request.body):
            raise Invalid.at("Bundle.entry[0].resource.subject", "this patient's readings are refused")
        return route(request)

    bridge.route = refusing
    topic = f"{prefix}devices/monitor/bed-1/vitals"
    publish(topic, {"deviceId": "mon-bad", "time": now(3), "hr": 120})
    publish(topic, {"deviceId": "mon-ok", "time": now(2), "hr": 80})
    settle(bridge, 2)
    publish(topic, {"deviceId": "mon-ok", "time": now(1), "hr": 81})
    settle(bridge, 3)
    assert bridge.counts["rejected"] == 1
    letters = dead_letters.wait(1)
    assert [letter["reason"] for letter in letters] == ["rejected"]
    assert "this patient's readings are refused" in letters[0]["detail"]
    assert sorted(o["valueQuantity"]["value"] for o in observations(client, f"patient={good}")) == [80, 81]
    assert observations(client, f"patient={refused}") == []


def test_a_batch_the_database_could_not_take_is_tried_again_until_it_is_written(
    app: Flask, client: FlaskClient, make_bridge: MakeBridge, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a refusal but a failure (the database away): the batch stays unacknowledged and is
    written when the database is back, rather than waiting for the broker to reconnect."""
    monkeypatch.setattr(bridge_module, "RETRY_FIRST", 0.05)
    patient = patient_with_monitor(client, "mon-retry")
    bridge = make_bridge(app)
    route = bridge.route
    failures = [ConnectionError("the database is away"), ConnectionError("still away")]

    def failing(request: Request) -> Response:
        if failures and request.method == "POST" and request.path == "":
            raise failures.pop(0)
        return route(request)

    bridge.route = failing
    publish(f"{prefix}devices/monitor/bed-1/vitals", {"deviceId": "mon-retry", "time": now(1), "hr": 77})
    settle(bridge, 1)
    assert bridge.counts["retried"] == 2 and bridge.counts["received"] == 1
    assert [o["valueQuantity"]["value"] for o in observations(client, f"patient={patient}")] == [77]
