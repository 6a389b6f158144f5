"""How the cardiovascular risk equations (Pooled Cohort, ATP III) treat and explain risk factors.

Unknown yes/no factors: an equation needs diabetes, treatment and smoking as yes or no, and a
record that names none of them does not say "no". The score takes "no" (as the ACC/AHA
calculators do by default), says so, and gives the risk the other answer would give, so the
reader sees how much the assumption matters; the assessment is preliminary.

Contributions: each modifiable factor's share is the risk it adds over its optimal level, with
every other factor as it is: the optimal levels of Goff et al. 2013 (total cholesterol 170
mg/dL, HDL 50 mg/dL, untreated systolic BP 110 mmHg, non-smoker, no diabetes), which the
ACC/AHA risk estimator shows as "optimal risk". A clinician reads "smoker (+4.1 percentage
points)" where the equation holds β·ln(x) terms that mean nothing alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from fhir_twin.ml import codes
from fhir_twin.ml.scores.score import Contribution, Input

T = TypeVar("T")

# What both equations read besides age and sex (and the Pooled Cohort Equations' race), in the order
# their model cards list it.
INPUTS = (
    Input("total_cholesterol", codes.TOTAL_CHOLESTEROL.token),
    Input("hdl", codes.HDL_CHOLESTEROL.token),
    Input("systolic_bp", codes.SYSTOLIC_BP.token),
    Input("bp_treated"),
    Input("smoker", codes.SMOKING_STATUS.token),
    Input("diabetes"),
    Input("ldl", codes.LDL_CHOLESTEROL.token),
    Input("clinical_ascvd"),
)

OPTIMAL: dict[str, Any] = {
    "total_cholesterol": 170.0,
    "hdl": 50.0,
    "systolic_bp": 110.0,
    "bp_treated": False,
    "smoker": False,
    "diabetes": False,
}


class YesNo(NamedTuple):
    """An unknown yes/no factor: why it is unknown, the "no" taken, and the "yes" in words."""

    unknown: str
    no: str
    if_yes: str


UNKNOWN = {
    "smoker": YesNo("No current smoking status is recorded", "a non-smoker", "as a current smoker"),
    "diabetes": YesNo(
        "Neither diabetes nor its absence is recorded (no diagnosis, no HbA1c or fasting glucose)",
        "no diabetes",
        "with diabetes",
    ),
    "bp_treated": YesNo(
        "No blood-pressure-lowering medicine is ordered, which does not show that none is taken",
        "untreated blood pressure",
        "if treated",
    ),
}


# An equation's risk of its inputs, with changes to some of them: ``risk(inputs, smoker=True)``.
Risk = Callable[..., float]


def assume_no(inputs: T, names: tuple[str, ...], risk: Risk) -> tuple[T, tuple[str, ...]]:
    """``inputs`` with each unknown yes/no of ``names`` taken as no, and each assumption in words
    with the risk the other answer gives."""
    unknown = [name for name in names if getattr(inputs, name) is None]
    if not unknown:
        return inputs, ()
    assumed = dataclasses.replace(inputs, **{name: False for name in unknown})  # type: ignore[type-var]
    texts = []
    for name in unknown:
        words = UNKNOWN[name]
        other = risk(assumed, **{name: True})
        texts.append(f"{words.unknown}: assumed {words.no}; {words.if_yes}, the risk would be {100 * other:.1f} %.")
    return assumed, tuple(texts)


def contributions(inputs: T, risk: Risk, factors: dict[str, str]) -> tuple[Contribution, ...]:
    """Each factor of ``factors`` (name → its value in words) that raises the risk above its optimal
    level: the percentage points it adds, largest first."""
    actual = risk(inputs)
    found = []
    for name, words in factors.items():
        changes = {name: OPTIMAL[name]}
        if name == "systolic_bp":
            changes["bp_treated"] = False  # the optimal level is an untreated 110 mmHg
        added = 100 * (actual - risk(inputs, **changes))
        if added >= 0.05:
            found.append(Contribution(name, getattr(inputs, name), round(added, 2), f"{words} (+{added:.1f})"))
    return tuple(sorted(found, key=lambda c: -c.points))


def in_words(inputs: Any) -> dict[str, str]:
    """The modifiable factors both equations explain (``contributions``), each as its value in words."""
    treated = ", treated" if inputs.bp_treated else ""
    return {
        "smoker": "smoker",
        "systolic_bp": f"systolic BP {inputs.systolic_bp:g} mmHg{treated}",
        "total_cholesterol": f"total cholesterol {inputs.total_cholesterol:g} mg/dL",
        "hdl": f"HDL cholesterol {inputs.hdl:g} mg/dL",
    }


def largest(contributions: tuple[Contribution, ...]) -> str:
    """The end of a rationale: the three largest contributions, if any, and the full stop."""
    if not contributions:
        return "."
    listed = "; ".join(c.explanation for c in contributions[:3])
    return f"; largest contributors, in percentage points of risk: {listed}."


def optimal(inputs: T, risk: Risk) -> float:
    """The risk at the optimal level of every modifiable factor, age, sex and race as they are."""
    return risk(inputs, **OPTIMAL)
