"""The twin document and its series, whole, against a copy made before they were made faster.

The Digital Body and Case are clinical (docs/clinical-safety.md): a change meant only to make the
twin cheaper must leave every value the same. ``data/document_unchanged.json`` holds the twin API's
answers for patients whose readings are flagged, converted, duplicated and named by a report's
results (the ``fixtures/mappings`` cases below), as the server gave them before the twin's read
path was tuned (docs/performance.md §3.12). Only what moves with the clock is left out: the
reference time, ages and staleness (judged at now), and the Doctor's assessments. Rewrite the
file only for a change that is meant to change the twin, and say so in the hazard log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import simplejson
from flask.testing import FlaskClient

CASES_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "mappings"
EXPECTED = Path(__file__).resolve().parent / "data" / "document_unchanged.json"
CASES = (
    "blood-pressure-duplicate",
    "blood-pressure-panels",
    "heart-rate-flags",
    "implausible-or-abnormal",
    "temperature-fahrenheit",
    "glucose-hba1c-molar",
    "lipids-creatinine-report",
    "conditions",
    "removed-observations",
)


def _without_clock(document: dict[str, Any]) -> dict[str, Any]:
    document.pop("referenceTime")
    document.pop("assessments")
    document["patient"].pop("age")
    for state in document["body"].values():
        state.pop("stale")
    return document


def twin_answers(client: FlaskClient) -> dict[str, Any]:
    """Each case's patient: its twin document and every field's series (whole, and before a time)."""
    answers: dict[str, Any] = {}
    for name in CASES:
        case = simplejson.loads((CASES_DIR / f"{name}.json").read_text(encoding="utf-8"), use_decimal=True)
        for resource in case["resources"]:
            response = client.put(
                f"/fhir/{resource['resourceType']}/{resource['id']}",
                data=simplejson.dumps(resource, use_decimal=True),
                content_type="application/fhir+json",
            )
            assert response.status_code in (200, 201), (name, resource["id"], response.get_json())
        patient = case["resources"][0]["id"]
        document = client.get(f"/twin/patients/{patient}")
        assert document.status_code == 200, document.get_json()
        found = _without_clock(document.get_json())
        series = {}
        for field in found["body"]:
            whole = client.get(f"/twin/patients/{patient}/series/{field}")
            before = client.get(f"/twin/patients/{patient}/series/{field}?at=2024-01-01")
            assert whole.status_code == before.status_code == 200, (whole.get_json(), before.get_json())
            series[field] = {"whole": whole.get_json(), "before 2024": before.get_json()}
        answers[name] = {"document": found, "series": series}
    return answers


def test_the_twin_answers_as_it_did_before_it_was_tuned(client: FlaskClient) -> None:
    answers = twin_answers(client)
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    assert answers.keys() == expected.keys()
    for name, answer in answers.items():
        assert answer == expected[name], name


def test_the_cases_hold_what_the_comparison_is_for() -> None:
    """The kept answers name flagged, converted, duplicated and report-linked readings."""
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    quality = [answer["document"]["quality"] for answer in expected.values()]
    assert sum(found["flagged"] for found in quality) > 0
    assert sum(found["converted"] for found in quality) > 0
    assert sum(found["duplicates"] for found in quality) > 0
    results = [
        item["results"]
        for answer in expected.values()
        for items in answer["document"]["case"].values()
        for item in items
    ]
    assert any(results)
