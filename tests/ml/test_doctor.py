"""The Digital Doctor live: a write that changes a twin is assessed by the background worker and
shows as a RiskAssessment (with Provenance and the model's Device) that a FHIR client finds by
search; corrections add assessments, never overwrite them; the queue behind it is durable and
shared by every process on the database."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import services_of
from fhir_twin.ml.card import score_card
from fhir_twin.ml.scores import atp3, news2, pooled_cohort
from fhir_twin.store import doctor_state as queue
from fhir_twin.store.schema import doctor_queue
from tests.factories import PCE_WORKED
from tests.ml.doctor_data import (
    AIAST,
    CURRENT_SMOKER,
    FIXTURES,
    ICD10CM,
    MEDIUM,
    MODEL_SYSTEM,
    MODELS,
    NEWS2_VECTORS,
    RISK_PROBABILITY,
    SCORE_EXTENSION,
    SNOMED,
    TYPE_2_DIABETES,
    Vitals,
    age_on,
    ago,
    assessments,
    by_model,
    cardiovascular_set,
    condition,
    infection,
    medication_request,
    news2_set,
    partial_news2_set,
    patient,
    put,
    quantity,
    settle,
    spo2_target,
    transaction,
    wait_for,
    write,
    years_ago,
)

TEN_YEARS = timedelta(days=3652)
AI_DEVICE_TYPE = "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS"


def risk_code(assessment: dict[str, Any]) -> str:
    (coding,) = assessment["prediction"][0]["qualitativeRisk"]["coding"]
    assert coding["system"] == RISK_PROBABILITY
    return coding["code"]


def score_of(assessment: dict[str, Any]) -> float:
    (extension,) = assessment["prediction"][0]["extension"]
    assert extension["url"] == SCORE_EXTENSION
    return extension["valueDecimal"]


def references(assessment: dict[str, Any]) -> list[str]:
    return sorted(item["reference"] for item in assessment["basis"])


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def provenance_of(client: FlaskClient, assessment_id: str) -> dict[str, Any]:
    response = client.get(f"/fhir/Provenance?target=RiskAssessment/{assessment_id}")
    assert response.status_code == 200, response.get_json()
    (entry,) = response.get_json()["entry"]
    return entry["resource"]


# --- live assessment ------------------------------------------------------------------------


def test_a_news2_set_is_assessed_live(client: FlaskClient, record_property: Callable[[str, Any], None]) -> None:
    put(client, patient("p1"))
    written = datetime.now(UTC)
    basis = transaction(client, news2_set("p1", MEDIUM, ago(minutes=10)))

    (assessment,), elapsed = wait_for(client, "p1", "news2")
    record_property("news2_assessed_after_seconds", round(elapsed, 3))
    print(f"NEWS2 RiskAssessment found {elapsed:.3f} s after the transaction answered")

    assert assessment["status"] == "final"
    assert assessment["subject"] == {"reference": "Patient/p1"}
    assert written - timedelta(seconds=1) <= instant(assessment["occurrenceDateTime"]) <= datetime.now(UTC)
    # basis: the exact versions read (the Patient's for the age), and nothing else
    assert references(assessment) == sorted(["Patient/p1/_history/1", *basis])
    assert all(reference.endswith("/_history/1") for reference in basis)
    assert all(client.get(f"/fhir/{reference}").status_code == 200 for reference in basis)  # vread
    (method,) = assessment["method"]["coding"]
    assert (method["system"], method["code"], method["version"]) == (MODEL_SYSTEM, "news2", news2.MODEL.version)
    assert assessment["performer"]["reference"] == "Device/news2-1.0.0"
    assert assessment["code"]["text"] == "National Early Warning Score 2 (NEWS2)"
    assert f"{assessment['meta']['security'][0]['system']}|{assessment['meta']['security'][0]['code']}" == AIAST

    (prediction,) = assessment["prediction"]
    assert risk_code(assessment) == "moderate"
    assert score_of(assessment) == 6
    assert "probabilityDecimal" not in prediction
    assert prediction["rationale"] == (
        "NEWS2 6 (medium): respiratory rate 22/min: 2 points; SpO2 94 % (scale 1): 1 point; breathing air: 0 points; "
        "systolic blood pressure 105 mmHg: 1 point; pulse 95/min: 1 point; alert: 0 points; temperature 38.2 °C: "
        "1 point"
    )
    assert assessment["mitigation"] == news2.RESPONSE["medium"]
    assert "urgent response threshold" in assessment["mitigation"]

    device = client.get("/fhir/Device/news2-1.0.0")
    assert device.status_code == 200
    assert device.get_json()["version"] == [{"value": news2.MODEL.version}]
    assert device.get_json()["identifier"] == [{"system": MODEL_SYSTEM, "value": "news2-1.0.0"}]
    assert device.get_json()["type"]["coding"] == [{"system": AI_DEVICE_TYPE, "code": "Artificial-Intelligence"}]
    assert device.get_json()["url"] == "DocumentReference/news2-1.0.0-card"
    card = client.get("/fhir/DocumentReference/news2-1.0.0-card")
    assert card.status_code == 200
    (content,) = card.get_json()["content"]
    assert base64.b64decode(content["attachment"]["data"]).decode() == score_card(news2.MODEL)
    assert card.get_json()["subject"]["reference"] == "Device/news2-1.0.0"

    provenance = provenance_of(client, assessment["id"])
    assert provenance["target"] == [{"reference": f"RiskAssessment/{assessment['id']}/_history/1"}]
    (agent,) = provenance["agent"]
    assert agent["who"]["reference"] == "Device/news2-1.0.0"
    assert agent["role"] == [{"coding": [{"system": AI_DEVICE_TYPE, "code": "Artificial-Intelligence"}]}]
    sources = [entity["what"]["reference"] for entity in provenance["entity"] if entity["role"] == "source"]
    assert sorted(sources) == sorted(["Patient/p1/_history/1", *basis])
    derivations = [entity["what"]["reference"] for entity in provenance["entity"] if entity["role"] == "derivation"]
    assert derivations == ["DocumentReference/news2-1.0.0-card"]
    assert len(provenance["entity"]) == len(basis) + 2


@pytest.mark.parametrize(
    ("vitals", "total", "risk", "oxygen"),
    [
        (NEWS2_VECTORS[0][0], 0, "low", "flow"),  # 0 L/min: breathing air
        (NEWS2_VECTORS[1][0], 3, "moderate", "fio2"),
        (NEWS2_VECTORS[2][0], 6, "moderate", "fio2"),
        (NEWS2_VECTORS[3][0], 10, "high", "fio2"),  # inspired O2 28 %
        (NEWS2_VECTORS[4][0], 20, "high", "flow"),  # 2 L/min, responds to voice
    ],
    ids=["0-zero", "3-low-medium", "6-medium", "10-high", "20-high"],
)
def test_published_news2_vectors_end_to_end(
    client: FlaskClient, vitals: Vitals, total: int, risk: str, oxygen: str
) -> None:
    put(client, patient("p1"))
    transaction(client, news2_set("p1", vitals, ago(minutes=5), oxygen=oxygen))
    (assessment,), _ = wait_for(client, "p1", "news2")
    assert (score_of(assessment), risk_code(assessment)) == (total, risk)
    assert assessment["status"] == "final"
    assert assessment["prediction"][0]["rationale"].startswith(f"NEWS2 {total} ")
    if total == 0:
        assert assessment["mitigation"] == news2.RESPONSE["zero"]


def test_every_model_has_one_device_however_many_assessments(client: FlaskClient) -> None:
    for pid in ("p1", "p2"):
        put(client, patient(pid))
        transaction(
            client, [infection(pid), *news2_set(pid, MEDIUM, ago(minutes=5)), *cardiovascular_set(pid, ago(hours=2))]
        )
    for pid in ("p1", "p2"):
        for model in MODELS:
            wait_for(client, pid, model)
    devices = client.get("/fhir/Device").get_json()["entry"]
    assert sorted(entry["resource"]["id"] for entry in devices) == sorted(f"{model}-1.0.0" for model in MODELS)
    assert all(entry["resource"]["meta"]["versionId"] == "1" for entry in devices)
    cards = client.get("/fhir/DocumentReference").get_json()["entry"]
    assert sorted(entry["resource"]["id"] for entry in cards) == sorted(f"{model}-1.0.0-card" for model in MODELS)
    assert all(entry["resource"]["meta"]["versionId"] == "1" for entry in cards)


def test_a_device_stored_without_its_model_card_gets_one(make_app: Callable[..., Flask]) -> None:
    """A model version first used before model cards were written: its Device is written again,
    naming the card, in the transaction that writes the card."""
    client = make_app(doctor=False).test_client()
    put(
        client,
        {
            "resourceType": "Device",
            "id": "news2-1.0.0",
            "identifier": [{"system": MODEL_SYSTEM, "value": "news2-1.0.0"}],
            "status": "active",
            "type": {"text": "Artificial Intelligence: Rule-Based-Systems"},
            "version": [{"value": "1.0.0"}],
        },
    )
    put(client, patient("p1"))
    transaction(client, news2_set("p1", MEDIUM, ago(minutes=5)))
    assert client.post("/fhir/Patient/p1/$predict?model=news2").status_code == 200
    stored = client.get("/fhir/Device/news2-1.0.0").get_json()
    assert stored["meta"]["versionId"] == "2"
    assert stored["url"] == "DocumentReference/news2-1.0.0-card"
    assert client.get("/fhir/DocumentReference/news2-1.0.0-card").status_code == 200
    assert client.post("/fhir/Patient/p1/$predict?model=news2").status_code == 200
    assert client.get("/fhir/Device/news2-1.0.0").get_json()["meta"]["versionId"] == "2"


# --- corrections and unrelated writes -------------------------------------------------------


def test_a_corrected_input_gives_a_new_assessment_and_keeps_the_old(client: FlaskClient) -> None:
    put(client, patient("p1"))
    effective = ago(minutes=10)
    basis = transaction(client, news2_set("p1", MEDIUM, effective, ids="v"))
    (first,), _ = wait_for(client, "p1", "news2")
    stored = client.get(f"/fhir/RiskAssessment/{first['id']}").get_json()

    # The respiratory rate was 25, not 22: 3 points instead of 2, NEWS2 7, high.
    (corrected,) = [o for o in news2_set("p1", MEDIUM._replace(rr=25), effective, ids="v") if o["id"] == "v-rr"]
    assert put(client, corrected)["meta"]["versionId"] == "2"
    found, _ = wait_for(client, "p1", "news2", count=2)
    (second,) = [assessment for assessment in found if assessment["id"] != first["id"]]

    assert (score_of(second), risk_code(second)) == (7, "high")
    assert references(second) == sorted(
        [
            "Patient/p1/_history/1",
            *(reference for reference in basis if not reference.startswith("Observation/v-rr/")),
            "Observation/v-rr/_history/2",
        ]
    )
    assert provenance_of(client, second["id"])["target"] == [{"reference": f"RiskAssessment/{second['id']}/_history/1"}]
    # The first assessment is still there as it was, never updated, and can be vread.
    assert client.get(f"/fhir/RiskAssessment/{first['id']}").get_json() == stored
    vread = client.get(f"/fhir/RiskAssessment/{first['id']}/_history/1")
    assert vread.status_code == 200
    assert references(vread.get_json()) == sorted(["Patient/p1/_history/1", *basis])
    assert client.get(f"/fhir/RiskAssessment/{first['id']}/_history").get_json()["total"] == 1


def test_a_write_that_no_model_reads_adds_no_assessment(app: Flask, client: FlaskClient) -> None:
    put(client, patient("p1"))
    transaction(client, news2_set("p1", MEDIUM, ago(minutes=10)))
    wait_for(client, "p1", "news2")
    settle(app)
    before = by_model(client, "p1")

    write(client, "POST", "/fhir/Observation", quantity("p1", "29463-7", 81.5, "kg", ago(minutes=2)))
    settle(app)
    # qSOFA does not apply: no suspected infection is on record.
    assert by_model(client, "p1") == before == {"news2": 1}


def test_a_new_patient_version_that_keeps_age_sex_and_race_adds_no_assessment(app: Flask, client: FlaskClient) -> None:
    put(client, patient("p1"))
    transaction(client, cardiovascular_set("p1", ago(days=2)))
    wait_for(client, "p1", "pooled-cohort-ascvd")
    settle(app)
    before = by_model(client, "p1")

    moved = {**patient("p1"), "address": [{"city": "Leeds"}]}
    put(client, moved)
    settle(app)
    assert by_model(client, "p1") == before

    older = patient("p1", birth_date=years_ago(65))
    put(client, older)
    wait_for(client, "p1", "pooled-cohort-ascvd", count=2)


def test_a_deceased_patient_is_not_assessed(app: Flask, client: FlaskClient) -> None:
    put(client, {**patient("p1"), "deceasedBoolean": True})
    transaction(client, news2_set("p1", MEDIUM, ago(minutes=10)) + cardiovascular_set("p1", ago(days=2)))
    settle(app)
    assert assessments(client, "p1") == []

    response = client.post("/fhir/Patient/p1/$predict")
    assert response.status_code == 200
    results = {
        part["valueCode"]
        for parameter in response.get_json()["parameter"]
        for part in parameter["part"]
        if part["name"] == "result"
    }
    assert results == {"not-applicable"}
    messages = [
        part["valueString"]
        for parameter in response.get_json()["parameter"]
        for part in parameter["part"]
        if part["name"] == "message"
    ]
    assert all("deceased" in message for message in messages)
    assert assessments(client, "p1") == []


def test_assessing_many_patients_records_them_in_one_go(app: Flask, client: FlaskClient) -> None:
    """``Doctor.assess_many`` (what ``fhir-twin assess`` runs): every known patient's scored
    models recorded, unknown patients left out, and nothing again while nothing changed."""
    for patient_id in ("p1", "p2"):
        put(client, patient(patient_id))
        transaction(client, news2_set(patient_id, MEDIUM, ago(minutes=10)))
    settle(app)
    doctor = services_of(app).doctor
    before = {patient_id: by_model(client, patient_id) for patient_id in ("p1", "p2")}

    outcomes = doctor.assess_many(["p2", "nobody", "p1"], only_changed=False)
    assert list(outcomes) == ["p2", "p1"]
    for patient_id in ("p1", "p2"):
        recorded = sorted(o.runner.model.id for o in outcomes[patient_id] if o.resource is not None)
        assert recorded == ["news2"]
        after = by_model(client, patient_id)
        assert after == {model: count + 1 for model, count in before[patient_id].items()}

    again = doctor.assess_many(["p1", "p2"])
    assert all(outcome.resource is None for found in again.values() for outcome in found)


def overtaken(doctor: Any, other: Callable[[], object]) -> list[str]:
    """Make the Doctor's next record run ``other`` (another record) after planning, before its
    write: the list returned says whether it ran."""
    write = doctor._write
    ran: list[str] = []

    def overtaking(*args: Any, **kwargs: Any) -> None:
        if not ran:
            ran.append("overtaken")
            other()
        write(*args, **kwargs)

    doctor._write = overtaking
    return ran


def test_a_record_that_another_overtook_is_planned_again(make_app: Callable[..., Flask]) -> None:
    """A record is planned before the write gate and checked under it: when another record of the
    same patient commits in between (the live queue and ``$predict`` at once), the plan is made
    again under the lock, so an unchanged result is written once, not twice."""
    app = make_app(doctor=False)
    client = app.test_client()
    put(client, patient("p1"))
    transaction(client, news2_set("p1", MEDIUM, ago(minutes=5)))
    doctor = services_of(app).doctor
    ran = overtaken(doctor, lambda: doctor.assess("p1", ["news2"]))
    (outcome,) = doctor.assess("p1", ["news2"])
    assert ran == ["overtaken"]
    assert outcome.resource is None  # the result the other record wrote stands
    (assessment,) = assessments(client, "p1", "news2")
    assert score_of(assessment) == 6
    assert client.get("/fhir/Provenance?_summary=count").get_json()["total"] == 1


def test_a_device_another_record_wrote_first_is_not_written_again(make_app: Callable[..., Flask]) -> None:
    """A model version's first two records at once: the one that planned to write its Device
    and card finds them written under the lock and plans again, leaving each at version 1."""
    app = make_app(doctor=False)
    client = app.test_client()
    for pid in ("p1", "p2"):
        put(client, patient(pid))
        transaction(client, news2_set(pid, MEDIUM, ago(minutes=5)))
    doctor = services_of(app).doctor
    ran = overtaken(doctor, lambda: doctor.assess("p2", ["news2"]))
    (outcome,) = doctor.assess("p1", ["news2"])
    assert ran == ["overtaken"]
    assert outcome.resource is not None
    assert client.get("/fhir/Device/news2-1.0.0").get_json()["meta"]["versionId"] == "1"
    assert client.get("/fhir/DocumentReference/news2-1.0.0-card").get_json()["meta"]["versionId"] == "1"
    for pid in ("p1", "p2"):
        (assessment,) = assessments(client, pid, "news2")
        assert assessment["performer"]["reference"] == "Device/news2-1.0.0"


# --- insufficient or unusable data ----------------------------------------------------------


def test_a_partial_set_gets_no_news2_assessment(app: Flask, client: FlaskClient) -> None:
    put(client, patient("p1"))
    transaction(client, partial_news2_set("p1", ago(minutes=10)))
    settle(app)
    assert assessments(client, "p1", "news2") == []


def medium_set_with_an_old_temperature(client: FlaskClient) -> tuple[list[dict[str, Any]], float]:
    """p1's medium NEWS2 set of five minutes ago, but its temperature taken two hours before the
    rest; what ``wait_for`` answers for p1's NEWS2 assessments."""
    put(client, patient("p1"))
    observations = news2_set("p1", MEDIUM, ago(minutes=5))
    temperature = next(o for o in observations if o["code"]["coding"][0]["code"] == "8310-5")
    temperature["effectiveDateTime"] = ago(hours=2, minutes=5)
    transaction(client, observations)
    return wait_for(client, "p1", "news2")


def test_a_value_outside_the_window_of_the_set_makes_a_partial_news2(app: Flask, client: FlaskClient) -> None:
    """observation_window (PT1H by default): a temperature two hours older than the rest of the
    set is not part of it; the six others are a partial set, scored as a lower bound, preliminary,
    and the note names the temperature and when it was taken."""
    (assessment,), _ = medium_set_with_an_old_temperature(client)
    assert assessment["status"] == "preliminary"
    assert (score_of(assessment), risk_code(assessment)) == (5, "moderate")
    assert assessment["prediction"][0]["qualitativeRisk"]["text"] == "at least medium (news2)"
    assert assessment["prediction"][0]["rationale"].startswith("NEWS2 at least 5 (at least medium) from 6 of its 7")
    notes = [note["text"] for note in assessment["note"]]
    assert any(note.startswith("No complete set within 1 hour of ") and "body temperature at" in note for note in notes)


def test_the_window_is_a_setting(make_app: Callable[..., Flask]) -> None:
    """With observation_window PT3H the same set is complete."""
    client = make_app(observation_window="PT3H").test_client()
    (assessment,), _ = medium_set_with_an_old_temperature(client)
    assert score_of(assessment) == 6


# --- cardiovascular risk through the twin ---------------------------------------------------


def pce(age: float, *, sex: str = "male", race: str = "white", **changes: Any) -> pooled_cohort.PooledCohortInputs:
    """The Pooled Cohort inputs ``cardiovascular_set``'s defaults give (the worked example's),
    with ``changes``."""
    return replace(PCE_WORKED, age=age, sex=sex, race=race, **changes)  # type: ignore[arg-type]


def atp(inputs: pooled_cohort.PooledCohortInputs) -> atp3.Atp3Inputs:
    return atp3.Atp3Inputs(
        age=inputs.age,
        sex=inputs.sex,
        total_cholesterol=inputs.total_cholesterol,
        hdl=inputs.hdl,
        systolic_bp=inputs.systolic_bp,
        bp_treated=inputs.bp_treated,
        smoker=inputs.smoker,
        diabetes=inputs.diabetes,
    )


def probability(assessment: dict[str, Any]) -> float:
    value = assessment["prediction"][0]["probabilityDecimal"]
    assert 0 <= value <= 1
    return value


def expected(score: Any) -> float:
    assert score.probability is not None, score.rationale
    return round(score.probability, 6)


def test_cardiovascular_risk_from_the_twin(client: FlaskClient) -> None:
    written = put(client, patient("p1", gender="female", birth_date=years_ago(61), race="Black or African American"))
    observations = cardiovascular_set("p1", ago(hours=2), systolic_bp=142, smoking=CURRENT_SMOKER)
    basis = transaction(client, observations)
    (ascvd,), _ = wait_for(client, "p1", "pooled-cohort-ascvd")
    (chd,), _ = wait_for(client, "p1", "atp3-hard-chd")

    inputs = pce(61, sex="female", race="african_american", systolic_bp=142, smoker=True)
    assert probability(ascvd) == pytest.approx(expected(pooled_cohort.pooled_cohort(inputs)), abs=1e-9)
    assert probability(chd) == pytest.approx(expected(atp3.atp3(atp(inputs))), abs=1e-9)
    assert ascvd["code"]["coding"][0]["system"] == "http://loinc.org"
    assert ascvd["code"]["coding"][0]["code"] == "79423-0"
    patient_version = f"Patient/p1/_history/{written['meta']['versionId']}"
    for assessment in (ascvd, chd):
        # Treatment and diabetes are not recorded either way: assumed no, said, and preliminary.
        assert assessment["status"] == "preliminary"
        notes = [note["text"] for note in assessment["note"]]
        assert any(note.startswith("No blood-pressure-lowering medicine is ordered") for note in notes)
        assert references(assessment) == sorted([patient_version, *basis])
        period = assessment["prediction"][0]["whenPeriod"]
        # The prediction is about the time of its newest input, two hours before it was made.
        assert instant(period["start"]) == max(instant(o["effectiveDateTime"]) for o in observations)
        assert instant(period["end"]) - instant(period["start"]) == TEN_YEARS
        assert score_of(assessment) == pytest.approx(100 * probability(assessment), abs=1e-3)
    assert risk_code(ascvd) in ("low", "moderate", "high")
    assert "Pooled Cohort Equation for African American women" in ascvd["prediction"][0]["rationale"]


def test_treatment_and_diabetes_from_the_case(client: FlaskClient) -> None:
    put(client, patient("p1"))
    transaction(client, cardiovascular_set("p1", ago(hours=2), systolic_bp=138))
    (untreated,), _ = wait_for(client, "p1", "pooled-cohort-ascvd")
    wait_for(client, "p1", "atp3-hard-chd")

    medication = put(client, medication_request("p1", "314076", "lisinopril 10 MG Oral Tablet", res_id="m1"))
    found, _ = wait_for(client, "p1", "pooled-cohort-ascvd", count=2)
    (treated,) = [a for a in found if a["id"] != untreated["id"]]
    assert f"MedicationRequest/m1/_history/{medication['meta']['versionId']}" in references(treated)
    assert probability(treated) == pytest.approx(
        expected(pooled_cohort.pooled_cohort(pce(55, systolic_bp=138, bp_treated=True))), abs=1e-9
    )
    assert probability(treated) > probability(untreated)
    chd, _ = wait_for(client, "p1", "atp3-hard-chd", count=2)
    assert probability(chd[-1]) == pytest.approx(
        expected(atp3.atp3(atp(pce(55, systolic_bp=138, bp_treated=True)))), abs=1e-9
    )

    put(client, condition("p1", SNOMED, TYPE_2_DIABETES, "Diabetes mellitus type 2", res_id="c1"))
    found, _ = wait_for(client, "p1", "pooled-cohort-ascvd", count=3)
    (diabetic,) = [a for a in found if a["id"] not in (untreated["id"], treated["id"])]
    assert "Condition/c1/_history/1" in references(diabetic)
    diabetic_inputs = pce(55, systolic_bp=138, bp_treated=True, diabetes=True)
    assert probability(diabetic) == pytest.approx(expected(pooled_cohort.pooled_cohort(diabetic_inputs)), abs=1e-9)
    assert probability(diabetic) > probability(treated)
    # ATP III does not apply with diabetes (a CHD risk equivalent): no new hard-CHD assessment.
    assert len(assessments(client, "p1", "atp3-hard-chd")) == 2


def test_a_stopped_medication_is_no_treatment(app: Flask, client: FlaskClient) -> None:
    put(client, patient("p1"))
    put(client, medication_request("p1", "314076", "lisinopril 10 MG Oral Tablet", status="stopped", res_id="m1"))
    transaction(client, cardiovascular_set("p1", ago(hours=2)))
    (assessment,), _ = wait_for(client, "p1", "pooled-cohort-ascvd")
    assert probability(assessment) == pytest.approx(expected(pooled_cohort.pooled_cohort(pce(55))), abs=1e-9)
    assert not any(reference.startswith("MedicationRequest/") for reference in references(assessment))


@pytest.mark.parametrize(("age", "models"), [(35, {"atp3-hard-chd"}), (80, set())])
def test_ages_outside_the_equations(app: Flask, client: FlaskClient, age: int, models: set[str]) -> None:
    """The Pooled Cohort Equations are for 40-79, ATP III for 20-79."""
    put(client, patient("p1", birth_date=years_ago(age)))
    transaction(client, cardiovascular_set("p1", ago(hours=2)))
    settle(app)
    assert set(by_model(client, "p1")) == models


def test_a_stale_input_makes_the_assessment_preliminary(client: FlaskClient) -> None:
    """Cholesterol goes stale after a year (mappings/laboratory.yaml)."""
    put(client, patient("p1"))
    observations = cardiovascular_set("p1", ago(hours=2))
    observations[0]["effectiveDateTime"] = ago(days=800)  # total cholesterol
    transaction(client, observations)
    (assessment,), _ = wait_for(client, "p1", "pooled-cohort-ascvd")
    assert assessment["status"] == "preliminary"
    notes = [note["text"] for note in assessment.get("note", [])]
    assert f"Measured more than 1 year before this assessment: total cholesterol ({ago(days=800)[:10]})." in notes
    assert probability(assessment) == pytest.approx(expected(pooled_cohort.pooled_cohort(pce(55))), abs=1e-9)


# --- qSOFA ----------------------------------------------------------------------------------


def septic_patient(client: FlaskClient, patient_id: str, *, gcs_at: str | None = None) -> list[str]:
    """``patient_id`` with pneumonia, and respiration rate 30 and systolic BP 90 ten minutes ago
    (two qSOFA points); with a GCS of 13 at ``gcs_at`` if given. The set's versioned references."""
    put(client, patient(patient_id))
    effective = ago(minutes=10)
    found = [
        infection(patient_id),
        quantity(patient_id, "9279-1", 30, "/min", effective),
        quantity(patient_id, "8480-6", 90, "mm[Hg]", effective),
    ]
    if gcs_at is not None:
        found.append(quantity(patient_id, "9269-2", 13, "{score}", gcs_at))
    return transaction(client, found)


def test_qsofa_positive_without_mentation_is_preliminary(client: FlaskClient) -> None:
    basis = septic_patient(client, "p1")
    (assessment,), _ = wait_for(client, "p1", "qsofa")
    assert assessment["status"] == "preliminary"
    assert (score_of(assessment), risk_code(assessment)) == (2, "high")
    assert references(assessment) == sorted(["Patient/p1/_history/1", *basis])
    assert "positive; mentation not observed but cannot change the result" in assessment["prediction"][0]["rationale"]
    assert "No level of consciousness (ACVPU or GCS) is recorded with the set." in [
        note["text"] for note in assessment["note"]
    ]
    assert assessment["mitigation"].startswith("Investigate further for organ dysfunction")


def test_qsofa_reads_mentation_from_a_glasgow_coma_scale_total(client: FlaskClient) -> None:
    """GCS below 15 is altered mentation (Seymour et al. 2016): with RR and SBP the result is
    complete, so final; a GCS outside the set's window is not read."""
    basis = septic_patient(client, "p1", gcs_at=ago(minutes=10))
    (assessment,), _ = wait_for(client, "p1", "qsofa")
    assert assessment["status"] == "final"
    assert (score_of(assessment), risk_code(assessment)) == (3, "high")
    assert references(assessment) == sorted(["Patient/p1/_history/1", *basis])
    assert "GCS 13, altered mentation: 1 point" in assessment["prediction"][0]["rationale"]

    septic_patient(client, "p2", gcs_at=ago(hours=5))
    (assessment,), _ = wait_for(client, "p2", "qsofa")
    assert assessment["status"] == "preliminary"
    notes = [note["text"] for note in assessment["note"]]
    assert "No level of consciousness (ACVPU or GCS) is recorded with the set." in notes


def test_news2_scale_2_only_with_a_prescribed_target(client: FlaskClient) -> None:
    """A hypercapnic respiratory failure on record alone does not switch SpO2 to Scale 2 (the RCP
    reserves it for a prescribed target of 88-92 %): Scale 1 with a note suggesting a review. The
    target, as a Goal, does."""
    put(client, patient("p1"))
    put(client, condition("p1", ICD10CM, "J96.02", "Acute respiratory failure with hypercapnia", res_id="c1"))
    transaction(client, news2_set("p1", MEDIUM._replace(spo2=90), ago(minutes=5), ids="s1"))
    (first,), _ = wait_for(client, "p1", "news2")
    assert "SpO2 90 % (scale 1): 3 points" in first["prediction"][0]["rationale"]
    assert score_of(first) == 8
    assert any("A clinician should review whether Scale 2 applies" in note["text"] for note in first["note"])

    put(client, spo2_target("p1", res_id="g1"))
    found, _ = wait_for(client, "p1", "news2", count=2)
    (second,) = [assessment for assessment in found if assessment["id"] != first["id"]]
    # Scale 2 on air: SpO2 90 is in 88-92 → 0.
    assert "SpO2 90 % (scale 2): 0 points" in second["prediction"][0]["rationale"]
    assert score_of(second) == 5
    assert "Goal/g1/_history/1" in references(second)


# --- data-driven cases (fixtures/doctor) ---------------------------------------------------


def moved_to_now(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The case's Observations moved in time together, the newest to ten minutes ago."""
    times = [instant(r["effectiveDateTime"]) for r in resources if "effectiveDateTime" in r]
    shift = datetime.now(UTC) - timedelta(minutes=10) - max(times)
    moved = []
    for resource in resources:
        if "effectiveDateTime" in resource:
            when = instant(resource["effectiveDateTime"]) + shift
            resource = {**resource, "effectiveDateTime": when.isoformat(timespec="seconds").replace("+00:00", "Z")}
        moved.append(resource)
    return moved


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.json")), ids=lambda path: path.stem)
def test_fixture_case(app: Flask, client: FlaskClient, path: Path) -> None:
    case = json.loads(path.read_text(encoding="utf-8"))
    resources = moved_to_now(case["resources"])
    (who,) = [resource for resource in resources if resource["resourceType"] == "Patient"]
    transaction(client, resources)
    settle(app)
    assert set(case["expect"]) == set(MODELS)
    for model, expect in case["expect"].items():
        found = assessments(client, who["id"], model)
        if expect is None:
            assert found == [], model
            continue
        (assessment,) = found
        assert assessment["status"] == expect["status"], model
        assert references(assessment) == sorted(f"{reference}/_history/1" for reference in expect["basis"]), model
        if "score" in expect:
            assert (score_of(assessment), risk_code(assessment)) == (expect["score"], expect["risk"]), model
        if "note" in expect:
            assert expect["note"] in [note["text"] for note in assessment["note"]], model
        if "code" in expect:
            (coding,) = assessment["code"]["coding"]
            assert f"{coding['system']}|{coding['code']}" == expect["code"]
        if "inputs" in expect:
            inputs = pooled_cohort.PooledCohortInputs(age=age_on(who["birthDate"]), **expect["inputs"])
            score = pooled_cohort.pooled_cohort(inputs)
            assert probability(assessment) == pytest.approx(expected(score), abs=1e-6), model


# --- the queue ------------------------------------------------------------------------------


@pytest.fixture
def paused(make_app: Callable[..., Flask]) -> Flask:
    """An app that queues patients but does not assess them: its worker is stopped."""
    app = make_app()
    services_of(app).doctor_worker.stop()
    return app


def repository_of(app: Flask) -> Any:
    return services_of(app).doctor.repository


def queued(app: Flask) -> list[tuple[str, str | None]]:
    """The queue's rows as (patient, claimed by), oldest first."""
    q = doctor_queue.c
    with services_of(app).repository.engine.connect() as connection:
        rows = connection.execute(sqlalchemy.select(q.patient_id, q.claimed_by).order_by(q.seq)).all()
    return [(patient_id, owner) for patient_id, owner in rows]


def enqueue(app: Flask, *patients: str) -> None:
    with repository_of(app).transaction(write=True) as tx:
        queue.enqueue(tx, set(patients))


def test_doctor_off_queues_nothing_and_runs_no_worker(make_app: Callable[..., Flask]) -> None:
    app = make_app(doctor=False)
    client = app.test_client()
    assert services_of(app).doctor_worker is None
    assert services_of(app).doctor_queue is None
    put(client, patient("p1"))
    transaction(client, news2_set("p1", MEDIUM, ago(minutes=5)))
    assert queued(app) == []
    assert assessments(client, "p1") == []
    # $predict still works: the models run on request.
    response = client.post("/fhir/Patient/p1/$predict?model=news2")
    assert response.status_code == 200
    assert len(assessments(client, "p1", "news2")) == 1


def test_a_write_queues_its_patient_once_per_transaction(paused: Flask) -> None:
    client = paused.test_client()
    put(client, patient("p1"))
    put(client, patient("p2"))
    # New Patients with nothing recorded: nothing for a model to read yet.
    assert queued(paused) == []
    # Seven Observations of p1 and one of p2 in one transaction: one row each.
    transaction(
        client, [*news2_set("p1", MEDIUM, ago(minutes=5)), quantity("p2", "8867-4", 80, "/min", ago(minutes=5))]
    )
    assert queued(paused) == [("p1", None), ("p2", None)]
    # A change to a Patient whose twin holds facts queues it again (its age may change a score).
    put(client, patient("p1", gender="female"))
    assert queued(paused) == [("p1", None), ("p2", None), ("p1", None)]
    assert queue.pending(repository_of(paused)) == 2
    assert assessments(client, "p1") == []


def test_a_new_patient_whose_facts_came_first_is_queued(make_app: Callable[..., Flask]) -> None:
    """Observations that arrived before their Patient (references checked later, as a load does)
    are in the twin: the Patient's creation gives the models its age, so it is queued."""
    app = make_app(referential_integrity=False)
    services_of(app).doctor_worker.stop()
    client = app.test_client()
    transaction(client, news2_set("p1", MEDIUM, ago(minutes=5)))
    enqueued = queued(app)
    with services_of(app).repository.transaction(write=True) as tx:
        tx.connection.execute(sqlalchemy.delete(doctor_queue))
    assert enqueued == [("p1", None)]
    put(client, patient("p1"))
    assert queued(app) == [("p1", None)]


def test_a_failed_transaction_queues_nothing(paused: Flask) -> None:
    client = paused.test_client()
    put(client, patient("p1"))
    before = queued(paused)
    bad = quantity("p1", "8867-4", 80, "/min", ago(minutes=5))
    bad["status"] = "bogus"
    entries = [
        {"resource": resource, "request": {"method": "POST", "url": "Observation"}}
        for resource in (quantity("p1", "9279-1", 18, "/min", ago(minutes=5)), bad)
    ]
    response = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response.status_code == 400, response.get_json()
    assert queued(paused) == before
    assert client.get("/fhir/Observation?_summary=count").get_json()["total"] == 0


def test_a_queued_patient_is_assessed_by_the_next_process(paused: Flask, make_app: Callable[..., Flask]) -> None:
    """A change committed while no worker runs (the process died before assessing it) is still
    assessed when a process next runs on the database."""
    client = paused.test_client()
    put(client, patient("p1"))
    transaction(client, news2_set("p1", MEDIUM, ago(minutes=5)))
    assert assessments(client, "p1") == []

    later = make_app()
    (assessment,), _ = wait_for(later.test_client(), "p1", "news2")
    assert score_of(assessment) == 6
    settle(later)
    assert queued(paused) == []


def test_one_pass_assesses_every_claimed_patient_and_empties_the_queue(paused: Flask) -> None:
    """Patients queued while no worker ran are assessed together (one batch) and leave the queue."""
    client = paused.test_client()
    for pid in ("p1", "p2", "p3"):
        put(client, patient(pid))
        transaction(client, news2_set(pid, MEDIUM, ago(minutes=5)))
    doctor = services_of(paused).doctor
    doctor.work("w")
    assert queued(paused) == []
    for pid in ("p1", "p2", "p3"):
        (assessment,) = assessments(client, pid, "news2")
        assert score_of(assessment) == 6


def test_a_patient_whose_assessment_fails_holds_back_no_other(paused: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    client = paused.test_client()
    for pid in ("p1", "p2"):
        put(client, patient(pid))
        transaction(client, news2_set(pid, MEDIUM, ago(minutes=5)))
    doctor = services_of(paused).doctor
    runs = doctor.runs

    def failing(patient_id: str, *args: Any, **kwargs: Any) -> Any:
        if patient_id == "p1":
            raise RuntimeError("a model failed")
        return runs(patient_id, *args, **kwargs)

    monkeypatch.setattr(doctor, "runs", failing)
    doctor.work("w")
    assert assessments(client, "p1") == []
    (assessment,) = assessments(client, "p2", "news2")
    assert score_of(assessment) == 6
    # Both leave the queue: a failed patient is assessed again on its next change.
    assert queued(paused) == []


def test_a_patient_whose_record_fails_holds_back_no_other(paused: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch's transaction fails on one patient's record: each is then recorded on its own."""
    client = paused.test_client()
    for pid in ("p1", "p2"):
        put(client, patient(pid))
        transaction(client, news2_set(pid, MEDIUM, ago(minutes=5)))
    doctor = services_of(paused).doctor
    record = doctor.record

    def failing(runs: dict[str, Any], only_changed: bool, **kwargs: Any) -> Any:
        if "p1" in runs:
            raise RuntimeError("the database refused p1's assessment")
        return record(runs, only_changed, **kwargs)

    monkeypatch.setattr(doctor, "record", failing)
    assert doctor.work("w") == 1
    assert assessments(client, "p1") == []
    (assessment,) = assessments(client, "p2", "news2")
    assert score_of(assessment) == 6
    assert queued(paused) == []


def test_two_owners_never_claim_the_same_patient(paused: Flask) -> None:
    enqueue(paused, "p1", "p2", "p3")
    repository = repository_of(paused)
    assert sorted(queue.claim(repository, "a")) == ["p1", "p2", "p3"]
    assert queue.claim(repository, "b") == []
    assert {owner for _, owner in queued(paused)} == {"a"}


def test_a_claim_older_than_the_stale_limit_is_taken_over(paused: Flask) -> None:
    """A worker that stopped mid-assessment on another machine leaves its claim: after
    ``STALE_CLAIM`` another owner takes the patient over, before it not."""
    repository = repository_of(paused)
    enqueue(paused, "p1", "p2")
    assert sorted(queue.claim(repository, "a")) == ["p1", "p2"]
    almost = datetime.now(UTC).replace(tzinfo=None) - queue.STALE_CLAIM + timedelta(seconds=30)
    stale = datetime.now(UTC).replace(tzinfo=None) - queue.STALE_CLAIM - timedelta(seconds=1)
    with repository.engine.connect().execution_options(fhir_write=True) as connection, connection.begin():
        for patient, claimed_at in (("p1", stale), ("p2", almost)):
            row = doctor_queue.c.patient_id == patient
            connection.execute(sqlalchemy.update(doctor_queue).where(row).values(claimed_at=claimed_at))
    assert queue.claim(repository, "b") == ["p1"]
    assert sorted(queued(paused)) == [("p1", "b"), ("p2", "a")]


def test_a_claimed_patient_queued_again_is_not_claimed_by_another_owner(paused: Flask) -> None:
    """While owner a assesses p1, a new write queues p1 again: owner b must not assess p1 at the
    same time (the queue's contract, ``ml/queue.py``: never a patient twice at once); the new row
    waits until a is done."""
    repository = repository_of(paused)
    enqueue(paused, "p1")
    assert queue.claim(repository, "a") == ["p1"]
    enqueue(paused, "p1")
    assert queue.claim(repository, "b") == []
    queue.done(repository, "a", "p1")
    assert queue.claim(repository, "b") == ["p1"]


def test_concurrent_claims_share_the_work(paused: Flask) -> None:
    patients = [f"p{n:02d}" for n in range(40)]
    enqueue(paused, *patients)
    repository = repository_of(paused)
    claimed: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    errors: list[BaseException] = []

    def drain(owner: str) -> None:
        try:
            while batch := queue.claim(repository, owner, limit=3):
                claimed[owner] += batch
        except BaseException as error:  # a thread's exception must fail the test
            errors.append(error)

    threads = [threading.Thread(target=drain, args=(owner,)) for owner in claimed]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    every = [patient_id for batch in claimed.values() for patient_id in batch]
    assert sorted(every) == patients  # each patient claimed exactly once


def test_done_keeps_rows_queued_after_the_claim(paused: Flask) -> None:
    repository = repository_of(paused)
    enqueue(paused, "p1", "p2")
    assert sorted(queue.claim(repository, "a")) == ["p1", "p2"]
    enqueue(paused, "p1")  # a write while a assesses p1
    queue.done(repository, "a", "p1")
    queue.done(repository, "a", "p2")
    assert queued(paused) == [("p1", None)]
    assert queue.pending(repository) == 1
    assert queue.claim(repository, "b") == ["p1"]


def test_a_patient_queued_twice_is_claimed_whole(paused: Flask) -> None:
    """Every row of a claimed patient goes to the claim (on SQLite too, which updates row by row),
    so one pass assesses it once and empties the queue, instead of a second pass for the rest."""
    repository = repository_of(paused)
    enqueue(paused, "p1")
    enqueue(paused, "p1")
    assert queue.claim(repository, "a") == ["p1"]
    assert queued(paused) == [("p1", "a"), ("p1", "a")]
    queue.done(repository, "a", "p1")
    assert queue.pending(repository) == 0


def test_done_by_another_owner_removes_nothing(paused: Flask) -> None:
    repository = repository_of(paused)
    enqueue(paused, "p1")
    assert queue.claim(repository, "a") == ["p1"]
    queue.done(repository, "b", "p1")
    assert queued(paused) == [("p1", "a")]


def test_a_released_patient_is_claimed_again(paused: Flask) -> None:
    repository = repository_of(paused)
    enqueue(paused, "p1")
    assert queue.claim(repository, "a") == ["p1"]
    queue.release(repository, "a", "p1")
    assert queue.claim(repository, "b") == ["p1"]


def test_a_stale_claim_is_taken_over(paused: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    repository = repository_of(paused)
    enqueue(paused, "p1")
    assert queue.claim(repository, "a") == ["p1"]
    assert queue.claim(repository, "b") == []
    # Owner a died mid-assessment; once its claim is older than STALE_CLAIM, b takes p1 over.
    later = datetime.now(UTC) + queue.STALE_CLAIM + timedelta(seconds=5)
    monkeypatch.setattr(queue, "now", lambda: later)
    assert queue.claim(repository, "b") == ["p1"]
    queue.done(repository, "b", "p1")
    assert queued(paused) == []


def test_unknown_and_deleted_patients_leave_the_queue_unassessed(app: Flask, client: FlaskClient) -> None:
    put(client, patient("p1"))
    settle(app)
    assert client.delete("/fhir/Patient/p1").status_code in (200, 204)  # the delete queues p1 too
    enqueue(app, "nobody")
    settle(app)
    assert queued(app) == []
    assert client.get("/fhir/RiskAssessment?_summary=count").get_json()["total"] == 0
    # The worker is still alive for the next patient.
    put(client, patient("p2"))
    transaction(client, news2_set("p2", MEDIUM, ago(minutes=5)))
    wait_for(client, "p2", "news2")


def open_connections(database_url: str) -> int:
    """Connections to the test database that stay open: as PostgreSQL lists them, or as file
    handles on the SQLite file (Linux ``/proc``)."""
    url = sqlalchemy.engine.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        fds = "/proc/self/fd"
        if not os.path.isdir(fds):
            pytest.skip("needs /proc to count open SQLite files")
        found = 0
        for fd in os.listdir(fds):
            try:
                found += os.readlink(f"{fds}/{fd}") == url.database
            except OSError:
                continue
        return found
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as connection:
            query = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return int(connection.exec_driver_sql(query).scalar_one())
    finally:
        engine.dispose()


def test_disposing_the_engine_closes_what_the_worker_used(
    make_app: Callable[..., Flask], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disposing the app's engine (gunicorn's post_fork, shutting down, tests) pauses the worker;
    a connection the worker was using then, or took while stopping, must be closed too, not left
    open until garbage collection."""
    app = make_app()
    client = app.test_client()
    inside, release = threading.Event(), threading.Event()
    original = queue.last_fingerprints

    def held(tx: Any, patient_id: str) -> dict[str, str]:
        inside.set()
        release.wait(10)
        return original(tx, patient_id)

    monkeypatch.setattr(queue, "last_fingerprints", held)
    put(client, patient("p1"))
    transaction(client, [quantity("p1", "8867-4", 80, "/min", ago(minutes=5))])
    assert inside.wait(5), "the worker did not start assessing p1"
    engine = services_of(app).repository.engine
    pool = engine.pool
    timer = threading.Timer(0.3, release.set)
    timer.start()
    try:
        engine.dispose()
        timer.join()
        assert not services_of(app).doctor_worker.running
        assert open_connections(database_url) == 0
    finally:
        # Close what a failure leaves open now, not in a later test's garbage collection.
        pool.dispose()
        engine.dispose()


def test_two_processes_assess_a_write_exactly_once(make_app: Callable[..., Flask]) -> None:
    first, second = make_app(), make_app()
    client = first.test_client()
    second.test_client().get("/fhir/metadata")  # both workers are running
    assert services_of(first).doctor_worker.running
    assert services_of(second).doctor_worker.running
    patients = [f"p{n}" for n in range(8)]
    for pid in patients:
        put(client, patient(pid))
    transaction(
        client,
        [
            o
            for pid in patients
            for o in [infection(pid), *news2_set(pid, MEDIUM, ago(minutes=5)), *cardiovascular_set(pid, ago(hours=2))]
        ],
    )
    for pid in patients:
        wait_for(client, pid, "news2")
    settle(first)
    settle(second)
    for pid in patients:
        assert by_model(client, pid) == {model: 1 for model in MODELS}, pid
    assert client.get("/fhir/Provenance?_summary=count").get_json()["total"] == len(patients) * len(MODELS)
