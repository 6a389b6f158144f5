"""``Patient/{id}/$whatif``: the predictions for hypothetical readings of the twin's Body fields
beside the real ones; nothing is stored, simulated RiskAssessments are preliminary, tagged, and
carry their hypothetical readings as contained Observations; a bad reading is a 400 that names the
parameter."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.ml.scores import news2, pooled_cohort
from tests.factories import PCE_WHITE_MALE, outcome
from tests.ml.doctor_data import (
    MEDIUM,
    MODELS,
    NEWS2_MEDIUM,
    SCORE_EXTENSION,
    ago,
    assessed_p1,
    cardiovascular_set,
    news2_set,
    patient,
    put,
    settle,
    transaction,
)

SIMULATED_TAG = {"system": "urn:fhir-twin:CodeSystem/assessment", "code": "simulated", "display": "Simulated (what-if)"}
# What p1's twin gives the Pooled Cohort Equations: the newest systolic BP of the day is the NEWS2
# set's; treatment and diabetes are not recorded (assumed no, and said).
P1_PCE = replace(PCE_WHITE_MALE, systolic_bp=105, bp_treated=None, diabetes=None)


@pytest.fixture
def p1(app: Flask, client: FlaskClient) -> str:
    return assessed_p1(app, client)


def stored_totals(client: FlaskClient) -> dict[str, int]:
    """What the database holds: RiskAssessments, Provenances, Devices, and every version."""
    found = {
        name: client.get(f"/fhir/{name}?_summary=count").get_json()["total"]
        for name in ("RiskAssessment", "Provenance", "Device")
    }
    found["_history"] = client.get("/fhir/_history").get_json()["total"]
    return found


def whatif(client: FlaskClient, query: str = "", body: Any = None) -> dict[str, dict[str, Any]]:
    """The answer by model: {"current": resource or text, "simulated": resource or text}."""
    if body is None:
        response = client.get(f"/fhir/Patient/p1/$whatif?{query}")
    else:
        response = client.post("/fhir/Patient/p1/$whatif", json=body)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Content-Type"] == "application/fhir+json; charset=utf-8"
    parameters = response.get_json()
    assert parameters["resourceType"] == "Parameters"
    found = {}
    for prediction in parameters["parameter"]:
        assert prediction["name"] == "prediction"
        named = {
            part["name"]: part.get("resource", part.get("valueCode", part.get("valueString")))
            for part in prediction["part"]
        }
        found[named.pop("model")] = named
    return found


def probability(resource: dict[str, Any]) -> float:
    return resource["prediction"][0]["probabilityDecimal"]


def test_a_higher_blood_pressure(client: FlaskClient, p1: str) -> None:
    """Named as the twin names it; the hypothetical reading travels as a contained Observation the
    basis points at, never as a reference to the real reading whose value it replaced."""
    before = stored_totals(client)
    found = whatif(client, "systolic_bp=160&model=pooled-cohort-ascvd")
    assert set(found) == {"pooled-cohort-ascvd"}
    current, simulated = found["pooled-cohort-ascvd"]["current"], found["pooled-cohort-ascvd"]["simulated"]

    assert "id" not in current and "id" not in simulated
    assert current["status"] == "preliminary"  # treatment and diabetes are assumed
    assert "tag" not in current["meta"] and "contained" not in current
    assert probability(current) == pytest.approx(round(pooled_cohort.pooled_cohort(P1_PCE).probability, 6), abs=1e-9)

    assert simulated["status"] == "preliminary"
    assert simulated["meta"]["tag"] == [SIMULATED_TAG]
    expected = pooled_cohort.pooled_cohort(replace(P1_PCE, systolic_bp=160)).probability
    assert probability(simulated) == pytest.approx(round(expected, 6), abs=1e-9)
    assert probability(simulated) > probability(current)
    assert simulated["note"][0]["text"].startswith("Simulated what-if assessment")
    (observation,) = simulated["contained"]
    assert observation["id"] == "whatif-systolic_bp"
    assert observation["code"]["coding"] == [{"system": "http://loinc.org", "code": "8480-6"}]
    assert observation["valueQuantity"]["value"] == 160 and observation["status"] == "preliminary"
    current_basis = [entry["reference"] for entry in current["basis"]]
    simulated_basis = [entry["reference"] for entry in simulated["basis"]]
    (replaced,) = [reference for reference in current_basis if reference not in simulated_basis]
    assert client.get(f"/fhir/{replaced}").get_json()["code"]["coding"][0]["code"] == "8480-6"
    assert [reference for reference in simulated_basis if reference not in current_basis] == ["#whatif-systolic_bp"]
    assert stored_totals(client) == before


def test_several_readings_by_post(client: FlaskClient, p1: str) -> None:
    before = stored_totals(client)
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "model", "valueCode": "pooled-cohort-ascvd"},
            {"name": "systolic_bp", "valueDecimal": 150},
            {"name": "smoking_status", "valueCode": "current"},
        ],
    }
    simulated = whatif(client, body=body)["pooled-cohort-ascvd"]["simulated"]
    expected = pooled_cohort.pooled_cohort(replace(P1_PCE, systolic_bp=150, smoker=True)).probability
    assert probability(simulated) == pytest.approx(round(expected, 6), abs=1e-9)
    assert {observation["id"] for observation in simulated["contained"]} == {
        "whatif-systolic_bp",
        "whatif-smoking_status",
    }
    assert stored_totals(client) == before


def test_stopping_smoking(client: FlaskClient, app: Flask) -> None:
    put(client, patient("p1"))
    transaction(client, cardiovascular_set("p1", ago(hours=2), smoking="449868002"))  # current smoker
    settle(app)
    found = whatif(client, "smoking_status=never&model=pooled-cohort-ascvd&model=atp3-hard-chd")
    assert set(found) == {"pooled-cohort-ascvd", "atp3-hard-chd"}
    for model, answer in found.items():
        assert probability(answer["simulated"]) < probability(answer["current"]), model
        assert answer["simulated"]["meta"]["tag"] == [SIMULATED_TAG]
        coding = answer["simulated"]["contained"][0]["valueCodeableConcept"]["coding"]
        assert coding == [{"system": "http://snomed.info/sct", "code": "266919005"}]


def test_without_model_every_model_is_answered(client: FlaskClient, p1: str) -> None:
    before = stored_totals(client)
    found = whatif(client, "respiratory_rate=25")
    assert set(found) == set(MODELS)
    current, simulated = found["news2"]["current"], found["news2"]["simulated"]
    score = news2.news2(replace(NEWS2_MEDIUM, respiratory_rate=25))
    assert [e["valueDecimal"] for e in current["prediction"][0]["extension"] if e["url"] == SCORE_EXTENSION] == [6]
    assert [e["valueDecimal"] for e in simulated["prediction"][0]["extension"] if e["url"] == SCORE_EXTENSION] == [
        score.value
    ]
    assert simulated["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "high"
    # A model that does not read the respiratory rate answers the same, still as a simulation.
    pce = found["pooled-cohort-ascvd"]
    assert probability(pce["simulated"]) == probability(pce["current"])
    assert pce["simulated"]["status"] == "preliminary"
    assert stored_totals(client) == before


def test_a_simulation_can_complete_a_partial_set(client: FlaskClient, app: Flask) -> None:
    put(client, patient("p1"))
    observations = [o for o in news2_set("p1", MEDIUM, ago(minutes=10)) if o["code"]["coding"][0]["code"] != "8310-5"]
    transaction(client, observations)
    settle(app)
    answer = whatif(client, "body_temperature=37.0&model=news2")["news2"]
    assert answer["current"]["prediction"][0]["rationale"].startswith("NEWS2 at least 5 (at least medium)")
    assert answer["simulated"]["status"] == "preliminary"
    assert answer["simulated"]["prediction"][0]["rationale"].startswith("NEWS2 5 (medium)")


def test_an_empty_twin_answers_in_words(client: FlaskClient) -> None:
    put(client, patient("p1"))
    answer = whatif(client, "hdl_cholesterol=60&model=pooled-cohort-ascvd")["pooled-cohort-ascvd"]
    prefix = "insufficient-data: pooled-cohort-ascvd: insufficient data, missing "
    assert answer["current"] == prefix + "total_cholesterol, hdl, systolic_bp"
    assert answer["simulated"] == prefix + "total_cholesterol, systolic_bp"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "parameter", "says"),
    [
        ("systolic_bp=abc", "systolic_bp", "must be a number in mm[Hg]"),
        ("smoking_status=maybe", "smoking_status", "must be one of current, former, never, unknown"),
        ("systolic_bp=-10", "systolic_bp", "outside what the twin accepts as plausible"),
        ("oxygen_saturation=150&model=news2", "oxygen_saturation", "outside what the twin accepts as plausible"),
        ("gcs=20&model=qsofa", "gcs", "outside what the twin accepts as plausible"),
        ("hdl_cholesterol=0", "hdl_cholesterol", "atp3-hard-chd: hdl must be a positive, finite number"),
        ("consciousness=asleep&model=news2", "consciousness", "must be one of alert, confusion"),
        ("sex=unknown&model=pooled-cohort-ascvd", "sex", "is not a field of the twin's Body"),
        ("smoker=false", "smoker", "is not a field of the twin's Body"),
        ("systolic_bp=120&systolic_bp=130", "systolic_bp", "may be given only once"),
        ("body_weight=80&model=news2", "body_weight", "No chosen model reads 'body_weight'"),
    ],
)
def test_a_bad_reading_is_a_400_naming_the_parameter(
    client: FlaskClient, p1: str, query: str, parameter: str, says: str
) -> None:
    before = stored_totals(client)
    issue = outcome(client.get(f"/fhir/Patient/p1/$whatif?{query}"), 400)
    assert issue["expression"] == [parameter]
    assert says in issue["diagnostics"]
    assert stored_totals(client) == before


def test_no_hypothetical_input_is_a_400(client: FlaskClient, p1: str) -> None:
    issue = outcome(client.get("/fhir/Patient/p1/$whatif?model=news2"), 400)
    assert "at least one hypothetical reading" in issue["diagnostics"]
    outcome(client.post("/fhir/Patient/p1/$whatif", json={"resourceType": "Parameters"}), 400)


def test_an_unknown_model_is_a_400(client: FlaskClient, p1: str) -> None:
    issue = outcome(client.get("/fhir/Patient/p1/$whatif?model=framingham&systolic_bp=120"), 400)
    assert issue["expression"] == ["model"]
    assert "framingham" in issue["diagnostics"]


def test_unknown_and_deleted_patients(client: FlaskClient) -> None:
    outcome(client.get("/fhir/Patient/nobody/$whatif?systolic_bp=120"), 404, "not-found")
    put(client, patient("gone"))
    assert client.delete("/fhir/Patient/gone").status_code in (200, 204)
    outcome(client.get("/fhir/Patient/gone/$whatif?systolic_bp=120"), 410, "deleted")


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("systolic_bp=nan", "systolic_bp must be a finite number, not 'nan'"),
        ("systolic_bp=inf", "systolic_bp must be a finite number, not 'inf'"),
        ("systolic_bp=120%20mm[Hg]", "systolic_bp must be a number in mm[Hg], not '120 mm[Hg]'"),
        ("systolic_bp=", "systolic_bp must be a number in mm[Hg], not ''"),
        ("smoking_status=Current", "smoking_status must be one of current, former, never, unknown, not 'Current'"),
    ],
)
def test_a_value_outside_the_fields_definition_is_a_400(client: FlaskClient, p1: str, query: str, says: str) -> None:
    """Each value is read by its field's definition only: a number in the canonical unit (no unit
    written with it, nothing infinite) or one of the coded field's answers, spelt as the twin spells it."""
    issue = outcome(client.get(f"/fhir/Patient/p1/$whatif?{query}"), 400)
    assert issue["expression"] == [query.split("=")[0]]
    assert issue["diagnostics"] == says


def test_a_quantity_posted_with_its_unit_is_a_400_naming_the_parameter(client: FlaskClient, p1: str) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [{"name": "systolic_bp", "valueQuantity": {"value": 120, "unit": "mm[Hg]"}}],
    }
    issue = outcome(client.post("/fhir/Patient/p1/$whatif", json=body), 400)
    assert issue["expression"] == ["systolic_bp"]
    assert issue["diagnostics"].startswith("systolic_bp must be a number in mm[Hg], not ")


def test_a_value_a_score_cannot_take_names_its_own_parameter(client: FlaskClient, p1: str) -> None:
    """The input a score refuses (ATP III's logarithm of HDL 0) names the Body field that fed it, not
    the first hypothetical value given."""
    issue = outcome(client.get("/fhir/Patient/p1/$whatif?systolic_bp=120&hdl_cholesterol=0"), 400)
    assert issue["expression"] == ["hdl_cholesterol"]
    assert issue["diagnostics"] == "atp3-hard-chd: hdl must be a positive, finite number, not 0.0"
