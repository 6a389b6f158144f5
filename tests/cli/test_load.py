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
from tests.factories import SYNTHEA_BUNDLES, observation


def _count(app: Flask, resource_type: str) -> int:
    return app.test_client().get(f"/fhir/{resource_type}?_summary=count").get_json()["total"]


@pytest.mark.parametrize("path", SYNTHEA_BUNDLES, ids=lambda p: p.stem)
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


NPI = "http://hl7.org/fhir/sid/us-npi|9999999999"


def _write(folder: Path, name: str, value: dict[str, Any]) -> None:
    (folder / name).write_text(json.dumps(value))


def _referring_folder(folder: Path) -> Path:
    """Files that refer to each other, each before what it refers to in load order: single
    resources as in the official examples, and a Synthea patient whose conditional reference
    names a practitioner its ``practitionerInformation`` file creates."""
    folder.mkdir()
    _write(folder, "Observation-o1.json", observation(res_id="o1", subject="Patient/p1", code_text="x"))
    _write(
        folder,
        "Patient-p1.json",
        {"resourceType": "Patient", "id": "p1", "managingOrganization": {"reference": "Organization/org1"}},
    )
    _write(folder, "Organization-org1.json", {"resourceType": "Organization", "id": "org1", "name": "Ward"})
    patient = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
                "resource": {
                    "resourceType": "Patient",
                    "generalPractitioner": [{"reference": f"Practitioner?identifier={NPI}"}],
                },
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    _write(folder, "Aaron_Smith.json", patient)
    practitioners = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
                "resource": {
                    "resourceType": "Practitioner",
                    "identifier": [{"system": NPI.split("|")[0], "value": NPI.split("|")[1]}],
                },
                "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": f"identifier={NPI}"},
            }
        ],
    }
    _write(folder, "practitionerInformation1.json", practitioners)
    return folder


def test_files_that_refer_to_each_other_load_as_one(make_app: Any, database_url: str, tmp_path: Path) -> None:
    folder = _referring_folder(tmp_path / "export")
    result = CliRunner().invoke(cli.main, ["load", str(folder), "--database", database_url])
    assert result.exit_code == 0, result.output
    assert "5 files, 5 resources loaded" in result.output
    client = make_app().test_client()
    assert client.get("/fhir/Observation/o1").get_json()["subject"]["reference"] == "Patient/p1"
    practitioner = client.get("/fhir/Practitioner").get_json()["entry"][0]["resource"]["id"]
    patients = client.get("/fhir/Patient?general-practitioner=Practitioner/" + practitioner).get_json()
    assert patients["total"] == 1


def test_a_dangling_reference_is_reported_with_its_file_and_element(
    make_app: Any, database_url: str, tmp_path: Path
) -> None:
    folder = _referring_folder(tmp_path / "export")
    _write(folder, "Observation-o2.json", observation(res_id="o2", subject="Patient/nobody", code_text="x"))
    unresolved = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:33333333-3333-4333-8333-333333333333",
                "resource": observation(subject="urn:uuid:99999999-9999-4999-8999-999999999999", code_text="x"),
                "request": {"method": "POST", "url": "Observation"},
            }
        ],
    }
    _write(folder, "unresolved.json", unresolved)
    result = CliRunner().invoke(cli.main, ["load", str(folder), "--database", database_url])
    assert result.exit_code == 1
    assert "7 files, 6 resources loaded" in result.output
    assert (
        "Observation-o2.json: 1 failures, first: Observation/o2 Observation.subject refers to Patient/nobody, "
        "which does not exist" in result.output
    )
    assert "unresolved.json: 1 failures, first: Bundle.entry[0] (urn:uuid:33333333" in result.output
    assert "Observation.subject refers to urn:uuid:99999999-9999-4999-8999-999999999999" in result.output
    assert "2 of 7 files had failures" in result.output


def test_progress_is_counted_in_resources_when_not_on_a_terminal(database_url: str, tmp_path: Path) -> None:
    folder = _referring_folder(tmp_path / "export")
    result = CliRunner().invoke(cli.main, ["load", str(folder), "--database", database_url])
    assert result.exit_code == 0, result.output
    assert "loading: 0 resources, 1/5 files" in result.output
    assert "loading: 1 resources, 2/5 files" in result.output
    assert "Aaron_Smith.json 0 resources, 1 failures" in result.output
    assert "Aaron_Smith.json 1 resources (attempt 2)" in result.output
    assert "loading: 5 resources, 5/5 files" in result.output


def test_referential_integrity_can_be_chosen_per_load(make_app: Any, database_url: str, tmp_path: Path) -> None:
    (tmp_path / "o1.json").write_text(json.dumps(observation(res_id="o1", subject="Patient/nobody", code_text="x")))
    (tmp_path / "o2.json").write_text(json.dumps(observation(res_id="o2", subject="Patient/nobody", code_text="x")))
    off = CliRunner().invoke(
        cli.main, ["load", str(tmp_path / "o1.json"), "--database", database_url, "--no-referential-integrity"]
    )
    assert off.exit_code == 0, off.output
    assert make_app().test_client().get("/fhir/Observation/o1").status_code == 200
    on = CliRunner(env={"FHIR_TWIN_REFERENTIAL_INTEGRITY": "false"}).invoke(
        cli.main, ["load", str(tmp_path / "o2.json"), "--database", database_url, "--referential-integrity"]
    )
    assert on.exit_code == 1
    assert "refers to Patient/nobody, which does not exist" in on.output
