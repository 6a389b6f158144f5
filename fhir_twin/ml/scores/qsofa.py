"""qSOFA, the quick Sequential Organ Failure Assessment (Sepsis-3).

One point each for respiratory rate ≥ 22 /min, systolic BP ≤ 100 mmHg and altered mentation
(GCS < 15, or anything but Alert on ACVPU); positive at ≥ 2 (Singer et al., JAMA 2016;315:801,
Box 4; Seymour et al., JAMA 2016;315:762). Values are used as
given, without rounding. With criteria missing, a result is still given (``partial``) when no
value of theirs could change positive to negative or back.

qSOFA is for adults with suspected infection (Singer et al. 2016): without a suspicion on record it
is not applicable, unless a clinician asks for it, when it is scored with that said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

from fhir_twin.ml import codes
from fhir_twin.ml.scores.score import Consciousness, Contribution, Input, InputError, ModelInfo, Score

MODEL = ModelInfo(
    id="qsofa",
    version="1.0.0",
    kind="rule-based",
    inputs=(
        Input("respiratory_rate", codes.RESPIRATORY_RATE.token),
        Input("systolic_bp", codes.SYSTOLIC_BP.token),
        Input("consciousness", codes.RESPONSIVENESS.token),
        Input("gcs", codes.GCS_TOTAL.token),
    ),
    outcome="Poor outcome of infection: in-hospital death or ICU stay of 3 days or more",
    horizon="this hospital stay",
    intended_use=(
        "Adults with suspected infection outside the ICU, to prompt a search for organ dysfunction. Prognostic, "
        "not a diagnostic criterion for sepsis; a negative result does not rule sepsis out."
    ),
    reference=(
        "Singer M et al. The Third International Consensus Definitions for Sepsis and Septic Shock (Sepsis-3). "
        "JAMA 2016;315(8):801-810, Box 4; Seymour CW et al. JAMA 2016;315(8):762-774."
    ),
)

POSITIVE_AT = 2

# Singer et al. 2016, "qSOFA" section and Box 4
MITIGATION = {
    "positive": (
        "Investigate further for organ dysfunction, initiate or escalate therapy as appropriate, and consider "
        "referral to critical care or more frequent monitoring (Sepsis-3, Singer et al. 2016)."
    ),
    "negative": (
        "A negative qSOFA should not delay investigation or treatment of infection, nor any care the clinician "
        "thinks necessary; reassess if the clinical picture changes (Sepsis-3, Singer et al. 2016)."
    ),
}


MIN_AGE = 18  # Sepsis-3 defines qSOFA for adults


@dataclass(frozen=True, kw_only=True)
class QsofaInputs:
    """The three criteria's observations; mentation comes from ACVPU, GCS or both, and is "missing" if neither."""

    respiratory_rate: float | None = None  # /min
    systolic_bp: float | None = None  # mmHg
    consciousness: Consciousness | None = None  # ACVPU; "confusion" means new confusion
    gcs: int | None = None  # Glasgow Coma Scale total, 3-15
    age: float | None = None  # years; None: not recorded
    suspected_infection: tuple[str, ...] = ()  # what on record suggests an infection, in words
    on_request: bool = False  # a clinician asked for qSOFA on this patient


def qsofa(inputs: QsofaInputs) -> Score:
    """qSOFA 0-3 and positive/negative (Singer et al. 2016, Box 4); partial when missing criteria cannot matter."""
    _check(inputs)
    if inputs.age is not None and inputs.age < MIN_AGE:
        return Score.not_applicable(MODEL, f"age {inputs.age:g}: qSOFA is defined for adults (Sepsis-3)")
    assumptions: list[str] = []
    if not inputs.suspected_infection:
        if not inputs.on_request:
            return Score.not_applicable(
                MODEL,
                "no suspected infection on record (an active infection diagnosis or an antibacterial order): qSOFA "
                "is for adults with suspected infection (Sepsis-3)",
            )
        assumptions.append(
            "No suspected infection is on record; qSOFA was scored because it was asked for, and is validated only "
            "in suspected infection (Sepsis-3)."
        )
    if inputs.age is None:
        assumptions.append("No age recorded: qSOFA is defined for adults; the patient is assumed to be one.")
    criteria = (_respiratory_rate(inputs.respiratory_rate), _systolic_bp(inputs.systolic_bp), _mentation(inputs))
    known = tuple(c for c in criteria if c is not None)
    names = ("respiratory_rate", "systolic_bp", "mentation")
    missing = tuple(name for name, c in zip(names, criteria, strict=True) if c is None)
    met = sum(int(c.points) for c in known)
    if met < POSITIVE_AT <= met + len(missing):
        unknown = " and ".join(name.replace("_", " ") for name in missing)
        why = f"{met} of 3 criteria met ({'; '.join(c.explanation for c in known)}); {unknown} could make it positive"
        return Score.insufficient(MODEL, missing, why)

    band = "positive" if met >= POSITIVE_AT else "negative"
    parts = "; ".join(c.explanation for c in known)
    if missing:
        unknown = ", ".join(name.replace("_", " ") for name in missing)
        rationale = f"qSOFA at least {met} of 3 ({band}; {unknown} not observed but cannot change the result): {parts}"
    else:
        rationale = f"qSOFA {met} of 3 ({band}): {parts}"
    if inputs.suspected_infection:
        rationale += f". Suspected infection: {'; '.join(inputs.suspected_infection)}"
    return Score(
        model=MODEL,
        value=met,
        probability=None,
        band=band,
        partial=bool(missing),
        missing=missing,
        contributions=known,
        rationale=rationale,
        mitigation=MITIGATION[band],
        assumptions=tuple(assumptions),
    )


def _point(points: int) -> str:
    return f"{points} point{'' if points == 1 else 's'}"


def _respiratory_rate(value: float | None) -> Contribution | None:
    if value is None:
        return None
    met = value >= 22
    explanation = f"respiratory rate {value:g}/min ({'≥' if met else '<'} 22): {_point(int(met))}"
    return Contribution("respiratory_rate", value, int(met), explanation)


def _systolic_bp(value: float | None) -> Contribution | None:
    if value is None:
        return None
    met = value <= 100
    return Contribution(
        "systolic_bp",
        value,
        int(met),
        f"systolic blood pressure {value:g} mmHg ({'≤' if met else '>'} 100): {_point(int(met))}",
    )


def _mentation(inputs: QsofaInputs) -> Contribution | None:
    """Altered when either source says so: ACVPU other than Alert, or GCS below 15."""
    seen: list[tuple[str, str | int, bool, str]] = []
    if inputs.consciousness is not None:
        altered = inputs.consciousness != "alert"
        seen.append(("consciousness", inputs.consciousness, altered, f"ACVPU {inputs.consciousness}"))
    if inputs.gcs is not None:
        seen.append(("gcs", inputs.gcs, inputs.gcs < 15, f"GCS {inputs.gcs}"))
    if not seen:
        return None
    abnormal = [entry for entry in seen if entry[2]]
    name, value, _, _ = (abnormal or seen)[0]
    text = " and ".join(words for *_, words in seen)
    verdict = "altered mentation" if abnormal else "normal mentation"
    return Contribution(name, value, int(bool(abnormal)), f"{text}, {verdict}: {_point(int(bool(abnormal)))}")


def _check(inputs: QsofaInputs) -> None:
    """Reject values no observation can have."""
    if inputs.consciousness is not None and inputs.consciousness not in get_args(Consciousness):
        raise InputError("consciousness", f"must be one of {get_args(Consciousness)}, not {inputs.consciousness!r}")
    if inputs.gcs is not None and not 3 <= inputs.gcs <= 15:
        raise InputError("gcs", f"must be 3-15, not {inputs.gcs!r}")
    for name in ("respiratory_rate", "systolic_bp"):
        value = getattr(inputs, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise InputError(name, f"must be a finite, non-negative number, not {value!r}")
