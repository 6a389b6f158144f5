"""``Observation/$lastn`` over HTTP (R4 observation-operation-lastn.html)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests import factories
from tests.factories import put

LOINC = "http://loinc.org"
CATEGORIES = "http://terminology.hl7.org/CodeSystem/observation-category"
GLUCOSE, TEMPERATURE, HEART_RATE = "2339-0", "8310-5", "8867-4"


def observation(res_id: str, patient: str, code: str, day: int | None, **extra: Any) -> dict[str, Any]:
    """A laboratory result (glucose) or a vital sign of ``patient`` taken on March ``day``."""
    category = [{"coding": [{"system": CATEGORIES, "code": "laboratory" if code == GLUCOSE else "vital-signs"}]}]
    when = None if day is None else f"2024-03-{day:02d}T08:00:00Z"
    return factories.observation(code, res_id=res_id, patient=patient, when=when, category=category, **extra)


@pytest.fixture
def series(client: FlaskClient) -> FlaskClient:
    """p1: five heart rates, four temperatures, three glucose values, each on its own day; p2: newer ones."""
    for patient in ("p1", "p2"):
        put(client, {"resourceType": "Patient", "id": patient})
    for day in (3, 1, 5, 2, 4):
        put(client, observation(f"hr{day}", "p1", HEART_RATE, day))
    for day in (6, 9, 7, 8):
        put(client, observation(f"t{day}", "p1", TEMPERATURE, day))
    for day in (12, 10, 11):
        put(client, observation(f"g{day}", "p1", GLUCOSE, day))
    put(client, observation("other-hr", "p2", HEART_RATE, 20))
    put(client, observation("other-g", "p2", GLUCOSE, 21))
    return client


def lastn(client: FlaskClient, query: str) -> list[str]:
    response = client.get(f"/fhir/Observation/$lastn?{query}")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    entries = body.get("entry", [])
    assert body["total"] == len(entries)
    for entry in entries:
        assert entry["search"]["mode"] == "match"
        assert entry["fullUrl"] == f"http://localhost/fhir/Observation/{entry['resource']['id']}"
    return [entry["resource"]["id"] for entry in entries]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("patient=p1", ["g12", "t9", "hr5"]),
        ("patient=Patient/p1&max=1", ["g12", "t9", "hr5"]),
        ("subject=Patient/p1&max=3", ["g12", "g11", "g10", "t9", "t8", "t7", "hr5", "hr4", "hr3"]),
        ("patient=p1&max=10", ["g12", "g11", "g10", "t9", "t8", "t7", "t6", "hr5", "hr4", "hr3", "hr2", "hr1"]),
        ("patient=p1&max=2&category=vital-signs", ["t9", "t8", "hr5", "hr4"]),
        (f"patient=p1&max=2&category={CATEGORIES}|laboratory", ["g12", "g11"]),
        (f"patient=p1&max=3&code={LOINC}|{HEART_RATE}", ["hr5", "hr4", "hr3"]),
        (f"patient=p1&max=2&code={GLUCOSE},{LOINC}|{HEART_RATE}", ["g12", "g11", "hr5", "hr4"]),
        ("patient=p1&max=2&date=le2024-03-04", ["hr4", "hr3"]),
        ("patient=p1&max=2&code=nothing", []),
        ("max=1", ["other-g", "t9", "other-hr"]),
        ("max=2&code=8867-4", ["other-hr", "hr5"]),
    ],
)
def test_lastn(series: FlaskClient, query: str, expected: list[str]) -> None:
    assert lastn(series, query) == expected


def test_post_with_parameters(series: FlaskClient) -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patient", "valueString": "Patient/p1"},
            {"name": "max", "valuePositiveInt": 2},
            {"name": "code", "valueString": HEART_RATE},
        ],
    }
    response = series.post("/fhir/Observation/$lastn", json=parameters)
    assert response.status_code == 200, response.get_json()
    assert [entry["resource"]["id"] for entry in response.get_json()["entry"]] == ["hr5", "hr4"]


def test_several_codings_list_an_observation_once(series: FlaskClient) -> None:
    """It ranks under each of its codes; it is listed once, in the first group it made."""
    both = observation("both", "p1", HEART_RATE, 30)
    both["code"]["coding"].append({"system": "http://snomed.info/sct", "code": "364075005"})
    put(series, both)
    assert lastn(series, "patient=p1") == ["g12", "t9", "both"]
    assert lastn(series, "patient=p1&max=2&code=http://snomed.info/sct|364075005") == ["both"]
    assert lastn(series, f"patient=p1&max=2&code={HEART_RATE}") == ["both", "hr5"]


def test_undated_observations_rank_last(series: FlaskClient) -> None:
    put(series, observation("undated", "p1", HEART_RATE, None))
    assert lastn(series, f"patient=p1&max=1&code={HEART_RATE}") == ["hr5"]
    assert lastn(series, f"patient=p1&max=6&code={HEART_RATE}")[-1] == "undated"


def test_deleted_observations_are_gone(series: FlaskClient) -> None:
    assert series.delete("/fhir/Observation/hr5").status_code in (200, 204)
    assert lastn(series, f"patient=p1&code={HEART_RATE}") == ["hr4"]


@pytest.mark.parametrize(
    "query, parameter",
    [
        ("max=0", "max"),
        ("max=-1", "max"),
        ("max=two", "max"),
        ("max=1.5", "max"),
        ("max=1&max=2", "max"),
        ("max=1&_count=5", "_count"),
        ("max=1&_sort=date", "_sort"),
        ("patient=p1&code:nonsense=1", "code:nonsense"),
    ],
)
def test_bad_parameters_are_400(series: FlaskClient, query: str, parameter: str) -> None:
    response = series.get(f"/fhir/Observation/$lastn?{query}")
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == [parameter]
    assert parameter.split(":")[0] in issue["diagnostics"]


def test_only_at_type_level_on_observation(series: FlaskClient) -> None:
    assert series.get("/fhir/Patient/$lastn").status_code == 404
    assert series.get("/fhir/Observation/hr1/$lastn").status_code == 404
    assert series.delete("/fhir/Observation/$lastn").status_code == 405
