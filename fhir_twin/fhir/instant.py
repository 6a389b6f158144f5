"""FHIR date/dateTime/instant values as UTC ranges (R4 datatypes.html#dateTime, search.html#date).

A value names a range as wide as its precision: ``2024`` is the whole year, ``2024-03-05T10:00``
is that minute. The store keeps naive UTC, so everything here is naive UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_PATTERN = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


def parse_range(value: str) -> tuple[datetime, datetime]:
    """``[start, end)`` in naive UTC covered by ``value``; ValueError when it is not a FHIR date.

    Ranges that reach past year 1 or 9999 once shifted to UTC are clamped to the ends of the
    calendar rather than refused.
    """
    match = _PATTERN.fullmatch(value.strip().replace(" ", "+"))
    if not match:
        raise ValueError(f"{value!r} is not a FHIR date, dateTime or instant")
    parts = match.groupdict()
    year = int(parts["year"])
    if parts["month"] is None:
        start = datetime(year, 1, 1)
        return start, _months_later(start, 12)
    month = int(parts["month"])
    if parts["day"] is None:
        start = datetime(year, month, 1)
        return start, _months_later(start, 1)
    day = datetime(year, month, int(parts["day"]))
    if parts["hour"] is None:
        return day, _add(day, timedelta(days=1))
    fraction = parts["fraction"] or ""
    local = day.replace(
        hour=int(parts["hour"]),
        minute=int(parts["minute"]),
        second=int(parts["second"] or 0),
        microsecond=int((fraction[1:] + "000000")[:6]) if fraction else 0,
    )
    tz = parts["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        local = _add(local, -sign * timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])))
    if parts["second"] is None:
        width = timedelta(minutes=1)
    elif fraction:
        width = timedelta(microseconds=10 ** max(0, 6 - (len(fraction) - 1)))
    else:
        width = timedelta(seconds=1)
    return local, _add(local, width)


def _add(value: datetime, delta: timedelta) -> datetime:
    """``value + delta``, clamped to the ends of the calendar."""
    try:
        return value + delta
    except OverflowError:
        return datetime.max if delta > timedelta(0) else datetime.min


def _months_later(start: datetime, months: int) -> datetime:
    """The first instant ``months`` calendar months after ``start`` (a month's first day)."""
    index = start.year * 12 + start.month - 1 + months
    if index // 12 > datetime.max.year:
        return datetime.max
    return start.replace(year=index // 12, month=index % 12 + 1)


def now() -> datetime:
    """The current instant, naive UTC, at the millisecond precision ``meta.lastUpdated`` shows."""
    current = datetime.now(UTC).replace(tzinfo=None)
    return current.replace(microsecond=current.microsecond // 1000 * 1000)


def format_instant(value: datetime) -> str:
    """A FHIR instant for a naive-UTC datetime: ``2026-11-24T01:49:13.123+00:00``."""
    return value.isoformat(timespec="milliseconds") + "+00:00"


def format_http_date(value: datetime) -> str:
    """An RFC 9110 HTTP-date, for ``Last-Modified``."""
    return value.strftime("%a, %d %b %Y %H:%M:%S GMT")
