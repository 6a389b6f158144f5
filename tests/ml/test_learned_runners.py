"""The learned models served on patients: trained on the server's own twins, registered, then run by
``$predict``, ``$whatif`` and on every live write, each prediction a RiskAssessment that names the
model version (method, performer Device) and exactly the readings it used."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.ml import dataset
from fhir_twin.ml.cohort import cohort_dataset
from fhir_twin.ml.learned import incidence
from tests.factories import outcome
from tests.ml.doctor_data import (
    MODEL_SYSTEM,
    NEVER_SMOKED,
    SNOMED,
    TYPE_2_DIABETES,
    ago,
    assessments,
    condition,
    patient,
    put,
    quantity,
    search,
    settle,
    transaction,
    wait_for,
)
from tests.ml.learned_data import (
    FORECAST_EXTENSION,
    PASSING,
    diabetes_inputs,
    forecast_result,
    heart_rates,
    incidence_result,
    instant,
    load_cohort,
    parts,
    predict,
    registry,
    serve,
    whatif,
)

FIVE_YEARS = timedelta(days=1826)


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """An app without the live worker: only ``$predict`` writes RiskAssessments."""
    return make_app(doctor=False)


def new_adult(client: FlaskClient, patient_id: str, **inputs: Any) -> list[str]:
    """A 55-year-old man without diabetes and everything incident-diabetes reads, measured 10 minutes
    ago, plus a total cholesterol it does not read; the version references of what was stored."""
    put(client, patient(patient_id))
    unread = quantity(patient_id, "2093-3", 213, "mg/dL", ago(minutes=10), category="laboratory")
    return transaction(client, [*diabetes_inputs(patient_id, ago(minutes=10), **inputs), unread])


def test_incident_diabetes_trained_on_the_servers_twins_predicts_for_a_new_patient(
    app: Flask, client: FlaskClient
) -> None:
    load_cohort(client, 1, PASSING)  # a version trained on fewer would fail its gates
    models = registry(app)
    data = dataset.from_repository(models.repository, "this server")
    assert data.synthetic, "every loaded patient is labelled HTEST"
    assert data.digest() == cohort_dataset(1, PASSING).digest()
    result = serve(app, incidence.train(data))
    assert result.model.version == "1.0.0"
    assert result.report["data"]["synthetic"] is True

    stored = new_adult(client, "adult")
    found = predict(client, "adult", "incident-diabetes")
    assert found["model"] == ["incident-diabetes"] and found["result"] == ["scored"]
    (risk,) = found["riskAssessment"]
    assert risk["status"] == "final"
    assert risk["method"]["coding"] == [
        {
            "system": MODEL_SYSTEM,
            "code": "incident-diabetes",
            "version": "1.0.0",
            "display": incidence.MODEL.outcome,
        }
    ]
    assert risk["performer"]["reference"] == "Device/incident-diabetes-1.0.0"
    device = client.get("/fhir/Device/incident-diabetes-1.0.0")
    assert device.status_code == 200
    assert device.get_json()["version"] == [{"value": "1.0.0"}]
    (prediction,) = risk["prediction"]
    assert 0 < prediction["probabilityDecimal"] < 1
    period = prediction["whenPeriod"]
    assert instant(period["end"]) - instant(period["start"]) == FIVE_YEARS
    # The prediction is about the time of its newest input, not the moment it was computed.
    newest = max(instant(client.get(f"/fhir/{ref}").get_json()["effectiveDateTime"]) for ref in stored[:6])
    assert instant(period["start"]) == newest <= instant(risk["occurrenceDateTime"])
    assert (
        "Largest contributors, against a patient with the training cohort's average values: "
        in (prediction["rationale"])
    )
    named = re.findall(
        r"; ([^;(]+) \((?:raises|lowers) the estimate\)", "; " + prediction["rationale"].split(": ", 2)[-1]
    )
    assert len(named) == 3, "the three largest contributors, in words"
    assert [basis["reference"] for basis in risk["basis"]] == ["Patient/adult/_history/1", *stored[:6]]
    (kept,) = assessments(client, "adult", "incident-diabetes")
    assert kept == {**risk, "meta": kept["meta"]}


def test_a_patient_with_diabetes_is_not_applicable(app: Flask, client: FlaskClient) -> None:
    serve(app, incidence_result())
    new_adult(client, "diabetic")
    put(client, condition("diabetic", SNOMED, TYPE_2_DIABETES, "Type 2 diabetes", res_id="dm"))
    found = predict(client, "diabetic", "incident-diabetes")
    assert found["result"] == ["not-applicable"]
    assert "diabetes is already recorded" in found["message"][0]
    assert "riskAssessment" not in found
    assert assessments(client, "diabetic", "incident-diabetes") == []


def test_hr_forecast_forecasts_the_next_heart_rate_with_its_interval(app: Flask, client: FlaskClient) -> None:
    serve(app, forecast_result())
    put(client, patient("monitored"))
    stored = transaction(client, heart_rates("monitored", 30, datetime.now(UTC) - timedelta(minutes=2)))
    found = predict(client, "monitored", "hr-forecast")
    assert found["result"] == ["scored"], found["message"]
    (risk,) = found["riskAssessment"]
    assert risk["method"]["coding"][0]["code"] == "hr-forecast"
    assert risk["method"]["coding"][0]["version"] == "1.0.0"
    assert risk["performer"]["reference"] == "Device/hr-forecast-1.0.0"
    (prediction,) = risk["prediction"]
    (extension,) = prediction["extension"]
    assert extension["url"] == FORECAST_EXTENSION
    forecast = {part["url"]: part for part in extension["extension"]}
    assert set(forecast) == {"value", "interval", "level", "horizon"}
    value = forecast["value"]["valueQuantity"]
    assert (value["unit"], value["system"], value["code"]) == ("/min", "http://unitsofmeasure.org", "/min")
    interval = forecast["interval"]["valueRange"]
    assert interval["low"]["value"] <= value["value"] <= interval["high"]["value"]
    assert interval["low"]["code"] == interval["high"]["code"] == "/min"
    assert forecast["level"]["valueDecimal"] == 0.9
    horizon = forecast["horizon"]["valueQuantity"]
    assert (horizon["code"], horizon["value"]) == ("h", pytest.approx(5 / 60, abs=1e-3))
    assert 0 < prediction["probabilityDecimal"] < 1, "P(next heart rate > 100/min)"
    period = prediction["whenPeriod"]
    assert instant(period["end"]) - instant(period["start"]) == pytest.approx(
        timedelta(minutes=5), abs=timedelta(milliseconds=2)
    )
    # From the latest reading, which the forecast is about, to the next one expected.
    latest = max(instant(client.get(f"/fhir/{ref}").get_json()["effectiveDateTime"]) for ref in stored)
    assert instant(period["start"]) == latest
    assert [basis["reference"] for basis in risk["basis"]] == stored
    assert client.get("/fhir/Device/hr-forecast-1.0.0").status_code == 200


@pytest.mark.parametrize(
    ("readings", "last", "result", "says"),
    [
        (20, timedelta(minutes=2), "insufficient-data", "24 readings needed, 20 available"),
        (30, timedelta(hours=30), "not-applicable", "older than 24 h"),
    ],
    ids=["too-few", "stale"],
)
def test_hr_forecast_needs_a_recent_series_long_enough(
    app: Flask, client: FlaskClient, readings: int, last: timedelta, result: str, says: str
) -> None:
    serve(app, forecast_result())
    put(client, patient("monitored"))
    transaction(client, heart_rates("monitored", readings, datetime.now(UTC) - last))
    found = predict(client, "monitored", "hr-forecast")
    assert found["result"] == [result]
    assert says in found["message"][0]
    assert assessments(client, "monitored", "hr-forecast") == []


def test_a_live_write_is_assessed_by_the_active_learned_version(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    serve(app, incidence_result())
    stored = transaction(client, [patient("live"), *diabetes_inputs("live", ago(minutes=10))])
    (found,), seconds = wait_for(client, "live", "incident-diabetes")
    assert found["method"]["coding"][0]["version"] == "1.0.0"
    assert [basis["reference"] for basis in found["basis"]] == stored
    assert 0 < found["prediction"][0]["probabilityDecimal"] < 1
    assert seconds < 5


def test_a_write_incident_diabetes_does_not_read_makes_no_new_assessment(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    serve(app, incidence_result())
    transaction(client, [patient("live"), *diabetes_inputs("live", ago(minutes=10))])
    (first,), _ = wait_for(client, "live", "incident-diabetes")
    # A body weight: no input of incident-diabetes (nor of the scores) changes.
    transaction(client, [quantity("live", "29463-7", 80, "kg", ago(minutes=1))])
    settle(app)
    found = assessments(client, "live", "incident-diabetes")
    assert [a["id"] for a in found] == [first["id"]], (
        "README: a model writes a new RiskAssessment only when what it says or what it read changed; "
        f"got {[(a['occurrenceDateTime'], a['prediction'][0]['probabilityDecimal']) for a in found]}"
    )


def test_a_learned_model_is_not_run_before_it_is_trained(app: Flask, client: FlaskClient) -> None:
    new_adult(client, "adult")
    response = client.post("/fhir/Patient/adult/$predict")
    assert response.status_code == 200
    models = [parts(p)["model"][0] for p in response.get_json()["parameter"]]
    assert "incident-diabetes" not in models and "hr-forecast" not in models
    assert all(not d["id"].startswith(("incident-diabetes", "hr-forecast")) for d in search(client, "Device"))


def test_predicting_with_an_untrained_model_says_it_is_not_trained(app: Flask, client: FlaskClient) -> None:
    new_adult(client, "adult")
    issue = outcome(client.post("/fhir/Patient/adult/$predict?model=hr-forecast"), 400)
    assert "hr-forecast" in issue["diagnostics"]
    assert "not trained" in issue["diagnostics"], "the model is listed by /twin/models; it is untrained, not unknown"


def test_a_diagnostic_hypothetical_hba1c_is_not_a_risk_of_diabetes(app: Flask, client: FlaskClient) -> None:
    """What if HbA1c were 7 %? Then the patient has diabetes: not a 5-year risk of it."""
    serve(app, incidence_result())
    new_adult(client, "adult")
    (simulated,) = whatif(client, "adult", "model=incident-diabetes&hba1c=7")["simulated"]
    assert simulated.startswith("not-applicable: incident-diabetes: not applicable, diabetes is already present: HbA1c")


def test_whatif_answers_a_simulated_risk_and_stores_nothing(app: Flask, client: FlaskClient) -> None:
    serve(app, incidence_result())
    new_adult(client, "adult")
    found = whatif(client, "adult", "model=incident-diabetes&bmi=22&smoking_status=never")
    assert found["model"] == ["incident-diabetes"]
    (current,), (simulated,) = found["current"], found["simulated"]
    now_probability = current["prediction"][0]["probabilityDecimal"]
    then_probability = simulated["prediction"][0]["probabilityDecimal"]
    assert 0 < then_probability < now_probability < 1, "a lower BMI and not smoking lower the risk"
    assert current["status"] == "final" and "tag" not in current["meta"]
    assert simulated["status"] == "preliminary"
    assert simulated["meta"]["tag"][0]["code"] == "simulated"
    notes = [note["text"] for note in simulated["note"]]
    assert notes[0].startswith("Simulated what-if assessment")
    assert {observation["id"] for observation in simulated["contained"]} == {"whatif-bmi", "whatif-smoking_status"}
    assert {"#whatif-bmi", "#whatif-smoking_status"} <= {basis["reference"] for basis in simulated["basis"]}
    assert "id" not in simulated and "id" not in current
    assert assessments(client, "adult") == []
    assert client.get("/fhir/Device/incident-diabetes-1.0.0").status_code == 404


def test_whatif_takes_the_body_fields_twin_models_lists(app: Flask, client: FlaskClient) -> None:
    serve(app, incidence_result())
    new_adult(client, "adult", smoking=NEVER_SMOKED)
    (listed,) = [m for m in client.get("/twin/models").get_json()["models"] if m["id"] == "incident-diabetes"]
    issue = outcome(client.get("/fhir/Patient/adult/$whatif?model=incident-diabetes&bogus=1"), 400)
    accepted = issue["diagnostics"].split("the chosen models read: ", 1)[1].split(", ")
    # README: "$whatif takes the twin's Body fields each model reads, listed by /twin/models as reads"
    assert sorted(listed["reads"]) == sorted(accepted)
    assert {"bmi", "hba1c", "fasting_glucose", "smoking_status"} <= set(accepted)
    twin = client.get("/twin/patients/adult").get_json()["body"]
    assert set(accepted) <= set(twin), "every name is a field of the twin's Body"
