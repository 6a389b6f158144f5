"""The cardiovascular equations (Pooled Cohort, ATP III) read a long-term picture of the patient.

A **stable systolic BP** (the mean of the newest reading on each of the last three days with a
reading outside acute care, within a year of the newest: ACC/AHA 2017, "use an average of ≥ 2
readings obtained on ≥ 2 occasions"), cholesterol and HDL, the highest LDL-C ever recorded, and
every diagnosis or procedure of clinical ASCVD, resolved ones included (a past myocardial
infarction stays one). Treatment, smoking and diabetes stay None when the record says neither yes
nor no: the score assumes and says, never this module.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from statistics import mean

from fhir_twin.ml import fields, race, words
from fhir_twin.ml.concepts import CLINICAL_ASCVD, DIABETES, HYPERTENSION
from fhir_twin.ml.medicines import ANTIHYPERTENSIVE
from fhir_twin.ml.reader import Gathered, Reader, active, described
from fhir_twin.ml.scores.atp3 import Atp3Inputs
from fhir_twin.ml.scores.pooled_cohort import PooledCohortInputs, Sex
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
CARDIOVASCULAR_READS = (
    fields.TOTAL_CHOLESTEROL,
    fields.HDL_CHOLESTEROL,
    fields.LDL_CHOLESTEROL,
    fields.SYSTOLIC_BP,
    fields.SMOKING_STATUS,
    fields.HBA1C,
    fields.FASTING_GLUCOSE,
)
SYSTOLIC_BP = fields.SYSTOLIC_BP.name
SMOKING_STATUS = fields.SMOKING_STATUS.name


def pooled_cohort_inputs(document: TwinDocument, simulation: Simulation | None = None) -> Gathered[PooledCohortInputs]:
    """Age, sex and race from Patient; cholesterol, HDL, a stable systolic BP, smoking and the highest
    LDL from the Body; treatment, diabetes and clinical ASCVD from the Case. Treatment, smoking and
    diabetes stay None when the record says neither yes nor no."""
    reader = Reader(document, simulation, stale_after={SYSTOLIC_BP: YEAR})
    age, sex = reader.age(), _sex(reader)
    group = race.pooled_cohort_group(document.patient.race_codes, document.patient.race)
    inputs = PooledCohortInputs(
        age=age,
        sex=sex,
        race=group.group,
        several_races=group.several,
        total_cholesterol=_long_term(reader, fields.TOTAL_CHOLESTEROL.name),
        hdl=_long_term(reader, fields.HDL_CHOLESTEROL.name),
        systolic_bp=_stable_systolic_bp(reader),
        bp_treated=_treated(reader),
        smoker=_smoker(reader),
        diabetes=_diabetes(reader),
        ldl=_highest_ldl(reader),
        clinical_ascvd=_clinical_ascvd(reader),
    )
    return reader.gathered(inputs)


def atp3_inputs(pooled: Gathered[PooledCohortInputs]) -> Gathered[Atp3Inputs]:
    """The ATP III hard-CHD inputs: the Pooled Cohort Equations' (which add race), read once for both."""
    shared = {field.name: getattr(pooled.inputs, field.name) for field in dataclasses.fields(Atp3Inputs)}
    return Gathered(Atp3Inputs(**shared), pooled.basis, pooled.notes, pooled.stale, pooled.unverified, pooled.as_of)


def _sex(reader: Reader) -> Sex | None:
    gender = reader.document.patient.gender
    if gender == "female":
        return "female"
    return "male" if gender == "male" else None


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
    usable = [point for point in reader.points(SYSTOLIC_BP) if not _in_acute_care(reader, point)]
    newest = usable[-1] if usable else None
    if newest is not None and newest.time is not None:
        reader.needs_verification(
            SYSTOLIC_BP, f"the score uses earlier readings, the newest of {newest.time:%Y-%m-%d}."
        )
    else:
        reader.needs_verification(SYSTOLIC_BP, "the score has no earlier reading to use.")
    if newest is None or newest.time is None:
        if reader.points(SYSTOLIC_BP):
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
        reader.use(SYSTOLIC_BP, point)
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
    point = reader.latest(SMOKING_STATUS)
    if point is not None and point.time is not None:
        reader.needs_verification(SMOKING_STATUS, f"the score uses the earlier status of {point.time:%Y-%m-%d}.")
    if point is None or point.category in (None, "unknown"):
        return None
    reader.use(SMOKING_STATUS, point)
    return point.category == "current"


def _diabetes(reader: Reader) -> bool | None:
    """True with an active diabetes diagnosis or a diagnostic HbA1c or fasting glucose (ADA); False
    when the newest of those results is below both thresholds and younger than 3 years; else unknown."""
    if reader.found(DIABETES, ("conditions",)):
        return True
    results = [
        (point, name, threshold)
        for name, threshold in (
            (fields.HBA1C.name, HBA1C_DIABETES),
            (fields.FASTING_GLUCOSE.name, FASTING_GLUCOSE_DIABETES),
        )
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
    readings = [point for point in reader.points(fields.LDL_CHOLESTEROL.name) if point.value is not None]
    if not readings:
        return None
    highest = max(readings, key=lambda point: point.value)  # type: ignore[arg-type, return-value]
    reader.read(highest)
    return highest.value


def _clinical_ascvd(reader: Reader) -> tuple[str, ...]:
    """Every diagnosis or procedure of clinical ASCVD, resolved ones included."""
    found = reader.found(CLINICAL_ASCVD, ("conditions", "procedures"), active_only=False)
    return tuple(described(item) for item in found)
