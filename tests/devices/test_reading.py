"""A device message read by its kind's mapping, or refused with the reason dead letters carry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_twin.devices.mapping_file import load_device_mappings
from fhir_twin.devices.reading import BadPayload, read_message
from fhir_twin.twin.mapping_file import load_mappings

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
KINDS = load_device_mappings(MAPPINGS, load_mappings(MAPPINGS))
OXIMETER = KINDS["pulse_oximeter"]


def read(document: Any) -> Any:
    return read_message(OXIMETER, json.dumps(document).encode())


def test_times_in_any_zone_or_epoch_seconds_are_one_instant_and_one_identifier() -> None:
    zoned = read({"device": {"serial": "ox"}, "measuredAt": "2026-12-06T11:00:00+01:00", "spo2": 95})
    epoch = read({"device": {"serial": "ox"}, "measuredAt": 1796551200, "spo2": 95})
    assert zoned.readings[0].time == epoch.readings[0].time == "2026-12-06T10:00:00.000Z"
    assert zoned.readings[0].identifier("ox") == epoch.readings[0].identifier("ox")
    assert zoned.readings[0].identifier("ox") != zoned.readings[0].identifier("other")


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([1, 2], r"device id \(\$\.device\.serial\) is missing"),
        ({"measuredAt": "2026-12-06T10:00:00Z", "spo2": 95}, r"device id .* is missing"),
        ({"device": {"serial": "a b"}, "measuredAt": "2026-12-06T10:00:00Z", "spo2": 95}, "is not 1-64 letters"),
        ({"device": {"serial": "ox"}, "measuredAt": "2026-12-06T10:00:00", "spo2": 95}, "has no time zone"),
        ({"device": {"serial": "ox"}, "measuredAt": True, "spo2": 95}, "neither an ISO 8601"),
        ({"device": {"serial": "ox"}, "measuredAt": "2026-12-06T10:00:00Z", "spo2": True}, "not a number"),
        ({"device": {"serial": "ox"}, "measuredAt": "2026-12-06T10:00:00Z"}, "no value the mapping reads"),
    ],
)
def test_an_unreadable_message_is_refused_with_its_reason(document: Any, reason: str) -> None:
    with pytest.raises(BadPayload, match=reason):
        read(document)


def test_a_value_the_device_did_not_send_is_left_out() -> None:
    message = read({"device": {"serial": "ox"}, "measuredAt": "2026-12-06T10:00:00Z", "pulse": 70, "spo2": None})
    assert [(reading.value.code, reading.number) for reading in message.readings] == [("8867-4", 70.0)]
