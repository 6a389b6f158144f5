"""NCEP ATP III 10-year hard CHD risk: the Framingham equation behind the NHLBI ATP III calculator.

Risk = 1 − S₀^exp(ΣβX − mean) with natural logs of age, total cholesterol, HDL-C and systolic
BP; the smoking interaction uses age capped at 70 for men and 78 for women (NCEP ATP III, JAMA
2001;285:2486; coefficients as MDCalc publishes them). It
reproduces the official FHIR R4 ``riskassessment-example-cardiac`` (1.68 %, shown as 2 %). There
is no diabetes term: ATP III counts diabetes as a CHD risk equivalent, so a patient with diabetes
gets no score, and neither does one with CHD or another risk equivalent (clinical ASCVD: stroke
or TIA of carotid origin, peripheral arterial disease, aortic aneurysm), whom ATP III puts in the
highest risk category without an estimate (NCEP ATP III 2001, Executive Summary, "Risk
assessment"); nor does an LDL-C of 190 mg/dL or more (2018 AHA/ACC cholesterol guideline). ATP
III treatment goals also depend on counting risk factors, so no mitigation is given; the Pooled
Cohort Equations carry current guidance. Unknown treatment, smoking or diabetes are assumed and
said (``risk_factors``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from fhir_twin.ml.scores import risk_factors
from fhir_twin.ml.scores.score import Contribution, Input, InputError, ModelInfo, Score, linear_term, missing_inputs

Sex = Literal["female", "male"]

MODEL = ModelInfo(
    id="atp3-hard-chd",
    version="1.0.0",
    kind="rule-based",
    inputs=(
        Input("age"),
        Input("sex"),
        *risk_factors.INPUTS,
    ),
    outcome="Hard coronary heart disease: myocardial infarction or coronary death",
    horizon="10 years",
    intended_use=(
        "Adults aged 20-79 without coronary heart disease or diabetes, as in the NHLBI ATP III calculator. "
        "Superseded for treatment decisions by the 2013 ACC/AHA Pooled Cohort Equations."
    ),
    reference=(
        "Expert Panel on Detection, Evaluation, and Treatment of High Blood Cholesterol in Adults. Executive "
        "Summary of the Third Report of the NCEP (Adult Treatment Panel III). JAMA 2001;285(19):2486-2497; "
        "equation coefficients as published by MDCalc, Framingham Risk Score for Hard Coronary Heart Disease."
    ),
)

REQUIRED = ("age", "sex", "total_cholesterol", "hdl", "systolic_bp")
YES_NO = ("bp_treated", "smoker")
SEVERE_LDL = 190  # mg/dL (2018 AHA/ACC cholesterol guideline)
AGES = (20, 79)  # the NHLBI ATP III calculator's range; the ATP III point tables span the same ages


@dataclass(frozen=True)
class Equation:
    """One sex's equation: β per covariate, S₀(10), the mean ΣβX and the age cap of the smoking interaction."""

    beta: dict[str, float]
    baseline_survival: float
    mean: float
    smoking_age_cap: float


EQUATIONS: dict[str, Equation] = {
    "male": Equation(
        {
            "ln_age": 52.00961,
            "ln_total_cholesterol": 20.014077,
            "ln_hdl": -0.905964,
            "ln_sbp": 1.305784,
            "bp_treated": 0.241549,
            "smoker": 12.096316,
            "ln_age_x_ln_total_cholesterol": -4.605038,
            "ln_age_x_smoker": -2.84367,
            "ln_age_squared": -2.93323,
        },
        0.9402,
        172.300168,
        70,
    ),
    "female": Equation(
        {
            "ln_age": 31.764001,
            "ln_total_cholesterol": 22.465206,
            "ln_hdl": -1.187731,
            "ln_sbp": 2.552905,
            "bp_treated": 0.420251,
            "smoker": 13.07543,
            "ln_age_x_ln_total_cholesterol": -5.060998,
            "ln_age_x_smoker": -2.996945,
        },
        0.98767,
        146.5933061,
        78,
    ),
}


@dataclass(frozen=True, kw_only=True)
class Atp3Inputs:
    """The equation's inputs in conventional units; None means not known."""

    age: float | None = None  # years
    sex: Sex | None = None
    total_cholesterol: float | None = None  # mg/dL
    hdl: float | None = None  # mg/dL
    systolic_bp: float | None = None  # mmHg
    bp_treated: bool | None = None  # on antihypertensive treatment
    smoker: bool | None = None  # current smoker
    diabetes: bool | None = None  # not in the equation; True means the equation does not apply
    ldl: float | None = None  # mg/dL, the highest recorded
    clinical_ascvd: tuple[str, ...] = ()  # CHD or another risk equivalent on record, in words


def atp3(inputs: Atp3Inputs) -> Score:
    """10-year hard CHD risk by the ATP III Framingham equation (NCEP 2001)."""
    missing = missing_inputs(inputs, REQUIRED)
    if missing:
        return Score.insufficient(MODEL, missing)
    _check(inputs)
    assert inputs.age is not None and inputs.sex is not None
    if inputs.clinical_ascvd:
        return Score.not_applicable(
            MODEL,
            f"CHD or a CHD risk equivalent is on record ({'; '.join(inputs.clinical_ascvd)}): ATP III puts the "
            "patient in the highest risk category without an estimate",
        )
    if inputs.diabetes:
        return Score.not_applicable(MODEL, "diabetes is a CHD risk equivalent in ATP III, outside this equation")
    if inputs.ldl is not None and inputs.ldl >= SEVERE_LDL:
        return Score.not_applicable(
            MODEL,
            f"LDL cholesterol {inputs.ldl:g} mg/dL is {SEVERE_LDL} or more (severe hypercholesterolaemia): "
            "high-intensity statin therapy is indicated without a risk estimate (2018 AHA/ACC cholesterol guideline)",
        )
    low, high = AGES
    if not low <= inputs.age <= high:
        return Score.not_applicable(MODEL, f"age {inputs.age:g} outside {low}-{high}")

    assumed, assumptions = risk_factors.assume_no(inputs, YES_NO, _risk)
    if inputs.diabetes is None:
        # Its "yes" is not a higher risk here but no estimate at all (a CHD risk equivalent).
        assumed = dataclasses.replace(assumed, diabetes=False)
        unknown = risk_factors.UNKNOWN["diabetes"].unknown
        assumptions += (f"{unknown}: assumed no diabetes; with diabetes the equation would not apply.",)
    probability = _risk(assumed)
    band = _band(probability)
    factors = risk_factors.in_words(assumed)
    contributions = risk_factors.contributions(assumed, _risk, factors)
    women = "women" if inputs.sex == "female" else "men"
    rationale = (
        f"10-year risk of a heart attack or coronary death: {100 * probability:.1f} % ({band}), by the ATP III "
        f"Framingham equation for {women}. With optimal risk factors (total cholesterol 170 mg/dL, HDL 50 mg/dL, "
        f"untreated systolic BP 110 mmHg, non-smoker) it would be {100 * risk_factors.optimal(assumed, _risk):.1f} %"
    )
    rationale += risk_factors.largest(contributions)
    return Score.complete(
        MODEL,
        value=100 * probability,
        probability=probability,
        band=band,
        contributions=contributions,
        rationale=rationale,
        mitigation=None,
        assumptions=assumptions,
    )


def terms(inputs: Atp3Inputs) -> tuple[Contribution, ...]:
    """The β·X terms of the patient's equation, whose sum is the linear predictor ΣβX."""
    assert inputs.sex is not None
    equation = EQUATIONS[inputs.sex]
    covariates = _covariates(vars(inputs), equation.smoking_age_cap)
    labels = _labels(inputs, equation.smoking_age_cap)
    return tuple(linear_term(name, beta, covariates[name], labels[name]) for name, beta in equation.beta.items())


def _risk(inputs: Atp3Inputs, **changes: Any) -> float:
    """1 − S₀^exp(ΣβX − mean) of the patient's sex (inputs complete, yes/no answered), with
    ``changes`` to the inputs; evaluated a dozen times a run by the explanations, so it forms no
    text and copies no dataclass."""
    values = {**vars(inputs), **changes} if changes else vars(inputs)
    equation = EQUATIONS[values["sex"]]
    covariates = _covariates(values, equation.smoking_age_cap)
    linear_predictor = sum(beta * covariates[name] for name, beta in equation.beta.items())
    return 1 - equation.baseline_survival ** math.exp(linear_predictor - equation.mean)


def _covariates(values: Mapping[str, Any], smoking_age_cap: float) -> dict[str, float]:
    """Each X of the equation from the inputs' values; the smoking interaction uses the capped age."""
    ln_age = math.log(values["age"])
    ln_total_cholesterol = math.log(values["total_cholesterol"])
    smoker = float(bool(values["smoker"]))
    return {
        "ln_age": ln_age,
        "ln_total_cholesterol": ln_total_cholesterol,
        "ln_hdl": math.log(values["hdl"]),
        "ln_sbp": math.log(values["systolic_bp"]),
        "bp_treated": float(bool(values["bp_treated"])),
        "smoker": smoker,
        "ln_age_x_ln_total_cholesterol": ln_age * ln_total_cholesterol,
        "ln_age_x_smoker": math.log(min(values["age"], smoking_age_cap)) * smoker,
        "ln_age_squared": ln_age**2,
    }


def _labels(inputs: Atp3Inputs, smoking_age_cap: float) -> dict[str, str]:
    """How each X of ``_covariates`` was formed from the inputs, for its β·X term."""
    assert inputs.age is not None
    smoking_age = min(inputs.age, smoking_age_cap)
    age = f"ln(age {inputs.age:g})"
    total_cholesterol = f"ln(total cholesterol {inputs.total_cholesterol:g} mg/dL)"
    smoking = f"smoker ({'yes' if inputs.smoker else 'no'})"
    capped = f"ln(age {smoking_age:g}{', capped' if smoking_age < inputs.age else ''})"
    return {
        "ln_age": age,
        "ln_total_cholesterol": total_cholesterol,
        "ln_hdl": f"ln(HDL {inputs.hdl:g} mg/dL)",
        "ln_sbp": f"ln(SBP {inputs.systolic_bp:g} mmHg)",
        "bp_treated": f"BP treated ({'yes' if inputs.bp_treated else 'no'})",
        "smoker": smoking,
        "ln_age_x_ln_total_cholesterol": f"{age} × {total_cholesterol}",
        "ln_age_x_smoker": f"{capped} × {smoking}",
        "ln_age_squared": f"{age}²",
    }


def _band(probability: float) -> str:
    """ATP III 10-year risk categories: <10 %, 10-20 %, >20 % (a CHD risk equivalent)."""
    if probability > 0.20:
        return "high"
    if probability >= 0.10:
        return "intermediate"
    return "low"


def _check(inputs: Atp3Inputs) -> None:
    """Reject values of the wrong kind: the logarithms need positive, finite numbers."""
    if inputs.sex not in get_args(Sex):
        raise InputError("sex", f"must be one of {get_args(Sex)}, not {inputs.sex!r}")
    for name in ("age", "total_cholesterol", "hdl", "systolic_bp"):
        value = getattr(inputs, name)
        if not math.isfinite(value) or value <= 0:
            raise InputError(name, f"must be a positive, finite number, not {value!r}")
