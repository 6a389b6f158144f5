"""Readings grouped per fixed window before they are written: the MedTech service's FHIR destination
``periodInterval`` grouping, as ``window`` (a mean) and ``sampled`` (``valueSampledData``).

A window is one device's one value over ``[start, start + window)``, aligned on the epoch, and its
Observation's identifier is made of device, code, grouping and start, so a window rebuilt from
redelivered messages is folded by the conditional create and writes nothing new.

At least once: a message is acknowledged only when every window holding one of its readings is
written, so the broker redelivers whatever a stopped bridge held. A window closes ``lateness``
seconds after both its end and its last reading's arrival (so a replay of old readings is grouped
too); a reading for a window already written is folded and counted, never added to another.

A window mean is ``valueQuantity`` (what the R4 vital-signs profile requires) over an
``effectivePeriod``, with its minimum, maximum and count as components coded in the R4
observation-statistics code system (as ``Observation/$stats`` answers). ``sampled`` readings go in
the slots of ``valueSampledData`` (R4 datatypes.html#SampledData): one per ``period`` from the
window's start, ``E`` where no sample came.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fhir_twin.devices.mapping_file import DeviceValue
from fhir_twin.devices.reading import READING_SYSTEM, Message

STATISTICS = "http://terminology.hl7.org/CodeSystem/observation-statistics"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]
}


@dataclass
class Window:
    device_id: str
    value: DeviceValue
    start: int  # epoch seconds
    patient: str
    device: str
    arrived: float
    # Per reading time (ms since the epoch) for a mean, per slot for samples: duplicates fold.
    readings: dict[int, float] = field(default_factory=dict)
    tokens: set[Hashable] = field(default_factory=set)

    @property
    def end(self) -> int:
        return self.start + self.value.window

    def identifier(self) -> str:
        value = self.value
        key = f"{self.device_id}|{value.system}|{value.code}|{value.grouping}|{self.start}"
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{READING_SYSTEM}:{key}"))

    def entry(self) -> dict[str, Any]:
        """The window's Observation as a conditional create in a transaction Bundle."""
        value, identifier = self.value, self.identifier()
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "identifier": [{"system": READING_SYSTEM, "value": identifier}],
            "status": "final",
            "code": {"coding": [{"system": value.system, "code": value.code}], "text": value.name.replace("_", " ")},
            "subject": {"reference": self.patient},
            "device": {"reference": self.device},
            "effectivePeriod": {"start": _instant(self.start), "end": _instant(self.end)},
        }
        if value.grouping == "sampled":
            resource["valueSampledData"] = self._sampled()
        else:
            numbers = list(self.readings.values())
            resource["category"] = [VITAL_SIGNS]
            resource["valueQuantity"] = _quantity(round(sum(numbers) / len(numbers), 3), value.unit)
            resource["component"] = [
                _statistic("minimum", {"valueQuantity": _quantity(min(numbers), value.unit)}),
                _statistic("maximum", {"valueQuantity": _quantity(max(numbers), value.unit)}),
                _statistic("count", {"valueInteger": len(numbers)}),
            ]
        return {
            "fullUrl": f"urn:uuid:{identifier}",
            "resource": resource,
            "request": {
                "method": "POST",
                "url": "Observation",
                "ifNoneExist": f"identifier={READING_SYSTEM}|{identifier}",
            },
        }

    def _sampled(self) -> dict[str, Any]:
        period = self.value.period or 1
        slots = self.value.window * 1000 // period
        data = " ".join(_decimal(self.readings[slot]) if slot in self.readings else "E" for slot in range(slots))
        return {"origin": _quantity(0, self.value.unit), "period": period, "dimensions": 1, "data": data}


class Windows:
    """The open windows, and which messages (``token``: the bridge's delivery) each still holds."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self._open: dict[tuple[str, str, int], Window] = {}
        self._written: dict[tuple[str, str, int], float] = {}  # recently written: when, to fold late readings
        self._pending: Counter[Hashable] = Counter()
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._open)

    def hold(self, token: Hashable, message: Message, patient: str, device: str) -> None:
        """Put the message's grouped readings in their windows; ``token`` is pending until they are written."""
        now = self.clock()
        with self._lock:
            for reading in message.readings:
                value = reading.value
                if value.grouping == "each":
                    continue
                at = datetime.fromisoformat(reading.time).timestamp()
                if value.grouping == "sampled":
                    step = (value.period or 1) / 1000
                    timed = [(at + i * step, number) for i, number in enumerate(reading.samples)]
                else:
                    timed = [(at, reading.number)]
                for moment, number in timed:
                    start = int(moment // value.window) * value.window
                    key = (message.device_id, value.name, start)
                    if key in self._written:
                        self.counts["late"] += 1
                        continue
                    window = self._open.get(key)
                    if window is None:
                        window = self._open[key] = Window(message.device_id, value, start, patient, device, now)
                    window.arrived = now
                    if value.grouping == "sampled":
                        slot = round((moment - start) * 1000 / (value.period or 1))
                    else:
                        slot = round(moment * 1000)
                    window.readings[slot] = number
                    if token not in window.tokens:
                        window.tokens.add(token)
                        self._pending[token] += 1

    def pending(self, token: Hashable) -> bool:
        with self._lock:
            return self._pending[token] > 0

    def closed(self) -> list[Window]:
        """The windows past their end and their last arrival by their lateness, taken out to be written."""
        now = self.clock()
        with self._lock:
            keys = [
                key
                for key, window in self._open.items()
                if now >= max(window.end, window.arrived) + window.value.lateness
            ]
            return [self._open.pop(key) for key in keys]

    def reopen(self, windows: list[Window]) -> None:
        """Windows that could not be written, kept to be tried again."""
        with self._lock:
            for window in windows:
                self._open.setdefault((window.device_id, window.value.name, window.start), window)

    def written(self, windows: list[Window]) -> list[Hashable]:
        """Record ``windows`` as written; the tokens they were the last to hold, to acknowledge."""
        now = self.clock()
        released = []
        with self._lock:
            for window in windows:
                self._written[(window.device_id, window.value.name, window.start)] = now
                for token in window.tokens:
                    self._pending[token] -= 1
                    if self._pending[token] <= 0:
                        del self._pending[token]
                        released.append(token)
            # A written window is remembered for an hour, then a reading for it is folded by the store.
            for key, when in list(self._written.items()):
                if when < now - 3600:
                    del self._written[key]
        return released

    def disown(self) -> None:
        """Forget the messages held: after a reconnect the broker sends them again, and their old ids
        must never be acknowledged."""
        with self._lock:
            for window in self._open.values():
                window.tokens.clear()
            self._pending.clear()


def _statistic(code: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"code": {"coding": [{"system": STATISTICS, "code": code}], "text": code}, **value}


def _quantity(number: float, unit: str) -> dict[str, Any]:
    return {"value": number, "unit": unit, "system": UCUM, "code": unit}


def _decimal(number: float) -> str:
    return str(int(number)) if number.is_integer() else repr(number)


def _instant(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
