"""One device message read by its kind's mapping: the device id, the time and each value.

A message that cannot be read raises ``BadPayload`` with the reason the dead-letter topic carries.
The identifier of a reading is derived from device, code and time, so a redelivered message (MQTT
QoS 1 is at least once) names the Observation already written and a conditional create folds it.
A ``sampled`` value may be one number or a list of them (a waveform's samples from the message's
time on, one per ``period``).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jsonpath_ng import JSONPath

from fhir_twin.devices.mapping_file import DeviceKind, DeviceValue

DEVICE_SYSTEM = "urn:fhir-twin:device"
READING_SYSTEM = "urn:fhir-twin:device-reading"
_DEVICE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class BadPayload(ValueError):
    """A message no Observation can be made of; the message is the reason."""


@dataclass(frozen=True)
class Reading:
    value: DeviceValue
    number: float
    time: str  # a FHIR instant, UTC
    samples: tuple[float, ...] = ()  # a sampled value's samples, ``number`` the first

    def identifier(self, device_id: str) -> str:
        """The same for every delivery of one device's value of one code at one time."""
        key = f"{device_id}|{self.value.system}|{self.value.code}|{self.time}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{READING_SYSTEM}:{key}"))


@dataclass(frozen=True)
class Message:
    kind: DeviceKind
    device_id: str
    readings: tuple[Reading, ...]

    @property
    def each(self) -> tuple[Reading, ...]:
        """The readings written one Observation each; the others wait in their windows."""
        return tuple(reading for reading in self.readings if reading.value.grouping == "each")


def read_message(kind: DeviceKind, payload: bytes) -> Message:
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadPayload(f"not JSON: {error}") from None
    device_id = _one(kind.device_id, document, "device id")
    if not isinstance(device_id, str | int) or isinstance(device_id, bool) or not _DEVICE_ID.match(str(device_id)):
        raise BadPayload(f"device id {device_id!r} is not 1-64 letters, digits or . _ : -")
    time = _instant(_one(kind.time, document, "time"))
    readings = []
    for value in kind.values:
        found = [match.value for match in value.path.find(document)]
        if not found or found[0] is None:
            continue  # a monitor sends what it measures
        numbers = found[0] if value.grouping == "sampled" and isinstance(found[0], list) else [found[0]]
        for number in numbers or [None]:
            if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
                raise BadPayload(f"{value.name} ({value.path}) is {number!r}, not a number")
        samples = tuple(float(number) for number in numbers) if value.grouping == "sampled" else ()
        readings.append(Reading(value, float(numbers[0]), time, samples))
    if not readings:
        raise BadPayload("no value the mapping reads")
    return Message(kind, str(device_id), tuple(readings))


def _one(path: JSONPath, document: Any, what: str) -> Any:
    found = path.find(document) if isinstance(document, dict) else []
    if len(found) != 1:
        raise BadPayload(f"{what} ({path}) is {'missing' if not found else 'not one value'}")
    return found[0].value


def _instant(value: Any) -> str:
    """An ISO 8601 date-time with a zone, or seconds since the epoch, as a FHIR instant in UTC."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            moment = datetime.fromtimestamp(value, UTC)
        elif isinstance(value, str):
            moment = datetime.fromisoformat(value)
        else:
            raise ValueError
    except (ValueError, OverflowError, OSError):
        raise BadPayload(f"time {value!r} is neither an ISO 8601 date-time nor epoch seconds") from None
    if moment.tzinfo is None:
        raise BadPayload(f"time {value!r} has no time zone")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
