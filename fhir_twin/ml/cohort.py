"""A seeded synthetic cohort for the learned models: FHIR R4 transaction Bundles, and the same data as a ``Dataset``.

Every patient is generated from ``numpy.random.default_rng([seed, n])``, so patient n is the same
whatever the cohort size, and every resource has a deterministic id (``cohort-s{seed}-{n}...``) and is
PUT, so loading a cohort twice changes nothing. Every resource is labelled synthetic: ``meta.security``
HTEST (v3-ActReason "test health data") and a ``meta.tag`` naming the cohort and seed. The outcomes
follow the generator's logistic model below; a model fitted on them measures the pipeline, not
clinical performance.

Per patient, at an index date in the first year after ``start``: BMI, blood pressure, glucose,
HbA1c, HDL and smoking status (some missing at random), prediabetes for some, and a follow-up BMI six
years later so every patient is followed up. Diabetes onset, drawn from the true model:

    logit P(type 2 diabetes within 5 years) = −2.2 + 0.03·(age − 50) + 0.08·(BMI − 28) + 2.0·(HbA1c − 5.5)
        + 0.02·(glucose − 95) − 0.02·(HDL − 50) + 0.4·current smoker + 0.5·prediabetes + 0.2·male

Events get an onset 30 days to 5 years after the index date; 15 % of the others one 5.1-5.9 years after
(not counted); 5 % of patients already have diabetes at the index date (onset 0.5-5 years before, HbA1c
6.5-8.5 %), which the models must exclude. Coefficients are chosen (not taken from a study) so that a
fitted logistic regression reaches an AUROC of about 0.8.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from fhir_twin.ml import codes, fields
from fhir_twin.ml.codes import Coding
from fhir_twin.ml.dataset import CONDITION_COLUMNS, MEASUREMENT_COLUMNS, PATIENT_COLUMNS, Dataset
from fhir_twin.ml.learned.heart_rate_series import simulate_stream

SNOMED = codes.SNOMED
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
COHORT_SYSTEM = "urn:fhir-twin:synthetic-cohort"
NAMESPACE = uuid.UUID("6f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9")
YEAR = timedelta(days=365.25)

# The Body fields measured at the index date (each Observation in the field's code and unit) and
# their observation category
QUANTITIES = (
    (fields.BMI, "vital-signs"),
    (fields.GLUCOSE, "laboratory"),
    (fields.HBA1C, "laboratory"),
    (fields.HDL_CHOLESTEROL, "laboratory"),
)
# Smoking answers, SNOMED CT, as mappings/social-history.yaml maps them to twin categories
SMOKING = {
    "current": ("449868002", "Smokes tobacco daily (finding)"),
    "former": ("8517006", "Ex-smoker (finding)"),
    "never": ("266919005", "Never smoked tobacco (finding)"),
}
SMOKING_CATEGORY = {code: category for category, (code, _) in SMOKING.items()}
DIABETES = ("44054006", "Diabetes mellitus type 2 (disorder)")
PREDIABETES = (codes.PREDIABETES.code, codes.PREDIABETES.display)
FIELD_OF_LOINC = {measured.code.code: measured.name for measured, _ in QUANTITIES} | {
    codes.HEART_RATE.code: fields.HEART_RATE.name
}
COMPONENTS = {codes.SYSTOLIC_BP.code: fields.SYSTOLIC_BP.name, codes.DIASTOLIC_BP.code: "diastolic_bp"}
# Share of each measurement left out at random, so models meet missing values.
MISSING = {"glucose": 0.10, "hba1c": 0.20, "hdl_cholesterol": 0.15, "smoking": 0.05}
STREAM_READINGS = 48  # four hours of 5-minute heart-rate readings from the index time


def _logit(
    age: float, bmi: float, hba1c: float, glucose: float, hdl: float, smoker: bool, pre: bool, male: bool
) -> float:
    """The generator's true linear predictor (module docstring)."""
    return (
        -2.2
        + 0.03 * (age - 50)
        + 0.08 * (bmi - 28)
        + 2.0 * (hba1c - 5.5)
        + 0.02 * (glucose - 95)
        - 0.02 * (hdl - 50)
        + 0.4 * smoker
        + 0.5 * pre
        + 0.2 * male
    )


def _instant(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


class _Patient:
    """Builds one patient's resources, each with a deterministic id and the cohort's labels."""

    def __init__(self, seed: int, n: int) -> None:
        self.seed = seed
        self.id = f"cohort-s{seed}-{n}"
        self.resources: list[dict[str, Any]] = []
        self.count = 0

    def meta(self) -> dict[str, Any]:
        return {
            "security": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                    "code": "HTEST",
                    "display": "test health data",
                }
            ],
            "tag": [{"system": COHORT_SYSTEM, "code": f"seed-{self.seed}", "display": "synthetic cohort"}],
        }

    def add(self, resource: dict[str, Any]) -> None:
        """Append ``resource`` with its id (the patient's own, or the patient's plus a counter) and labels."""
        kind = resource["resourceType"]
        if kind == "Patient":
            rid = self.id
        else:
            self.count += 1
            rid = f"{self.id}-{'o' if kind == 'Observation' else 'c'}{self.count}"
            resource = {**resource, "subject": {"reference": f"Patient/{self.id}"}}
        self.resources.append({"resourceType": kind, "id": rid, "meta": self.meta(), **resource})

    def observation(self, code: Coding, category: str, when: datetime, **value: Any) -> None:
        self.add(
            {
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
                "code": _concept(*code),
                "effectiveDateTime": _instant(when),
                **value,
            }
        )

    def condition(self, code: str, display: str, onset: datetime) -> None:
        self.add(
            {
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
                "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
                "category": [{"coding": [{"system": CONDITION_CATEGORY, "code": "problem-list-item"}]}],
                "code": _concept(SNOMED, code, display),
                "onsetDateTime": _instant(onset),
                "recordedDate": _instant(onset),
            }
        )


def _patient(seed: int, n: int, stream: bool, start: datetime) -> list[dict[str, Any]]:
    """One patient's resources: the Patient first, then Observations and Conditions."""
    rng = np.random.default_rng([seed, n])
    out = _Patient(seed, n)
    male = bool(rng.random() < 0.5)
    age = float(rng.uniform(30, 75))
    index = start + timedelta(days=int(rng.integers(0, 365)), hours=8, minutes=int(rng.integers(0, 60)))
    birth = (index - age * YEAR).date()
    age = (index.date() - birth).days / 365.25
    bmi = round(float(np.clip(rng.normal(28, 5), 17, 55)), 1)
    systolic = round(float(np.clip(110 + 0.5 * (age - 40) + 0.6 * (bmi - 28) + rng.normal(0, 12), 85, 200)))
    diastolic = round(float(np.clip(0.55 * systolic + rng.normal(8, 7), 45, 120)))
    prevalent = bool(rng.random() < 0.05)
    hba1c_mean = 5.4 + 0.01 * (age - 50) + 0.04 * (bmi - 28)
    hba1c = float(rng.uniform(6.5, 8.5)) if prevalent else float(np.clip(hba1c_mean + rng.normal(0, 0.35), 4.2, 6.4))
    hba1c = round(hba1c, 1)
    glucose = round(float(np.clip(70 + 18 * (hba1c - 4.5) + rng.normal(0, 8), 60, 125 if not prevalent else 250)))
    hdl = round(float(np.clip(50 + 8 * (not male) - 0.6 * (bmi - 28) + rng.normal(0, 10), 20, 100)))
    smoking = str(rng.choice(["current", "former", "never"], p=[0.18, 0.25, 0.57]))
    recorded_prediabetes = (hba1c >= 5.7 or glucose >= 100) and not prevalent and bool(rng.random() < 0.7)
    shown = {name: bool(rng.random() >= share) for name, share in MISSING.items()}
    risk = 1 / (1 + math.exp(-_logit(age, bmi, hba1c, glucose, hdl, smoking == "current", recorded_prediabetes, male)))
    event = bool(rng.random() < risk)
    later = bool(rng.random() < 0.15)
    onset_days = (
        -int(rng.uniform(0.5, 5) * 365.25) if prevalent
        else int(rng.uniform(30, 5 * 365.25 - 1)) if event
        else int(rng.uniform(5.1, 5.9) * 365.25) if later
        else None
    )  # fmt: skip

    out.add(
        {
            "resourceType": "Patient",
            "identifier": [{"system": COHORT_SYSTEM, "value": f"s{seed}-{n}"}],
            "gender": "male" if male else "female",
            "birthDate": birth.isoformat(),
        }
    )
    values = {"bmi": bmi, "glucose": glucose, "hba1c": hba1c, "hdl_cholesterol": hdl}
    for measured, category in QUANTITIES:
        if shown.get(measured.name, True):
            assert measured.unit is not None  # a quantity field
            quantity = _quantity(values[measured.name], measured.unit)
            out.observation(measured.code, category, index, valueQuantity=quantity)
    out.observation(
        codes.BLOOD_PRESSURE_PANEL,
        "vital-signs",
        index,
        component=[
            {
                "code": _concept(*codes.SYSTOLIC_BP),
                "valueQuantity": _quantity(systolic, "mm[Hg]"),
            },
            {
                "code": _concept(*codes.DIASTOLIC_BP),
                "valueQuantity": _quantity(diastolic, "mm[Hg]"),
            },
        ],
    )
    if shown["smoking"]:
        code, display = SMOKING[smoking]
        out.observation(
            codes.SMOKING_STATUS,
            "social-history",
            index,
            valueCodeableConcept=_concept(SNOMED, code, display),
        )
    if recorded_prediabetes:
        out.condition(*PREDIABETES, index - timedelta(days=int(rng.integers(0, 730))))
    if onset_days is not None:
        out.condition(*DIABETES, index + timedelta(days=onset_days))
    follow_up = round(float(np.clip(bmi + rng.normal(0, 1.5), 15, 60)), 1)
    out.observation(codes.BMI, "vital-signs", index + 6 * YEAR, valueQuantity=_quantity(follow_up, "kg/m2"))
    if stream:
        for when, rate in simulate_stream(seed * 100_003 + n, STREAM_READINGS, index):
            out.observation(codes.HEART_RATE, "vital-signs", when, valueQuantity=_quantity(rate, "/min"))
    return out.resources


def cohort_bundles(
    seed: int, patients: int, stream_patients: int = 0, start: datetime = datetime(2010, 1, 1, tzinfo=UTC)
) -> list[dict[str, Any]]:
    """One FHIR R4 transaction Bundle per patient, every entry a PUT of a resource with a deterministic id;
    the first ``stream_patients`` patients also get a 5-minute heart-rate stream (``simulate_stream``)."""
    bundles = []
    for n in range(patients):
        entries = [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid5(NAMESPACE, reference)}",
                "resource": r,
                "request": {"method": "PUT", "url": reference},
            }
            for r in _patient(seed, n, n < stream_patients, start)
            for reference in [f"{r['resourceType']}/{r['id']}"]
        ]
        bundles.append({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return bundles


def cohort_resources(bundles: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every resource of ``bundles``, in order (to write NDJSON, one resource per line)."""
    for bundle in bundles:
        for entry in bundle["entry"]:
            yield entry["resource"]


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert(UTC)


def dataset_of(resources: Iterable[dict[str, Any]], name: str, synthetic: bool = True) -> Dataset:
    """The ``Dataset`` frames of the cohort's resources, read directly (no server): the codes this module
    emits mapped to twin fields as mappings/*.yaml map them, values already in canonical units; sources
    are version 1 references, as after one load. Quantity rows have category None, coded rows value NaN."""
    patients, conditions = [], []
    measurements: list[tuple[Any, str, Any, float, str | None, str]] = []
    for resource in resources:
        kind, rid = resource["resourceType"], resource["id"]
        source = f"{kind}/{rid}/_history/1"
        if kind == "Patient":
            birth = pd.Timestamp(resource["birthDate"]).tz_localize(UTC)
            patients.append((rid, resource.get("gender"), birth, None))
            continue
        subject = resource["subject"]["reference"].removeprefix("Patient/")
        coding = resource["code"]["coding"][0]
        if kind == "Condition":
            code = f"{coding['system']}|{coding['code']}"
            conditions.append((subject, code, coding.get("display"), _utc(resource["onsetDateTime"]), source))
            continue
        when = _utc(resource["effectiveDateTime"])
        if coding["code"] in FIELD_OF_LOINC:
            value = float(resource["valueQuantity"]["value"])
            measurements.append((subject, FIELD_OF_LOINC[coding["code"]], when, value, None, source))
        for component in resource.get("component", []):
            field = COMPONENTS[component["code"]["coding"][0]["code"]]
            measurements.append((subject, field, when, float(component["valueQuantity"]["value"]), None, source))
        if coding["code"] == codes.SMOKING_STATUS.code:
            category = SMOKING_CATEGORY[resource["valueCodeableConcept"]["coding"][0]["code"]]
            measurements.append((subject, fields.SMOKING_STATUS.name, when, math.nan, category, source))
    return Dataset(
        name,
        synthetic,
        pd.DataFrame(patients, columns=list(PATIENT_COLUMNS)),
        pd.DataFrame(measurements, columns=list(MEASUREMENT_COLUMNS)).astype({"value": float}),
        pd.DataFrame(conditions, columns=list(CONDITION_COLUMNS)),
    )


def cohort_dataset(seed: int, patients: int, stream_patients: int = 0) -> Dataset:
    """The cohort of ``cohort_bundles(seed, patients, stream_patients)`` as a ``Dataset``, labelled synthetic."""
    bundles = cohort_bundles(seed, patients, stream_patients)
    return dataset_of(cohort_resources(bundles), f"synthetic cohort (seed {seed}, {patients} patients)")
