"""What each model reads from a twin (``ml.inputs``) and which case entries mean what
(``ml.concepts``): pure tests on twin documents built from the real ``mappings/``."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any, get_args

import pytest

from fhir_twin.config import Config
from fhir_twin.errors import Invalid
from fhir_twin.ml import concepts
from fhir_twin.ml.inputs import (
    atp3_inputs,
    input_names,
    news2_inputs,
    pooled_cohort_inputs,
    qsofa_inputs,
    simulate,
)
from fhir_twin.ml.scores.model import Consciousness
from fhir_twin.ml.scores.news2 import News2Inputs, news2
from fhir_twin.ml.scores.pooled_cohort import PooledCohortInputs
from fhir_twin.twin.body import Point, field_states
from fhir_twin.twin.document import CaseItem, PatientSummary, TwinDocument
from fhir_twin.twin.mapping_file import load_mappings
from fhir_twin.twin.quality import quality
from tests.ml.doctor_data import ICD10CM, RXNORM, SNOMED, TYPE_2_DIABETES

MAPPING = load_mappings(Config().resolved_mappings_dir)
NOW = datetime(2026, 3, 2, 9, 0)  # naive UTC, as the twin holds times
TAKEN = NOW - timedelta(minutes=10)
WINDOW = timedelta(hours=1)
ICD10 = "http://hl7.org/fhir/sid/icd-10"

# The medium NEWS2 vector (22, 94, air, 105, 95, A, 38.2) as twin fields.
MEDIUM_SET = {
    "respiratory_rate": 22,
    "oxygen_saturation": 94,
    "inspired_oxygen": 21,
    "systolic_bp": 105,
    "heart_rate": 95,
    "body_temperature": 38.2,
    "consciousness": "alert",
}
# twin field → the NEWS2 input it feeds
NEWS2_FIELDS = {
    "respiratory_rate": "respiratory_rate",
    "oxygen_saturation": "spo2",
    "inspired_oxygen": "supplemental_oxygen",
    "systolic_bp": "systolic_bp",
    "heart_rate": "pulse",
    "body_temperature": "temperature",
    "consciousness": "consciousness",
}


def source(name: str, version: int = 1) -> str:
    return f"Observation/{name}/_history/{version}"


def reading(name: str, value: float | str, at: datetime = TAKEN, version: int = 1) -> tuple[str, Point]:
    """One usable point of twin field ``name``: a number, or a coded field's category."""
    coded = isinstance(value, str)
    point = Point(
        time=at,
        value=None if coded else float(value),
        category=value if coded else None,
        unit=None if coded else MAPPING.fields[name].unit,
        original_value=str(value),
        original_unit=None,
        converted=False,
        flag=None,
        source=source(name, version),
    )
    return name, point


def case_item(
    kind: str, code: str | None, display: str | None, status: str | None = "active", res_id: str = "x", **details: Any
) -> CaseItem:
    resource = {"conditions": "Condition", "medications": "MedicationRequest"}[kind]
    return CaseItem(kind, f"{resource}/{res_id}/_history/1", code, display, status, None, None, dict(details))


def document(
    *readings: tuple[str, Point],
    case: tuple[CaseItem, ...] = (),
    gender: str | None = "male",
    age: int | None = 55,
    race: str | None = "White",
) -> TwinDocument:
    series: dict[str, list[Point]] = {}
    for name, point in readings:
        series.setdefault(name, []).append(point)
    kinds: dict[str, list[CaseItem]] = {name: [] for name in MAPPING.case}
    for item in case:
        kinds[item.kind].append(item)
    who = PatientSummary("p1", "Patient/p1/_history/1", gender, None, age, False, race)
    return TwinDocument(who, None, NOW, field_states(series, MAPPING, NOW), kinds, quality(series, MAPPING))


def medium_set(**changes: Any) -> list[tuple[str, Point]]:
    """The medium set taken 10 minutes ago; ``changes`` maps a field to a value, to
    ``(value, time)``, or to None to leave it out."""
    found = []
    for name, value in {**MEDIUM_SET, **changes}.items():
        if value is None:
            continue
        found.append(reading(name, *value) if isinstance(value, tuple) else reading(name, value))
    return found


# --- NEWS2 ----------------------------------------------------------------------------------


def test_a_complete_set() -> None:
    gathered = news2_inputs(document(*medium_set()), WINDOW)
    assert gathered.inputs == News2Inputs(
        respiratory_rate=22,
        spo2=94,
        supplemental_oxygen=False,
        systolic_bp=105,
        pulse=95,
        consciousness="alert",
        temperature=38.2,
        hypercapnic_respiratory_failure=False,
    )
    assert sorted(gathered.basis) == sorted(source(name) for name in MEDIUM_SET)
    assert (gathered.notes, gathered.stale) == ((), False)
    assert news2(gathered.inputs).value == 6


@pytest.mark.parametrize("field", list(NEWS2_FIELDS))
def test_a_value_outside_the_window_of_the_newest_counts_as_missing(field: str) -> None:
    old = TAKEN - WINDOW - timedelta(seconds=1)
    gathered = news2_inputs(document(*medium_set(**{field: (MEDIUM_SET[field], old)})), WINDOW)
    assert getattr(gathered.inputs, NEWS2_FIELDS[field]) is None
    assert source(field) not in gathered.basis
    assert len(gathered.basis) == len(MEDIUM_SET) - 1
    (note,) = gathered.notes
    assert note == f"{field} ({old:%Y-%m-%d %H:%M}) is outside the PT1H window of the set"
    assert news2(gathered.inputs).missing == (NEWS2_FIELDS[field],)


def test_a_value_exactly_one_window_older_is_in_the_set() -> None:
    edge = TAKEN - WINDOW
    gathered = news2_inputs(document(*medium_set(body_temperature=(38.2, edge))), WINDOW)
    assert gathered.inputs.temperature == 38.2
    assert gathered.notes == ()


def test_a_newer_single_reading_starts_a_new_set() -> None:
    """The window is measured from the newest value: a heart rate three hours after the set
    leaves the set's other values out, so NEWS2 waits for a complete new set."""
    later = reading("heart_rate", 88, TAKEN + timedelta(hours=3), version=2)
    gathered = news2_inputs(document(*medium_set(), later), WINDOW)
    assert gathered.inputs.pulse == 88
    assert gathered.basis == (source("heart_rate", 2),)
    assert set(news2(gathered.inputs).missing) == set(NEWS2_FIELDS.values()) - {"pulse"}
    assert len(gathered.notes) == len(NEWS2_FIELDS) - 1


def test_a_set_older_than_a_day_is_stale() -> None:
    """Vital signs go stale after PT24H (mappings/vital-signs.yaml): still scored, but flagged."""
    old = NOW - timedelta(days=2)
    gathered = news2_inputs(document(*medium_set(**{name: (value, old) for name, value in MEDIUM_SET.items()})), WINDOW)
    assert gathered.stale
    assert news2(gathered.inputs).value == 6
    assert any(note.startswith("Respiratory rate is older than") for note in gathered.notes), gathered.notes


@pytest.mark.parametrize("category", get_args(Consciousness))
def test_consciousness_categories(category: str) -> None:
    gathered = news2_inputs(document(*medium_set(consciousness=category)), WINDOW)
    assert gathered.inputs.consciousness == category
    assert news2(gathered.inputs).value == 6 + (0 if category == "alert" else 3)


def test_every_acvpu_answer_of_the_mapping_is_a_news2_category() -> None:
    assert set(MAPPING.fields["consciousness"].values.values()) == set(get_args(Consciousness))


def test_an_acvpu_category_news2_does_not_know_is_missing() -> None:
    gathered = news2_inputs(document(*medium_set(consciousness="drowsy")), WINDOW)
    assert gathered.inputs.consciousness is None


@pytest.mark.parametrize(
    ("oxygen", "supplemental"),
    [
        ({"inspired_oxygen": 21}, False),
        ({"inspired_oxygen": 28}, True),
        ({"inspired_oxygen": None, "oxygen_flow": 0}, False),
        ({"inspired_oxygen": None, "oxygen_flow": 2}, True),
        ({"inspired_oxygen": 21, "oxygen_flow": 2}, True),
        ({"inspired_oxygen": 28, "oxygen_flow": 0}, True),
        ({"inspired_oxygen": None}, None),
    ],
    ids=["fio2-21-air", "fio2-28", "flow-0-air", "flow-2", "air-but-flow", "fio2-but-flow-0", "neither"],
)
def test_oxygen_from_inspired_fraction_or_flow(oxygen: dict[str, float | None], supplemental: bool | None) -> None:
    gathered = news2_inputs(document(*medium_set(**oxygen)), WINDOW)
    assert gathered.inputs.supplemental_oxygen is supplemental
    for name, value in oxygen.items():
        assert (source(name) in gathered.basis) is (value is not None)


@pytest.mark.parametrize(
    ("condition", "scale_2"),
    [
        (case_item("conditions", f"{ICD10CM}|J96.02", "Acute respiratory failure with hypercapnia"), True),
        (case_item("conditions", f"{ICD10CM}|J96.12", "Chronic respiratory failure with hypercapnia"), True),
        (case_item("conditions", None, "Chronic hypercapnic respiratory failure"), True),
        (case_item("conditions", f"{ICD10CM}|J96.02", "Acute respiratory failure", status="resolved"), False),
        (case_item("conditions", f"{ICD10CM}|J96.01", "Acute respiratory failure with hypoxia"), False),
        (case_item("conditions", f"{SNOMED}|{TYPE_2_DIABETES}", "Diabetes mellitus type 2"), False),
    ],
    ids=["J96.02", "J96.12", "text", "resolved", "hypoxic", "other"],
)
def test_spo2_scale_2_for_hypercapnic_respiratory_failure(condition: CaseItem, scale_2: bool) -> None:
    gathered = news2_inputs(document(*medium_set(oxygen_saturation=90), case=(condition,)), WINDOW)
    assert gathered.inputs.hypercapnic_respiratory_failure is scale_2
    assert (condition.source in gathered.basis) is scale_2
    assert any("SpO2 scale 2" in note for note in gathered.notes) is scale_2
    # SpO2 90 on air: 0 on scale 2, 3 on scale 1
    assert news2(gathered.inputs).value == (5 if scale_2 else 8)


# --- qSOFA ----------------------------------------------------------------------------------


def test_qsofa_reads_its_three_criteria_only() -> None:
    gathered = qsofa_inputs(document(*medium_set()), WINDOW)
    assert (gathered.inputs.respiratory_rate, gathered.inputs.systolic_bp, gathered.inputs.consciousness) == (
        22,
        105,
        "alert",
    )
    assert sorted(gathered.basis) == sorted(
        source(name) for name in ("respiratory_rate", "systolic_bp", "consciousness")
    )


def test_qsofa_keeps_the_window_rule() -> None:
    old = TAKEN - timedelta(hours=2)
    gathered = qsofa_inputs(document(*medium_set(consciousness=("voice", old))), WINDOW)
    assert gathered.inputs.consciousness is None
    assert source("consciousness") not in gathered.basis


# --- Pooled Cohort Equations and ATP III ----------------------------------------------------

CARDIOVASCULAR = (
    reading("total_cholesterol", 213, NOW - timedelta(days=20)),
    reading("hdl_cholesterol", 50, NOW - timedelta(days=20)),
    reading("systolic_bp", 120),
    reading("smoking_status", "never", NOW - timedelta(days=20)),
)


def test_cardiovascular_inputs() -> None:
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR))
    assert gathered.inputs == PooledCohortInputs(
        age=55,
        sex="male",
        race="white",
        total_cholesterol=213,
        hdl=50,
        systolic_bp=120,
        bp_treated=False,
        smoker=False,
        diabetes=False,
    )
    assert sorted(gathered.basis) == sorted(["Patient/p1/_history/1", *(point.source for _, point in CARDIOVASCULAR)])
    assert not gathered.stale
    atp = atp3_inputs(document(*CARDIOVASCULAR)).inputs
    assert (atp.age, atp.sex, atp.total_cholesterol, atp.hdl, atp.systolic_bp) == (55, "male", 213, 50, 120)


@pytest.mark.parametrize(
    ("race", "expected"),
    [
        ("White", "white"),
        ("Black or African American", "african_american"),
        ("Asian", "other"),
        (None, None),
    ],
)
def test_race_from_the_us_core_category(race: str | None, expected: str | None) -> None:
    assert pooled_cohort_inputs(document(*CARDIOVASCULAR, race=race)).inputs.race == expected


@pytest.mark.parametrize(
    ("category", "smoker"), [("current", True), ("former", False), ("never", False), ("unknown", None)]
)
def test_smoking_status(category: str, smoker: bool | None) -> None:
    readings = [*CARDIOVASCULAR[:3], reading("smoking_status", category)]
    gathered = pooled_cohort_inputs(document(*readings))
    assert gathered.inputs.smoker is smoker
    assert (source("smoking_status") in gathered.basis) is (smoker is not None)


@pytest.mark.parametrize(
    ("medication", "treated"),
    [
        (case_item("medications", f"{RXNORM}|314076", "lisinopril 10 MG Oral Tablet"), True),
        (case_item("medications", f"{RXNORM}|197361", "Amlodipine 5 MG Oral Tablet"), True),
        (case_item("medications", f"{RXNORM}|314076", "lisinopril 10 MG Oral Tablet", status="stopped"), False),
        (case_item("medications", f"{RXNORM}|860975", "metformin 500 MG Oral Tablet"), False),
        (
            case_item("medications", None, "spironolactone 25 MG Oral Tablet", reason=[f"{ICD10CM}|I10"]),
            True,
        ),
    ],
    ids=["lisinopril", "amlodipine", "stopped", "metformin", "for-hypertension"],
)
def test_treatment_from_the_case(medication: CaseItem, treated: bool) -> None:
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR, case=(medication,)))
    assert gathered.inputs.bp_treated is treated
    assert (medication.source in gathered.basis) is treated


def test_diabetes_from_a_condition() -> None:
    diabetes = case_item("conditions", f"{SNOMED}|{TYPE_2_DIABETES}", "Diabetes mellitus type 2")
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR, case=(diabetes,)))
    assert gathered.inputs.diabetes is True
    assert diabetes.source in gathered.basis
    assert atp3_inputs(document(*CARDIOVASCULAR, case=(diabetes,))).inputs.diabetes is True


@pytest.mark.parametrize(("hba1c", "diabetes"), [(7.1, True), (6.5, True), (6.4, False)])
def test_diabetes_from_hba1c(hba1c: float, diabetes: bool) -> None:
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR, reading("hba1c", hba1c)))
    assert gathered.inputs.diabetes is diabetes
    assert (source("hba1c") in gathered.basis) is diabetes
    assert any("HbA1c" in note for note in gathered.notes) is diabetes


def test_missing_patient_data_stays_missing() -> None:
    gathered = pooled_cohort_inputs(document(gender="unknown", age=None, race=None))
    inputs = gathered.inputs
    assert (inputs.age, inputs.sex, inputs.race, inputs.total_cholesterol, inputs.hdl, inputs.systolic_bp) == (
        None,
    ) * 6
    assert inputs.smoker is None
    # No record of treatment or diabetes counts as none, as EHR-based calculators read it.
    assert (inputs.bp_treated, inputs.diabetes) == (False, False)


def test_a_stale_lab_makes_the_inputs_stale() -> None:
    old = reading("total_cholesterol", 213, NOW - timedelta(days=400))
    gathered = pooled_cohort_inputs(document(old, *CARDIOVASCULAR[1:]))
    assert gathered.stale
    (note,) = gathered.notes
    assert note.startswith("Total cholesterol is older than")
    assert f"({(NOW - timedelta(days=400)):%Y-%m-%d})" in note


# --- $whatif values -------------------------------------------------------------------------


def test_simulate_puts_parsed_values_in() -> None:
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR))
    changed = simulate(gathered, {"systolic_bp": "142.5", "smoker": "TRUE", "race": "african_american", "gcs": "3"})
    assert (changed.inputs.systolic_bp, changed.inputs.smoker, changed.inputs.race) == (142.5, True, "african_american")
    assert changed.inputs.hdl == gathered.inputs.hdl
    assert changed.basis == gathered.basis
    assert changed.notes == (
        "simulated: systolic_bp = 142.5",
        "simulated: smoker = TRUE",
        "simulated: race = african_american",
    )
    assert gathered.inputs.systolic_bp == 120  # the real inputs are untouched


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("systolic_bp", "abc", "systolic_bp must be a number, not 'abc'"),
        ("systolic_bp", "-5", "systolic_bp must be a finite, non-negative number, not '-5'"),
        ("systolic_bp", "nan", "systolic_bp must be a finite, non-negative number, not 'nan'"),
        ("systolic_bp", "inf", "systolic_bp must be a finite, non-negative number, not 'inf'"),
        ("smoker", "maybe", "smoker must be true or false, not 'maybe'"),
        ("sex", "other", "sex must be one of female, male, not 'other'"),
        ("race", "asian", "race must be one of white, african_american, other, not 'asian'"),
    ],
)
def test_simulate_rejects_bad_values(name: str, raw: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        simulate(pooled_cohort_inputs(document(*CARDIOVASCULAR)), {name: raw})
    assert str(caught.value) == message


def test_simulate_consciousness_choices() -> None:
    gathered = news2_inputs(document(*medium_set()), WINDOW)
    assert simulate(gathered, {"consciousness": "pain"}).inputs.consciousness == "pain"
    with pytest.raises(Invalid):
        simulate(gathered, {"consciousness": "asleep"})


def test_input_names_are_the_fields_of_the_inputs() -> None:
    assert input_names(PooledCohortInputs) == tuple(f.name for f in dataclasses.fields(PooledCohortInputs))
    assert "supplemental_oxygen" in input_names(News2Inputs)


# --- concepts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "display", "matches"),
    [
        (f"{SNOMED}|44054006", None, True),
        (f"{SNOMED}|46635009", None, True),
        (f"{SNOMED}|73211009", None, True),
        (f"{ICD10CM}|E11.9", None, True),
        (f"{ICD10}|E10", None, True),
        (f"{ICD10CM}|e11.65", None, True),
        (f"{ICD10CM}|E16.2", None, False),
        (f"{SNOMED}|15777000", "Prediabetes", False),
        ("http://loinc.org|44054006", None, False),
        (None, "Diabetes mellitus type 2", False),  # diabetes is matched by code only
    ],
)
def test_diabetes_concept(code: str | None, display: str | None, matches: bool) -> None:
    assert concepts.DIABETES.matches(code, display) is matches


@pytest.mark.parametrize(
    ("code", "matches"),
    [
        (f"{SNOMED}|38341003", True),
        (f"{SNOMED}|59621000", True),
        (f"{ICD10CM}|I10", True),
        (f"{ICD10CM}|I13.0", True),
        (f"{ICD10CM}|I20.9", False),
        (f"{ICD10CM}|I14", False),
    ],
)
def test_hypertension_concept(code: str, matches: bool) -> None:
    assert concepts.HYPERTENSION.matches(code, None) is matches


@pytest.mark.parametrize(
    ("code", "display", "matches"),
    [
        (f"{ICD10CM}|J96.02", None, True),
        (f"{ICD10CM}|J96.22", None, True),
        (f"{ICD10CM}|J96.92", None, True),
        (f"{ICD10CM}|J96.01", None, False),
        (f"{ICD10CM}|J96.00", "Acute respiratory failure", False),
        (None, "Hypercapnia", True),
    ],
)
def test_hypercapnic_respiratory_failure_concept(code: str | None, display: str | None, matches: bool) -> None:
    assert concepts.HYPERCAPNIC_RESPIRATORY_FAILURE.matches(code, display) is matches


@pytest.mark.parametrize(
    ("display", "reasons", "antihypertensive"),
    [
        ("lisinopril 10 MG Oral Tablet", [], True),
        ("Hydrochlorothiazide 25 MG Oral Tablet", [], True),
        ("METOPROLOL SUCCINATE 50 MG", [], True),
        ("losartan potassium 50 MG / hydrochlorothiazide 12.5 MG Oral Tablet", [], True),
        ("metformin hydrochloride 500 MG Oral Tablet", [], False),
        ("atorvastatin 20 MG Oral Tablet", [], False),
        (None, [], False),
        ("spironolactone 25 MG Oral Tablet", [f"{SNOMED}|59621000"], True),
        ("spironolactone 25 MG Oral Tablet", [f"{ICD10CM}|I50.9"], False),
    ],
)
def test_antihypertensive_by_ingredient_or_reason(
    display: str | None, reasons: list[str], antihypertensive: bool
) -> None:
    assert concepts.is_antihypertensive(display, reasons) is antihypertensive
