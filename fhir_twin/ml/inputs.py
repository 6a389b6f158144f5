"""Model inputs read from a patient's twin, with the exact source versions each came from.

Each function gathers one model's inputs through a ``reader.Reader``: only usable twin values, a
value the twin does not hold stays None (the score says what is missing, never a default), and
what the record shows about the model's applicability (age, pregnancy, clinical ASCVD, a
suspected infection) travels with the inputs so the score can refuse where it does not apply.

NEWS2 and qSOFA read one **contemporaneous set**: each parameter's latest reading, within
``window`` of the newest reading among them (RCP 2017 scores a set of observations taken
together); a parameter outside it, never recorded, or whose newest reading needs verification is
missing, and the notes say which and why. The cardiovascular equations read a long-term picture:
a **stable systolic BP** (the mean of the newest reading on each of the last three days with a
reading outside acute care, within a year of the newest: ACC/AHA 2017, "use an average of ≥ 2
readings obtained on ≥ 2 occasions"), the highest LDL-C ever recorded, and every diagnosis or
procedure of clinical ASCVD, resolved ones included (a past myocardial infarction stays one).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from statistics import mean

from fhir_twin.ml import race, words
from fhir_twin.ml.concepts import (
    CLINICAL_ASCVD,
    DIABETES,
    HYPERCAPNIC_RESPIRATORY_FAILURE,
    HYPERTENSION,
    INFECTION,
    PREGNANCY,
)
from fhir_twin.ml.medicines import ANTIBACTERIAL, ANTIHYPERTENSIVE
from fhir_twin.ml.reader import Gathered, Reader, active, described
from fhir_twin.ml.scores.atp3 import Atp3Inputs
from fhir_twin.ml.scores.model import Consciousness
from fhir_twin.ml.scores.news2 import News2Inputs, news2
from fhir_twin.ml.scores.pooled_cohort import PooledCohortInputs
from fhir_twin.ml.scores.qsofa import QsofaInputs
from fhir_twin.ml.simulation import Simulation
from fhir_twin.twin.body import Point
from fhir_twin.twin.document import TwinDocument

YEAR = timedelta(days=365)
# ADA Standards of Care in Diabetes-2024, section 2 (Diabetes Care 2024;47(Suppl 1):S20), Table
# 2.1: diabetes at HbA1c ≥ 6.5 % or fasting plasma glucose ≥ 126 mg/dL; with results below both,
# re-testing is advised at least every 3 years, so a normal result younger than that shows no
# diabetes.
HBA1C_DIABETES = 6.5
FASTING_GLUCOSE_DIABETES = 126.0
NORMAL_RESULT_FOR = 3 * YEAR
# Encounter classes (v3-ActCode) of acute care: a blood pressure taken there is not the stable
# level the Pooled Cohort Equations need (emergency, inpatient, inpatient acute, observation,
# short stay).
ACUTE_CLASSES = ("EMER", "IMP", "ACUTE", "OBSENC", "SS")
STABLE_OCCASIONS = 3
# A medication list reconciled (SNOMED CT 430193006 medication reconciliation, 428191000124101
# documentation of current medications) is complete as of that day (The Joint Commission,
# National Patient Safety Goal NPSG.03.06.01): no blood-pressure-lowering order on it within the
# year before an assessment is "untreated", not an unknown.
RECONCILIATION = ("http://snomed.info/sct|430193006", "http://snomed.info/sct|428191000124101")
# SpO2 target of a Goal: LOINC 2708-6 and 59408-5 (oxygen saturation), 20564-1 (SaO2), and the
# RCP's Scale 2 target range.
SPO2_CODES = ("http://loinc.org|2708-6", "http://loinc.org|59408-5", "http://loinc.org|20564-1")
SCALE_2_TARGET = (88.0, 92.0)
GOAL_IN_FORCE = ("active", "accepted", "on-hold")

ROUND_ANCHORS = 24  # readings per field whose times are tried as a set's time
NEWS2_FIELDS = {
    "respiratory_rate": "respiratory_rate",
    "oxygen_saturation": "spo2",
    "systolic_bp": "systolic_bp",
    "heart_rate": "pulse",
    "body_temperature": "temperature",
    "consciousness": "consciousness",
}
OXYGEN_FIELDS = ("inspired_oxygen", "oxygen_flow")
NEWS2_ROUND = (*NEWS2_FIELDS, *OXYGEN_FIELDS, "gcs")
QSOFA_ROUND = ("respiratory_rate", "systolic_bp", "consciousness", "gcs")
# Fields whose absence a set names one by one; consciousness (ACVPU or GCS) and oxygen (concentration
# or flow) are named once, by what is made of them.
NAMED = ("respiratory_rate", "oxygen_saturation", "systolic_bp", "heart_rate", "body_temperature")
CARDIOVASCULAR_FIELDS = (
    "total_cholesterol",
    "hdl_cholesterol",
    "ldl_cholesterol",
    "systolic_bp",
    "smoking_status",
    "hba1c",
    "fasting_glucose",
)
LEFT_OUT = "the parameter is left out of this score."


def news2_inputs(
    document: TwinDocument, window: timedelta, simulation: Simulation | None = None
) -> Gathered[News2Inputs]:
    """The newest set of NEWS2 parameters within ``window`` that NEWS2 can score; the Scale 2 target,
    age and pregnancy the record shows."""
    reader = Reader(document, simulation)
    found = _round(reader, NEWS2_ROUND, window, lambda points: news2(_news2_set(points)).value is not None)
    inputs = dataclasses.replace(
        _news2_set(found, reader),
        spo2_scale_2=_scale_2(reader),
        age=_age(reader),
        pregnancy=tuple(described(item) for item in reader.found(PREGNANCY, ("conditions",))),
    )
    return reader.gathered(inputs)


def _news2_set(found: dict[str, Point], reader: Reader | None = None) -> News2Inputs:
    """The NEWS2 parameters of one set of readings (saying, with a ``reader``, what was made of it)."""
    values = {NEWS2_FIELDS[name]: point.value for name, point in found.items() if name in NEWS2_FIELDS and point.value}
    return News2Inputs(
        **values,
        supplemental_oxygen=_oxygen(found, reader),
        consciousness=_consciousness(found, reader),
    )


def qsofa_inputs(
    document: TwinDocument, window: timedelta, simulation: Simulation | None = None, requested: bool = False
) -> Gathered[QsofaInputs]:
    """Respiratory rate, systolic BP and mentation (ACVPU, or a Glasgow Coma Scale total below 15,
    Seymour et al. 2016) as the newest set within ``window`` that decides qSOFA; the suspected
    infection the record shows."""
    reader = Reader(document, simulation)
    # The newest set only: an older one that decides qSOFA must not stand for a newer one that may
    # be positive but lacks a criterion.
    found = _round(reader, QSOFA_ROUND, window, lambda points: True)
    if "consciousness" not in found and "gcs" not in found:
        reader.notes.append("No level of consciousness (ACVPU or GCS) is recorded with the set.")
    inputs = dataclasses.replace(
        _qsofa_set(found), age=_age(reader), suspected_infection=_suspected_infection(reader), on_request=requested
    )
    return reader.gathered(inputs)


def _qsofa_set(found: dict[str, Point]) -> QsofaInputs:
    """The qSOFA criteria of one set of readings."""
    gcs = found.get("gcs")
    return QsofaInputs(
        respiratory_rate=found["respiratory_rate"].value if "respiratory_rate" in found else None,
        systolic_bp=found["systolic_bp"].value if "systolic_bp" in found else None,
        consciousness=_category(found.get("consciousness")),
        gcs=round(gcs.value) if gcs is not None and gcs.value is not None else None,
    )


def pooled_cohort_inputs(document: TwinDocument, simulation: Simulation | None = None) -> Gathered[PooledCohortInputs]:
    """Age, sex and race from Patient; cholesterol, HDL, a stable systolic BP, smoking and the highest
    LDL from the Body; treatment, diabetes and clinical ASCVD from the Case. Treatment, smoking and
    diabetes stay None when the record says neither yes nor no."""
    reader = Reader(document, simulation, stale_after={"systolic_bp": YEAR})
    age, sex = _age(reader), _sex(reader)
    group = race.pooled_cohort_group(document.patient.race_codes, document.patient.race)
    inputs = PooledCohortInputs(
        age=age,
        sex=sex,
        race=group.group,
        several_races=group.several,
        total_cholesterol=_long_term(reader, "total_cholesterol"),
        hdl=_long_term(reader, "hdl_cholesterol"),
        systolic_bp=_stable_systolic_bp(reader),
        bp_treated=_treated(reader),
        smoker=_smoker(reader),
        diabetes=_diabetes(reader),
        ldl=_highest_ldl(reader),
        clinical_ascvd=_clinical_ascvd(reader),
    )
    return reader.gathered(inputs)


def atp3_inputs(document: TwinDocument, simulation: Simulation | None = None) -> Gathered[Atp3Inputs]:
    """The ATP III hard-CHD inputs, read as for the Pooled Cohort Equations (which add race)."""
    pooled = pooled_cohort_inputs(document, simulation)
    shared = {field.name: getattr(pooled.inputs, field.name) for field in dataclasses.fields(Atp3Inputs)}
    return dataclasses.replace(pooled, inputs=Atp3Inputs(**shared))


# --- a contemporaneous set -------------------------------------------------------------------


def _round(
    reader: Reader, names: tuple[str, ...], window: timedelta, scorable: Callable[[dict[str, Point]], bool]
) -> dict[str, Point]:
    """The newest set of readings of ``names`` within ``window`` that is ``scorable``: tried at the time
    of each of the last ``ROUND_ANCHORS`` readings of every field, newest first, each field giving
    its latest reading at or before that time and within ``window`` of it. For NEWS2 a newer set too
    small to be scored (a normal heart rate alone) does not hide the last round of observations,
    while one that already calls for a response (a heart rate of 140 alone scores 3) is scored. The
    notes say what is missing from the set and why, and name the later readings it leaves out; a
    field whose newest reading needs verification is left out of every set."""
    readings = {name: reader.points(name) for name in names if not reader.needs_verification(name, LEFT_OUT)}
    anchors = sorted({p.time for found in readings.values() for p in found[-ROUND_ANCHORS:] if p.time}, reverse=True)
    chosen: tuple[datetime, dict[str, Point]] | None = None
    for anchor in anchors:
        found = {name: point for name, points in readings.items() if (point := _at(points, anchor, window))}
        complete = scorable(found)
        if chosen is None or complete:
            chosen = (anchor, found)
        if complete:
            break
    if chosen is None:
        reader.notes += [f"No {reader.label(name)} is recorded." for name in readings if name in NAMED]
        return {}
    anchor, found = chosen
    older, newer = [], []
    for name, points in readings.items():
        if points and points[-1].time is not None and points[-1].time > anchor:
            newer.append(reader.label(name))
        if name in found or name not in NAMED:
            continue
        if not points:
            reader.notes.append(f"No {reader.label(name)} is recorded.")
        elif points[0].time is not None and points[0].time < anchor:
            before = [p for p in points if p.time is not None and p.time <= anchor]
            if before and before[-1].time is not None:
                older.append(f"{reader.label(name)} at {words.moment(before[-1].time, anchor)}")
    if older:
        reader.notes.append(
            f"No complete set within {words.duration(window)} of {words.moment(anchor)}: left out as older, "
            f"{', '.join(older)}."
        )
    if newer:
        reader.notes.append(
            f"Later readings, too few to score on their own, are not part of this set of {words.moment(anchor)}: "
            f"{', '.join(newer)}."
        )
    for name, point in found.items():
        reader.use(name, point)
    return found


def _at(points: list[Point], anchor: datetime, window: timedelta) -> Point | None:
    """The latest of ``points`` (oldest first) at or before ``anchor`` and within ``window`` of it."""
    position = bisect.bisect_right(points, anchor, key=lambda point: point.time)  # type: ignore[arg-type, return-value]
    if not position:
        return None
    point = points[position - 1]
    return point if point.time is not None and point.time >= anchor - window else None


def _oxygen(found: dict[str, Point], reader: Reader | None) -> bool | None:
    """On oxygen: inspired O2 above 21 % (LOINC 3150-0) or an O2 flow above 0 (3151-8) in the set;
    breathing air when the set records air; unknown when it records neither."""
    fio2, flow = (found.get(name) for name in OXYGEN_FIELDS)
    if fio2 is None and flow is None:
        if reader is not None:
            reader.notes.append(
                "No inhaled oxygen concentration or flow is recorded with the set: air or oxygen unknown."
            )
        return None
    on_fio2 = fio2 is not None and fio2.value is not None and fio2.value > 21
    on_flow = flow is not None and flow.value is not None and flow.value > 0
    return on_fio2 or on_flow


def _consciousness(found: dict[str, Point], reader: Reader | None) -> Consciousness | None:
    """ACVPU from the set; without it a GCS total of the set: 15 alert, below 15 not alert (the
    clinical reference's mapping: GCS 15 is alert and orientated; less is confusion or worse)."""
    acvpu = _category(found.get("consciousness"))
    if acvpu is not None:
        return acvpu
    gcs = found.get("gcs")
    if gcs is None or gcs.value is None:
        if reader is not None:
            reader.notes.append("No level of consciousness (ACVPU or GCS) is recorded with the set.")
        return None
    level: Consciousness = "alert" if gcs.value >= 15 else "confusion"
    if reader is not None and level == "alert":
        reader.notes.append(f"Level of consciousness from GCS {gcs.value:g} (alert), as no ACVPU was recorded.")
    elif reader is not None:
        reader.notes.append(f"Level of consciousness from GCS {gcs.value:g}: below 15, scored as not alert.")
    return level


def _category(point: Point | None) -> Consciousness | None:
    if point is None or point.category not in ("alert", "confusion", "voice", "pain", "unresponsive"):
        return None
    return point.category  # type: ignore[return-value]


def _scale_2(reader: Reader) -> bool:
    """SpO2 Scale 2 only with a prescribed target of 88-92 %: an active Goal for SpO2 with that range
    (RCP 2017, Chart 1). A hypercapnic respiratory failure on record without one is only noted."""
    for item in reader.document.case.get("goals", []):
        if item.status not in GOAL_IN_FORCE or item.code not in SPO2_CODES:
            continue
        target = (_number(item.details.get("low")), _number(item.details.get("high")))
        if target == SCALE_2_TARGET:
            reader.cite(item)
            reader.notes.append(f"SpO2 Scale 2: a prescribed target of 88-92 % is on record ({described(item)}).")
            return True
    failures = [item for item in reader.document.case.get("conditions", []) if active(item)]
    failures = [item for item in failures if HYPERCAPNIC_RESPIRATORY_FAILURE.matches(item.code, item.display)]
    if failures:
        reader.notes.append(
            f"Hypercapnic respiratory failure is on record ({described(failures[0])}) but no prescribed SpO2 target "
            "of 88-92 % is: scored on Scale 1. A clinician should review whether Scale 2 applies (RCP 2017)."
        )
    return False


def _number(texts: list[str] | None) -> float | None:
    try:
        return float(texts[0]) if texts else None
    except ValueError:
        return None


def _suspected_infection(reader: Reader) -> tuple[str, ...]:
    """Active infection diagnoses, and active antibacterial orders (or orders for an infection)."""
    found = [described(item) for item in reader.found(INFECTION, ("conditions",))]
    for item in reader.document.case.get("medications", []):
        reasons = item.details.get("reason", [])
        if active(item) and (
            ANTIBACTERIAL.matches(item.code, item.display) or any(INFECTION.matches(r, r) for r in reasons)
        ):
            reader.cite(item)
            found.append(described(item))
    return tuple(found)


# --- the long-term picture -------------------------------------------------------------------


def _age(reader: Reader) -> float | None:
    reader.patient()
    age = reader.document.patient.age
    return float(age) if age is not None else None


def _sex(reader: Reader) -> str | None:
    gender = reader.document.patient.gender
    return gender if gender in ("female", "male") else None


def _long_term(reader: Reader, name: str) -> float | None:
    """The latest usable value; a newer flagged reading is named, and the earlier value kept."""
    latest = reader.latest(name)
    if latest is not None and latest.time is not None:
        reader.needs_verification(name, f"the score uses the earlier reading of {latest.time:%Y-%m-%d}.")
    else:
        reader.needs_verification(name, "the score has no earlier reading to use.")
    return reader.value(name)


def _stable_systolic_bp(reader: Reader) -> float | None:
    """The mean of the newest reading of each of the last ``STABLE_OCCASIONS`` days with a reading
    outside acute care, within a year of the newest such reading."""
    usable = [point for point in reader.points("systolic_bp") if not _in_acute_care(reader, point)]
    newest = usable[-1] if usable else None
    if newest is not None and newest.time is not None:
        reader.needs_verification(
            "systolic_bp", f"the score uses earlier readings, the newest of {newest.time:%Y-%m-%d}."
        )
    else:
        reader.needs_verification("systolic_bp", "the score has no earlier reading to use.")
    if newest is None or newest.time is None:
        if reader.points("systolic_bp"):
            reader.notes.append("Every systolic blood pressure on record was taken in acute care.")
        return None
    by_day: dict[str, Point] = {}
    for point in reversed(usable):
        assert point.time is not None
        if point.time < newest.time - YEAR:
            break
        by_day.setdefault(f"{point.time:%Y-%m-%d}", point)
        if len(by_day) == STABLE_OCCASIONS:
            break
    chosen = list(by_day.values())
    for point in chosen:
        reader.use("systolic_bp", point)
    value = mean(point.value for point in chosen if point.value is not None)
    shown = ", ".join(f"{words.number(p.value)} mmHg on {p.time:%Y-%m-%d}" for p in chosen if p.value and p.time)
    if len(chosen) > 1:
        reader.notes.append(f"Systolic blood pressure {words.number(value)} mmHg: the mean of {shown}.")
    else:
        reader.notes.append(
            f"Systolic blood pressure from one occasion only ({shown}); ACC/AHA advise the mean of readings on "
            "two or more."
        )
    return value


def _in_acute_care(reader: Reader, point: Point) -> bool:
    """Whether ``point`` was measured during an emergency, inpatient, observation or short-stay encounter."""
    if point.source.startswith("#") or point.time is None:
        return False
    for item in reader.document.case.get("encounters", []):
        classes = item.details.get("class", [])
        if not any(code.rsplit("|", 1)[-1] in ACUTE_CLASSES for code in classes) or item.start is None:
            continue
        end = item.end or item.start + timedelta(days=1)
        if item.start <= point.time <= end:
            return True
    return False


def _treated(reader: Reader) -> bool | None:
    """True with an active blood-pressure-lowering order (or one for hypertension); False when none
    is active on a medication list reconciled within the year; else unknown."""
    found = [
        item
        for item in reader.document.case.get("medications", [])
        if active(item)
        and (
            ANTIHYPERTENSIVE.matches(item.code, item.display)
            or any(HYPERTENSION.matches(reason, reason) for reason in item.details.get("reason", []))
        )
    ]
    for item in found:
        reader.cite(item)
    if found:
        return True
    since = reader.document.reference_time - YEAR
    reconciled = [
        item
        for item in reader.document.case.get("procedures", [])
        if item.code in RECONCILIATION and item.status == "completed" and item.start is not None and item.start >= since
    ]
    if not reconciled:
        return None
    newest = max(reconciled, key=lambda item: item.start)  # type: ignore[arg-type, return-value]
    reader.cite(newest)
    reader.notes.append(
        f"Untreated blood pressure: no blood-pressure-lowering medicine is active on the medication list reconciled "
        f"on {newest.start:%Y-%m-%d}."
    )
    return False


def _smoker(reader: Reader) -> bool | None:
    point = reader.latest("smoking_status")
    if point is not None and point.time is not None:
        reader.needs_verification("smoking_status", f"the score uses the earlier status of {point.time:%Y-%m-%d}.")
    if point is None or point.category in (None, "unknown"):
        return None
    reader.use("smoking_status", point)
    return point.category == "current"


def _diabetes(reader: Reader) -> bool | None:
    """True with an active diabetes diagnosis or a diagnostic HbA1c or fasting glucose (ADA); False
    when the newest of those results is below both thresholds and younger than 3 years; else unknown."""
    if reader.found(DIABETES, ("conditions",)):
        return True
    results = [
        (point, name, threshold)
        for name, threshold in (("hba1c", HBA1C_DIABETES), ("fasting_glucose", FASTING_GLUCOSE_DIABETES))
        for point in reader.points(name)
        if point.value is not None
    ]
    diagnostic = [(point, name, threshold) for point, name, threshold in results if point.value >= threshold]  # type: ignore[operator]
    if diagnostic:
        point, name, threshold = max(diagnostic, key=lambda found: found[0].time)  # type: ignore[arg-type, return-value]
        reader.read(point)
        reader.notes.append(
            f"Diabetes from {reader.label(name)} {words.quantity(point.value, point.unit)} on "  # type: ignore[arg-type]
            f"{point.time:%Y-%m-%d} (ADA: {threshold:g} or more)."
        )
        return True
    if not results:
        return None
    point, name, _ = max(results, key=lambda found: found[0].time)  # type: ignore[arg-type, return-value]
    assert point.time is not None
    if point.time < reader.document.reference_time - NORMAL_RESULT_FOR:
        return None
    reader.read(point)
    return False


def _highest_ldl(reader: Reader) -> float | None:
    """The highest LDL-C ever recorded: severe hypercholesterolaemia is judged on the untreated level."""
    readings = [point for point in reader.points("ldl_cholesterol") if point.value is not None]
    if not readings:
        return None
    highest = max(readings, key=lambda point: point.value)  # type: ignore[arg-type, return-value]
    reader.read(highest)
    return highest.value


def _clinical_ascvd(reader: Reader) -> tuple[str, ...]:
    """Every diagnosis or procedure of clinical ASCVD, resolved ones included."""
    found = reader.found(CLINICAL_ASCVD, ("conditions", "procedures"), active_only=False)
    return tuple(described(item) for item in found)
