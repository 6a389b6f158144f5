"""How the Digital Doctor says times, durations and numbers to a clinician.

A rationale or note is read at the bedside: "older than 1 day", "at 09:10 on 2026-03-02",
"38.2 °C", never ``P1D`` or a float's last digits. Machine-readable forms stay in the
structured elements (``whenPeriod``, ``valueQuantity``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

# UCUM codes of the twin's canonical units as a clinician writes them after a value.
UNITS = {
    "/min": "/min",
    "mm[Hg]": " mmHg",
    "Cel": " °C",
    "%": " %",
    "mg/dL": " mg/dL",
    "kg": " kg",
    "cm": " cm",
    "kg/m2": " kg/m²",
    "L/min": " L/min",
    "{score}": "",
}


def duration(value: timedelta) -> str:
    """``timedelta(days=1)`` → "1 day"; years of 365 days, then days, hours and minutes."""
    minutes = int(value.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    years, days = divmod(days, 365)
    hours, minutes = divmod(minutes, 60)
    parts = [
        _count(years, "year"),
        _count(days, "day"),
        _count(hours, "hour"),
        _count(minutes, "minute"),
    ]
    shown = [part for part in parts if part]
    return " ".join(shown) if shown else "less than a minute"


def _count(number: int, unit: str) -> str:
    if not number:
        return ""
    return f"{number} {unit}" if number == 1 else f"{number} {unit}s"


def moment(when: datetime, reference: datetime | None = None) -> str:
    """A time as "09:10 on 2026-03-02", or "09:10" when it is on ``reference``'s day (UTC)."""
    if reference is not None and when.date() == reference.date():
        return f"{when:%H:%M}"
    return f"{when:%H:%M} on {when:%Y-%m-%d}"


def number(value: float) -> str:
    """A measured value without float noise: 38.2, 105, 0.5."""
    return f"{round(value, 2):g}"


def quantity(value: float, unit: str | None) -> str:
    """A value with its unit as written on a chart: "105 mmHg", "22/min", "38.2 °C"."""
    suffix = UNITS.get(unit or "", f" {unit}" if unit else "")
    return f"{number(value)}{suffix}"


def in_sentence(label: str) -> str:
    """A field label inside a sentence: "Heart rate" → "heart rate", "SpO2" and "HDL cholesterol" kept."""
    if len(label) > 1 and label[0].isupper() and label[1].islower():
        return label[0].lower() + label[1:]
    return label
