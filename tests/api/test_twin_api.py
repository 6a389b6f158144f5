"""The twin API (``/twin/patients/{id}``, its series) and ``Patient/{id}/$twin``: what a client
reads — the document's shape, series filtered by time, the twin as it was — and the errors it
gets, always OperationOutcomes that say which parameter is wrong."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import services_of
from tests import factories
from tests.factories import FHIR_JSON, outcome

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
TWIN_DEFINITION = "urn:fhir-twin:OperationDefinition/Patient-twin"


# Readings are written again as they change.
put = partial(factories.put, status=(200, 201))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def observation(
    res_id: str, code: str, effective: str, *, value: float | None = None, unit: str = "/min", **extra: Any
) -> dict[str, Any]:
    """p1's Observation of LOINC ``code``."""
    return factories.observation(code, res_id=res_id, patient="p1", when=effective, value=value, unit=unit, **extra)


@pytest.fixture
def recent() -> datetime:
    """An hour ago: fresh for vital signs, which go stale after a day."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture
def patient(client: FlaskClient, recent: datetime) -> str:
    """p1 with vital signs (one implausible), a glucose in mmol/L, smoking status, a condition
    and an encounter."""
    put(client, {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1970-05-02"})
    put(client, observation("hr-old", "8867-4", "2024-01-10T08:00:00Z", value=64))
    put(client, observation("hr-new", "8867-4", iso(recent), value=71))
    put(client, observation("hr-wrong", "8867-4", iso(recent - timedelta(minutes=5)), value=700))
    put(client, observation("glucose", "2339-0", "2024-02-01T07:30:00Z", value=5.5, unit="mmol/L"))
    smoking = {"coding": [{"system": SNOMED, "code": "266919005", "display": "Never smoked tobacco"}]}
    put(client, observation("smoking", "72166-2", "2024-02-01T07:30:00Z", valueCodeableConcept=smoking))
    put(
        client,
        {
            "resourceType": "Condition",
            "id": "c1",
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]
            },
            "code": {"coding": [{"system": SNOMED, "code": "44054006", "display": "Diabetes mellitus type 2"}]},
            "subject": {"reference": "Patient/p1"},
            "onsetDateTime": "2019-04-01",
        },
    )
    put(
        client,
        {
            "resourceType": "Encounter",
            "id": "e1",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": SNOMED, "code": "185349003", "display": "Check up"}]}],
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2024-02-01T07:00:00Z", "end": "2024-02-01T07:45:00Z"},
        },
    )
    return "p1"


def mapped_fields(app: Flask) -> set[str]:
    return set(services_of(app).twins.mapping.fields)


# --- the document ---------------------------------------------------------------------------


def test_document_shape(app: Flask, client: FlaskClient, patient: str, recent: datetime) -> None:
    response = client.get(f"/twin/patients/{patient}")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Request-ID"]
    twin = response.get_json()
    assert set(twin) == {"patient", "at", "recorded", "referenceTime", "body", "case", "quality", "assessments"}
    assert (twin["at"], twin["recorded"]) == (None, None)
    reference = datetime.fromisoformat(twin["referenceTime"])
    assert abs(reference - datetime.now(UTC)) < timedelta(minutes=1)
    today = reference.date()
    age = today.year - 1970 - ((today.month, today.day) < (5, 2))
    assert twin["patient"] == {
        "id": "p1",
        "source": "Patient/p1/_history/1",
        "gender": "female",
        "birthDate": "1970-05-02",
        "age": age,
        "deceased": False,
        "race": None,
    }


def test_document_body(app: Flask, client: FlaskClient, patient: str, recent: datetime) -> None:
    body = client.get(f"/twin/patients/{patient}").get_json()["body"]
    assert set(body) == mapped_fields(app)
    for state in body.values():
        assert set(state) == {"label", "kind", "unit", "staleAfter", "count", "stale", "latest", "unverified"}
    heart = body["heart_rate"]
    # The implausible 700/min is kept in the series but neither counted nor the latest; older
    # than the latest, it is not the field's unverified reading either.
    assert heart["unverified"] is None
    assert {key: heart[key] for key in ("label", "kind", "unit", "count", "stale")} == {
        "label": "Heart rate",
        "kind": "quantity",
        "unit": "/min",
        "count": 2,
        "stale": False,
    }
    assert heart["latest"] == {
        "time": recent.isoformat(timespec="milliseconds"),
        "value": 71.0,
        "category": None,
        "unit": "/min",
        "originalValue": "71",
        "originalUnit": "/min",
        "converted": False,
        "flag": None,
        "source": "Observation/hr-new/_history/1",
        "duplicates": 0,
    }
    glucose = body["glucose"]
    assert (glucose["count"], glucose["stale"], glucose["staleAfter"]) == (1, True, "P30D")
    latest = glucose["latest"]
    assert latest["value"] == pytest.approx(5.5 * 18.016)
    assert (latest["unit"], latest["originalValue"], latest["originalUnit"], latest["converted"]) == (
        "mg/dL",
        "5.5",
        "mmol/L",
        True,
    )
    smoking = body["smoking_status"]
    assert (smoking["kind"], smoking["unit"], smoking["count"]) == ("coded", None, 1)
    assert (smoking["latest"]["category"], smoking["latest"]["value"]) == ("never", None)
    assert body["hba1c"] == {
        "label": "Hemoglobin A1c",
        "kind": "quantity",
        "unit": "%",
        "staleAfter": "P90D",
        "count": 0,
        "stale": None,
        "latest": None,
        "unverified": None,
    }


def test_document_case_lists(app: Flask, client: FlaskClient, patient: str) -> None:
    case = client.get(f"/twin/patients/{patient}").get_json()["case"]
    assert set(case) == set(services_of(app).twins.mapping.case)
    assert all(case[kind] == [] for kind in case if kind not in ("conditions", "encounters"))
    (condition,) = case["conditions"]
    assert {key: condition[key] for key in ("source", "code", "display", "status", "start", "end")} == {
        "source": "Condition/c1/_history/1",
        "code": f"{SNOMED}|44054006",
        "display": "Diabetes mellitus type 2",
        "status": "active",
        "start": "2019-04-01T00:00:00.000+00:00",
        "end": None,
    }
    (encounter,) = case["encounters"]
    assert {key: encounter[key] for key in ("source", "code", "status", "start", "end")} == {
        "source": "Encounter/e1/_history/1",
        "code": f"{SNOMED}|185349003",
        "status": "finished",
        "start": "2024-02-01T07:00:00.000+00:00",
        "end": "2024-02-01T07:45:00.000+00:00",
    }
    assert encounter["details"]["class"] == ["http://terminology.hl7.org/CodeSystem/v3-ActCode|AMB"]


def test_document_quality(app: Flask, client: FlaskClient, patient: str) -> None:
    quality = client.get(f"/twin/patients/{patient}").get_json()["quality"]
    fields = mapped_fields(app)
    present = {"heart_rate", "glucose", "smoking_status"}
    assert set(quality["missing"]) == fields - present
    assert (quality["used"], quality["converted"], quality["flagged"], quality["duplicates"]) == (4, 1, 1, 0)
    assert quality["completeness"] == round(len(present) / len(fields), 4)
    assert set(quality["fields"]) == fields
    assert quality["fields"]["heart_rate"] == {
        "total": 3,
        "used": 2,
        "converted": 0,
        "duplicates": 0,
        "flagged": {"implausible": 1},
        "completeness": 0.6667,
    }
    assert quality["fields"]["hba1c"]["completeness"] == 0.0


# --- the unverified reading -----------------------------------------------------------------


def spo2(res_id: str, effective: str, value: float, status: str = "final") -> dict[str, Any]:
    return observation(res_id, "59408-5", effective, value=value, unit="%", status=status)


def test_a_flagged_newest_reading_shows_as_unverified(client: FlaskClient) -> None:
    """SpO2 97 % then 150 %: the 97 stays the latest usable value, and the 150 — newer, and
    impossible — is shown beside it, so no reader takes the 97 for the current value unawares.
    Correcting the 150 to 95 (an amended Observation) makes the 95 the latest and clears it."""
    put(client, {"resourceType": "Patient", "id": "p1"})
    put(client, spo2("spo2-a", "2024-05-01T08:00:00Z", 97))
    put(client, spo2("spo2-b", "2024-05-01T08:40:00Z", 150))

    state = client.get("/twin/patients/p1").get_json()["body"]["oxygen_saturation"]
    assert (state["count"], state["latest"]["value"], state["latest"]["source"]) == (
        1,
        97.0,
        "Observation/spo2-a/_history/1",
    )
    assert state["unverified"] == {
        "time": "2024-05-01T08:40:00.000+00:00",
        "value": 150.0,
        "category": None,
        "unit": "%",
        "originalValue": "150",
        "originalUnit": "%",
        "converted": False,
        "flag": "implausible",
        "source": "Observation/spo2-b/_history/1",
        "duplicates": 0,
    }
    operation = client.get("/fhir/Patient/p1/$twin").get_json()
    field = next(p for p in named(operation, "field") if parts(p)["name"] == "oxygen_saturation")
    assert parts(field)["value"]["value"] == 97.0
    assert field["part"][-1] == {
        "name": "unverified",
        "part": [
            {"name": "value", "valueQuantity": {"value": 150.0, "unit": "%", "system": UCUM, "code": "%"}},
            {"name": "time", "valueDateTime": "2024-05-01T08:40:00.000+00:00"},
            {"name": "flag", "valueCode": "implausible"},
            {"name": "source", "valueReference": {"reference": "Observation/spo2-b/_history/1"}},
        ],
    }

    put(client, spo2("spo2-b", "2024-05-01T08:40:00Z", 95, status="amended"))
    state = client.get("/twin/patients/p1").get_json()["body"]["oxygen_saturation"]
    assert (state["count"], state["latest"]["value"], state["latest"]["source"]) == (
        2,
        95.0,
        "Observation/spo2-b/_history/2",
    )
    assert state["unverified"] is None
    operation = client.get("/fhir/Patient/p1/$twin").get_json()
    field = next(p for p in named(operation, "field") if parts(p)["name"] == "oxygen_saturation")
    assert "unverified" not in parts(field)


def test_an_unverified_reading_without_a_usable_value(client: FlaskClient) -> None:
    """A heart rate in Hz (no conversion) and nothing usable: no latest value, and the reading
    as sent is the unverified one; in ``$twin`` its value is the text that came."""
    put(client, {"resourceType": "Patient", "id": "p1"})
    put(client, observation("hz", "8867-4", "2024-05-01T08:00:00Z", value=1.2, unit="Hz"))
    state = client.get("/twin/patients/p1").get_json()["body"]["heart_rate"]
    assert (state["latest"], state["stale"]) == (None, None)
    assert (state["unverified"]["value"], state["unverified"]["originalValue"], state["unverified"]["flag"]) == (
        None,
        "1.2",
        "unit",
    )
    operation = client.get("/fhir/Patient/p1/$twin").get_json()
    field = parts(next(p for p in named(operation, "field") if parts(p)["name"] == "heart_rate"))
    assert "value" not in field
    assert field["unverified"] == {
        "value": "1.2 Hz",
        "time": "2024-05-01T08:00:00.000+00:00",
        "flag": "unit",
        "source": {"reference": "Observation/hz/_history/1"},
    }


# --- series ---------------------------------------------------------------------------------


@pytest.fixture
def three_months(client: FlaskClient) -> str:
    put(client, {"resourceType": "Patient", "id": "p1"})
    for month in (1, 2, 3):
        put(client, observation(f"hr{month}", "8867-4", f"2024-{month:02d}-10T08:00:00Z", value=60 + month))
    return "p1"


@pytest.mark.parametrize(
    "params, values, start, end",
    [
        ({}, [61, 62, 63], None, None),
        ({"from": "2024-02"}, [62, 63], "2024-02-01T00:00:00.000+00:00", None),
        # ``to`` is the end of the time it names: all of February.
        ({"to": "2024-02"}, [61, 62], None, "2024-03-01T00:00:00.000+00:00"),
        ({"from": "2024-02-10", "to": "2024-02-10"}, [62], "2024-02-10T00:00:00.000+00:00", None),
        ({"from": "2024-03-10T08:00:00Z"}, [63], "2024-03-10T08:00:00.000+00:00", None),
        ({"from": "2024-03-10T08:00:01Z"}, [], "2024-03-10T08:00:01.000+00:00", None),
        ({"to": "2024-03-10T08:00:00Z"}, [61, 62, 63], None, "2024-03-10T08:00:01.000+00:00"),
        ({"to": "2024-03-10T07:59:59Z"}, [61, 62], None, "2024-03-10T08:00:00.000+00:00"),
        ({"from": "2024-03-10T10:00:00+02:00", "to": "2024-03-10T10:00:00+02:00"}, [63], None, None),
        ({"from": "2024-01-01", "to": "2024-12-31", "at": "2999"}, [61, 62, 63], None, None),
        # ``at`` is clinical time: the points taken by the end of the time it names.
        ({"at": "2024-02-10"}, [61, 62], None, None),
        ({"at": "2024-03-10T07:59:59Z"}, [61, 62], None, None),
        ({"from": "2024-02", "at": "2024-02"}, [62], "2024-02-01T00:00:00.000+00:00", None),
        ({"recorded": "2999"}, [61, 62, 63], None, None),
    ],
)
def test_series_time_filters(
    client: FlaskClient,
    three_months: str,
    params: dict[str, str],
    values: list[int],
    start: str | None,
    end: str | None,
) -> None:
    response = client.get(f"/twin/patients/{three_months}/series/heart_rate", query_string=params)
    assert response.status_code == 200, response.get_json()
    series = response.get_json()
    assert [point["value"] for point in series["points"]] == [float(v) for v in values]
    assert {key: series[key] for key in ("patient", "field", "label", "kind", "unit")} == {
        "patient": "p1",
        "field": "heart_rate",
        "label": "Heart rate",
        "kind": "quantity",
        "unit": "/min",
    }
    if start is not None:
        assert series["from"] == start
    if end is not None:
        assert series["to"] == end
    if not params:
        assert (series["from"], series["to"], series["at"], series["recorded"]) == (None, None, None, None)


def test_series_point_shape(client: FlaskClient, three_months: str) -> None:
    (point,) = client.get(f"/twin/patients/{three_months}/series/heart_rate?to=2024-01").get_json()["points"]
    assert point == {
        "time": "2024-01-10T08:00:00.000+00:00",
        "value": 61.0,
        "category": None,
        "unit": "/min",
        "originalValue": "61",
        "originalUnit": "/min",
        "converted": False,
        "flag": None,
        "source": "Observation/hr1/_history/1",
        "duplicates": 0,
    }


def test_an_empty_series(client: FlaskClient, three_months: str) -> None:
    response = client.get(f"/twin/patients/{three_months}/series/hba1c")
    assert response.status_code == 200
    assert response.get_json()["points"] == []


# --- time travel and missing patients -------------------------------------------------------


def test_recorded_before_the_patient_existed_is_404(client: FlaskClient, three_months: str) -> None:
    issue = outcome(client.get(f"/twin/patients/{three_months}?recorded=2020-01-01"), 404, "not-found")
    assert "at that time" in issue["diagnostics"]
    outcome(client.get(f"/twin/patients/{three_months}/series/heart_rate?recorded=2020"), 404, "not-found")
    outcome(client.get(f"/fhir/Patient/{three_months}/$twin?recorded=2020"), 404, "not-found")


def test_recorded_shows_the_twin_as_the_server_held_it(client: FlaskClient, three_months: str) -> None:
    before = put(client, observation("hr3", "8867-4", "2024-03-10T08:00:00Z", value=99))["meta"]["lastUpdated"]
    moment = (datetime.fromisoformat(before) - timedelta(milliseconds=1)).isoformat(timespec="milliseconds")
    past = client.get(f"/twin/patients/{three_months}", query_string={"recorded": moment}).get_json()
    assert past["recorded"] == past["referenceTime"] == before
    assert past["at"] is None
    assert past["body"]["heart_rate"]["latest"]["value"] == 63.0
    now = client.get(f"/twin/patients/{three_months}").get_json()
    assert now["body"]["heart_rate"]["latest"]["value"] == 99.0


@pytest.fixture
def migrated(make_app: Any) -> tuple[FlaskClient, str, str]:
    """A record migrated today: everything is written now, but it happened in 2019 and 2021.
    The client (without the live Doctor, so the RiskAssessments are the two written here), the
    instant before the load and the instant after it."""
    client = make_app(doctor=False).test_client()
    loading = datetime.now(UTC).isoformat(timespec="milliseconds")
    time.sleep(0.005)
    put(client, {"resourceType": "Patient", "id": "p1", "birthDate": "1960-06-15"})
    put(client, observation("hr-2019", "8867-4", "2019-03-01T08:00:00Z", value=70))
    put(client, observation("hr-2021", "8867-4", "2021-03-01T08:00:00Z", value=90))
    put(client, observation("spo2-2021", "59408-5", "2021-03-01T08:00:00Z", value=150, unit="%"))

    def problem(res_id: str, code: str, **timing: Any) -> dict[str, Any]:
        status = "resolved" if "abatementDateTime" in timing else "active"
        return {
            "resourceType": "Condition",
            "id": res_id,
            "clinicalStatus": {
                "coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]
            },
            "code": {"coding": [{"system": SNOMED, "code": code}]},
            "subject": {"reference": "Patient/p1"},
            **timing,
        }

    put(client, problem("asthma", "195967001", onsetDateTime="2018-02-01", abatementDateTime="2020-06-30"))
    put(client, problem("diabetes", "44054006", onsetDateTime="2019-05-01"))
    put(client, problem("hypertension", "38341003", onsetDateTime="2021-01-10"))
    put(client, problem("undated", "271737000"))
    for res_id, occurrence in (("ra-2019", "2019-06-01T09:00:00Z"), ("ra-2021", "2021-06-01T09:00:00Z")):
        assessment = {
            "resourceType": "RiskAssessment",
            "id": res_id,
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "occurrenceDateTime": occurrence,
            "method": {"coding": [{"system": "urn:test", "code": "news2", "version": "1"}]},
            "prediction": [{"outcome": {"text": "deterioration"}}],
        }
        put(client, assessment)
    time.sleep(0.005)
    loaded = datetime.now(UTC).isoformat(timespec="milliseconds")
    return client, loading, loaded


def test_at_is_clinical_time(migrated: tuple[FlaskClient, str, str]) -> None:
    """``at=2020-01-01`` of a record loaded today shows 2019: its readings, the patient's age
    then, staleness judged then, the problems that had begun by then — the asthma with the end
    and status the record gives it now, and the undated entry, which the record does not place —
    and the Doctor's assessment of that time."""
    client, _, _ = migrated
    twin = client.get("/twin/patients/p1?at=2020-01-01").get_json()
    assert (twin["at"], twin["recorded"], twin["referenceTime"]) == (
        "2020-01-02T00:00:00.000+00:00",
        None,
        "2020-01-02T00:00:00.000+00:00",
    )
    assert twin["patient"]["age"] == 59
    heart = twin["body"]["heart_rate"]
    assert (heart["count"], heart["latest"]["value"], heart["stale"], heart["unverified"]) == (1, 70.0, True, None)
    assert twin["body"]["oxygen_saturation"]["unverified"] is None
    assert twin["quality"]["fields"]["oxygen_saturation"]["total"] == 0
    conditions = {item["source"]: (item["status"], item["start"], item["end"]) for item in twin["case"]["conditions"]}
    assert conditions == {
        "Condition/asthma/_history/1": ("resolved", "2018-02-01T00:00:00.000+00:00", "2020-07-01T00:00:00.000+00:00"),
        "Condition/diabetes/_history/1": ("active", "2019-05-01T00:00:00.000+00:00", None),
        "Condition/undated/_history/1": ("active", None, None),
    }
    assert [(a["reference"], a["occurrence"]) for a in twin["assessments"]] == [
        ("RiskAssessment/ra-2019", "2019-06-01T09:00:00Z")
    ]

    now = client.get("/twin/patients/p1").get_json()
    assert now["patient"]["age"] > 59
    assert (now["body"]["heart_rate"]["count"], now["body"]["heart_rate"]["latest"]["value"]) == (2, 90.0)
    assert now["body"]["oxygen_saturation"]["unverified"]["value"] == 150.0
    assert len(now["case"]["conditions"]) == 4
    assert [(a["reference"], a["occurrence"]) for a in now["assessments"]] == [
        ("RiskAssessment/ra-2021", "2021-06-01T09:00:00Z")
    ]


def test_recorded_before_a_migration_shows_nothing(migrated: tuple[FlaskClient, str, str]) -> None:
    client, loading, loaded = migrated
    outcome(client.get("/twin/patients/p1", query_string={"recorded": loading}), 404, "not-found")
    outcome(client.get("/twin/patients/p1/series/heart_rate", query_string={"recorded": loading}), 404, "not-found")
    outcome(client.get("/fhir/Patient/p1/$twin", query_string={"recorded": loading}), 404, "not-found")
    # Clinical time as known once the load was done: the same as clinical time alone.
    both = client.get("/twin/patients/p1", query_string={"at": "2020-01-01", "recorded": loaded}).get_json()
    assert (both["at"], both["recorded"], both["referenceTime"]) == (
        "2020-01-02T00:00:00.000+00:00",
        (datetime.fromisoformat(loaded) + timedelta(milliseconds=1)).isoformat(timespec="milliseconds"),
        "2020-01-02T00:00:00.000+00:00",
    )
    alone = client.get("/twin/patients/p1", query_string={"at": "2020-01-01"}).get_json()
    assert {key: both[key] for key in ("patient", "body", "case", "quality", "assessments")} == {
        key: alone[key] for key in ("patient", "body", "case", "quality", "assessments")
    }


def test_at_and_recorded_combine(client: FlaskClient) -> None:
    """Clinical time as the server knew it: with ``recorded`` between the two writes, a 2021
    reading written second is not yet known, whatever ``at`` says."""
    put(client, {"resourceType": "Patient", "id": "p1"})
    put(client, observation("hr-2019", "8867-4", "2019-03-01T08:00:00Z", value=70))
    time.sleep(0.005)
    between = datetime.now(UTC).isoformat(timespec="milliseconds")
    time.sleep(0.005)
    put(client, observation("hr-2021", "8867-4", "2021-03-01T08:00:00Z", value=90))

    def values(**times: str) -> list[float]:
        response = client.get("/twin/patients/p1/series/heart_rate", query_string=times)
        assert response.status_code == 200, response.get_json()
        return [point["value"] for point in response.get_json()["points"]]

    assert values(at="2022") == [70.0, 90.0]
    assert values(recorded=between) == [70.0]
    assert values(at="2022", recorded=between) == [70.0]
    assert values(at="2020", recorded=between) == [70.0]
    assert values(at="2018", recorded=between) == []


def test_twin_operation_with_at_and_recorded(migrated: tuple[FlaskClient, str, str]) -> None:
    client, _, loaded = migrated
    for response in (
        client.get("/fhir/Patient/p1/$twin", query_string={"at": "2020-01-01", "recorded": loaded}),
        client.post(
            "/fhir/Patient/p1/$twin",
            json={
                "resourceType": "Parameters",
                "parameter": [{"name": "at", "valueDate": "2020-01-01"}, {"name": "recorded", "valueInstant": loaded}],
            },
        ),
    ):
        assert response.status_code == 200, response.get_json()
        result = response.get_json()
        (at,) = named(result, "at")
        (recorded,) = named(result, "recorded")
        (reference,) = named(result, "referenceTime")
        assert at["valueInstant"] == reference["valueInstant"] == "2020-01-02T00:00:00.000+00:00"
        assert recorded["valueInstant"] > loaded
        heart = next(parts(p) for p in named(result, "field") if parts(p)["name"] == "heart_rate")
        assert (heart["value"]["value"], heart["stale"]) == (70.0, True)
        kinds = sorted(parts(p)["source"]["reference"] for p in named(result, "case"))
        assert kinds == ["Condition/asthma/_history/1", "Condition/diabetes/_history/1", "Condition/undated/_history/1"]
    plain = client.get("/fhir/Patient/p1/$twin").get_json()
    assert named(plain, "at") == named(plain, "recorded") == []


def test_at_before_birth_has_no_age(migrated: tuple[FlaskClient, str, str]) -> None:
    client, _, _ = migrated
    twin = client.get("/twin/patients/p1?at=1950").get_json()
    assert twin["patient"]["age"] is None
    assert twin["body"]["heart_rate"]["latest"] is None
    assert [item["source"] for item in twin["case"]["conditions"]] == ["Condition/undated/_history/1"]


def test_unknown_patient_is_404(client: FlaskClient) -> None:
    issue = outcome(client.get("/twin/patients/nobody"), 404, "not-found")
    assert "Patient/nobody" in issue["diagnostics"]
    outcome(client.get("/twin/patients/nobody/series/heart_rate"), 404, "not-found")
    outcome(client.get("/fhir/Patient/nobody/$twin"), 404, "not-found")


def test_deleted_patient_is_410(client: FlaskClient) -> None:
    created = put(client, {"resourceType": "Patient", "id": "gone"})["meta"]["lastUpdated"]
    time.sleep(0.005)
    assert client.delete("/fhir/Patient/gone").status_code in (200, 204)
    # Before the delete it was there.
    before = client.get("/twin/patients/gone", query_string={"recorded": created})
    assert before.status_code == 200
    assert before.get_json()["patient"]["source"] == "Patient/gone/_history/1"
    outcome(client.get("/twin/patients/gone"), 410, "deleted")
    outcome(client.get("/twin/patients/gone/series/heart_rate"), 410, "deleted")
    outcome(client.get("/fhir/Patient/gone/$twin"), 410, "deleted")


# --- bad requests ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, query, parameter",
    [
        ("", "at=yesterday", "at"),
        ("", "at=2024-02-30", "at"),
        ("/series/heart_rate", "from=2024-13", "from"),
        ("/series/heart_rate", "to=2024-01-01T25:00:00Z", "to"),
        ("/series/heart_rate", "at=", "at"),
        ("/series/heart_rate", "from=2024&from=2025", "from"),
        ("", "at=2024&at=2025", "at"),
        ("", "recorded=tomorrow", "recorded"),
        ("", "recorded=2024&recorded=2025", "recorded"),
        ("/series/heart_rate", "recorded=2024-02-30", "recorded"),
        ("", "from=2024", "from"),
        ("", "_format=json", "_format"),
        ("/series/heart_rate", "_count=5", "_count"),
        ("/series/heart_rate", "start=2024", "start"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    client: FlaskClient, three_months: str, path: str, query: str, parameter: str
) -> None:
    issue = outcome(client.get(f"/twin/patients/{three_months}{path}?{query}"), 400, "invalid")
    assert issue["expression"] == [parameter]


@pytest.mark.parametrize(
    "query", ["from=2024-03&to=2024-02", "from=2024-02-02&to=2024-02-01", "from=2024-03-01T00:00:00Z&to=2024-02"]
)
def test_from_not_before_to_is_400(client: FlaskClient, three_months: str, query: str) -> None:
    issue = outcome(client.get(f"/twin/patients/{three_months}/series/heart_rate?{query}"), 400, "invalid")
    assert issue["expression"] == ["from"]


def test_unknown_field_is_404(client: FlaskClient, three_months: str) -> None:
    issue = outcome(client.get(f"/twin/patients/{three_months}/series/pulse"), 404, "not-found")
    assert "pulse" in issue["diagnostics"] and "heart_rate" in issue["diagnostics"]


@pytest.mark.parametrize("bad_id", ["a_b", "x" * 65, "caf%C3%A9"])
def test_invalid_id_is_400(client: FlaskClient, bad_id: str) -> None:
    outcome(client.get(f"/twin/patients/{bad_id}"), 400, "invalid")
    outcome(client.get(f"/twin/patients/{bad_id}/series/heart_rate"), 400, "invalid")


# --- Patient/{id}/$twin ---------------------------------------------------------------------


def parts(parameter: dict[str, Any]) -> dict[str, Any]:
    """A parameter's parts by name: the value[x] of each, or its own parts by name (lists for
    repeated names)."""
    found: dict[str, Any] = {}
    for part in parameter["part"]:
        (value,) = (parts(part) if k == "part" else v for k, v in part.items() if k.startswith("value") or k == "part")
        if part["name"] in found:
            previous = found[part["name"]]
            found[part["name"]] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            found[part["name"]] = value
    return found


def named(parameters: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in parameters["parameter"] if p["name"] == name]


def test_twin_operation_by_get(app: Flask, client: FlaskClient, patient: str, recent: datetime) -> None:
    response = client.get(f"/fhir/Patient/{patient}/$twin")
    assert response.status_code == 200, response.get_json()
    assert response.headers["Content-Type"] == FHIR_JSON
    result = response.get_json()
    assert result["resourceType"] == "Parameters"
    assert named(result, "patient")[0]["valueReference"] == {"reference": "Patient/p1/_history/1"}
    (reference_time,) = named(result, "referenceTime")
    assert abs(datetime.fromisoformat(reference_time["valueInstant"]) - datetime.now(UTC)) < timedelta(minutes=1)
    fields = {parts(p)["name"]: parts(p) for p in named(result, "field")}
    assert set(fields) == mapped_fields(app)
    assert fields["heart_rate"] == {
        "name": "heart_rate",
        "label": "Heart rate",
        "count": 2,
        "value": {"value": 71.0, "unit": "/min", "system": UCUM, "code": "/min"},
        "time": recent.isoformat(timespec="milliseconds"),
        "source": {"reference": "Observation/hr-new/_history/1"},
        "stale": False,
    }
    glucose = fields["glucose"]["value"]
    assert (glucose["system"], glucose["code"], glucose["unit"]) == (UCUM, "mg/dL", "mg/dL")
    assert glucose["value"] == pytest.approx(99.088)
    assert fields["smoking_status"]["value"] == "never"
    assert fields["hba1c"] == {"name": "hba1c", "label": "Hemoglobin A1c", "count": 0}
    cases = [parts(p) for p in named(result, "case")]
    assert {
        "kind": "conditions",
        "source": {"reference": "Condition/c1/_history/1"},
        "code": {"system": SNOMED, "code": "44054006", "display": "Diabetes mellitus type 2"},
        "status": "active",
        "start": "2019-04-01T00:00:00.000+00:00",
    } in cases
    assert sorted(case["kind"] for case in cases) == ["conditions", "encounters"]
    (quality,) = [parts(p) for p in named(result, "quality")]
    missing = mapped_fields(app) - {"heart_rate", "glucose", "smoking_status"}
    assert {key: quality[key] for key in ("used", "converted", "flagged", "duplicates")} == {
        "used": 4,
        "converted": 1,
        "flagged": 1,
        "duplicates": 0,
    }
    assert set(quality["missing"]) == missing
    assert quality["completeness"] == pytest.approx(3 / len(mapped_fields(app)), abs=1e-4)


def test_twin_operation_by_post_with_recorded(client: FlaskClient) -> None:
    put(client, {"resourceType": "Patient", "id": "p1"})
    first = put(client, observation("hr", "8867-4", "2024-03-01T08:00:00Z", value=70))["meta"]["lastUpdated"]
    time.sleep(0.005)
    put(client, observation("hr", "8867-4", "2024-03-01T08:00:00Z", value=80))

    def heart_rate(body: dict[str, Any]) -> Any:
        response = client.post("/fhir/Patient/p1/$twin", json=body)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["resourceType"] == "Parameters"
        field = next(parts(p) for p in named(response.get_json(), "field") if parts(p)["name"] == "heart_rate")
        return field["value"]["value"], field["source"]["reference"]

    recorded = {"resourceType": "Parameters", "parameter": [{"name": "recorded", "valueDateTime": first}]}
    assert heart_rate(recorded) == (70.0, "Observation/hr/_history/1")
    assert heart_rate({"resourceType": "Parameters"}) == (80.0, "Observation/hr/_history/2")
    assert heart_rate({"resourceType": "Parameters", "parameter": []}) == (80.0, "Observation/hr/_history/2")


@pytest.mark.parametrize(
    "parameters, expression",
    [
        ([{"name": "at", "valueDateTime": "soon"}], "at"),
        ([{"name": "at", "valueDateTime": "2024"}, {"name": "at", "valueDateTime": "2025"}], "at"),
        ([{"name": "recorded", "valueDateTime": "2024-13"}], "recorded"),
        ([{"name": "at", "valueDate": "2024"}, {"name": "recorded", "valueDateTime": "later"}], "recorded"),
        ([{"name": "field", "valueCode": "heart_rate"}], "field"),
    ],
)
def test_twin_operation_refuses_bad_parameters(
    client: FlaskClient, parameters: list[dict[str, Any]], expression: str
) -> None:
    put(client, {"resourceType": "Patient", "id": "p1"})
    body = {"resourceType": "Parameters", "parameter": parameters}
    issue = outcome(client.post("/fhir/Patient/p1/$twin", json=body), 400, "invalid")
    assert issue["expression"] == [expression]
    outcome(client.get("/fhir/Patient/p1/$twin?since=2024"), 400, "invalid")


@pytest.mark.parametrize(
    "url",
    ["/fhir/Observation/o1/$twin", "/fhir/Observation/$twin", "/fhir/Patient/$twin", "/fhir/$twin"],
)
def test_twin_operation_only_on_a_patient(client: FlaskClient, url: str) -> None:
    put(client, {"resourceType": "Patient", "id": "p1"})
    put(client, observation("o1", "8867-4", "2024-03-01T08:00:00Z", value=70))
    outcome(client.get(url), 404, "not-found")
    outcome(client.post(url, json={"resourceType": "Parameters"}), 404, "not-found")


def test_twin_operation_in_the_capability_statement(client: FlaskClient) -> None:
    statement = client.get("/fhir/metadata").get_json()
    (rest,) = statement["rest"]
    operations = {
        resource["type"]: {op["name"]: op["definition"] for op in resource.get("operation", [])}
        for resource in rest["resource"]
    }
    assert operations["Patient"]["twin"] == TWIN_DEFINITION
    assert all("twin" not in found for name, found in operations.items() if name != "Patient")
    assert "twin" not in {op["name"] for op in rest.get("operation", [])}
    assert json.dumps(statement).count(TWIN_DEFINITION) == 1


# --- the fields with series ------------------------------------------------------------------


def test_the_fields_with_series_are_those_the_document_counts(client: FlaskClient, patient: str) -> None:
    """``/series`` names the fields whose quality total is not zero, in the order of the
    document's keys, with what a chart needs before the document is there."""
    answer = client.get(f"/twin/patients/{patient}/series")
    assert answer.status_code == 200
    listed = answer.get_json()
    document = client.get(f"/twin/patients/{patient}").get_json()
    counted = [name for name, found in document["quality"]["fields"].items() if found["total"] > 0]
    assert [found["field"] for found in listed["fields"]] == [name for name in document["body"] if name in counted]
    assert set(counted) == {"heart_rate", "glucose", "smoking_status"}
    heart_rate = next(found for found in listed["fields"] if found["field"] == "heart_rate")
    assert heart_rate == {"field": "heart_rate", "label": "Heart rate", "kind": "quantity", "unit": "/min"}
    assert (listed["patient"], listed["at"], listed["recorded"]) == ("p1", None, None)


def test_the_fields_with_series_before_a_time(client: FlaskClient, patient: str) -> None:
    listed = client.get(f"/twin/patients/{patient}/series?at=2024-01-31").get_json()
    assert [found["field"] for found in listed["fields"]] == ["heart_rate"]
    assert listed["at"] == "2024-02-01T00:00:00.000+00:00"
    assert client.get(f"/twin/patients/{patient}/series?recorded=2000-01-01").status_code == 404


def test_the_fields_with_series_refuse_what_the_document_refuses(client: FlaskClient, patient: str) -> None:
    for query, parameter in (("from=2024-01-01", "from"), ("at=garbage", "at"), ("at=2024&at=2025", "at")):
        issue = outcome(client.get(f"/twin/patients/{patient}/series?{query}"), 400)
        assert parameter in issue["diagnostics"], query
    assert client.get("/twin/patients/nobody/series").status_code == 404
    put(client, {"resourceType": "Patient", "id": "gone"})
    assert client.delete("/fhir/Patient/gone").status_code in (200, 204)
    assert client.get("/twin/patients/gone/series").status_code == 410
