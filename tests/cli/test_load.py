"""``fhir-twin load``: Bundles and NDJSON from files and folders, with a summary; a failing file
does not stop the others."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask

from fhir_twin import cli

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
SHARED_SYNTHEA = Path(__file__).resolve().parents[3] / "shared" / "fhir-test-data" / "synthea"
SYNTHEA = sorted((FIXTURES / "synthea").glob("*.json")) + sorted(SHARED_SYNTHEA.glob("tietai-*.json"))


def _count(app: Flask, resource_type: str) -> int:
    return app.test_client().get(f"/fhir/{resource_type}?_summary=count").get_json()["total"]


@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.stem)
def test_load_every_synthea_bundle(make_app: Any, database_url: str, path: Path) -> None:
    entries = json.loads(path.read_text())["entry"]
    result = CliRunner().invoke(cli.main, ["load", str(path), "--database", database_url])
    assert result.exit_code == 0, result.output
    assert f"1 files, {len(entries)} resources loaded" in result.output
    app = make_app()
    observations = sum(1 for entry in entries if entry["resource"]["resourceType"] == "Observation")
    assert _count(app, "Observation") == observations


def test_load_ndjson_and_collections_keep_ids(make_app: Any, database_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    patients = [{"resourceType": "Patient", "id": f"p{n}", "gender": "female"} for n in range(3)]
    (folder / "Patient.ndjson").write_text("\n".join(json.dumps(p) for p in patients) + "\n")
    collection = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient/p1"},
                }
            }
        ],
    }
    (tmp_path / "collection.json").write_text(json.dumps(collection))
    result = CliRunner().invoke(
        cli.main, ["load", str(folder), str(tmp_path / "collection.json"), "--database", database_url]
    )
    assert result.exit_code == 0, result.output
    assert "2 files, 4 resources loaded" in result.output
    client = make_app().test_client()
    assert client.get("/fhir/Patient/p2").status_code == 200
    assert client.get("/fhir/Observation/o1").get_json()["subject"]["reference"] == "Patient/p1"


def test_a_failing_file_does_not_stop_the_rest(make_app: Any, database_url: str, tmp_path: Path) -> None:
    (tmp_path / "a-broken.json").write_text("{not json")
    bad_entry = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {
                "resource": {"resourceType": "Patient", "gender": "bogus"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {"resourceType": "Patient", "gender": "male"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    (tmp_path / "b-batch.json").write_text(json.dumps(bad_entry))
    (tmp_path / "c-good.ndjson").write_text(json.dumps({"resourceType": "Patient", "id": "ok"}) + "\n")
    result = CliRunner().invoke(cli.main, ["load", str(tmp_path), "--database", database_url])
    assert result.exit_code == 1
    assert "3 files, 2 resources loaded" in result.output
    assert "a-broken.json: 1 failures, first: The body is not valid JSON" in result.output
    assert "b-batch.json: 1 failures, first: entry 0: 400 Bad Request" in result.output
    assert "2 of 3 files had failures" in result.output
    assert _count(make_app(), "Patient") == 2
