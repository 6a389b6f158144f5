"""The twin's cleaning rules as pure functions, table-driven on the shipped mappings: which
measurements an Observation gives (units, times, flags) and which case entries a resource gives.
No database: these are the rules the write path applies to every version it stores."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from fhir_twin.twin.case import CaseEntry, case_entries
from fhir_twin.twin.mapping import Mapping
from fhir_twin.twin.mapping_file import load_mappings
from fhir_twin.twin.measurement import Measurement, measurements

MAPPING: Mapping = load_mappings(Path(__file__).resolve().parents[2] / "mappings")

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
T0 = "2020-01-01T10:00:00Z"
AT_T0 = datetime(2020, 1, 1, 10, 0)


def obs(code: str | list[str], *, status: str = "final", **elements: Any) -> dict[str, Any]:
    """An Observation with LOINC ``code`` (or codes), timed T0 unless ``elements`` say otherwise."""
    codes = [code] if isinstance(code, str) else code
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": LOINC, "code": c} for c in codes]},
        "subject": {"reference": "Patient/p"},
        "effectiveDateTime": T0,
    }
    resource.update(elements)
    return {key: value for key, value in resource.items() if value is not None}


def qty(value: Any, code: str | None = None, unit: str | None = None, system: str | None = UCUM) -> dict[str, Any]:
    quantity = {"value": value, "unit": unit, "system": system if code else None, "code": code}
    return {key: item for key, item in quantity.items() if item is not None}


def concept(*codings: tuple[str, str], text: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"coding": [{"system": system, "code": code} for system, code in codings]}
    if text is not None:
        found["text"] = text
    return found


def m(
    field: str,
    code: str,
    value: float | None,
    original: tuple[str | None, str | None] = (None, None),
    *,
    effective: datetime | None = AT_T0,
    category: str | None = None,
    converted: bool = False,
    flag: str | None = None,
) -> Measurement:
    return Measurement(field, f"{LOINC}|{code}", effective, value, category, *original, converted, flag)


# (id, Observation, the measurements it gives)
MEASUREMENTS = [
    pytest.param(
        obs("8867-4", valueQuantity=qty(72, "/min")), [m("heart_rate", "8867-4", 72, ("72", "/min"))], id="hr"
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(64, "{beats}/min")),
        [m("heart_rate", "8867-4", 64, ("64", "{beats}/min"), converted=True)],
        id="hr-annotated-unit-factor-1",
    ),
    pytest.param(
        obs("8310-5", valueQuantity=qty(Decimal("98.60"), "[degF]")),
        [m("body_temperature", "8310-5", 37, ("98.60", "[degF]"), converted=True)],
        id="fahrenheit-offset-keeps-digits",
    ),
    pytest.param(
        obs("8310-5", valueQuantity=qty(Decimal("-40"), "[degF]")),
        [m("body_temperature", "8310-5", -40, ("-40", "[degF]"), converted=True, flag="implausible")],
        id="converted-then-implausible",
    ),
    pytest.param(
        obs("29463-7", valueQuantity=qty(16, "[oz_av]")),
        [m("body_weight", "29463-7", 0.45359237, ("16", "[oz_av]"), converted=True)],
        id="ounces",
    ),
    pytest.param(
        obs("8302-2", valueQuantity=qty(Decimal("1.80"), "m")),
        [m("body_height", "8302-2", 180, ("1.80", "m"), converted=True)],
        id="metres",
    ),
    pytest.param(
        obs("2339-0", valueQuantity=qty(Decimal("7.0"), "mmol/L")),
        [m("glucose", "2339-0", 126.112, ("7.0", "mmol/L"), converted=True)],
        id="glucose-molar",
    ),
    pytest.param(
        obs("4548-4", valueQuantity=qty(Decimal("6.5"), "%")),
        [m("hba1c", "4548-4", 6.5, ("6.5", "%"))],
        id="hba1c-percent",
    ),
    pytest.param(
        obs("2571-8", valueQuantity=qty(Decimal("1.5"), "mmol/L")),
        [m("triglycerides", "2571-8", 132.855, ("1.5", "mmol/L"), converted=True)],
        id="triglycerides-molar",
    ),
    pytest.param(
        obs("55284-4", component=[{"code": concept((LOINC, "8462-4")), "valueQuantity": qty(12, "kPa")}]),
        [m("diastolic_bp", "8462-4", 90.007389096, ("12", "kPa"), converted=True)],
        id="panel-with-one-component-kpa",
    ),
    # Times: effective[x] first (a period's start, else its end), then issued.
    pytest.param(
        obs(
            "8867-4",
            effectiveDateTime=None,
            effectivePeriod={"start": "2020-02-03T04:05:06Z"},
            valueQuantity=qty(70, "/min"),
        ),
        [m("heart_rate", "8867-4", 70, ("70", "/min"), effective=datetime(2020, 2, 3, 4, 5, 6))],
        id="time-from-period-start",
    ),
    pytest.param(
        obs(
            "8867-4",
            effectiveDateTime=None,
            effectivePeriod={"end": "2020-02-03T05:00:00Z"},
            valueQuantity=qty(70, "/min"),
        ),
        [m("heart_rate", "8867-4", 70, ("70", "/min"), effective=datetime(2020, 2, 3, 5, 0))],
        id="time-from-period-end",
    ),
    pytest.param(
        obs("8867-4", effectiveDateTime=None, issued="2020-02-04T09:30:00.250+01:00", valueQuantity=qty(70, "/min")),
        [m("heart_rate", "8867-4", 70, ("70", "/min"), effective=datetime(2020, 2, 4, 8, 30, 0, 250000))],
        id="time-from-issued-in-utc",
    ),
    pytest.param(
        obs("8867-4", issued="2021-01-01T00:00:00Z", valueQuantity=qty(70, "/min")),
        [m("heart_rate", "8867-4", 70, ("70", "/min"))],
        id="effective-before-issued",
    ),
    pytest.param(
        obs(
            "8867-4", effectiveDateTime=None, effectiveInstant="2020-02-05T06:07:08.123Z", valueQuantity=qty(70, "/min")
        ),
        [m("heart_rate", "8867-4", 70, ("70", "/min"), effective=datetime(2020, 2, 5, 6, 7, 8, 123000))],
        id="time-from-instant",
    ),
    pytest.param(
        obs("8867-4", effectiveDateTime="2020-02", valueQuantity=qty(70, "/min")),
        [m("heart_rate", "8867-4", 70, ("70", "/min"), effective=datetime(2020, 2, 1))],
        id="partial-date-is-its-start",
    ),
    pytest.param(
        obs("8867-4", effectiveDateTime=None, valueQuantity=qty(70, "/min")),
        [m("heart_rate", "8867-4", 70, ("70", "/min"), effective=None, flag="no-time")],
        id="no-time",
    ),
    # Values and units.
    pytest.param(
        obs(
            "8867-4",
            dataAbsentReason=concept(("http://terminology.hl7.org/CodeSystem/data-absent-reason", "asked-unknown")),
        ),
        [m("heart_rate", "8867-4", None, flag="no-value")],
        id="data-absent-reason-no-value",
    ),
    pytest.param(
        obs("8867-4", valueQuantity={"unit": "/min", "system": UCUM, "code": "/min"}),
        [m("heart_rate", "8867-4", None, flag="no-value")],
        id="quantity-without-value",
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(True, "/min")),
        [m("heart_rate", "8867-4", None, flag="no-value")],
        id="boolean-is-no-number",
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(72, unit="/min")),
        [m("heart_rate", "8867-4", 72, ("72", "/min"))],
        id="no-system-unit-is-canonical",
    ),
    pytest.param(
        obs("8310-5", valueQuantity=qty(100, unit="[degF]")),
        [m("body_temperature", "8310-5", 37.777777778, ("100", "[degF]"), converted=True)],
        id="no-system-unit-has-a-conversion",
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(72, "bpm", "/min", system="http://example.org/units")),
        [m("heart_rate", "8867-4", 72, ("72", "/min"))],
        id="other-system-but-unit-is-canonical",
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(Decimal("1.2"), "Hz")),
        [m("heart_rate", "8867-4", None, ("1.2", "Hz"), flag="unit")],
        id="unknown-ucum-unit",
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(72, unit="beats per minute")),
        [m("heart_rate", "8867-4", None, ("72", "beats per minute"), flag="unit")],
        id="free-text-unit",
    ),
    pytest.param(
        obs("8310-5", valueQuantity=qty(37, unit="degC")),
        [m("body_temperature", "8310-5", None, ("37", "degC"), flag="unit")],
        id="not-the-ucum-code",
    ),
    # Plausibility (inclusive bounds): what no living human shows, or a unit or entry error.
    pytest.param(
        obs("8867-4", valueQuantity=qty(0, "/min")), [m("heart_rate", "8867-4", 0, ("0", "/min"))], id="asystole"
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(600, "/min")),
        [m("heart_rate", "8867-4", 600, ("600", "/min"))],
        id="fastest-rate-on-record",
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(-1, "/min")),
        [m("heart_rate", "8867-4", -1, ("-1", "/min"), flag="implausible")],
        id="below-range",
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(Decimal("600.1"), "/min")),
        [m("heart_rate", "8867-4", 600.1, ("600.1", "/min"), flag="implausible")],
        id="above-range",
    ),
    # A dying patient's readings are data.
    pytest.param(
        obs("59408-5", valueQuantity=qty(45, "%")),
        [m("oxygen_saturation", "59408-5", 45, ("45", "%"))],
        id="dying-spo2-45",
    ),
    pytest.param(
        obs("8480-6", valueQuantity=qty(40, "mm[Hg]")),
        [m("systolic_bp", "8480-6", 40, ("40", "mm[Hg]"))],
        id="dying-systolic-40",
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(15, "/min")), [m("heart_rate", "8867-4", 15, ("15", "/min"))], id="dying-hr-15"
    ),
    pytest.param(
        obs("8310-5", valueQuantity=qty(24, "Cel")),
        [m("body_temperature", "8310-5", 24, ("24", "Cel"))],
        id="dying-temperature-24",
    ),
    # Entry and unit errors are still flagged.
    pytest.param(
        obs("59408-5", valueQuantity=qty(150, "%")),
        [m("oxygen_saturation", "59408-5", 150, ("150", "%"), flag="implausible")],
        id="spo2-150",
    ),
    pytest.param(
        obs("8310-5", valueQuantity=qty(Decimal("98.6"), "Cel")),
        [m("body_temperature", "8310-5", 98.6, ("98.6", "Cel"), flag="implausible")],
        id="fahrenheit-sent-as-celsius",
    ),
    pytest.param(
        obs("8867-4", valueQuantity=qty(900, "/min")),
        [m("heart_rate", "8867-4", 900, ("900", "/min"), flag="implausible")],
        id="hr-900",
    ),
    # Statuses.
    pytest.param(
        obs("8867-4", status="preliminary", valueQuantity=qty(72, "/min")),
        [m("heart_rate", "8867-4", 72, ("72", "/min"), flag="status")],
        id="preliminary",
    ),
    pytest.param(
        obs("8867-4", status="amended", valueQuantity=qty(72, "/min")),
        [m("heart_rate", "8867-4", 72, ("72", "/min"))],
        id="amended-is-accepted",
    ),
    pytest.param(
        obs("8867-4", status="registered", effectiveDateTime=None, valueQuantity=qty(900, "/min")),
        [m("heart_rate", "8867-4", 900, ("900", "/min"), effective=None, flag="implausible")],
        id="value-flags-come-first",
    ),
    pytest.param(
        obs("8867-4", status="preliminary", effectiveDateTime=None, valueQuantity=qty(72, "/min")),
        [m("heart_rate", "8867-4", 72, ("72", "/min"), effective=None, flag="status")],
        id="status-before-time",
    ),
    # Codes.
    pytest.param(
        obs(["2708-6", "59408-5"], valueQuantity=qty(97, "%")),
        [m("oxygen_saturation", "2708-6", 97, ("97", "%"))],
        id="two-codes-one-measurement",
    ),
    pytest.param(
        obs(
            "85354-9",
            component=[
                {"code": concept((LOINC, "8480-6")), "valueQuantity": qty(120, "mm[Hg]")},
                {"code": concept((LOINC, "8462-4")), "valueQuantity": qty(80, "mm[Hg]")},
            ],
        ),
        [m("systolic_bp", "8480-6", 120, ("120", "mm[Hg]")), m("diastolic_bp", "8462-4", 80, ("80", "mm[Hg]"))],
        id="panel-components",
    ),
    pytest.param(obs("1234-5", valueQuantity=qty(1, "/min")), [], id="unmapped-code"),
    pytest.param(
        {
            **obs("8867-4", valueQuantity=qty(72, "/min")),
            "code": {"coding": [{"system": "http://acme.org", "code": "8867-4"}]},
        },
        [],
        id="right-code-other-system",
    ),
    # Coded fields.
    pytest.param(
        obs("72166-2", valueCodeableConcept=concept((SNOMED, "449868002"))),
        [m("smoking_status", "72166-2", None, (f"{SNOMED}|449868002", None), category="current")],
        id="smoking-current",
    ),
    pytest.param(
        obs("72166-2", valueCodeableConcept=concept(("http://acme.org", "x"), (SNOMED, "8517006"))),
        [m("smoking_status", "72166-2", None, (f"{SNOMED}|8517006", None), category="former")],
        id="smoking-former-second-coding",
    ),
    pytest.param(
        obs("67775-7", valueCodeableConcept=concept(text="NEW CONFUSION")),
        [m("consciousness", "67775-7", None, ("NEW CONFUSION", None), category="confusion")],
        id="answer-by-text-any-case",
    ),
    pytest.param(
        obs("67775-7", valueCodeableConcept=concept((LOINC, "LA9343-0"))),
        [m("consciousness", "67775-7", None, (f"{LOINC}|LA9343-0", None), category="unresponsive")],
        id="answer-by-loinc-answer-code",
    ),
    pytest.param(
        obs("72166-2", valueCodeableConcept=concept((SNOMED, "999999"), text="Pipe smoker")),
        [m("smoking_status", "72166-2", None, (f"{SNOMED}|999999", None), flag="unknown-answer")],
        id="unknown-answer-code",
    ),
    pytest.param(
        obs("67775-7", valueCodeableConcept=concept(text="Sleepy")),
        [m("consciousness", "67775-7", None, ("Sleepy", None), flag="unknown-answer")],
        id="unknown-answer-text",
    ),
    pytest.param(
        obs("72166-2", valueQuantity=qty(1, "1")),
        [m("smoking_status", "72166-2", None, flag="no-value")],
        id="coded-field-without-concept",
    ),
    pytest.param(
        obs("72166-2", status="preliminary", valueCodeableConcept=concept((SNOMED, "266919005"))),
        [m("smoking_status", "72166-2", None, (f"{SNOMED}|266919005", None), category="never", flag="status")],
        id="coded-status-flag",
    ),
]


@pytest.mark.parametrize(("observation", "expected"), MEASUREMENTS)
def test_measurements(observation: dict[str, Any], expected: list[Measurement]) -> None:
    found = measurements(observation, MAPPING)
    assert [asdict(one) for one in found] == [
        {**asdict(want), "value": None if want.value is None else pytest.approx(want.value, rel=1e-9)}
        for want in expected
    ]


COND_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
COND_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def condition(verification: str | None = "confirmed", **elements: Any) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": concept((COND_CLINICAL, "active")),
        "code": {"coding": [{"system": SNOMED, "code": "44054006", "display": "Diabetes mellitus type 2"}]},
        "subject": {"reference": "Patient/p"},
        "onsetDateTime": "2015-03-01",
    }
    if verification is not None:
        resource["verificationStatus"] = concept((COND_VERIFICATION, verification))
    resource.update(elements)
    return {key: value for key, value in resource.items() if value is not None}


DIABETES = f"{SNOMED}|44054006"
CONFIRMED = {"verification": [f"{COND_VERIFICATION}|confirmed"]}

# (id, resource, the case entries it gives)
ENTRIES = [
    pytest.param(
        condition(),
        [
            CaseEntry(
                "conditions", DIABETES, "Diabetes mellitus type 2", "active", datetime(2015, 3, 1), None, CONFIRMED
            )
        ],
        id="condition",
    ),
    pytest.param(
        condition(
            None,
            clinicalStatus=concept((COND_CLINICAL, "resolved")),
            onsetDateTime=None,
            onsetPeriod={"start": "2019-01-01T00:00:00+02:00"},
            abatementDateTime="2019-02-01",
            category=[concept(("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item"))],
        ),
        [
            CaseEntry(
                "conditions",
                DIABETES,
                "Diabetes mellitus type 2",
                "resolved",
                datetime(2018, 12, 31, 22, 0),
                datetime(2019, 2, 2),  # an end given to the day lasts the whole day
                {"category": ["http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"]},
            )
        ],
        id="condition-onset-period-and-abatement",
    ),
    pytest.param(
        condition(None, code={"text": "Back pain"}, clinicalStatus=None, onsetDateTime=None),
        [CaseEntry("conditions", None, "Back pain", None, None, None, {})],
        id="condition-text-only",
    ),
    pytest.param(condition("entered-in-error"), [], id="condition-entered-in-error"),
    pytest.param(condition("refuted"), [], id="condition-refuted"),
    pytest.param(
        {
            "resourceType": "DiagnosticReport",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "57698-3", "display": "Lipid panel"}]},
            "subject": {"reference": "Patient/p"},
            "effectivePeriod": {"start": "2022-03-10T08:00:00Z", "end": "2022-03-10T09:00:00Z"},
            "result": [{"reference": "Observation/a"}, {"reference": "Observation/b"}],
        },
        [
            CaseEntry(
                "diagnostic_reports",
                f"{LOINC}|57698-3",
                "Lipid panel",
                "final",
                datetime(2022, 3, 10, 8, 0),
                None,
                {"results": ["Observation/a", "Observation/b"]},
            )
        ],
        id="report-results",
    ),
    pytest.param(
        {"resourceType": "DiagnosticReport", "status": "entered-in-error", "code": {"text": "x"}},
        [],
        id="report-entered-in-error",
    ),
    pytest.param(
        {"resourceType": "DiagnosticReport", "status": "cancelled", "code": {"text": "x"}},
        [],
        id="report-cancelled",
    ),
    pytest.param(
        {
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "type": [concept((SNOMED, "183452005"))],
            "period": {"start": "2020-01-01T10:00:00+01:00"},
        },
        [
            CaseEntry(
                "encounters",
                f"{SNOMED}|183452005",
                None,
                "in-progress",
                datetime(2020, 1, 1, 9, 0),
                None,
                {"class": ["http://terminology.hl7.org/CodeSystem/v3-ActCode|IMP"]},
            )
        ],
        id="encounter-open",
    ),
    pytest.param(
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationReference": {"reference": "Medication/med1", "display": "Metformin 500 mg"},
            "authoredOn": "2018-04-02",
        },
        [
            CaseEntry(
                "medications", None, "Metformin 500 mg", "active", datetime(2018, 4, 2), None, {"intent": ["order"]}
            )
        ],
        id="medication-by-reference",
    ),
    pytest.param(
        {
            "resourceType": "MedicationRequest",
            "status": "cancelled",
            "intent": "order",
            "medicationCodeableConcept": {"text": "Metformin"},
        },
        [],
        id="medication-cancelled",
    ),
    pytest.param(
        {
            "resourceType": "Procedure",
            "status": "completed",
            "code": concept((SNOMED, "80146002")),
            "performedPeriod": {"start": "2017-05-05T08:00:00Z", "end": "2017-05-05T09:15:00Z"},
        },
        [
            CaseEntry(
                "procedures",
                f"{SNOMED}|80146002",
                None,
                "completed",
                datetime(2017, 5, 5, 8, 0),
                datetime(2017, 5, 5, 9, 15),
                {},
            )
        ],
        id="procedure-period",
    ),
    pytest.param(
        {
            "resourceType": "CarePlan",
            "status": "active",
            "intent": "plan",
            "category": [concept((SNOMED, "698360004"))],
            "period": {"start": "2018-04-02", "end": "2019-04-02"},
            "addresses": [{"reference": "Condition/c1"}, {"reference": "Condition/c2"}],
        },
        [
            CaseEntry(
                "care_plans",
                f"{SNOMED}|698360004",
                None,
                "active",
                datetime(2018, 4, 2),
                datetime(2019, 4, 3),  # an end given to the day lasts the whole day
                {"addresses": ["Condition/c1", "Condition/c2"]},
            )
        ],
        id="care-plan",
    ),
]


@pytest.mark.parametrize(("resource", "expected"), ENTRIES)
def test_case_entries(resource: dict[str, Any], expected: list[CaseEntry]) -> None:
    assert case_entries(resource, MAPPING.case_of[resource["resourceType"]]) == expected


def test_types_without_a_case_list_give_no_entries() -> None:
    assert "Observation" not in MAPPING.case_of
    assert "AllergyIntolerance" not in MAPPING.types
    assert case_entries({"resourceType": "AllergyIntolerance"}, MAPPING.case_of.get("AllergyIntolerance", [])) == []
