"""Requests without a valid credential are recorded one by one up to a limit per address and
window; past it they are counted and recorded as one AuditEvent, so a flood cannot grow the
trail without bound."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from fhir_twin.app import services_of
from fhir_twin.audit.event import Occurrence
from fhir_twin.audit.throttle import Throttle
from fhir_twin.audit.trail import verify_trail

pytestmark = pytest.mark.audited


class Clock:
    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


def refused(address: str, number: int) -> Occurrence:
    return Occurrence(
        event_id=f"e{number}",
        recorded=datetime(2026, 11, 30, 12, 0, number),
        interaction="read",
        action="R",
        status=401,
        agent="unauthenticated",
        agent_kind="anonymous",
        address=address,
        diagnostics="no credential",
        resources=["Patient/p1"],
    )


def test_past_the_limit_refusals_are_counted_and_summarised_when_the_window_ends() -> None:
    clock = Clock()
    throttle = Throttle(limit=3, window=60, clock=clock)

    admitted = [throttle.admit(refused("10.0.0.1", number)) for number in range(5)]
    assert admitted == [True, True, True, False, False]
    assert throttle.admit(refused("10.0.0.2", 9)) is True
    assert throttle.summaries() == []

    clock.at += 60
    (summary,) = throttle.summaries()
    assert summary.address == "10.0.0.1"
    assert summary.status == 401 and summary.interaction == "read"
    assert summary.resources == [] and summary.event_id not in {"e3", "e4"}
    assert summary.diagnostics is not None
    assert summary.diagnostics.startswith("2 more requests without a valid credential from 10.0.0.1")
    assert "2026-11-30T12:00:03.000+00:00" in summary.diagnostics
    assert "2026-11-30T12:00:04.000+00:00" in summary.diagnostics
    assert throttle.summaries() == []
    # A new window records one by one again.
    assert throttle.admit(refused("10.0.0.1", 10)) is True


def test_a_window_still_open_is_summarised_when_the_process_stops() -> None:
    throttle = Throttle(limit=1, window=60, clock=Clock())
    assert [throttle.admit(refused("10.0.0.1", number)) for number in range(4)] == [True, False, False, False]
    (summary,) = throttle.summaries(everything=True)
    assert summary.diagnostics is not None and summary.diagnostics.startswith("3 more requests")


def test_a_flood_without_credentials_leaves_a_bounded_trail(server: Any) -> None:
    recorder = services_of(server.app).recorder
    recorder.throttle = Throttle(limit=3, window=60)
    mark = server.chain_count()

    for _ in range(10):
        assert server.client.get("/fhir/Patient/x").status_code == 401
    assert server.client.get("/fhir/Patient/x", headers=server.ehr).status_code == 404
    one_by_one = server.events_since(mark)
    assert [event["outcomeDesc"][:3] for event in one_by_one] == ["401"] * 3 + ["404"]

    recorder.stop()
    recorder.flush(everything=True)
    (summary,) = server.events_since(mark + 4)
    assert summary["outcome"] == "4"
    assert summary["outcomeDesc"].startswith(f"401: 7 more requests without a valid credential from {server.address}")
    assert verify_trail(services_of(server.app).interactions.repository).finding is None
