"""A ``kill -9`` of ``fhir-twin serve`` (master and server processes) in the middle of a device
stream loses nothing and stores each reading once; a notification may be sent twice (received,
not yet forgotten when killed), so every one owed is asked for at least once. The graceful restart
and the rest are in ``test_end_to_end.py``; the crash has a module of its own to keep each short."""

from __future__ import annotations

from typing import Any

from tests.devices import end_to_end
from tests.devices.end_to_end import (
    Ward,
    expected_readings,
    notified,
    restart_mid_stream,
    wait_for_everything,
)
from tests.subscriptions.receiver import Receiver

ward = end_to_end.ward
monitor_kind = end_to_end.monitor_kind


def test_a_crash_mid_stream_loses_nothing_and_stores_each_reading_once(
    ward: Ward, receiver: Receiver, monitor_kind: Any
) -> None:
    second, published = restart_mid_stream(ward, receiver, crash=True)
    expected = expected_readings(monitor_kind, published)
    wait_for_everything(ward, second, receiver, expected)
    stored = ward.stored_readings(second)
    assert set(stored) == expected and set(stored.values()) == {1}
    # At least once: a notification received but not yet forgotten when killed is sent again.
    assert set(notified(receiver)) == ward.owed(second)
