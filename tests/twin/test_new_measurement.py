"""Adding a measurement to the twin is a mapping change, not a code change: the shipped mappings
plus ``fixtures/mappings-extra/pain.yaml`` give a ``pain_score`` field, with its plausibility rule,
and nothing else in the server has to know about it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.factories import put

ROOT = Path(__file__).resolve().parents[2]
PAIN = "72514-3"


@pytest.fixture
def mappings_dir(tmp_path: Path) -> Path:
    """The shipped mapping files and the pain-score file, in one folder."""
    folder = tmp_path / "mappings"
    folder.mkdir()
    for path in sorted((ROOT / "mappings").glob("*.yaml")):
        shutil.copy(path, folder / path.name)
    shutil.copy(ROOT / "fixtures" / "mappings-extra" / "pain.yaml", folder / "pain.yaml")
    return folder


def _pain(res_id: str, value: int, time: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": res_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": PAIN, "display": "Pain severity - 0-10 rating"}]},
        "subject": {"reference": "Patient/p-pain"},
        "effectiveDateTime": time,
        "valueQuantity": {"value": value, "unit": "score", "system": "http://unitsofmeasure.org", "code": "{score}"},
    }


def test_a_new_field_from_a_mapping_file(make_app: Any, mappings_dir: Path) -> None:
    client = make_app(mappings_dir=str(mappings_dir)).test_client()
    put(client, {"resourceType": "Patient", "id": "p-pain"})
    put(client, _pain("pain-7", 7, "2023-04-01T08:00:00Z"))
    put(client, _pain("pain-15", 15, "2023-04-01T12:00:00Z"))

    twin = client.get("/twin/patients/p-pain").get_json()
    pain = twin["body"]["pain_score"]
    assert pain.pop("staleAfter") in ("PT24H", "P1D")  # PT24H in the file; shown as whole days
    assert pain == {
        "label": "Pain severity (0-10)",
        "kind": "quantity",
        "unit": "{score}",
        "count": 1,
        "stale": True,
        "latest": {
            "time": "2023-04-01T08:00:00.000+00:00",
            "value": 7.0,
            "category": None,
            "unit": "{score}",
            "originalValue": "7",
            "originalUnit": "{score}",
            "converted": False,
            "flag": None,
            "source": "Observation/pain-7/_history/1",
            "duplicates": 0,
        },
        # The later 15 is outside the file's 0-10: the field's unverified reading.
        "unverified": {
            "time": "2023-04-01T12:00:00.000+00:00",
            "value": 15.0,
            "category": None,
            "unit": "{score}",
            "originalValue": "15",
            "originalUnit": "{score}",
            "converted": False,
            "flag": "implausible",
            "source": "Observation/pain-15/_history/1",
            "duplicates": 0,
        },
    }
    assert len(twin["body"]) == 23
    quality = twin["quality"]
    assert quality["fields"]["pain_score"] == {
        "total": 2,
        "used": 1,
        "converted": 0,
        "duplicates": 0,
        "flagged": {"implausible": 1},
        "completeness": 0.5,
    }
    assert "pain_score" not in quality["missing"]
    assert quality["completeness"] == pytest.approx(1 / 23, abs=1e-4)

    series = client.get("/twin/patients/p-pain/series/pain_score").get_json()
    assert [(point["value"], point["flag"]) for point in series["points"]] == [(7.0, None), (15.0, "implausible")]


def test_without_the_file_there_is_no_such_field(make_app: Any) -> None:
    """The same data on the shipped mappings alone: the Observation is stored, the twin ignores it."""
    client = make_app().test_client()
    put(client, {"resourceType": "Patient", "id": "p-pain"})
    put(client, _pain("pain-7", 7, "2023-04-01T08:00:00Z"))
    twin = client.get("/twin/patients/p-pain").get_json()
    assert "pain_score" not in twin["body"]
    assert twin["quality"]["used"] == 0
    response = client.get("/twin/patients/p-pain/series/pain_score")
    assert response.status_code == 404
    assert "pain_score" in response.get_json()["issue"][0]["diagnostics"]
