"""The hazard log's controls (docs/clinical-safety.md) end to end, as a clinician's system meets
them through the FHIR API: what is written live, what ``$predict`` answers, on hand-built records
and on the Synthea bundles of an ordinary EHR."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.factories import SYNTHEA_BUNDLES
from tests.ml.doctor_data import (
    MEDIUM,
    SNOMED,
    ago,
    assessments,
    cardiovascular_set,
    condition,
    news2_set,
    patient,
    put,
    quantity,
    settle,
    transaction,
    wait_for,
)


def predict(client: FlaskClient, patient_id: str, *models: str) -> dict[str, dict[str, Any]]:
    """``POST $predict`` by model: result, message and the RiskAssessment, if any."""
    body = {"resourceType": "Parameters", "parameter": [{"name": "model", "valueCode": m} for m in models]}
    response = client.post(f"/fhir/Patient/{patient_id}/$predict", json=body)
    assert response.status_code == 200, response.get_json()
    found = {}
    for prediction in response.get_json()["parameter"]:
        parts = {part["name"]: part for part in prediction["part"]}
        found[parts["model"]["valueCode"]] = {
            "result": parts["result"]["valueCode"],
            "message": parts["message"]["valueString"],
            "resource": parts.get("riskAssessment", {}).get("resource"),
        }
    return found


def notes(resource: dict[str, Any]) -> list[str]:
    return [note["text"] for note in resource.get("note", [])]


def test_h1_a_flagged_newest_reading_is_never_hidden_and_its_correction_rescores(
    app: Flask, client: FlaskClient
) -> None:
    """SpO2 97 % in a full set, then a reading of 150 % (an entry error): the NEWS2 written for it is
    preliminary, leaves SpO2 out and names the reading, rather than staying a final score on the 97;
    the amended reading (95 %) is scored at once, final."""
    put(client, patient("p1"))
    transaction(client, news2_set("p1", MEDIUM._replace(spo2=97), ago(minutes=40), ids="s"))
    (first,), _ = wait_for(client, "p1", "news2")
    assert first["status"] == "final"

    flagged = quantity("p1", "2708-6", 150, "%", ago(minutes=10), res_id="spo2-late")
    put(client, flagged)
    found, _ = wait_for(client, "p1", "news2", count=2)
    second = found[-1]
    assert second["status"] == "preliminary"
    assert second["prediction"][0]["rationale"].startswith("NEWS2 at least")
    (note,) = [text for text in notes(second) if "needs verification" in text]
    assert "150 %" in note and "Observation/spo2-late/_history/1" in note
    # Neither the 150 nor the older 97 (Observation/s-spo2) stands for the current SpO2.
    assert not any("spo2" in ref["reference"] for ref in second["basis"])

    # Another view of the same hazard: the twin shows the reading as unverified.
    body = client.get("/twin/patients/p1").get_json()["body"]["oxygen_saturation"]
    assert body["latest"]["value"] == 97 and body["unverified"]["value"] == 150
    assert body["unverified"]["flag"] == "implausible"

    put(client, {**flagged, "status": "amended", "valueQuantity": {**flagged["valueQuantity"], "value": 95}})
    found, _ = wait_for(client, "p1", "news2", count=3)
    third = found[-1]
    assert third["status"] == "final"
    assert "SpO2 95 % (scale 1): 1 point" in third["prediction"][0]["rationale"]
    assert {"reference": "Observation/spo2-late/_history/2"} in third["basis"]


def test_h6_a_man_after_a_myocardial_infarction_gets_no_primary_prevention_estimate(
    app: Flask, client: FlaskClient
) -> None:
    put(client, patient("p1"))
    put(client, condition("p1", SNOMED, "22298006", "Myocardial infarction", status="resolved", res_id="mi"))
    transaction(client, cardiovascular_set("p1", ago(days=2)))
    settle(app)
    assert assessments(client, "p1", "pooled-cohort-ascvd") == []
    assert assessments(client, "p1", "atp3-hard-chd") == []
    found = predict(client, "p1", "pooled-cohort-ascvd", "atp3-hard-chd")
    for model, answer in found.items():
        assert answer["result"] == "not-applicable", model
        assert answer["resource"] is None
        assert "Myocardial infarction, since 2019-04-01 (Condition/mi)" in answer["message"], model
    assert "secondary prevention" in found["pooled-cohort-ascvd"]["message"]


def test_h5_qsofa_runs_on_suspected_infection_or_on_request_only(app: Flask, client: FlaskClient) -> None:
    put(client, patient("p1"))
    effective = ago(minutes=10)
    transaction(
        client, [quantity("p1", "9279-1", 30, "/min", effective), quantity("p1", "8480-6", 90, "mm[Hg]", effective)]
    )
    settle(app)
    assert assessments(client, "p1", "qsofa") == []
    asked = predict(client, "p1", "qsofa")["qsofa"]
    assert asked["result"] == "scored"
    assert asked["resource"]["status"] == "preliminary"
    assert any(text.startswith("No suspected infection is on record; qSOFA was scored because it was asked for")
               for text in notes(asked["resource"]))  # fmt: skip


def synthea_patients(client: FlaskClient) -> dict[str, str]:
    """Every Synthea bundle posted as the transaction it is; patient id → name."""
    for path in SYNTHEA_BUNDLES:
        response = client.post("/fhir", json=json.loads(path.read_text(encoding="utf-8")))
        assert response.status_code == 200, (path.name, response.get_json())
    found = {}
    for entry in client.get("/fhir/Patient?_count=100").get_json()["entry"]:
        resource = entry["resource"]
        found[resource["id"]] = f"{resource['name'][0]['given'][0]} {resource['name'][0]['family']}"
    return found


@pytest.fixture
def quiet(make_app: Any) -> Flask:
    """No live Doctor: the test asks ``$predict`` itself."""
    return make_app(doctor=False)


def test_h2_ordinary_ehr_records_are_scored_as_partial_sets_and_said(quiet: Flask) -> None:
    """The Synthea bundles carry no ACVPU and no inhaled-oxygen reading: NEWS2 is still scored, as a
    preliminary lower bound that names what is missing; where it is not, the message says exactly
    why. The ten-year risks are given where the equations apply, preliminary, each assumption said."""
    client = quiet.test_client()
    names = synthea_patients(client)
    results: Counter[tuple[str, str, str]] = Counter()
    for patient_id, name in names.items():
        for model, answer in predict(client, patient_id).items():
            resource = answer["resource"]
            results[(name, model, resource["status"] if resource else answer["result"])] += 1
            if model == "news2" and resource is not None:
                assert resource["prediction"][0]["qualitativeRisk"]["text"].startswith("at least")
                assert "No level of consciousness (ACVPU or GCS) is recorded with the set." in notes(resource)
            if model == "news2" and resource is None:
                assert answer["message"].startswith("news2: insufficient data, missing ")
                assert "No " in answer["message"], "the message says what is missing"
            if model == "pooled-cohort-ascvd" and resource is not None:
                assert resource["status"] == "preliminary"
                assert any(text.startswith("Measured more than") for text in notes(resource))
    assert results == Counter(
        {
            ("Clemente Kreiger", "news2", "insufficient-data"): 1,
            ("Clemente Kreiger", "qsofa", "not-applicable"): 1,
            ("Clemente Kreiger", "pooled-cohort-ascvd", "preliminary"): 1,
            ("Clemente Kreiger", "atp3-hard-chd", "preliminary"): 1,
            ("Markus Jacobi", "news2", "preliminary"): 1,
            ("Markus Jacobi", "qsofa", "not-applicable"): 1,
            ("Markus Jacobi", "pooled-cohort-ascvd", "preliminary"): 1,
            ("Markus Jacobi", "atp3-hard-chd", "preliminary"): 1,
            ("Norma Pagan", "news2", "insufficient-data"): 1,
            ("Norma Pagan", "qsofa", "not-applicable"): 1,
            ("Norma Pagan", "pooled-cohort-ascvd", "insufficient-data"): 1,
            ("Norma Pagan", "atp3-hard-chd", "insufficient-data"): 1,
            ("Laila Gorczany", "news2", "preliminary"): 1,
            ("Laila Gorczany", "qsofa", "insufficient-data"): 1,
            ("Laila Gorczany", "pooled-cohort-ascvd", "insufficient-data"): 1,
            ("Laila Gorczany", "atp3-hard-chd", "insufficient-data"): 1,
        }
    ), results


def test_every_hazard_names_tests_that_exist() -> None:
    """docs/clinical-safety.md stays true: each hazard has a control and names its tests, and every
    test it names exists (a renamed test fails here, not silently in the log)."""
    log = Path(__file__).resolve().parents[2] / "docs" / "clinical-safety.md"
    text = log.read_text(encoding="utf-8")
    hazards = re.split(r"^### ", text, flags=re.M)[1:]
    assert len(hazards) >= 20
    named = 0
    for hazard in hazards:
        title = hazard.splitlines()[0]
        assert "- **Control.**" in hazard and "- **Tests.**" in hazard, title
        tests = hazard.split("- **Tests.**", 1)[1].split("- **Residual.**", 1)[0]
        current: Path | None = None
        references = re.findall(r"`(tests/[\w/]+\.py)?(::\w+)?(?:\[[^\]`]*\])?`", tests)
        assert references, title
        for path, function in references:
            if path:
                current = Path(__file__).resolve().parents[2] / path
                assert current.is_file(), (title, path)
            if function:
                assert current is not None, (title, function)
                assert f"def {function[2:]}(" in current.read_text(encoding="utf-8"), (title, current.name, function)
                named += 1
    assert named >= 60
