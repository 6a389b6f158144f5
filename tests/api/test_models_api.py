"""``/twin/models`` and ``/twin/models/{id}[?version=]``: every model the Digital Doctor knows, with
its kind, inputs, versions (which is active, and who activated it when and why) and Device; a
version's evaluation report, gates and model card; and the errors a client gets, OperationOutcomes
naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.ml.learned import incidence
from tests.factories import outcome
from tests.ml.learned_data import MODELS, PASSING, TESTING, incidence_result, instant, registry, serve

LOINC = "http://loinc.org"
REPORT_KEYS = {
    "model",
    "data",
    "features",
    "outcome",
    "cross_validation",
    "holdout",
    "external",
    "internal",
    "calibration",
    "efficiency",
    "comparison",
    "gates",
    "limits",
    "created",
    "versions",
    "seed",
}


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(doctor=False)


def models(client: FlaskClient) -> dict[str, dict[str, Any]]:
    response = client.get("/twin/models")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    listed = response.get_json()["models"]
    assert [model["id"] for model in listed] == list(MODELS), "rule-based first, then the learned ones"
    return {model["id"]: model for model in listed}


def test_every_model_is_listed_and_learned_ones_are_untrained_until_trained(client: FlaskClient) -> None:
    listed = models(client)
    for model_id in MODELS[:4]:
        model = listed[model_id]
        assert (model["kind"], model["version"], model["available"]) == ("rule-based", "1.0.0", True)
        assert model["device"] == f"Device/{model_id}-1.0.0"
        assert model["runsOnPatients"] is True and model["versions"] == []
    for model_id in MODELS[4:]:
        model = listed[model_id]
        assert (model["kind"], model["version"], model["available"]) == ("learned", None, False)
        assert model["device"] is None and model["versions"] == []
        assert model["outcome"] and model["intendedUse"] and model["reference"]
    assert [m["runsOnPatients"] for m in listed.values()] == [True] * 6 + [False] * 2

    def loinc(model_id: str) -> dict[str, str | None]:
        return {i["name"]: i["loinc"] for i in listed[model_id]["inputs"]}

    assert loinc("news2")["respiratory_rate"] == f"{LOINC}|9279-1"
    assert loinc("news2")["supplemental_oxygen"] is None
    assert loinc("hr-forecast") == {"heart_rate": f"{LOINC}|8867-4"}
    diabetes = loinc("incident-diabetes")
    assert diabetes["bmi"] == f"{LOINC}|39156-5" and diabetes["hba1c"] == f"{LOINC}|4548-4"
    assert diabetes["age"] is None
    assert loinc("diabetes-progression")["s6"] == f"{LOINC}|2339-0"
    assert loinc("pima-diabetes") == {
        "npreg": None,
        "glu": None,
        "bp": f"{LOINC}|8462-4",
        "skin": None,
        "bmi": f"{LOINC}|39156-5",
        "ped": None,
        "age": None,
    }
    assert "Pima Indian heritage" in listed["pima-diabetes"]["intendedUse"]
    assert "does NOT run on this server's patients" in listed["pima-diabetes"]["intendedUse"]
    assert listed["incident-diabetes"]["horizon"] == "5 years"


def test_registered_versions_are_listed_with_the_active_one_and_its_activation(app: Flask, client: FlaskClient) -> None:
    models_registry = registry(app)
    models_registry.register(incidence_result(PASSING))
    models_registry.register(incidence_result(PASSING))
    model = models(client)["incident-diabetes"]
    assert (model["version"], model["available"], model["device"]) == (None, False, None), "registered, not active"
    assert [(v["version"], v["active"], v["activated"]) for v in model["versions"]] == [
        ("1.0.0", False, None),
        ("1.1.0", False, None),
    ]
    for version in model["versions"]:
        assert abs(instant(version["created"]) - datetime.now(UTC)) < timedelta(minutes=1)

    gates = incidence_result(PASSING).report["gates"]
    models_registry.activate(incidence.MODEL, "1.1.0", incidence.GATES, TESTING)
    model = models(client)["incident-diabetes"]
    assert (model["version"], model["available"]) == ("1.1.0", True)
    assert model["device"] == "Device/incident-diabetes-1.1.0"
    assert [(v["version"], v["active"]) for v in model["versions"]] == [("1.0.0", False), ("1.1.0", True)]
    active = model["versions"][1]
    assert (active["activatedBy"], active["activationReason"]) == ("tester", TESTING.reason)
    assert abs(instant(active["activated"]) - datetime.now(UTC)) < timedelta(minutes=1)
    assert models(client)["hr-forecast"]["version"] is None

    models_registry.activate(incidence.MODEL, "1.0.0", incidence.GATES, TESTING)
    model = models(client)["incident-diabetes"]
    assert (model["version"], model["device"]) == ("1.0.0", "Device/incident-diabetes-1.0.0")
    assert [(v["version"], v["active"]) for v in model["versions"]] == [("1.0.0", True), ("1.1.0", False)]
    assert client.get("/twin/models/incident-diabetes").get_json()["report"]["gates"] == gates


def test_a_model_has_the_report_and_card_of_its_active_or_a_chosen_version(app: Flask, client: FlaskClient) -> None:
    trained = incidence_result(PASSING)
    registry(app).register(trained)
    serve(app, trained)
    response = client.get("/twin/models/incident-diabetes")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.get_json()
    assert (body["id"], body["version"], body["reportVersion"]) == ("incident-diabetes", "1.1.0", "1.1.0")
    assert len(body["versions"]) == 2
    report = body["report"]
    assert set(report) == REPORT_KEYS
    assert report["model"]["version"] == "1.1.0"
    assert report["cross_validation"] == trained.report["cross_validation"]
    assert report["holdout"]["n_test"] > 0 and report["external"] is None
    assert report["efficiency"]["latency_p50_ms"] > 0
    assert report["data"]["synthetic"] is True
    assert body["card"].startswith("# Model card: incident-diabetes 1.1.0\n")
    assert "## Intended use" in body["card"] and "## External validation" in body["card"]
    assert [gate["passed"] for gate in report["gates"]] == [True, True, True]
    assert "## Gates" in body["card"] and "all pass" in body["card"]

    older = client.get("/twin/models/incident-diabetes?version=1.0.0").get_json()
    assert (older["version"], older["reportVersion"]) == ("1.1.0", "1.0.0"), "the active one stays 1.1.0"
    assert older["report"]["model"]["version"] == "1.0.0"
    assert older["card"].startswith("# Model card: incident-diabetes 1.0.0\n")


@pytest.mark.parametrize("model_id", ["news2", "hr-forecast"])
def test_a_model_without_a_trained_version_has_no_report(client: FlaskClient, model_id: str) -> None:
    response = client.get(f"/twin/models/{model_id}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["id"] == model_id
    assert (body["report"], body["reportVersion"], body["card"]) == (None, None, None)


def test_a_rule_based_model_answers_for_the_version_it_lists(client: FlaskClient) -> None:
    listed = models(client)["news2"]["version"]
    response = client.get(f"/twin/models/news2?version={listed}")
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["version"] == listed


def test_an_unknown_model_is_not_found(client: FlaskClient) -> None:
    issue = outcome(client.get("/twin/models/framingham"), 404, "not-found")
    assert "framingham" in issue["diagnostics"]
    assert all(model_id in issue["diagnostics"] for model_id in MODELS), "it names the models there are"


def test_an_unknown_version_is_not_found(app: Flask, client: FlaskClient) -> None:
    registry(app).register(incidence_result(PASSING))
    issue = outcome(client.get("/twin/models/incident-diabetes?version=2.0.0"), 404, "not-found")
    assert "2.0.0" in issue["diagnostics"] and "versions: 1.0.0" in issue["diagnostics"]
    issue = outcome(client.get("/twin/models/hr-forecast?version=1.0.0"), 404, "not-found")
    assert "hr-forecast is not trained" in issue["diagnostics"]


@pytest.mark.parametrize(
    ("url", "name", "says"),
    [
        ("/twin/models?version=1.0.0", "version", "takes no parameters"),
        ("/twin/models/incident-diabetes?versoin=1.0.0", "versoin", "takes version"),
        ("/twin/models/news2?at=2024", "at", "Unknown parameter 'at'"),
        ("/twin/models/incident-diabetes?version=1.0.0&version=1.1.0", "version", "only once"),
    ],
    ids=["list-takes-none", "misspelt", "unknown", "repeated"],
)
def test_bad_parameters_are_400_naming_them(app: Flask, client: FlaskClient, url: str, name: str, says: str) -> None:
    registry(app).register(incidence_result(PASSING))
    issue = outcome(client.get(url), 400)
    assert issue["expression"] == [name]
    assert says in issue["diagnostics"]


def test_news2_serves_its_chart_bands_from_its_own_tables(client: FlaskClient) -> None:
    """RCP NEWS2 Chart 1 per Body field as value ranges, each edge half a rounding step above the
    cell's upper value, so a chart draws exactly where the score changes."""
    found = client.get("/twin/models/news2").get_json()["bands"]
    assert set(found) == {"respiratory_rate", "oxygen_saturation", "systolic_bp", "heart_rate", "body_temperature"}
    assert found["respiratory_rate"] == [
        {"from": None, "below": 8.5, "points": 3, "label": "≤8"},
        {"from": 8.5, "below": 11.5, "points": 1, "label": "9–11"},
        {"from": 11.5, "below": 20.5, "points": 0, "label": "12–20"},
        {"from": 20.5, "below": 24.5, "points": 2, "label": "21–24"},
        {"from": 24.5, "below": None, "points": 3, "label": "≥25"},
    ]
    assert [cell["below"] for cell in found["body_temperature"]] == [35.05, 36.05, 38.05, 39.05, None]
    assert [cell["points"] for cell in found["oxygen_saturation"]] == [3, 2, 1, 0]  # Scale 1
    assert [cell["points"] for cell in found["heart_rate"]] == [3, 1, 0, 1, 2, 3]
    assert "bands" not in client.get("/twin/models/qsofa").get_json()
