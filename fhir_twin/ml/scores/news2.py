"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, 2017).

Scoring per RCP NEWS2 Chart 1, bands per Chart 2, clinical response per Chart 3
(RCP 2017). Respiratory rate, SpO2, systolic BP and pulse are rounded
half-up to whole numbers and temperature to 0.1 °C before scoring, so every value falls in
exactly one cell of the chart. All seven parameters are required: the RCP score is defined on a
complete set of observations, so a missing one gives no score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import get_args

from fhir_twin.ml.scores.model import LOINC, Consciousness, Contribution, Input, ModelInfo, Score, missing_inputs

MODEL = ModelInfo(
    id="news2",
    version="1.0.0",
    kind="rule-based",
    inputs=(
        Input("respiratory_rate", f"{LOINC}|9279-1"),
        Input("spo2", f"{LOINC}|2708-6"),
        Input("supplemental_oxygen"),
        Input("systolic_bp", f"{LOINC}|8480-6"),
        Input("pulse", f"{LOINC}|8867-4"),
        Input("consciousness", f"{LOINC}|67775-7"),
        Input("temperature", f"{LOINC}|8310-5"),
        Input("hypercapnic_respiratory_failure"),
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
    hypercapnic_respiratory_failure: bool = False  # a clinician's decision to use SpO2 Scale 2


def news2(inputs: News2Inputs) -> Score:
    """The NEWS2 aggregate score, its band and the RCP clinical response (RCP 2017, Charts 1-3)."""
    missing = missing_inputs(inputs, REQUIRED)
    if missing:
        return Score.insufficient(MODEL, missing)
    assert inputs.respiratory_rate is not None and inputs.spo2 is not None  # narrowed for the type checker
    assert inputs.systolic_bp is not None and inputs.pulse is not None and inputs.temperature is not None
    assert inputs.supplemental_oxygen is not None and inputs.consciousness is not None
    _check(inputs)

    on_oxygen = inputs.supplemental_oxygen
    respiratory_rate = _whole(inputs.respiratory_rate)
    spo2 = _whole(inputs.spo2)
    systolic_bp = _whole(inputs.systolic_bp)
    pulse = _whole(inputs.pulse)
    temperature = _tenth(inputs.temperature)
    contributions = (
        _banded("respiratory_rate", respiratory_rate, RESPIRATORY_RATE, "respiratory rate", "/min"),
        _spo2(spo2, on_oxygen, inputs.hypercapnic_respiratory_failure),
        Contribution(
            "supplemental_oxygen",
            "oxygen" if on_oxygen else "air",
            2 if on_oxygen else 0,
            "supplemental oxygen → 2" if on_oxygen else "breathing air → 0",
        ),
        _banded("systolic_bp", systolic_bp, SYSTOLIC_BP, "systolic BP", " mmHg"),
        _banded("pulse", pulse, PULSE, "pulse", "/min"),
        _consciousness(inputs.consciousness),
        _banded("temperature", temperature, TEMPERATURE, "temperature", " °C"),
    )
    total = sum(int(c.points) for c in contributions)
    red = tuple(c.input for c in contributions if c.points == 3)
    band = _band(total, red)
    scale = 2 if inputs.hypercapnic_respiratory_failure else 1
    parts = ", ".join(_part(c, scale) for c in contributions)
    rationale = f"NEWS2 {total} ({band}): {parts}"
    if band == "low-medium":
        rationale += f"; a single parameter scored 3 ({', '.join(red)})"
    return Score(
        model=MODEL,
        value=total,
        probability=None,
        band=band,
        partial=False,
        missing=(),
        contributions=contributions,
        rationale=rationale,
        mitigation=RESPONSE["zero" if total == 0 else band],
    )


def _band(total: int, red: tuple[str, ...]) -> str:
    """RCP Chart 2: ≥7 high, 5–6 medium, a 3 in any one parameter low-medium, otherwise low."""
    if total >= 7:
        return "high"
    if total >= 5:
        return "medium"
    return "low-medium" if red else "low"


def _banded(name: str, value: float, table: tuple[tuple[float, int, str], ...], label: str, unit: str) -> Contribution:
    for upper, points, cell in table:
        if value <= upper:
            return Contribution(name, value, points, f"{label} {value}{unit} is in {cell} → {points}")
    raise AssertionError("every table ends with an unbounded cell")


def _spo2(spo2: int, on_oxygen: bool, scale_2: bool) -> Contribution:
    """SpO2 Scale 1, or Scale 2 where 93 % and above scores 0 on air and rises only on oxygen (Chart 1)."""
    if not scale_2:
        contribution = _banded("spo2", spo2, SPO2_SCALE_1, "SpO2 (scale 1)", " %")
    elif spo2 <= 92:
        contribution = _banded("spo2", spo2, SPO2_SCALE_2_LOW, "SpO2 (scale 2)", " %")
    elif not on_oxygen:
        contribution = Contribution("spo2", spo2, 0, f"SpO2 (scale 2) {spo2} % is ≥93 on air → 0")
    else:
        contribution = _banded("spo2", spo2, SPO2_SCALE_2_ON_OXYGEN, "SpO2 (scale 2)", " %")
    return contribution


def _consciousness(level: Consciousness) -> Contribution:
    if level == "alert":
        return Contribution("consciousness", level, 0, "alert → 0")
    return Contribution("consciousness", level, 3, f"{level} (new confusion, voice, pain or unresponsive) → 3")


def _part(contribution: Contribution, scale: int) -> str:
    """One parameter in the rationale's short form, e.g. ``SpO2 94 (scale 1)→1``."""
    short = {
        "respiratory_rate": "RR",
        "spo2": "SpO2",
        "systolic_bp": "SBP",
        "pulse": "HR",
        "temperature": "T",
    }
    if contribution.input == "spo2":
        return f"SpO2 {contribution.value} (scale {scale})→{contribution.points}"
    name = short.get(contribution.input)
    value = contribution.value if name is None else f"{name} {contribution.value}"
    return f"{value}→{contribution.points}"


def _check(inputs: News2Inputs) -> None:
    """Reject values no measurement can have; plausibility is the Digital Body's job, this is a type check."""
    if inputs.consciousness not in get_args(Consciousness):
        raise ValueError(f"consciousness must be one of {get_args(Consciousness)}, not {inputs.consciousness!r}")
    for name in ("respiratory_rate", "spo2", "systolic_bp", "pulse", "temperature"):
        value = getattr(inputs, name)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite, non-negative number, not {value!r}")
    if inputs.spo2 is not None and inputs.spo2 > 100:
        raise ValueError(f"spo2 is a percentage, not {inputs.spo2!r}")


def _whole(value: float) -> int:
    return int(Decimal(str(value)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _tenth(value: float) -> float:
    return float(Decimal(str(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
