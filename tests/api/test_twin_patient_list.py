"""``/twin/patients``: the web app's patients list, a Patient search with each patient's newest
NEWS2 and PCE assessments (recorded by the live Digital Doctor), sorted by risk and paged in the
database, held to what the credential may search and audited as a Patient search."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask

from fhir_twin.app import services_of
from fhir_twin.ml.assessment import SCORE_EXTENSION
from fhir_twin.store.doctor_state import SCORE_URL
from tests.api.twin_app_data import Clinic, open_clinic
from tests.factories import outcome
from tests.ml.doctor_data import ago, patient, quantity, settle, transaction

pytestmark = pytest.mark.audited


@pytest.fixture
def clinic(make_app: Callable[..., Flask]) -> Clinic:
    return open_clinic(make_app)


def listed(clinic: Clinic, query: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer = clinic.get(f"/twin/patients{query}", headers or clinic.clinician)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def ids(body: dict[str, Any]) -> list[str]:
    return [row["id"] for row in body["patients"]]


def test_each_row_has_the_patient_and_its_newest_assessments(clinic: Clinic) -> None:
    body = listed(clinic)
    assert (body["total"], body["offset"], body["count"]) == (4, 0, 4)
    assert ids(body) == ["pa", "pb", "pc", "pd"]  # by name: Ada, Ben, Cy, Di
    rows = {row["id"]: row for row in body["patients"]}
    ada = rows["pa"]
    assert ada["name"] == "Ada Alpha"
    assert ada["identifier"] == "urn:mrn|mrn-pa"
    assert ada["gender"] == "male"
    assert ada["birthDate"]
    assert ada["lastMeasured"]
    assert ada["news2"]["score"] == 0
    assert ada["news2"]["band"] == "low"
    assert ada["news2"]["text"] == "NEWS2 0: low clinical risk"
    assert ada["news2"]["reference"].startswith("RiskAssessment/")
    stored = clinic.client.get(f"/fhir/{ada['news2']['reference']}").get_json()
    assert stored["status"] == ada["news2"]["status"]
    assert stored["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == ada["news2"]["risk"]
    assert 0 < ada["pce"]["probability"] < 1
    assert ada["pce"]["percent"] == round(ada["pce"]["probability"] * 100, 1)
    assert rows["pb"]["news2"]["band"] == "low-medium"
    assert rows["pb"]["news2"]["text"].startswith("NEWS2 3: low-medium clinical risk")
    assert rows["pb"]["pce"] is None
    assert rows["pc"]["news2"]["band"] == "high" and rows["pc"]["news2"]["score"] == 10
    assert rows["pd"]["news2"] is None and rows["pd"]["pce"] is None and rows["pd"]["lastMeasured"] is None


def test_sorting_by_risk_puts_those_without_an_assessment_last(clinic: Clinic) -> None:
    assert ids(listed(clinic, "?_sort=-news2")) == ["pc", "pb", "pa", "pd"]
    assert ids(listed(clinic, "?_sort=news2")) == ["pa", "pb", "pc", "pd"]
    pce = listed(clinic, "?_sort=-pce")
    probabilities = [row["pce"]["probability"] for row in pce["patients"][:2]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert {row["id"] for row in pce["patients"][2:]} == {"pb", "pd"}
    assert ids(listed(clinic, "?_sort=-measured"))[-1] == "pd"
    assert ids(listed(clinic, "?_sort=birthdate"))  # every patient is 55: any order, all listed


def test_search_values_are_fhir_search_values(clinic: Clinic) -> None:
    assert ids(listed(clinic, "?name=gam")) == ["pc"]
    assert ids(listed(clinic, "?identifier=urn:mrn|mrn-pb")) == ["pb"]
    assert ids(listed(clinic, "?name:exact=Ada")) == ["pa"]
    assert listed(clinic, "?birthdate=lt1900")["total"] == 0


def test_paging_links(clinic: Clinic) -> None:
    first = listed(clinic, "?_count=3&_sort=-news2")
    assert ids(first) == ["pc", "pb", "pa"]
    assert first["links"]["previous"] is None
    following = urlsplit(first["links"]["next"])
    assert following.path == "/twin/patients"
    second = listed(clinic, f"?{following.query}")
    assert ids(second) == ["pd"] and second["offset"] == 3
    assert second["links"]["next"] is None
    assert "_offset=0" in second["links"]["previous"]


def test_a_patient_token_sees_only_its_patient(clinic: Clinic) -> None:
    body = listed(clinic, "", clinic.pa)
    assert ids(body) == ["pa"] and body["total"] == 1
    assert listed(clinic, "?name=Beta", clinic.pa)["total"] == 0


def test_a_token_without_patient_search_is_refused(clinic: Clinic) -> None:
    outcome(clinic.get("/twin/patients", clinic.auditor), 403, "forbidden")


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("?family=Alpha", "family"),
        ("?_sort=risk", "_sort"),
        ("?_count=0", "_count"),
        ("?_offset=-1", "_offset"),
        ("?birthdate=yesterday", "birthdate"),
    ],
)
def test_bad_parameters_are_refused_naming_them(clinic: Clinic, query: str, named: str) -> None:
    issue = outcome(clinic.get(f"/twin/patients{query}", clinic.clinician), 400)
    assert named in issue["diagnostics"] or named in issue.get("expression", [""])[0]


def test_each_list_is_audited_as_a_patient_search_naming_the_patients_shown(clinic: Clinic) -> None:
    listed(clinic, "?name=Alpha")
    services_of(clinic.app).recorder.flush()
    bundle = clinic.get("/fhir/AuditEvent?agent-name:exact=ward-app&_count=100", clinic.auditor).get_json()
    events = [entry["resource"] for entry in bundle["entry"]]
    (event,) = [e for e in events if any("/twin/patients" in _query(entity) for entity in e.get("entity", []))]
    assert event["action"] == "E"
    assert {coding["code"] for coding in event["subtype"]} >= {"search-type"}
    patients = {entity["what"]["reference"] for entity in event["entity"] if "what" in entity}
    assert patients == {"Patient/pa"}


def _query(entity: dict[str, Any]) -> str:
    return base64.b64decode(entity["query"]).decode() if "query" in entity else ""


def test_the_score_extension_is_the_one_the_store_reads() -> None:
    assert SCORE_URL == SCORE_EXTENSION


def test_a_partial_set_shows_its_score_as_a_lower_bound(clinic: Clinic) -> None:
    """A respiratory rate of 25 alone scores 3 in one parameter: scored at once, as at least 3."""
    body = patient("pe")
    body["name"] = [{"given": ["Eve"], "family": "Echo"}]
    transaction(clinic.client, [body, quantity("pe", "9279-1", 25, "/min", ago(minutes=5))])
    settle(clinic.app, deadline=30)
    (row,) = listed(clinic, "?name=Echo")["patients"]
    assert row["news2"]["bound"] is True
    assert row["news2"]["band"] == "low-medium"
    assert row["news2"]["text"].startswith("NEWS2 at least 3: at least low-medium clinical risk")
    assert listed(clinic, "?name=Alpha")["patients"][0]["news2"]["bound"] is False
