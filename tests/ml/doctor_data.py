"""Builders shared by the Digital Doctor tests (``tests/ml``, ``tests/api``): a Patient, NEWS2
vital-sign sets and cardiovascular risk inputs as FHIR resources, writes that must succeed, and
waiting for the live worker. Imported as ``tests.ml.doctor_data`` (``--import-mode=importlib``
names test modules by their path from the root).
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import services_of
from fhir_twin.ml.scores.news2 import News2Inputs
from fhir_twin.store import doctor_state as queue
from tests import factories

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
OMB_RACE = "urn:oid:2.16.840.1.113883.6.238"
MODEL_SYSTEM = "urn:fhir-twin:CodeSystem/model"
RISK_PROBABILITY = "http://terminology.hl7.org/CodeSystem/risk-probability"
SCORE_EXTENSION = "urn:fhir-twin:StructureDefinition/prediction-score"
AIAST = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue|AIAST"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "doctor"
MODELS = ("news2", "qsofa", "pooled-cohort-ascvd", "atp3-hard-chd")

# ACVPU (LOINC 67775-7) answers as mappings/vital-signs.yaml reads them
ALERT = "248234008"
VOICE = "300202002"
# Smoking status (LOINC 72166-2) answers, mappings/social-history.yaml
NEVER_SMOKED = "266919005"
CURRENT_SMOKER = "449868002"
UNKNOWN_SMOKING = "266927001"
# SNOMED CT 44054006 diabetes mellitus type 2, 233604007 pneumonia
TYPE_2_DIABETES = "44054006"
PNEUMONIA = "233604007"


class Vitals(NamedTuple):
    """One NEWS2 set in the published vectors' order: (RR, SpO2, O2, SBP, HR, Alert, T)."""

    rr: float
    spo2: float
    o2: str  # "air" or "O2"
    sbp: float
    hr: float
    alert: bool
    t: float


# The RCP NEWS2 vectors of the issue: inputs, aggregate score, risk-probability code of its band.
NEWS2_VECTORS = (
    (Vitals(16, 98, "air", 120, 70, True, 37.0), 0, "low"),
    (Vitals(25, 97, "air", 130, 80, True, 37.0), 3, "moderate"),  # low-medium: a single red parameter
    (Vitals(22, 94, "air", 105, 95, True, 38.2), 6, "moderate"),  # medium
    (Vitals(24, 93, "O2", 105, 115, True, 38.5), 10, "high"),
    (Vitals(8, 91, "O2", 90, 131, False, 35.0), 20, "high"),
)
MEDIUM = NEWS2_VECTORS[2][0]
# What NEWS2 reads from MEDIUM (age aside).
NEWS2_MEDIUM = News2Inputs(
    respiratory_rate=22,
    spo2=94,
    supplemental_oxygen=False,
    systolic_bp=105,
    pulse=95,
    consciousness="alert",
    temperature=38.2,
)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def ago(**delta: float) -> str:
    """A dateTime that long before now, e.g. ``ago(minutes=10)``."""
    return iso(datetime.now(UTC) - timedelta(**delta))


def age_on(birth_date: str, today: date | None = None) -> int:
    """Whole years from a full ``birthDate`` to today (UTC)."""
    today = today or datetime.now(UTC).date()
    born = date.fromisoformat(birth_date)
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def years_ago(years: int, today: date | None = None) -> str:
    """A birthDate that makes the patient ``years`` old today (a 29 February birthday moves to the 28th)."""
    today = today or datetime.now(UTC).date()
    day = 28 if (today.month, today.day) == (2, 29) else today.day
    return date(today.year - years, today.month, day).isoformat()


def patient(
    res_id: str, *, gender: str = "male", birth_date: str | None = None, race: str | None = "White"
) -> dict[str, Any]:
    """A Patient, 55 years old unless told otherwise, with a US Core race (OMB category) extension."""
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "id": res_id,
        "gender": gender,
        "birthDate": birth_date or years_ago(55),
    }
    if race is not None:
        codes = {"White": "2106-3", "Black or African American": "2054-5", "Asian": "2028-9"}
        body["extension"] = [
            {
                "url": US_CORE_RACE,
                "extension": [
                    {"url": "ombCategory", "valueCoding": {"system": OMB_RACE, "code": codes[race], "display": race}},
                    {"url": "text", "valueString": race},
                ],
            }
        ]
    return body


def observation(
    patient_id: str,
    code: str,
    effective: str,
    *,
    res_id: str | None = None,
    category: str = "vital-signs",
    **value: Any,
) -> dict[str, Any]:
    """An Observation of LOINC ``code`` in ``category`` with the given ``value[x]``."""
    categories = [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}]
    return factories.observation(code, res_id=res_id, patient=patient_id, when=effective, category=categories, **value)


def quantity(patient_id: str, code: str, value: float, unit: str, effective: str, **extra: Any) -> dict[str, Any]:
    quantity_value = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    return observation(patient_id, code, effective, valueQuantity=quantity_value, **extra)


def coded(patient_id: str, code: str, answer: str, effective: str, **extra: Any) -> dict[str, Any]:
    """An Observation answered with SNOMED CT ``answer``."""
    concept = {"coding": [{"system": SNOMED, "code": answer}]}
    return observation(patient_id, code, effective, valueCodeableConcept=concept, **extra)


def news2_set(
    patient_id: str, vitals: Vitals, effective: str, *, ids: str | None = None, oxygen: str = "fio2"
) -> list[dict[str, Any]]:
    """The seven Observations of one NEWS2 set; oxygen as inspired O2 (3150-0: 21 % is air, 28 %
    oxygen) or, with ``oxygen="flow"``, as O2 flow (3151-8: 0 L/min is air, 2 L/min oxygen).
    ``ids`` gives them ids ``{ids}-rr``, ``{ids}-spo2``, ... (for PUT)."""
    on_oxygen = vitals.o2 == "O2"
    if oxygen == "flow":
        oxygen_observation = ("o2", "3151-8", 2 if on_oxygen else 0, "L/min")
    else:
        oxygen_observation = ("o2", "3150-0", 28 if on_oxygen else 21, "%")
    measured = [
        ("rr", "9279-1", vitals.rr, "/min"),
        ("spo2", "2708-6", vitals.spo2, "%"),
        oxygen_observation,
        ("sbp", "8480-6", vitals.sbp, "mm[Hg]"),
        ("hr", "8867-4", vitals.hr, "/min"),
        ("t", "8310-5", vitals.t, "Cel"),
    ]

    def named(name: str) -> dict[str, Any]:
        return {"res_id": f"{ids}-{name}"} if ids else {}

    found = [quantity(patient_id, code, value, unit, effective, **named(name)) for name, code, value, unit in measured]
    found.append(coded(patient_id, "67775-7", ALERT if vitals.alert else VOICE, effective, **named("acvpu")))
    return found


def partial_news2_set(patient_id: str, effective: str) -> list[dict[str, Any]]:
    """Three of the seven NEWS2 parameters (respiration rate, systolic BP, pulse): too few to score."""
    return [
        quantity(patient_id, "9279-1", 18, "/min", effective),
        quantity(patient_id, "8480-6", 128, "mm[Hg]", effective),
        quantity(patient_id, "8867-4", 76, "/min", effective),
    ]


def cardiovascular_set(
    patient_id: str,
    effective: str,
    *,
    total_cholesterol: float = 213,
    hdl: float = 50,
    systolic_bp: float = 120,
    smoking: str = NEVER_SMOKED,
) -> list[dict[str, Any]]:
    """What the Pooled Cohort Equations and ATP III read from the Body: cholesterol, HDL, systolic BP, smoking."""
    return [
        quantity(patient_id, "2093-3", total_cholesterol, "mg/dL", effective, category="laboratory"),
        quantity(patient_id, "2085-9", hdl, "mg/dL", effective, category="laboratory"),
        quantity(patient_id, "8480-6", systolic_bp, "mm[Hg]", effective),
        coded(patient_id, "72166-2", smoking, effective, category="social-history"),
    ]


def condition(
    patient_id: str, system: str, code: str, display: str, *, status: str = "active", res_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Condition"}
    if res_id is not None:
        body["id"] = res_id
    body.update(
        {
            "clinicalStatus": {"coding": [{"system": CONDITION_CLINICAL, "code": status}]},
            "code": {"coding": [{"system": system, "code": code, "display": display}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "onsetDateTime": "2019-04-01",
        }
    )
    return body


def infection(patient_id: str, *, res_id: str | None = None) -> dict[str, Any]:
    """An active pneumonia: the suspected infection qSOFA needs to apply."""
    return condition(patient_id, SNOMED, PNEUMONIA, "Pneumonia", res_id=res_id)


def spo2_target(patient_id: str, low: float = 88, high: float = 92, *, res_id: str | None = None) -> dict[str, Any]:
    """A prescribed SpO2 target (a Goal measured by LOINC 2708-6): 88-92 % puts NEWS2 on Scale 2."""
    body: dict[str, Any] = {"resourceType": "Goal"}
    if res_id is not None:
        body["id"] = res_id
    body.update(
        {
            "lifecycleStatus": "active",
            "description": {"text": f"Target oxygen saturation {low:g}-{high:g} %"},
            "subject": {"reference": f"Patient/{patient_id}"},
            "target": [
                {
                    "measure": {"coding": [{"system": LOINC, "code": "2708-6"}]},
                    "detailRange": {
                        "low": {"value": low, "unit": "%", "system": UCUM, "code": "%"},
                        "high": {"value": high, "unit": "%", "system": UCUM, "code": "%"},
                    },
                }
            ],
        }
    )
    return body


def medication_request(
    patient_id: str, rxnorm: str, display: str, *, status: str = "active", res_id: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "MedicationRequest"}
    if res_id is not None:
        body["id"] = res_id
    body.update(
        {
            "status": status,
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": rxnorm, "display": display}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "authoredOn": "2024-01-15",
        }
    )
    return body


# --- writing and reading through the API ----------------------------------------------------


def write(client: FlaskClient, method: str, url: str, body: Any = None) -> dict[str, Any]:
    """A write that must succeed; the stored resource (or response Bundle)."""
    response = client.open(url, method=method, json=body)
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


# A resource may be written again as the test moves time on.
put = partial(factories.put, status=(200, 201))


def record_p1(client: FlaskClient) -> dict[str, Any]:
    """p1, 55, with pneumonia, the medium NEWS2 set of 10 minutes ago and cholesterol of a minute
    before it: every model has what it needs. The stored Patient. (Both on one day, so the stable
    systolic BP is the NEWS2 set's alone; two hours apart, they straddled midnight in the first
    two hours of a UTC day and the BP was the mean of two days' readings.)"""
    stored = put(client, patient("p1"))
    transaction(
        client,
        [infection("p1"), *news2_set("p1", MEDIUM, ago(minutes=10)), *cardiovascular_set("p1", ago(minutes=11))],
    )
    return stored


def assessed_p1(app: Flask, client: FlaskClient) -> str:
    """``record_p1``, once the live Doctor has made one assessment per model of it; "p1"."""
    record_p1(client)
    settle(app)
    assert by_model(client, "p1") == {model: 1 for model in MODELS}
    return "p1"


def transaction_bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """``resources`` as one transaction Bundle: PUT those with an id, POST the others."""
    entries = [
        {
            "resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
            if "id" in resource
            else {"method": "POST", "url": resource["resourceType"]},
        }
        for resource in resources
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def transaction(client: FlaskClient, resources: list[dict[str, Any]]) -> list[str]:
    """Post ``resources`` as one transaction; the version-specific references of what was
    stored, in order."""
    bundle = write(client, "POST", "/fhir", transaction_bundle(resources))
    return [versioned(entry["response"]["location"]) for entry in bundle["entry"]]


# A ward as the web app's tests list it: id → (name, index into NEWS2_VECTORS or None, total
# cholesterol for the Pooled Cohort Equations or None).
Roster = dict[str, tuple[str, int | None, float | None]]


def roster_resources(roster: Roster) -> list[dict[str, Any]]:
    """Each patient of ``roster`` named, identified as ``urn:mrn|mrn-{id}``, with its NEWS2 set
    30 minutes ago and its cardiovascular set a minute before it (two readings hours apart can fall on
    two UTC days, and the stable systolic BP averages each day's newest)."""
    resources: list[dict[str, Any]] = []
    for res_id, (name, vector, cholesterol) in roster.items():
        given, family = name.split()
        body = patient(res_id)
        body["name"] = [{"given": [given], "family": family}]
        body["identifier"] = [{"system": "urn:mrn", "value": f"mrn-{res_id}"}]
        resources.append(body)
        if vector is not None:
            resources += news2_set(res_id, NEWS2_VECTORS[vector][0], ago(minutes=30))
        if cholesterol is not None:
            resources += cardiovascular_set(res_id, ago(minutes=31), total_cholesterol=cholesterol)
    return resources


def versioned(location: str) -> str:
    """``Type/id/_history/n`` of a Location, absolute or relative."""
    parts = location.split("/")
    return "/".join(parts[parts.index("_history") - 2 :])


def search(client: FlaskClient, query: str) -> list[dict[str, Any]]:
    """Every resource a search (``RiskAssessment?subject=...``) matches, all pages."""
    url: str | None = f"/fhir/{query}{'&' if '?' in query else '?'}_count=200"
    found: list[dict[str, Any]] = []
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.get_json()
        bundle = response.get_json()
        found += [entry["resource"] for entry in bundle.get("entry", []) if entry["search"]["mode"] == "match"]
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        if url and url.startswith("http://localhost"):
            url = url[len("http://localhost") :]
    return found


def model_of(assessment: dict[str, Any]) -> str:
    (coding,) = assessment["method"]["coding"]
    return coding["code"]


def assessments(client: FlaskClient, patient_id: str, model: str | None = None) -> list[dict[str, Any]]:
    """The patient's RiskAssessments (of one model), oldest first."""
    query = f"RiskAssessment?subject=Patient/{patient_id}"
    if model is not None:
        query += f"&method={MODEL_SYSTEM}|{model}"
    found = search(client, query)
    return sorted(found, key=lambda resource: (resource["occurrenceDateTime"], resource["meta"]["lastUpdated"]))


def by_model(client: FlaskClient, patient_id: str) -> dict[str, int]:
    """How many RiskAssessments each model has for the patient."""
    counts: dict[str, int] = {}
    for resource in assessments(client, patient_id):
        counts[model_of(resource)] = counts.get(model_of(resource), 0) + 1
    return counts


def wait_for(
    client: FlaskClient, patient_id: str, model: str, count: int = 1, deadline: float = 5.0
) -> tuple[list[dict[str, Any]], float]:
    """Poll until the patient has ``count`` RiskAssessments of ``model``; them, and the seconds it took.

    The deadline is generous for slow CI machines; the elapsed time is what the live worker took
    (it polls every 0.2 s), reported by the tests that call this."""
    started = time.monotonic()
    while True:
        found = assessments(client, patient_id, model)
        elapsed = time.monotonic() - started
        if len(found) >= count or elapsed > deadline:
            assert len(found) >= count, f"{len(found)} {model} RiskAssessment(s) after {elapsed:.2f} s, not {count}"
            return found, elapsed
        time.sleep(0.02)


def settle(app: Flask, deadline: float = 5.0) -> float:
    """Wait until the live worker has assessed every queued patient (a row leaves the queue only
    once its patient's assessments are committed); the seconds it took."""
    repository = services_of(app).doctor.repository
    started = time.monotonic()
    while queue.pending(repository):
        assert time.monotonic() - started < deadline, "the Digital Doctor's queue did not drain"
        time.sleep(0.02)
    return time.monotonic() - started
