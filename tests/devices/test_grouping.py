"""Device values grouped per window: a mean, or SampledData, one Observation per window, written
once whatever is redelivered; an open window's readings are held in the database, so their
messages are acknowledged at once and a stopped bridge loses none."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import services_of
from fhir_twin.devices.bridge import DeviceBridge
from fhir_twin.devices.mapping_file import load_device_mappings
from fhir_twin.twin.mapping_file import MappingError, load_mappings
from tests.devices.conftest import publish, settle
from tests.devices.test_bridge import observations, patient_with_monitor

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
STREAM = """\
devices:
  monitor:
    label: Monitor
    topic: devices/monitor/+/vitals
    device_id: $.deviceId
    time: $.time
    values:
      heart_rate: {path: $.hr, code: http://loinc.org|8867-4, unit: /min}
  stream:
    label: Oximeter stream
    topic: devices/oximeter/+/stream
    device_id: $.deviceId
    time: $.time
    grouping: window
    window: 60
    lateness: 1
    values:
      heart_rate: {path: $.pulse, code: http://loinc.org|8867-4, unit: /min}
      spo2_trend: {path: $.spo2, code: http://loinc.org|59408-5, unit: "%", grouping: sampled, period: 1000}
"""


def folder(tmp_path: Path, devices: str) -> Path:
    for path in MAPPINGS.glob("*.yaml"):
        shutil.copy(path, tmp_path)
    (tmp_path / "devices.yaml").write_text(devices)
    return tmp_path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("grouping: window", "grouping: mean", r"line 14, devices\.stream\.grouping: Must be one of: each, window"),
        (", period: 1000", "", r"line 19, devices\.stream\.values\.spo2_trend: a sampled value needs its period"),
        ("period: 1000", "period: 7000", r"line 19, devices\.stream\.values\.spo2_trend\.period: 60 s is not a whole"),
        ("unit: /min}\n  stream", "unit: /min, period: 5}\n  stream", r"line 8, .*heart_rate\.period: only a sampled"),
        ("window: 60", "window: 0", r"line 15, devices\.stream\.window: Must be greater than or equal to 1"),
    ],
)
def test_a_grouping_mistake_is_named_by_file_line_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    directory = folder(tmp_path, STREAM.replace(old, new))
    with pytest.raises(MappingError, match=r"devices\.yaml, " + message):
        load_device_mappings(directory, load_mappings(directory))


def test_the_shipped_stream_has_a_window_mean_and_sampled_data() -> None:
    kinds = load_device_mappings(MAPPINGS, load_mappings(MAPPINGS))
    groupings = {value.name: (value.grouping, value.window) for value in kinds["pulse_oximeter_stream"].values}
    assert groupings["heart_rate"] == ("window", 60)
    assert groupings["oxygen_saturation_trend"] == ("sampled", 60)
    assert {value.grouping for value in kinds["vital_signs_monitor"].values} == {"each"}


def minute_ago(minutes: int) -> datetime:
    """The start of a whole minute ``minutes`` ago: the start of a 60 s window."""
    moment = datetime.now(UTC).replace(second=0, microsecond=0)
    return moment - timedelta(minutes=minutes)


def stream(device: str, start: datetime, seconds: list[int], pulses: list[float]) -> list[dict[str, Any]]:
    return [
        {"deviceId": device, "time": (start + timedelta(seconds=s)).isoformat(), "pulse": p, "spo2": 95 + s % 3}
        for s, p in zip(seconds, pulses, strict=True)
    ]


@pytest.fixture
def stream_app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    return make_app(mappings_dir=str(folder(tmp_path, STREAM)))


def bridge_of(app: Flask, broker: str, prefix: str, client_id: str = "") -> DeviceBridge:
    bridge = services_of(app).device_bridge(broker, prefix, client_id)
    bridge.start()
    return bridge


def wait_for(found: Callable[[], list[dict[str, Any]]], count: int, deadline: float = 10.0) -> list[dict[str, Any]]:
    """Poll ``found`` until it holds ``count`` items, for at most ``deadline`` seconds."""
    started = time.monotonic()
    while len(result := found()) < count:
        assert time.monotonic() - started < deadline, f"{len(result)} of {count}"
        time.sleep(0.05)
    return result


def test_a_window_is_one_mean_and_one_sampled_data_then_redelivery_writes_nothing_new(
    stream_app: Flask, broker: str, prefix: str
) -> None:
    client = stream_app.test_client()
    patient = patient_with_monitor(client, "ox-w")
    start = minute_ago(10)
    topic = f"{prefix}devices/oximeter/ox-w/stream"
    messages = stream("ox-w", start, [0, 1, 3, 59], [80, 90, 100, 70])
    bridge = bridge_of(stream_app, broker, prefix)
    try:
        for message in messages:
            publish(topic, message)
        settle(bridge, 4)
        found = wait_for(lambda: observations(client, f"patient={patient}"), 2)
    finally:
        bridge.stop()
    by_kind = {("sampled" if "valueSampledData" in o else "mean"): o for o in found}
    mean = by_kind["mean"]
    assert mean["effectivePeriod"] == {
        "start": start.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "end": (start + timedelta(seconds=60)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }
    assert mean["valueQuantity"] == {
        "value": 85.0,
        "unit": "/min",
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    }
    statistics = {c["code"]["coding"][0]["code"]: c for c in mean["component"]}
    assert statistics["minimum"]["valueQuantity"]["value"] == 70.0
    assert statistics["maximum"]["valueQuantity"]["value"] == 100.0
    assert statistics["count"]["valueInteger"] == 4
    sampled = by_kind["sampled"]["valueSampledData"]
    assert sampled["period"] == 1000 and sampled["dimensions"] == 1
    assert sampled["origin"]["value"] == 0 and sampled["origin"]["code"] == "%"
    data = sampled["data"].split(" ")
    assert len(data) == 60
    assert data[:4] == ["95", "96", "E", "95"] and data[59] == "97" and set(data[4:59]) == {"E"}

    # The same messages again, to a bridge that never saw them: the window is rebuilt and folded.
    again = bridge_of(stream_app, broker, prefix)
    try:
        for message in messages:
            publish(topic, message)
        settle(again, 4)
        wait_for(lambda: [{}] if again.counts["duplicates"] >= 2 else [], 1)
    finally:
        again.stop()
    assert again.counts["windows"] == 0
    assert len(observations(client, f"patient={patient}")) == 2


def test_a_bridge_stopped_mid_window_loses_nothing_another_bridge_writes_the_window(
    stream_app: Flask, broker: str, prefix: str
) -> None:
    client = stream_app.test_client()
    patient = patient_with_monitor(client, "ox-h")
    start = minute_ago(10)
    topic = f"{prefix}devices/oximeter/ox-h/stream"
    first = services_of(stream_app).device_bridge(broker, prefix)
    first.windows.clock = lambda: 0.0  # its windows are never due: it stops with them open
    first.start()
    try:
        for message in stream("ox-h", start, [0, 1, 2], [60, 70, 80]):
            publish(topic, message)
        settle(first, 3)
    finally:
        first.stop()
    held = first.windows.store
    assert held.count() == 6  # three pulses, three SpO2 samples
    assert observations(client, f"patient={patient}") == []
    second = bridge_of(stream_app, broker, prefix)
    try:
        found = wait_for(lambda: observations(client, f"patient={patient}&code=8867-4"), 1)
        wait_for(lambda: observations(client, f"patient={patient}&code=59408-5"), 1)
    finally:
        second.stop()
    assert found[0]["valueQuantity"]["value"] == 70.0
    assert {c["code"]["coding"][0]["code"]: c for c in found[0]["component"]}["count"]["valueInteger"] == 3
    assert held.count() == 0


def test_a_redelivered_reading_is_counted_once(stream_app: Flask, broker: str, prefix: str) -> None:
    client = stream_app.test_client()
    patient = patient_with_monitor(client, "ox-r")
    topic = f"{prefix}devices/oximeter/ox-r/stream"
    messages = stream("ox-r", minute_ago(10), [0, 1, 2], [60, 70, 110])
    bridge = bridge_of(stream_app, broker, prefix)
    bridge.windows.clock = lambda: 0.0  # held until the test lets the window close
    try:
        for message in [*messages, messages[2], messages[2]]:
            publish(topic, message)
        settle(bridge, 5)
        assert bridge.windows.store.count() == 6
        bridge.windows.clock = time.time
        found = wait_for(lambda: observations(client, f"patient={patient}&code=8867-4"), 1)
    finally:
        bridge.stop()
    statistics = {c["code"]["coding"][0]["code"]: c for c in found[0]["component"]}
    assert statistics["count"]["valueInteger"] == 3
    assert found[0]["valueQuantity"]["value"] == 80.0


def test_an_open_window_does_not_hold_back_a_monitor_on_the_same_bridge(
    stream_app: Flask, broker: str, prefix: str
) -> None:
    client = stream_app.test_client()
    patient = patient_with_monitor(client, "mon-b")
    device = client.get("/fhir/Device?identifier=urn:fhir-twin:device|mon-b").json["entry"][0]["resource"]
    oximeter = {"resourceType": "Device", "identifier": [{"system": "urn:fhir-twin:device", "value": "ox-b"}]}
    assert client.post("/fhir/Device", json={**oximeter, "patient": device["patient"]}).status_code == 201
    bridge = bridge_of(stream_app, broker, prefix)
    bridge.windows.clock = lambda: 0.0  # the stream's window stays open throughout
    try:
        # More than Mosquitto's 20 messages in flight per client (max_inflight_messages).
        seconds = list(range(30))
        for message in stream("ox-b", minute_ago(10), seconds, [70.0] * len(seconds)):
            publish(f"{prefix}devices/oximeter/ox-b/stream", message)
        sent = time.monotonic()
        now = datetime.now(UTC).isoformat()
        publish(f"{prefix}devices/monitor/b/vitals", {"deviceId": "mon-b", "time": now, "hr": 128})
        found = wait_for(lambda: observations(client, f"patient={patient}&code=8867-4"), 1, deadline=5.0)
        arrived = time.monotonic() - sent
        settle(bridge, 31)
    finally:
        bridge.stop()
    assert found[0]["valueQuantity"]["value"] == 128.0
    assert arrived < 5.0
    assert bridge.windows.store.count() == 60  # the stream's pulses and samples, held in the database


def test_a_window_mean_is_kept_in_the_twin_but_never_read_as_the_newest_reading(
    stream_app: Flask, broker: str, prefix: str
) -> None:
    client: FlaskClient = stream_app.test_client()
    patient = patient_with_monitor(client, "mon-t")
    # The same patient's oximeter stream, under a second Device.
    device = client.get("/fhir/Device?identifier=urn:fhir-twin:device|mon-t").json["entry"][0]["resource"]
    oximeter = {"resourceType": "Device", "identifier": [{"system": "urn:fhir-twin:device", "value": "ox-t"}]}
    oximeter["patient"] = device["patient"]
    assert client.post("/fhir/Device", json=oximeter).status_code == 201
    bridge = bridge_of(stream_app, broker, prefix)
    try:
        raw = (minute_ago(10) + timedelta(seconds=30)).isoformat()
        publish(f"{prefix}devices/monitor/t/vitals", {"deviceId": "mon-t", "time": raw, "hr": 131})
        for message in stream("ox-t", minute_ago(10), [40, 50], [70, 72]):
            publish(f"{prefix}devices/oximeter/ox-t/stream", message)
        settle(bridge, 3)
        wait_for(lambda: observations(client, f"patient={patient}&code=8867-4"), 2)
    finally:
        bridge.stop()
    heart = client.get(f"/twin/patients/{patient}").json["body"]["heart_rate"]
    # The mean (71, over a window that ends after the raw reading) is not the latest heart rate.
    assert heart["latest"]["value"] == 131.0
    assert heart["count"] == 1
