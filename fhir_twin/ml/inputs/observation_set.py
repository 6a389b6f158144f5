"""NEWS2 and qSOFA read one **set of observations** taken together (RCP 2017 scores a set).

A set is each parameter's latest reading within ``window`` of the set's time; the set used is the
newest one the score can score (``_round``). A parameter outside it, never recorded, or whose
newest reading needs verification is missing, and the notes say which and why. What the record
shows about applicability (age, pregnancy, a suspected infection) and the SpO2 Scale 2 target
travel with the inputs, so the score can refuse where it does not apply.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from fhir_twin.ml import fields, words
from fhir_twin.ml.concepts import HYPERCAPNIC_RESPIRATORY_FAILURE, INFECTION, PREGNANCY
from fhir_twin.ml.medicines import ANTIBACTERIAL
from fhir_twin.ml.reader import Gathered, Reader, active, described
from fhir_twin.ml.scores.news2 import MIN_PARAMETERS, News2Inputs, news2
from fhir_twin.ml.scores.qsofa import QsofaInputs
from fhir_twin.ml.scores.score import Consciousness
from fhir_twin.ml.simulation import Simulation
from fhir_twin.twin.body import Point
from fhir_twin.twin.document import TwinDocument

# SpO2 target of a Goal: LOINC 2708-6 and 59408-5 (oxygen saturation), 20564-1 (SaO2), and the
# RCP's Scale 2 target range.
SPO2_CODES = ("http://loinc.org|2708-6", "http://loinc.org|59408-5", "http://loinc.org|20564-1")
SCALE_2_TARGET = (88.0, 92.0)
GOAL_IN_FORCE = ("active", "accepted", "on-hold")

ROUND_ANCHORS = 24  # readings per field whose times are tried as a set's time
# Each NEWS2 parameter's Body field, and its name in ``News2Inputs``
NEWS2_FIELDS = {
    fields.RESPIRATORY_RATE.name: "respiratory_rate",
    fields.OXYGEN_SATURATION.name: "spo2",
    fields.SYSTOLIC_BP.name: "systolic_bp",
    fields.HEART_RATE.name: "pulse",
    fields.BODY_TEMPERATURE.name: "temperature",
    fields.CONSCIOUSNESS.name: "consciousness",
}
OXYGEN_FIELDS = (fields.INSPIRED_OXYGEN.name, fields.OXYGEN_FLOW.name)
NEWS2_READS = (
    fields.RESPIRATORY_RATE,
    fields.OXYGEN_SATURATION,
    fields.SYSTOLIC_BP,
    fields.HEART_RATE,
    fields.BODY_TEMPERATURE,
    fields.CONSCIOUSNESS,
    fields.INSPIRED_OXYGEN,
    fields.OXYGEN_FLOW,
    fields.GCS,
)
QSOFA_READS = (fields.RESPIRATORY_RATE, fields.SYSTOLIC_BP, fields.CONSCIOUSNESS, fields.GCS)
NEWS2_ROUND = fields.names(NEWS2_READS)
QSOFA_ROUND = fields.names(QSOFA_READS)
# Fields whose absence a set names one by one; consciousness (ACVPU or GCS) and oxygen (concentration
# or flow) are named once, by what is made of them.
NAMED = tuple(name for name in NEWS2_FIELDS if name != fields.CONSCIOUSNESS.name)
ACVPU = fields.CONSCIOUSNESS.name
GCS = fields.GCS.name
LEFT_OUT = "the parameter is left out of this score."


def news2_inputs(
    document: TwinDocument, window: timedelta, simulation: Simulation | None = None
) -> Gathered[News2Inputs]:
    """The newest set of NEWS2 parameters within ``window`` that NEWS2 can score; the Scale 2 target,
    age and pregnancy the record shows."""
    reader = Reader(document, simulation)
    found = _round(reader, NEWS2_ROUND, window, _news2_scorable)
    inputs = dataclasses.replace(
        _news2_set(found, reader),
        spo2_scale_2=_scale_2(reader),
        age=reader.age(),
        pregnancy=tuple(described(item) for item in reader.found(PREGNANCY, ("conditions",))),
    )
    return reader.gathered(inputs)


def _news2_scorable(found: dict[str, Point]) -> bool:
    """Whether NEWS2 scores this set: most parameters are there (counted cheaply), or it scores anyway."""
    parameters = sum(name in found for name in NEWS2_FIELDS if name != ACVPU)
    parameters += ACVPU in found or GCS in found
    parameters += any(name in found for name in OXYGEN_FIELDS)
    return parameters >= MIN_PARAMETERS or news2(_news2_set(found)).value is not None


def _news2_set(found: dict[str, Point], reader: Reader | None = None) -> News2Inputs:
    """The NEWS2 parameters of one set of readings (saying, with a ``reader``, what was made of it)."""
    values: dict[str, Any] = {
        NEWS2_FIELDS[name]: point.value for name, point in found.items() if name in NEWS2_FIELDS and point.value
    }
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
    if ACVPU not in found and GCS not in found:
        reader.notes.append("No level of consciousness (ACVPU or GCS) is recorded with the set.")
    inputs = dataclasses.replace(
        _qsofa_set(found), age=reader.age(), suspected_infection=_suspected_infection(reader), on_request=requested
    )
    return reader.gathered(inputs)


def _qsofa_set(found: dict[str, Point]) -> QsofaInputs:
    """The qSOFA criteria of one set of readings."""
    gcs = found.get(GCS)
    return QsofaInputs(
        respiratory_rate=_value(found.get(fields.RESPIRATORY_RATE.name)),
        systolic_bp=_value(found.get(fields.SYSTOLIC_BP.name)),
        consciousness=_category(found.get(ACVPU)),
        gcs=round(gcs.value) if gcs is not None and gcs.value is not None else None,
    )


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
    acvpu = _category(found.get(ACVPU))
    if acvpu is not None:
        return acvpu
    gcs = found.get(GCS)
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


def _value(point: Point | None) -> float | None:
    return point.value if point is not None else None


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
