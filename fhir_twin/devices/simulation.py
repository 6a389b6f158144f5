"""Simulated bedside monitors for demos and benchmarks: each patient's vital signs wander around a
baseline, and the deteriorating ones drift over ``minutes`` towards a septic picture (fast heart
and breathing, falling saturation and pressure, fever; the pattern NEWS2 is built to catch, RCP
2017), so the Doctor's assessments change while one watches."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fhir_twin.devices.reading import DEVICE_SYSTEM

# (baseline, deteriorated, noise) per value of the monitor's payload.
_VITALS = {
    "hr": (76.0, 132.0, 3.0),
    "rr": (15.0, 29.0, 1.0),
    "spo2": (97.0, 88.0, 0.7),
    "systolic": (124.0, 86.0, 4.0),
    "diastolic": (78.0, 48.0, 3.0),
    "temp": (36.8, 39.4, 0.1),
}


@dataclass
class SimulatedMonitor:
    device_id: str
    deteriorating: bool = False
    minutes: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    started: float | None = None

    def message(self, now: float) -> dict[str, Any]:
        """The monitor's payload at ``now`` (epoch seconds), as ``mappings/devices.yaml`` reads it."""
        if self.started is None:
            self.started = now
        progress = min(1.0, (now - self.started) / (self.minutes * 60)) if self.deteriorating else 0.0
        value = {
            name: round(base + (worse - base) * progress + self.rng.gauss(0, noise), 1)
            for name, (base, worse, noise) in _VITALS.items()
        }
        return {
            "deviceId": self.device_id,
            "time": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "hr": value["hr"],
            "rr": value["rr"],
            "spo2": min(100.0, value["spo2"]),
            "nibp": {"systolic": value["systolic"], "diastolic": value["diastolic"]},
            "temp": value["temp"],
        }


def admission(device_id: str, name: str) -> dict[str, Any]:
    """A transaction Bundle creating a patient and the monitor at its bedside (``Device.patient``)."""
    patient = f"urn:uuid:{uuid.uuid4()}"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient,
                "resource": {"resourceType": "Patient", "name": [{"family": name}]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Device",
                    "identifier": [{"system": DEVICE_SYSTEM, "value": device_id}],
                    "status": "active",
                    "patient": {"reference": patient},
                },
                "request": {"method": "POST", "url": "Device"},
            },
        ],
    }
