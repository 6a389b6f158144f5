"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, 2017).

Scoring per RCP NEWS2 Chart 1, bands per Chart 2, clinical response per Chart 3 (RCP 2017).
Respiratory rate, SpO2, systolic BP and pulse are rounded half-up to whole numbers and
temperature to 0.1 °C before scoring, so every value falls in exactly one cell of the chart.

The RCP defines the score on a complete set of the seven parameters. With some missing, the
score of what was observed is a **lower bound** (every parameter's best cell scores 0): it is
given as "at least N", preliminary, with the band that bound implies and the range the full
score could reach, because a partial set that already scores 5 must not wait for the rest. A
partial set is scored when it holds most of the set (``MIN_PARAMETERS``), or when what it holds
already calls for a response (a 3 in one parameter, or 5 in all); fewer readings than that are
single measurements, not a set, and say nothing about the rest (this server's rule).

NEWS2 is not for children under 16 or in pregnancy (RCP 2017, "Using NEWS2"): both are not
applicable, never scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import get_args

from fhir_twin.ml import codes
from fhir_twin.ml.scores.score import Consciousness, Contribution, Input, InputError, ModelInfo, Score, missing_inputs

MODEL = ModelInfo(
    id="news2",
    version="1.0.0",
    kind="rule-based",
    inputs=(
        Input("respiratory_rate", codes.RESPIRATORY_RATE.token),
        Input("spo2", codes.SPO2.token),
        Input("supplemental_oxygen"),
        Input("systolic_bp", codes.SYSTOLIC_BP.token),
        Input("pulse", codes.HEART_RATE.token),
        Input("consciousness", codes.RESPONSIVENESS.token),
        Input("temperature", codes.BODY_TEMPERATURE.token),
        Input("spo2_scale_2"),
    ),
    outcome="Clinical deterioration (NEWS2 clinical risk band)",
    horizon=None,
    intended_use=(
        "Adults (16 years and over) in acute care, to detect deterioration and set the urgency of the clinical "
        "response; not validated in pregnancy or for children. SpO2 Scale 2 only for patients prescribed a "
        "target of 88-92 % because of hypercapnic respiratory failure."
    ),
    reference="Royal College of Physicians. National Early Warning Score (NEWS) 2. London: RCP, 2017. Charts 1-3.",
)

REQUIRED = (
    "respiratory_rate",
    "spo2",
    "supplemental_oxygen",
    "systolic_bp",
    "pulse",
    "consciousness",
    "temperature",
)
# A parameter's name in words, as a rationale lists what was not observed.
PARAMETER = {
    "respiratory_rate": "respiratory rate",
    "spo2": "SpO2",
    "supplemental_oxygen": "air or oxygen",
    "systolic_bp": "systolic blood pressure",
    "pulse": "pulse",
    "consciousness": "level of consciousness",
    "temperature": "temperature",
}
# The most each parameter can score (Chart 1): the gap between a partial set's bounds.
HIGHEST = {name: 3 for name in REQUIRED} | {"supplemental_oxygen": 2}
MIN_PARAMETERS = 4  # of 7: fewer are single readings, not a set, unless they already call for a response
MIN_AGE = 16  # RCP 2017: NEWS2 is for adults aged 16 and over
CONSCIOUSNESS = {
    "alert": "alert",
    "confusion": "new confusion",
    "voice": "responds to voice",
    "pain": "responds to pain",
    "unresponsive": "unresponsive",
}

# (inclusive upper bound, points, the chart's label for the cell), per RCP Chart 1
RESPIRATORY_RATE = ((8, 3, "≤8"), (11, 1, "9–11"), (20, 0, "12–20"), (24, 2, "21–24"), (math.inf, 3, "≥25"))
SPO2_SCALE_1 = ((91, 3, "≤91"), (93, 2, "92–93"), (95, 1, "94–95"), (math.inf, 0, "≥96"))
SPO2_SCALE_2_LOW = ((83, 3, "≤83"), (85, 2, "84–85"), (87, 1, "86–87"), (92, 0, "88–92"))
SPO2_SCALE_2_ON_OXYGEN = ((94, 1, "93–94 on oxygen"), (96, 2, "95–96 on oxygen"), (math.inf, 3, "≥97 on oxygen"))
SYSTOLIC_BP = ((90, 3, "≤90"), (100, 2, "91–100"), (110, 1, "101–110"), (219, 0, "111–219"), (math.inf, 3, "≥220"))
PULSE = (
    (40, 3, "≤40"),
    (50, 1, "41–50"),
    (90, 0, "51–90"),
    (110, 1, "91–110"),
    (130, 2, "111–130"),
    (math.inf, 3, "≥131"),
)
TEMPERATURE = (
    (35.0, 3, "≤35.0"),
    (36.0, 1, "35.1–36.0"),
    (38.0, 0, "36.1–38.0"),
    (39.0, 1, "38.1–39.0"),
    (math.inf, 2, "≥39.1"),
)

# RCP Chart 3: minimum monitoring frequency and clinical response, by band
RESPONSE = {
    "zero": "Minimum monitoring 12-hourly; continue routine NEWS monitoring (RCP NEWS2 Chart 3).",
    "low": (
        "Minimum monitoring 4–6-hourly; inform a registered nurse, who must assess the patient and decide whether "
        "increased frequency of clinical monitoring or escalation of care is required (RCP NEWS2 Chart 3)."
    ),
    "low-medium": (
        "Minimum monitoring 1-hourly; the registered nurse informs the medical team caring for the patient, who "
        "will review and decide whether escalation of care is necessary (urgent ward-based response, "
        "RCP NEWS2 Chart 3)."
    ),
    "medium": (
        "Minimum monitoring 1-hourly; the registered nurse immediately informs the medical team caring for the "
        "patient and requests urgent assessment by a clinician or team with core competencies in the care of "
        "acutely ill patients; provide clinical care in an environment with monitoring facilities (urgent "
        "response threshold, RCP NEWS2 Chart 3)."
    ),
    "high": (
        "Continuous monitoring of vital signs; the registered nurse immediately informs the medical team caring "
        "for the patient, at least at specialist registrar level; emergency assessment by a clinical team or "
        "critical care outreach team with critical-care competencies, including advanced airway management; "
        "consider transfer to a level 2 or 3 care facility (HDU or ICU); clinical care in an environment with "
        "monitoring facilities (emergency response threshold, RCP NEWS2 Chart 3)."
    ),
}


@dataclass(frozen=True, kw_only=True)
class News2Inputs:
    """One contemporaneous set of observations; None means not observed."""

    respiratory_rate: float | None = None  # /min
    spo2: float | None = None  # %
    supplemental_oxygen: bool | None = None  # False = breathing air
    systolic_bp: float | None = None  # mmHg
    pulse: float | None = None  # /min
    consciousness: Consciousness | None = None  # ACVPU; "confusion" means new confusion
    temperature: float | None = None  # °C
    spo2_scale_2: bool = False  # a prescribed SpO2 target of 88-92 % (RCP 2017: SpO2 Scale 2)
    age: float | None = None  # years; None: not recorded
    pregnancy: tuple[str, ...] = ()  # a pregnancy on record, in words: NEWS2 does not apply


def news2(inputs: News2Inputs) -> Score:
    """The NEWS2 aggregate score, its band and the RCP clinical response (RCP 2017, Charts 1-3); a
    lower bound from a partial set."""
    _check(inputs)
    if inputs.pregnancy:
        return Score.not_applicable(
            MODEL,
            f"pregnancy is on record ({'; '.join(inputs.pregnancy)}): NEWS2 is not validated in pregnancy, where an "
            "obstetric early warning score is used (RCP 2017)",
        )
    if inputs.age is not None and inputs.age < MIN_AGE:
        return Score.not_applicable(
            MODEL,
            f"age {inputs.age:g}: NEWS2 is for people aged {MIN_AGE} and over (RCP 2017); children are scored with "
            "a paediatric early warning score",
        )
    missing = missing_inputs(inputs, REQUIRED)
    low, high = _bounds(inputs)
    total = sum(int(c.points) for c in low)
    red = tuple(c.input for c in low if c.points == 3)
    if missing and len(REQUIRED) - len(missing) < MIN_PARAMETERS and total < 5 and not red:
        return Score.insufficient(MODEL, missing)
    band = _band(total, red)
    highest = sum(int(c.points) for c in high) + sum(HIGHEST[name] for name in missing if name != "supplemental_oxygen")
    scale = 2 if inputs.spo2_scale_2 else 1
    parts = "; ".join(c.explanation for c in low)
    if missing:
        observed = len(REQUIRED) - len(missing)
        rationale = (
            f"NEWS2 at least {total} (at least {band}) from {observed} of its 7 parameters; with the missing ones it "
            f"would be between {total} and {highest}: {parts}"
        )
    else:
        rationale = f"NEWS2 {total} ({band}): {parts}"
    if band == "low-medium":
        rationale += f"; a single parameter scored 3 ({', '.join(PARAMETER[name] for name in red)})"
    if scale == 2:
        rationale += "; SpO2 scored on Scale 2 for a prescribed target of 88-92 %"
    if missing:
        rationale += f". Not observed: {', '.join(PARAMETER[name] for name in missing)}"
    response = RESPONSE["zero" if total == 0 and not missing else band]
    if missing:
        rise = "" if band == "high" else "; the response may need to rise"
        response += (
            f" The set is incomplete: observe the missing parameters and score again{rise} (RCP 2017 scores a "
            "complete set)."
        )
    assumptions: tuple[str, ...] = ()
    if inputs.age is None:
        assumptions = (f"No age recorded: NEWS2 applies from {MIN_AGE} years; the patient is assumed to be an adult.",)
    return Score(
        model=MODEL,
        value=total,
        probability=None,
        band=band,
        partial=bool(missing),
        missing=missing,
        contributions=tuple(low),
        rationale=rationale,
        mitigation=response,
        assumptions=assumptions,
        bound=bool(missing),
    )


def _bounds(inputs: News2Inputs) -> tuple[list[Contribution], list[Contribution]]:
    """The observed parameters' contributions at the lowest and the highest total: the same, but
    when air or oxygen is unknown, which moves SpO2 on Scale 2 (≥ 93 % scores only on oxygen):
    the lowest is on air, without air or oxygen among them; the highest on oxygen, with it."""
    if inputs.supplemental_oxygen is not None:
        found = _contributions(inputs, inputs.supplemental_oxygen)
        return found, found
    low = [c for c in _contributions(inputs, False) if c.input != "supplemental_oxygen"]
    return low, _contributions(inputs, True)


def _contributions(inputs: News2Inputs, on_oxygen: bool) -> list[Contribution]:
    """Each observed parameter's cell, with air or oxygen as given (or as ``on_oxygen`` when unknown)."""
    found = []
    if inputs.respiratory_rate is not None:
        found.append(_banded("respiratory_rate", _whole(inputs.respiratory_rate), RESPIRATORY_RATE, "/min"))
    if inputs.spo2 is not None:
        found.append(_spo2(_whole(inputs.spo2), on_oxygen, inputs.spo2_scale_2))
    oxygen = "oxygen" if on_oxygen else "air"
    words = "on supplemental oxygen" if on_oxygen else "breathing air"
    found.append(Contribution("supplemental_oxygen", oxygen, 2 if on_oxygen else 0, _points(words, 2 * on_oxygen)))
    if inputs.systolic_bp is not None:
        found.append(_banded("systolic_bp", _whole(inputs.systolic_bp), SYSTOLIC_BP, " mmHg"))
    if inputs.pulse is not None:
        found.append(_banded("pulse", _whole(inputs.pulse), PULSE, "/min"))
    if inputs.consciousness is not None:
        found.append(_consciousness(inputs.consciousness))
    if inputs.temperature is not None:
        found.append(_banded("temperature", _tenth(inputs.temperature), TEMPERATURE, " °C"))
    return found


def _points(text: str, points: int) -> str:
    return f"{text}: {points} point{'' if points == 1 else 's'}"


def _band(total: int, red: tuple[str, ...]) -> str:
    """RCP Chart 2: ≥7 high, 5–6 medium, a 3 in any one parameter low-medium, otherwise low."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    return "low-medium" if red else "low"


def _banded(name: str, value: float, table: tuple[tuple[float, int, str], ...], unit: str) -> Contribution:
    for upper, points, _ in table:
        if value <= upper:
            return Contribution(name, value, points, _points(f"{PARAMETER[name]} {value:g}{unit}", points))
    raise AssertionError("every table ends with an unbounded cell")


def _spo2(spo2: int, on_oxygen: bool, scale_2: bool) -> Contribution:
    """SpO2 Scale 1, or Scale 2 where 93 % and above scores 0 on air and rises only on oxygen (Chart 1)."""
    table: tuple[tuple[float, int, str], ...]
    if not scale_2:
        table = SPO2_SCALE_1
    elif spo2 <= 92:
        table = SPO2_SCALE_2_LOW
    elif not on_oxygen:
        return Contribution("spo2", spo2, 0, _points(f"SpO2 {spo2} % (scale 2, 93 % or more on air)", 0))
    else:
        table = SPO2_SCALE_2_ON_OXYGEN
    for upper, points, _ in table:
        if spo2 <= upper:
            return Contribution("spo2", spo2, points, _points(f"SpO2 {spo2} % (scale {2 if scale_2 else 1})", points))
    raise AssertionError("every table ends with an unbounded cell")


def _consciousness(level: Consciousness) -> Contribution:
    points = 0 if level == "alert" else 3
    return Contribution("consciousness", level, points, _points(CONSCIOUSNESS[level], points))


def _check(inputs: News2Inputs) -> None:
    """Reject values no measurement can have; plausibility is the Digital Body's job, this is a type check."""
    if inputs.consciousness is not None and inputs.consciousness not in get_args(Consciousness):
        raise InputError("consciousness", f"must be one of {get_args(Consciousness)}, not {inputs.consciousness!r}")
    for name in ("respiratory_rate", "spo2", "systolic_bp", "pulse", "temperature"):
        value = getattr(inputs, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise InputError(name, f"must be a finite, non-negative number, not {value!r}")
    if inputs.spo2 is not None and inputs.spo2 > 100:
        raise InputError("spo2", f"is a percentage, not {inputs.spo2!r}")


def _whole(value: float) -> int:
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _tenth(value: float) -> float:
    return float(Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
