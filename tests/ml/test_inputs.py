"""What each model reads from a twin (``ml.inputs``): the contemporaneous NEWS2 and qSOFA sets,
the long-term cardiovascular picture, what the record shows about applicability, what-if
readings, and which case entries mean what (``ml.concepts``, ``ml.medicines``, ``ml.race``).
Pure tests on twin documents built from the real ``mappings/``."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, get_args

import pytest

from fhir_twin.config import Config
from fhir_twin.errors import Invalid
from fhir_twin.ml import concepts, medicines, race, simulation, words
from fhir_twin.ml.inputs import atp3_inputs, news2_inputs, pooled_cohort_inputs, qsofa_inputs
from fhir_twin.ml.scores.news2 import news2
from fhir_twin.ml.scores.pooled_cohort import pooled_cohort
from fhir_twin.ml.scores.qsofa import qsofa
from fhir_twin.ml.scores.score import Consciousness
from fhir_twin.twin.body import Point, field_states
from fhir_twin.twin.document import CaseItem, PatientSummary, TwinDocument
from fhir_twin.twin.mapping_file import load_mappings
from tests.ml.doctor_data import ICD10CM, NEWS2_MEDIUM, RXNORM, SNOMED, TYPE_2_DIABETES

MAPPING = load_mappings(Config().resolved_mappings_dir)
NOW = datetime(2026, 3, 2, 9, 0)  # naive UTC, as the twin holds times
TAKEN = NOW - timedelta(minutes=10)
WINDOW = timedelta(hours=1)
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
ATC = "http://www.whocc.no/atc"
V3_ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
RESOURCE = {
    "conditions": "Condition",
    "medications": "MedicationRequest",
    "procedures": "Procedure",
    "encounters": "Encounter",
    "goals": "Goal",
}

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
    "systolic_bp": "systolic_bp",
    "heart_rate": "pulse",
    "body_temperature": "temperature",
}


def source(name: str, version: int = 1) -> str:
    return f"Observation/{name}/_history/{version}"


def reading(
    name: str, value: float | str, at: datetime = TAKEN, version: int = 1, flag: str | None = None
) -> tuple[str, Point]:
    """One point of twin field ``name``: a number, or a coded field's category; usable unless flagged."""
    coded = isinstance(value, str)
    point = Point(
        time=at,
        value=None if coded else float(value),
        category=value if coded else None,
        unit=None if coded else MAPPING.fields[name].unit,
        original_value=str(value),
        original_unit=None if coded else MAPPING.fields[name].unit,
        converted=False,
        flag=flag,
        source=source(f"{name}-{at:%H%M}-{value}" if flag else name, version),
    )
    return name, point


def case_item(
    kind: str,
    code: str | None,
    display: str | None,
    status: str | None = "active",
    res_id: str = "x",
    start: datetime | None = None,
    end: datetime | None = None,
    **details: Any,
) -> CaseItem:
    return CaseItem(kind, f"{RESOURCE[kind]}/{res_id}/_history/1", code, display, status, start, end, dict(details))


def document(
    *readings: tuple[str, Point],
    case: tuple[CaseItem, ...] = (),
    gender: str | None = "male",
    age: int | None = 55,
    race_text: str | None = "White",
    race_codes: tuple[str, ...] = ("2106-3",),
) -> TwinDocument:
    series: dict[str, list[Point]] = {}
    for name, point in sorted(readings, key=lambda found: found[1].time or datetime.min):
        series.setdefault(name, []).append(point)
    kinds: dict[str, list[CaseItem]] = {name: [] for name in MAPPING.case}
    for item in case:
        kinds[item.kind].append(item)
    who = PatientSummary("p1", "Patient/p1/_history/1", gender, None, age, False, race_text, race_codes)
    return TwinDocument(who, None, NOW, field_states(series, MAPPING, NOW), kinds, MAPPING, series=series)


def medium_set(**changes: Any) -> list[tuple[str, Point]]:
    """The medium set taken 10 minutes ago; ``changes`` maps a field to a value, to
    ``(value, time)``, or to None to leave it out."""
    found = []
    for name, value in {**MEDIUM_SET, **changes}.items():
        if value is None:
            continue
        found.append(reading(name, *value) if isinstance(value, tuple) else reading(name, value))
    return found


# --- NEWS2: the set --------------------------------------------------------------------------


def test_a_complete_set() -> None:
    gathered = news2_inputs(document(*medium_set()), WINDOW)
    assert gathered.inputs == replace(NEWS2_MEDIUM, age=55)
    assert sorted(gathered.basis) == sorted([*(source(name) for name in MEDIUM_SET), "Patient/p1/_history/1"])
    assert (gathered.notes, gathered.stale, gathered.unverified) == ((), False, False)
    assert gathered.as_of == TAKEN
    assert news2(gathered.inputs).value == 6


@pytest.mark.parametrize("field", list(NEWS2_FIELDS))
def test_a_parameter_outside_the_window_is_missing_and_named(field: str) -> None:
    old = TAKEN - WINDOW - timedelta(minutes=1)
    gathered = news2_inputs(document(*medium_set(**{field: (MEDIUM_SET[field], old)})), WINDOW)
    assert getattr(gathered.inputs, NEWS2_FIELDS[field]) is None
    assert source(field) not in gathered.basis
    label = words.in_sentence(MAPPING.fields[field].label)
    assert f"No complete set within 1 hour of 08:50 on 2026-03-02: left out as older, {label} at 07:49." in (
        gathered.notes
    )
    assert news2(gathered.inputs).missing == (NEWS2_FIELDS[field],)


def test_a_value_exactly_one_window_older_is_in_the_set() -> None:
    edge = TAKEN - WINDOW
    gathered = news2_inputs(document(*medium_set(body_temperature=(38.2, edge))), WINDOW)
    assert gathered.inputs.temperature == 38.2
    assert gathered.notes == ()


def test_a_newer_lone_reading_does_not_hide_the_last_round() -> None:
    """A normal heart rate three hours after a full set is no set of its own: the set is scored and
    the later reading named, rather than NEWS2 waiting for a new complete set."""
    later = reading("heart_rate", 88, TAKEN + timedelta(hours=3), version=2)
    gathered = news2_inputs(document(*medium_set(heart_rate=None), later, reading("heart_rate", 95)), WINDOW)
    assert gathered.inputs.pulse == 95
    assert news2(gathered.inputs).value == 6
    expected = (
        "Later readings, too few to score on their own, are not part of this set of 08:50 on 2026-03-02: heart rate."
    )
    assert expected in gathered.notes


def test_a_newer_lone_reading_that_calls_for_a_response_is_scored() -> None:
    """A heart rate of 135 alone scores 3: it is the set, however few its parameters."""
    later = reading("heart_rate", 135, TAKEN + timedelta(hours=3), version=2)
    gathered = news2_inputs(document(*medium_set(heart_rate=None), later), WINDOW)
    score = news2(gathered.inputs)
    assert (score.value, score.band, score.partial, score.bound) == (3, "low-medium", True, True)
    assert gathered.basis == (source("heart_rate", 2), "Patient/p1/_history/1")


def test_a_set_older_than_a_day_is_stale() -> None:
    """Vital signs go stale after PT24H (mappings/vital-signs.yaml): still scored, but said."""
    old = NOW - timedelta(days=2)
    gathered = news2_inputs(document(*medium_set(**{name: (value, old) for name, value in MEDIUM_SET.items()})), WINDOW)
    assert gathered.stale
    assert news2(gathered.inputs).value == 6
    (note,) = [note for note in gathered.notes if note.startswith("Measured more than 1 day")]
    assert "respiratory rate (2026-02-28)" in note and "body temperature (2026-02-28)" in note


@pytest.mark.parametrize("category", get_args(Consciousness))
def test_consciousness_categories(category: str) -> None:
    gathered = news2_inputs(document(*medium_set(consciousness=category)), WINDOW)
    assert gathered.inputs.consciousness == category
    assert news2(gathered.inputs).value == 6 + (0 if category == "alert" else 3)


@pytest.mark.parametrize(("gcs", "level"), [(15, "alert"), (14, "confusion"), (3, "confusion")])
def test_consciousness_from_gcs_when_no_acvpu_was_taken(gcs: int, level: str) -> None:
    gathered = news2_inputs(document(*medium_set(consciousness=None), reading("gcs", gcs)), WINDOW)
    assert gathered.inputs.consciousness == level
    assert source("gcs") in gathered.basis
    assert any(note.startswith(f"Level of consciousness from GCS {gcs}") for note in gathered.notes)


def test_every_acvpu_answer_of_the_mapping_is_a_news2_category() -> None:
    assert set(MAPPING.fields["consciousness"].values.values()) == set(get_args(Consciousness))


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
    unknown = "No inhaled oxygen concentration or flow is recorded with the set: air or oxygen unknown."
    assert (unknown in gathered.notes) is (supplemental is None)


def test_synthea_shaped_vitals_give_a_partial_set() -> None:
    """Most EHR feeds carry no ACVPU and no inhaled oxygen: the five measured signs are a partial
    set whose score is a lower bound, and the notes say exactly what is missing."""
    gathered = news2_inputs(document(*medium_set(consciousness=None, inspired_oxygen=None)), WINDOW)
    score = news2(gathered.inputs)
    assert (score.value, score.band, score.partial) == (6, "medium", True)
    assert "No level of consciousness (ACVPU or GCS) is recorded with the set." in gathered.notes
    assert "No inhaled oxygen concentration or flow is recorded with the set: air or oxygen unknown." in gathered.notes


# --- NEWS2: SpO2 Scale 2 ---------------------------------------------------------------------

SPO2_TARGET = case_item("goals", f"{LOINC}|2708-6", None, res_id="target", low=["88"], high=["92"])
HYPERCAPNIA = case_item("conditions", f"{ICD10CM}|J96.12", "Chronic respiratory failure with hypercapnia")


@pytest.mark.parametrize(
    ("case", "scale_2"),
    [
        ((SPO2_TARGET,), True),
        ((SPO2_TARGET, HYPERCAPNIA), True),
        ((HYPERCAPNIA,), False),
        ((case_item("conditions", None, "Chronic hypercapnic respiratory failure"),), False),
        ((case_item("goals", f"{LOINC}|2708-6", None, low=["94"], high=["98"]),), False),
        ((case_item("goals", f"{LOINC}|2708-6", None, status="completed", low=["88"], high=["92"]),), False),
        ((case_item("goals", f"{LOINC}|8867-4", None, low=["88"], high=["92"]),), False),
        ((), False),
    ],
    ids=[
        "target",
        "target-and-diagnosis",
        "diagnosis-alone",
        "diagnosis-text",
        "other-target",
        "ended",
        "not-spo2",
        "none",
    ],
)
def test_scale_2_needs_a_prescribed_target(case: tuple[CaseItem, ...], scale_2: bool) -> None:
    """RCP 2017 reserves Scale 2 for a prescribed SpO2 target of 88-92 %; a hypercapnic failure on
    record without one is scored on Scale 1 with a note suggesting a review."""
    gathered = news2_inputs(document(*medium_set(oxygen_saturation=90), case=case), WINDOW)
    assert gathered.inputs.spo2_scale_2 is scale_2
    assert (SPO2_TARGET.source in gathered.basis) is scale_2
    suggested = any("A clinician should review whether Scale 2 applies" in note for note in gathered.notes)
    assert suggested is (not scale_2 and any(item.kind == "conditions" for item in case))
    # SpO2 90 on air: 0 on scale 2, 3 on scale 1
    assert news2(gathered.inputs).value == (5 if scale_2 else 8)


# --- implausible is not invisible ------------------------------------------------------------


def test_a_flagged_newest_reading_is_left_out_and_named_never_replaced_by_the_older() -> None:
    """SpO2 97 % at 08:00, then 150 % at 08:40 (implausible): NEWS2 does not score the 97 as the
    current value; the SpO2 is missing, the set partial, and the note names the reading."""
    first = reading("oxygen_saturation", 97, NOW - timedelta(hours=1))
    flagged = reading("oxygen_saturation", 150, NOW - timedelta(minutes=20), flag="implausible")
    gathered = news2_inputs(document(*medium_set(oxygen_saturation=None), first, flagged), WINDOW)
    assert gathered.inputs.spo2 is None
    assert gathered.unverified
    assert first[1].source not in gathered.basis
    (note,) = [note for note in gathered.notes if "needs verification" in note]
    assert note.startswith("The newest oxygen saturation (SpO2) reading, 150 % at 08:40 on 2026-03-02, is implausible")
    assert flagged[1].source in note and note.endswith("the parameter is left out of this score.")
    score = news2(gathered.inputs)
    assert (score.partial, score.missing) == (True, ("spo2",))


@pytest.mark.parametrize("flag", ["implausible", "unit", "status", "comparator", "unknown-answer"])
def test_every_flag_that_holds_a_reading_needs_verification(flag: str) -> None:
    flagged = reading("heart_rate", 88, TAKEN + timedelta(minutes=5), flag=flag)
    gathered = news2_inputs(document(*medium_set(), flagged), WINDOW)
    assert gathered.inputs.pulse is None and gathered.unverified


def test_a_flagged_reading_older_than_the_usable_one_is_history() -> None:
    older = reading("heart_rate", 400, TAKEN - timedelta(minutes=5), flag="implausible")
    gathered = news2_inputs(document(*medium_set(), older), WINDOW)
    assert gathered.inputs.pulse == 95 and not gathered.unverified


def test_a_flagged_newest_lab_is_named_and_the_earlier_value_used() -> None:
    flagged = reading("total_cholesterol", 2130, NOW - timedelta(days=1), flag="implausible")
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR, flagged))
    assert gathered.inputs.total_cholesterol == 213
    assert gathered.unverified
    assert any(
        "needs verification" in note and note.endswith("the score uses the earlier reading of 2026-02-10.")
        for note in gathered.notes
    )


# --- NEWS2 applicability ---------------------------------------------------------------------


def test_news2_reads_age_and_pregnancy() -> None:
    pregnant = case_item("conditions", f"{SNOMED}|72892002", "Normal pregnancy", res_id="preg")
    gathered = news2_inputs(document(*medium_set(), case=(pregnant,), age=30), WINDOW)
    assert gathered.inputs.age == 30
    assert gathered.inputs.pregnancy == ("Normal pregnancy (Condition/preg)",)
    assert pregnant.source in gathered.basis
    resolved = case_item("conditions", f"{SNOMED}|72892002", "Normal pregnancy", status="resolved")
    assert news2_inputs(document(*medium_set(), case=(resolved,)), WINDOW).inputs.pregnancy == ()


# --- qSOFA ----------------------------------------------------------------------------------


def test_qsofa_reads_its_three_criteria_and_what_suggests_infection() -> None:
    pneumonia = case_item("conditions", f"{SNOMED}|233604007", "Pneumonia", res_id="pn")
    antibiotic = case_item("medications", f"{RXNORM}|308192", "Amoxicillin 500 MG Oral Tablet", res_id="amox")
    gathered = qsofa_inputs(document(*medium_set(), case=(pneumonia, antibiotic)), WINDOW)
    inputs = gathered.inputs
    assert (inputs.respiratory_rate, inputs.systolic_bp, inputs.consciousness, inputs.age) == (22, 105, "alert", 55)
    assert inputs.suspected_infection == (
        "Pneumonia (Condition/pn)",
        "Amoxicillin 500 MG Oral Tablet (MedicationRequest/amox)",
    )
    assert {source(name) for name in ("respiratory_rate", "systolic_bp", "consciousness")} <= set(gathered.basis)
    assert {pneumonia.source, antibiotic.source} <= set(gathered.basis)


def test_qsofa_without_a_suspected_infection() -> None:
    gathered = qsofa_inputs(document(*medium_set()), WINDOW)
    assert gathered.inputs.suspected_infection == ()
    assert qsofa(gathered.inputs).value is None
    assert qsofa_inputs(document(*medium_set()), WINDOW, requested=True).inputs.on_request


def test_qsofa_uses_the_newest_set_only() -> None:
    """An older set that decides qSOFA must not stand for a newer one that may be positive: RR 25
    and SBP 110 alone leave qSOFA undecided (positive with any altered mentation)."""
    older = medium_set(**{name: (value, NOW - timedelta(hours=3)) for name, value in MEDIUM_SET.items()})
    newer = [reading("respiratory_rate", 25, NOW, version=2), reading("systolic_bp", 110, NOW, version=2)]
    sepsis = case_item("conditions", f"{SNOMED}|91302008", "Sepsis")
    gathered = qsofa_inputs(document(*older, *newer, case=(sepsis,)), WINDOW)
    assert (gathered.inputs.respiratory_rate, gathered.inputs.consciousness) == (25, None)
    score = qsofa(gathered.inputs)
    assert (score.value, score.missing) == (None, ("mentation",))
    assert "could make it positive" in score.rationale


# --- Pooled Cohort Equations and ATP III ----------------------------------------------------

CARDIOVASCULAR = (
    reading("total_cholesterol", 213, NOW - timedelta(days=20)),
    reading("hdl_cholesterol", 50, NOW - timedelta(days=20)),
    reading("systolic_bp", 120),
    reading("smoking_status", "never", NOW - timedelta(days=20)),
)


def test_cardiovascular_inputs() -> None:
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR))
    inputs = gathered.inputs
    assert (inputs.age, inputs.sex, inputs.race, inputs.total_cholesterol, inputs.hdl, inputs.systolic_bp) == (
        55,
        "male",
        "white",
        213,
        50,
        120,
    )
    # Nothing on record says treated, untreated, diabetic or not: unknown, not "no".
    assert (inputs.bp_treated, inputs.smoker, inputs.diabetes, inputs.ldl, inputs.clinical_ascvd) == (
        None,
        False,
        None,
        None,
        (),
    )
    assert sorted(gathered.basis) == sorted(["Patient/p1/_history/1", *(point.source for _, point in CARDIOVASCULAR)])
    assert not gathered.stale
    atp = atp3_inputs(pooled_cohort_inputs(document(*CARDIOVASCULAR))).inputs
    assert (atp.age, atp.sex, atp.total_cholesterol, atp.hdl, atp.systolic_bp) == (55, "male", 213, 50, 120)
    # ... and the score says each assumption it makes and goes preliminary.
    score = pooled_cohort(inputs)
    assert len(score.assumptions) == 2
    assert score.assumptions[0].startswith("No blood-pressure-lowering medicine is ordered")


def test_a_stable_systolic_bp_is_the_mean_over_three_days_outside_acute_care() -> None:
    """PCE takes the level the patient lives at, not the newest reading: an emergency department's
    190 mmHg is left out, and the mean of the newest reading of each of the last three days is used."""
    emergency = case_item(
        "encounters", f"{SNOMED}|50849002", "Emergency room admission", status="finished",
        start=NOW - timedelta(hours=3), end=NOW - timedelta(hours=1), **{"class": [f"{V3_ACT}|EMER"]},
    )  # fmt: skip
    readings = [
        reading("systolic_bp", 190, NOW - timedelta(hours=2), version=6),  # in the emergency department
        reading("systolic_bp", 130, NOW - timedelta(days=1), version=5),
        reading("systolic_bp", 134, NOW - timedelta(days=1, hours=2), version=4),  # same day, earlier: not used
        reading("systolic_bp", 128, NOW - timedelta(days=8), version=3),
        reading("systolic_bp", 126, NOW - timedelta(days=30), version=2),
        reading("systolic_bp", 160, NOW - timedelta(days=60), version=1),  # a fourth day: not used
    ]
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR[:2], *readings, case=(emergency,)))
    assert gathered.inputs.systolic_bp == pytest.approx((130 + 128 + 126) / 3)
    assert [point.source for _, point in readings if point.source in gathered.basis] == [
        source("systolic_bp", version) for version in (5, 3, 2)
    ]
    assert any(note.startswith("Systolic blood pressure 128 mmHg: the mean of 130 mmHg") for note in gathered.notes)


def test_systolic_bp_more_than_a_year_before_the_newest_is_left_out() -> None:
    readings = [
        reading("systolic_bp", 120, NOW - timedelta(days=3)),
        reading("systolic_bp", 180, NOW - timedelta(days=400)),
    ]
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR[:2], *readings))
    assert gathered.inputs.systolic_bp == 120
    assert any("from one occasion only" in note for note in gathered.notes)


def test_only_acute_care_readings_give_no_systolic_bp() -> None:
    admission = case_item(
        "encounters", None, "Inpatient stay", status="finished", start=NOW - timedelta(days=2), end=NOW,
        **{"class": [f"{V3_ACT}|IMP"]},
    )  # fmt: skip
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR, case=(admission,)))
    assert gathered.inputs.systolic_bp is None
    assert "Every systolic blood pressure on record was taken in acute care." in gathered.notes


@pytest.mark.parametrize(
    ("codes", "text", "group", "several"),
    [
        (("2106-3",), "White", "white", False),
        (("2054-5",), None, "african_american", False),  # an OMB code alone
        (("2058-6",), "African American", "african_american", False),  # a detailed code
        (("2106-3", "2054-5"), "White and Black", "african_american", True),  # several categories
        (("2054-5", "2106-3"), None, "african_american", True),  # in any order
        (("2106-3", "2028-9"), None, "other", False),
        (("2028-9",), "Asian", "other", False),
        (("2108-9",), None, "white", False),  # European
        ((), "Black or African American", "african_american", False),  # text only
        ((), "white", "white", False),
        ((), None, None, False),
    ],
)
def test_race_from_us_core_codes(codes: tuple[str, ...], text: str | None, group: str | None, several: bool) -> None:
    found = race.pooled_cohort_group(codes, text)
    assert (found.group, found.several) == (group, several)
    inputs = pooled_cohort_inputs(document(*CARDIOVASCULAR, race_text=text, race_codes=codes)).inputs
    assert (inputs.race, inputs.several_races) == (group, several)


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
        (case_item("medications", f"{RXNORM}|197361", "amLODIPine 5 MG Oral Tablet"), True),
        (case_item("medications", f"{RXNORM}|310429", "furosemide 20 MG Oral Tablet"), True),  # loop diuretic
        (case_item("medications", f"{RXNORM}|313096", "spironolactone 25 MG Oral Tablet"), True),  # MRA
        (case_item("medications", f"{RXNORM}|197625", "doxazosin 2 MG Oral Tablet"), True),  # alpha-1 blocker
        (case_item("medications", f"{RXNORM}|884173", "clonidine 0.1 MG Oral Tablet"), True),  # central agonist
        (case_item("medications", f"{RXNORM}|905225", "hydrALAZINE 25 MG Oral Tablet"), True),  # vasodilator
        (case_item("medications", f"{ATC}|C03CA01", None), True),  # ATC: furosemide
        (case_item("medications", f"{ATC}|C09CA01", "losartan"), True),
        (case_item("medications", f"{RXNORM}|314076", "lisinopril 10 MG Oral Tablet", status="stopped"), None),
        (case_item("medications", f"{RXNORM}|860975", "metformin 500 MG Oral Tablet"), None),
        (case_item("medications", None, "Minoxidil 50 MG/ML Topical Solution"), None),  # hair, not blood pressure
        (
            case_item("medications", None, "aspirin 81 MG Oral Tablet", reason=[f"{ICD10CM}|I10"]),
            True,
        ),
    ],
    ids=[
        "acei", "ccb", "loop", "mra", "alpha", "central", "vasodilator", "atc-c03", "atc-c09", "stopped",
        "metformin", "topical", "for-hypertension",
    ],
)  # fmt: skip
def test_treatment_from_the_case(medication: CaseItem, treated: bool | None) -> None:
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR, case=(medication,)))
    assert gathered.inputs.bp_treated is treated
    assert (medication.source in gathered.basis) is bool(treated)


def test_a_reconciled_medication_list_without_one_is_untreated() -> None:
    """The record says "untreated" only when the medication list was reconciled (within a year)."""
    reconciled = case_item(
        "procedures", f"{SNOMED}|430193006", "Medication reconciliation (procedure)", "completed", "rec",
        start=NOW - timedelta(days=40),
    )  # fmt: skip
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR, case=(reconciled,)))
    assert gathered.inputs.bp_treated is False
    assert reconciled.source in gathered.basis
    assert (
        "Untreated blood pressure: no blood-pressure-lowering medicine is active on the medication list reconciled "
        "on 2026-01-21." in gathered.notes
    )
    old = case_item(
        "procedures", f"{SNOMED}|430193006", "Medication reconciliation", "completed", start=NOW - timedelta(days=400)
    )
    assert pooled_cohort_inputs(document(*CARDIOVASCULAR, case=(old,))).inputs.bp_treated is None


def test_diabetes_from_a_condition() -> None:
    diabetes = case_item("conditions", f"{SNOMED}|{TYPE_2_DIABETES}", "Diabetes mellitus type 2")
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR, case=(diabetes,)))
    assert gathered.inputs.diabetes is True
    assert diabetes.source in gathered.basis
    assert atp3_inputs(pooled_cohort_inputs(document(*CARDIOVASCULAR, case=(diabetes,)))).inputs.diabetes is True


@pytest.mark.parametrize(
    ("result", "diabetes"),
    [
        (reading("hba1c", 7.1), True),
        (reading("hba1c", 6.5, NOW - timedelta(days=2000)), True),  # a diagnostic result stays one
        (reading("fasting_glucose", 126), True),
        (reading("fasting_glucose", 125), False),
        (reading("hba1c", 6.4), False),
        (reading("hba1c", 5.4, NOW - timedelta(days=1200)), None),  # a normal result over 3 years old
    ],
    ids=["hba1c-7.1", "old-hba1c-6.5", "fpg-126", "fpg-125", "hba1c-6.4", "old-normal"],
)
def test_diabetes_from_laboratory_criteria(result: tuple[str, Point], diabetes: bool | None) -> None:
    """ADA: HbA1c ≥ 6.5 % or fasting glucose ≥ 126 mg/dL is diabetes; a normal result younger than
    the 3-year re-test interval shows none; anything else is unknown, never "no"."""
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR, result))
    assert gathered.inputs.diabetes is diabetes
    assert (result[1].source in gathered.basis) is (diabetes is not None)
    assert any(note.startswith("Diabetes from") for note in gathered.notes) is bool(diabetes)


def test_the_highest_ldl_and_clinical_ascvd_are_read() -> None:
    resolved_mi = case_item(
        "conditions", f"{SNOMED}|22298006", "Myocardial infarction", status="resolved", res_id="mi",
        start=datetime(2019, 4, 1),
    )  # fmt: skip
    bypass = case_item("procedures", f"{SNOMED}|232717009", "Coronary artery bypass grafting", "completed", "cabg")
    planned = case_item("procedures", f"{SNOMED}|415070008", "Percutaneous coronary intervention", "not-done", "pci")
    ldl = [reading("ldl_cholesterol", 201, NOW - timedelta(days=900)), reading("ldl_cholesterol", 120)]
    gathered = pooled_cohort_inputs(document(*CARDIOVASCULAR, *ldl, case=(resolved_mi, bypass, planned)))
    assert gathered.inputs.ldl == 201
    assert gathered.inputs.clinical_ascvd == (
        "Myocardial infarction, since 2019-04-01 (Condition/mi)",
        "Coronary artery bypass grafting (Procedure/cabg)",
    )
    assert {resolved_mi.source, bypass.source, ldl[0][1].source} <= set(gathered.basis)
    assert planned.source not in gathered.basis


def test_missing_patient_data_stays_missing() -> None:
    gathered = pooled_cohort_inputs(document(gender="unknown", age=None, race_text=None, race_codes=()))
    inputs = gathered.inputs
    assert (inputs.age, inputs.sex, inputs.race, inputs.total_cholesterol, inputs.hdl, inputs.systolic_bp) == (
        None,
    ) * 6
    assert (inputs.smoker, inputs.bp_treated, inputs.diabetes) == (None, None, None)


def test_a_stale_lab_makes_the_inputs_stale() -> None:
    old = reading("total_cholesterol", 213, NOW - timedelta(days=400))
    gathered = pooled_cohort_inputs(document(old, *CARDIOVASCULAR[1:]))
    assert gathered.stale
    assert (
        f"Measured more than 1 year before this assessment: total cholesterol ({NOW - timedelta(days=400):%Y-%m-%d})."
        in (gathered.notes)
    )


# --- $whatif readings ------------------------------------------------------------------------

READ = {"systolic_bp", "smoking_status", "hdl_cholesterol", "consciousness", "heart_rate"}


def test_a_simulation_puts_readings_in_the_twins_vocabulary() -> None:
    twin = document(*CARDIOVASCULAR)
    simulated = simulation.parse([("systolic_bp", "142.5"), ("smoking_status", "current")], twin, READ)
    assert simulated.points["systolic_bp"].value == 142.5
    assert simulated.points["systolic_bp"].time == TAKEN  # in place of the latest reading
    assert simulated.points["smoking_status"].category == "current"
    gathered = pooled_cohort_inputs(twin, simulated)
    assert (gathered.inputs.systolic_bp, gathered.inputs.smoker) == (142.5, True)
    assert "#whatif-systolic_bp" in gathered.basis and source("systolic_bp") not in gathered.basis
    assert pooled_cohort_inputs(twin).inputs.systolic_bp == 120  # the real inputs are untouched
    (bp, smoking) = simulation.contained(simulated, "p1")
    assert bp["id"] == "whatif-systolic_bp" and bp["status"] == "preliminary"
    assert bp["code"]["coding"] == [{"system": LOINC, "code": "8480-6"}]
    assert bp["valueQuantity"] == {
        "value": 142.5,
        "unit": "mm[Hg]",
        "system": "http://unitsofmeasure.org",
        "code": "mm[Hg]",
    }
    assert smoking["valueCodeableConcept"]["coding"][0]["system"] == SNOMED


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("systolic_bp", "abc", "systolic_bp must be a number in mm[Hg], not 'abc'"),
        ("systolic_bp", "nan", "systolic_bp must be a finite number, not 'nan'"),
        ("systolic_bp", "inf", "systolic_bp must be a finite number, not 'inf'"),
        ("smoking_status", "maybe", "smoking_status must be one of current, former, never, unknown, not 'maybe'"),
        (
            "consciousness",
            "asleep",
            "consciousness must be one of alert, confusion, pain, unresponsive, voice, not 'asleep'",
        ),
        ("smoker", "true", "'smoker' is not a field of the twin's Body"),
        ("body_weight", "80", "No chosen model reads 'body_weight'"),
    ],
)
def test_a_simulation_refuses_what_the_twin_would_not_hold(name: str, raw: str, message: str) -> None:
    with pytest.raises(Invalid) as caught:
        simulation.parse([(name, raw)], document(*CARDIOVASCULAR), READ)
    assert str(caught.value).startswith(message)


def test_a_simulated_value_must_be_plausible_and_given_once() -> None:
    twin = document(*CARDIOVASCULAR)
    _, high = MAPPING.fields["systolic_bp"].plausible  # type: ignore[misc]
    with pytest.raises(Invalid, match="outside what the twin accepts as plausible"):
        simulation.parse([("systolic_bp", str(float(high) + 1))], twin, READ)
    with pytest.raises(Invalid, match="may be given only once"):
        simulation.parse([("systolic_bp", "120"), ("systolic_bp", "130")], twin, READ)


# --- concepts --------------------------------------------------------------------------------


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
        (None, "Type 2 diabetes", True),
        (None, "Gestational diabetes mellitus", False),
    ],
)
def test_diabetes_concept(code: str | None, display: str | None, matches: bool) -> None:
    assert concepts.DIABETES.matches(code, display) is matches


@pytest.mark.parametrize(
    ("code", "display", "matches"),
    [
        (f"{SNOMED}|22298006", None, True),
        (f"{SNOMED}|399211009", "History of myocardial infarction", True),
        (f"{SNOMED}|230690007", None, True),
        (f"{SNOMED}|266257000", None, True),
        (f"{SNOMED}|232717009", None, True),
        (f"{ICD10CM}|I25.2", None, True),
        (f"{ICD10CM}|I63.9", None, True),
        (f"{ICD10CM}|G45.9", None, True),
        (f"{ICD10CM}|G45.4", None, False),  # transient global amnesia
        (f"{ICD10CM}|I73.9", None, True),
        (f"{ICD10CM}|Z95.1", None, True),
        (f"{ICD10CM}|I10", "Essential hypertension", False),
        (None, "Old myocardial infarction", True),
        (None, "Heat stroke", False),
    ],
)
def test_clinical_ascvd_concept(code: str | None, display: str | None, matches: bool) -> None:
    assert concepts.CLINICAL_ASCVD.matches(code, display) is matches


@pytest.mark.parametrize(
    ("code", "display", "matches"),
    [
        (f"{SNOMED}|91302008", None, True),
        (f"{SNOMED}|45816000", "Pyelonephritis", True),
        (f"{ICD10CM}|A41.9", None, True),
        (f"{ICD10CM}|J18.9", None, True),
        (f"{ICD10CM}|N39.0", None, True),
        (f"{ICD10CM}|I10", None, False),
        (None, "Urinary tract infection", True),
        (f"{SNOMED}|66383009", "Gingivitis (disorder)", False),
    ],
)
def test_infection_concept(code: str | None, display: str | None, matches: bool) -> None:
    assert concepts.INFECTION.matches(code, display) is matches


@pytest.mark.parametrize(
    ("code", "display", "antibacterial"),
    [
        (f"{RXNORM}|834061", "Penicillin V Potassium 250 MG Oral Tablet", True),
        (f"{RXNORM}|309043", "12 HR Cefaclor 500 MG Extended Release Oral Tablet", True),
        (f"{ATC}|J01CA04", None, True),
        (f"{ATC}|J05AB01", "aciclovir", False),
        (None, "Mupirocin 20 MG/ML Topical Ointment", False),
        (None, "Acetaminophen 325 MG Oral Tablet", False),
    ],
)
def test_antibacterial_class(code: str | None, display: str | None, antibacterial: bool) -> None:
    assert medicines.ANTIBACTERIAL.matches(code, display) is antibacterial


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
