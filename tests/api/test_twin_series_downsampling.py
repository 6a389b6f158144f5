"""``/twin/patients/{id}/series/{field}?points=N``: a long series downsampled on the server by
largest-triangle-three-buckets (tsdownsample), for a chart; implausible and converted readings
are always kept, and the answer says how many points there were."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.factories import observation, outcome

HEART_RATE = "8867-4"
START = datetime(2024, 1, 1)
LONG = 10_000
# Positions of the readings a chart must show whatever the downsampling.
IMPLAUSIBLE = (1234, 8765)
CONVERTED = (4321,)


def reading(number: int) -> dict[str, Any]:
    when = (START + timedelta(minutes=number)).isoformat() + "Z"
    value = 700 if number in IMPLAUSIBLE else round(70 + 20 * math.sin(number / 300), 1)
    unit = "{beats}/min" if number in CONVERTED else "/min"
    found = observation(HEART_RATE, res_id=f"hr{number}", patient="p1", when=when)
    found["valueQuantity"] = {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    return found


@pytest.fixture
def client_with_series(client: FlaskClient) -> FlaskClient:
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    for first in range(0, LONG, 2500):
        entries = [
            {"resource": reading(n), "request": {"method": "PUT", "url": f"Observation/hr{n}"}}
            for n in range(first, first + 2500)
        ]
        answer = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert answer.status_code == 200, answer.get_json()
    return client


def series(client: FlaskClient, query: str) -> Any:
    answer = client.get(f"/twin/patients/p1/series/heart_rate{query}")
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_a_long_series_is_downsampled_keeping_every_flagged_and_converted_reading(
    client_with_series: FlaskClient,
) -> None:
    found = series(client_with_series, "?points=200")
    assert found["total"] == LONG
    assert found["downsampled"] is True
    points = found["points"]
    flagged = [p for p in points if p["flag"] is not None]
    converted = [p for p in points if p["converted"]]
    assert {p["source"].split("/")[1] for p in flagged} == {f"hr{n}" for n in IMPLAUSIBLE}
    assert {p["source"].split("/")[1] for p in converted} == {f"hr{n}" for n in CONVERTED}
    assert len(points) == 200 + len(IMPLAUSIBLE) + len(CONVERTED)
    times = [p["time"] for p in points]
    assert times == sorted(times)
    # LTTB keeps the first and the last reading.
    assert points[0]["source"].startswith("Observation/hr0/") and points[-1]["source"].startswith("Observation/hr9999/")
    # Without ``points`` the answer is the whole series, as it always was.
    whole = series(client_with_series, "")
    assert len(whole["points"]) == LONG
    assert "total" not in whole and "downsampled" not in whole


def test_a_short_series_is_not_downsampled(client: FlaskClient) -> None:
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    for number in range(5):
        client.put(f"/fhir/Observation/hr{number}", json=reading(number))
    found = series(client, "?points=10")
    assert (found["total"], found["downsampled"], len(found["points"])) == (5, False, 5)


@pytest.mark.parametrize("value", ["2", "5001", "many", ""])
def test_points_out_of_range_are_refused(client: FlaskClient, value: str) -> None:
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    issue = outcome(client.get(f"/twin/patients/p1/series/heart_rate?points={value}"), 400)
    assert issue["expression"] == ["points"]
    assert "3 to 5000" in issue["diagnostics"]
