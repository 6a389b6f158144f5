"""Readings grouped per fixed window before they are written: the MedTech service's FHIR destination
``periodInterval`` grouping, as ``window`` (a mean) and ``sampled`` (``valueSampledData``).

A window is one device's one value for one patient over ``[start, start + window)``, aligned on the
epoch; its Observation's identifier is made of device, code, grouping, start and patient, so a
window is never two patients' readings (a device moved while data flows starts another) and a
window written again (from redelivered messages) is folded by the conditional create.

At least once, without holding messages: a batch's window readings are kept in the database
(``store/device_windows.py``) in the batch's transaction, and its messages acknowledged at once. A
window is due ``lateness`` seconds after both its end and its last reading's arrival (so a replay
of old readings is grouped too); the bridge that claims it writes its Observation and deletes its
readings in one transaction. A reading that comes after its window was written makes the window
due again, and the conditional create folds it: it is counted, never added to another window.

A window mean is ``valueQuantity`` (what the R4 vital-signs profile requires) over an
``effectivePeriod``, with its minimum, maximum and count as components coded in the R4
observation-statistics code system (as ``Observation/$stats`` answers). ``sampled`` readings go in
the slots of ``valueSampledData`` (R4 datatypes.html#SampledData): one per ``period`` from the
window's start, ``E`` where no sample came.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fhir_twin.devices.mapping_file import DeviceValue
from fhir_twin.devices.reading import READING_SYSTEM, Message
from fhir_twin.store.device_windows import DeviceWindows, HeldReading

log = logging.getLogger("fhir_twin.devices")

STATISTICS = "http://terminology.hl7.org/CodeSystem/observation-statistics"
UCUM = "http://unitsofmeasure.org"
VITAL_SIGNS = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]
}


@dataclass(frozen=True)
class Window:
    """A due window's readings, as kept."""

    identifier: str
    readings: list[HeldReading]

    def entry(self) -> dict[str, Any]:
        """The window's Observation as a conditional create in a transaction Bundle."""
        first, last = self.readings[0], self.readings[-1]
        system, _, code = first.code.partition("|")
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "identifier": [{"system": READING_SYSTEM, "value": self.identifier}],
            "status": "final",
            "code": {"coding": [{"system": system, "code": code}], "text": first.value.replace("_", " ")},
            "subject": {"reference": last.patient},
            "device": {"reference": last.device},
            "effectivePeriod": {"start": _instant(first.start), "end": _instant(first.end)},
        }
        if first.grouping == "sampled":
            resource["valueSampledData"] = self._sampled()
        else:
            numbers = [reading.number for reading in self.readings]
            resource["category"] = [VITAL_SIGNS]
            resource["valueQuantity"] = _quantity(round(sum(numbers) / len(numbers), 3), first.unit)
            resource["component"] = [
                _statistic("minimum", {"valueQuantity": _quantity(min(numbers), first.unit)}),
                _statistic("maximum", {"valueQuantity": _quantity(max(numbers), first.unit)}),
                _statistic("count", {"valueInteger": len(numbers)}),
            ]
        return {
            "fullUrl": f"urn:uuid:{self.identifier}",
            "resource": resource,
            "request": {
                "method": "POST",
                "url": "Observation",
                "ifNoneExist": f"identifier={READING_SYSTEM}|{self.identifier}",
            },
        }

    def _sampled(self) -> dict[str, Any]:
        first = self.readings[0]
        period = first.period or 1
        slots = {round((reading.at - first.start * 1000) / period): reading.number for reading in self.readings}
        count = (first.end - first.start) * 1000 // period
        data = " ".join(_decimal(slots[slot]) if slot in slots else "E" for slot in range(count))
        return {"origin": _quantity(0, first.unit), "period": period, "dimensions": 1, "data": data}


class Windows:
    """A bridge's side of the windows: it keeps its batches' window readings, and writes the windows
    that are due (``close``) as ``owner``."""

    def __init__(
        self, store: DeviceWindows, owner: str, counts: Counter[str], clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.owner = owner
        self.clock = clock
        self.counts = counts
        self._next_close = 0.0

    def keep(self, messages: list[tuple[Message, str, str]]) -> None:
        """Keep the grouped readings of ``messages`` (each with its patient's and device's
        references), in the open transaction: the batch's."""
        now = self.clock()
        kept = []
        for message, patient, device in messages:
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
                    held = HeldReading(
                        _identifier(message.device_id, value, start, patient),
                        message.device_id,
                        value.name,
                        f"{value.system}|{value.code}",
                        value.unit,
                        value.grouping,
                        value.period,
                        start,
                        start + value.window,
                        round(moment * 1000),
                        number,
                        patient,
                        device,
                    )
                    kept.append((held, _naive(max(start + value.window, now) + value.lateness)))
        self.store.keep(kept)

    def close(self, write: Callable[[list[dict[str, Any]]], int]) -> None:
        """Write the windows due (at most once a second), each Observation in the transaction that
        deletes its readings; ``write`` posts a transaction Bundle's entries, and answers how many
        were created. A window that cannot be written stays claimed, to be tried again when its
        claim is stale (``store/claims.py``)."""
        if time.monotonic() < self._next_close:
            return
        self._next_close = time.monotonic() + 1.0
        identifiers = self.store.claim(self.owner, _naive(self.clock()))
        if not identifiers:
            return
        readings: dict[str, list[HeldReading]] = {}
        for reading in self.store.claimed(self.owner, identifiers):
            readings.setdefault(reading.window, []).append(reading)
        windows = [Window(identifier, held) for identifier, held in readings.items()]
        if not self._write(windows, write):
            for window in windows:  # one window's fault must not hold back the others
                if not self._write([window], write):
                    self.counts["rejected"] += 1

    def _write(self, windows: list[Window], write: Callable[[list[dict[str, Any]]], int]) -> bool:
        try:
            with self.store.transaction():
                created = write([window.entry() for window in windows])
                self.store.written(self.owner, [window.identifier for window in windows])
        except Exception as error:
            log.warning("device windows %s not written: %s", [w.identifier for w in windows], error)
            return False
        self.counts["windows"] += created
        self.counts["duplicates"] += len(windows) - created  # written before: a late or redelivered reading
        return True


def _identifier(device_id: str, value: DeviceValue, start: int, patient: str) -> str:
    key = f"{device_id}|{value.system}|{value.code}|{value.grouping}|{start}|{patient}"
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{READING_SYSTEM}:{key}"))


def _naive(seconds: float) -> datetime:
    """Naive UTC, as the database keeps instants."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def _statistic(code: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"code": {"coding": [{"system": STATISTICS, "code": code}], "text": code}, **value}


def _quantity(number: float, unit: str) -> dict[str, Any]:
    return {"value": number, "unit": unit, "system": UCUM, "code": unit}


def _decimal(number: float) -> str:
    return str(int(number)) if number.is_integer() else repr(number)


def _instant(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
