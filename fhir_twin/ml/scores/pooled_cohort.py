"""The ACC/AHA Pooled Cohort Equations: 10-year risk of a first hard ASCVD event (Goff et al. 2013).

Risk = 1 − S₀(10)^exp(ΣβX − mean ΣβX) with natural logs of age, total cholesterol, HDL-C and
systolic BP, one equation per sex and race (Goff et al., Circulation 2014;129:S49, Table A;
Table A). Coefficients, S₀ and means are those of the ACC/AHA app
``cerner/ascvd-risk-calculator`` (``app/load_fhir_data.js``): Table A's values with more
decimals, which reproduce both Table A's worked example and that app's tests. Inputs outside the
calculator's ranges give no score. The result is RiskAssessment.code LOINC 79423-0.

The equations are for primary prevention: clinical ASCVD on record, or an LDL-C of 190 mg/dL or
more, makes them not applicable (2018 AHA/ACC cholesterol guideline, Grundy SM et al.,
Circulation 2019;139:e1082: such patients are treated without a risk estimate). Unknown
treatment, smoking, diabetes or race are assumed and said (``risk_factors``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from fhir_twin.ml.scores import risk_factors
from fhir_twin.ml.scores.score import Contribution, Input, InputError, ModelInfo, Score, linear_term, missing_inputs

Sex = Literal["female", "male"]
Race = Literal["white", "african_american", "other"]

MODEL = ModelInfo(
    id="pooled-cohort-ascvd",
    version="1.0.0",
    kind="rule-based",
    inputs=(
        Input("age"),
        Input("sex"),
        Input("race"),
        *risk_factors.INPUTS,
    ),
    outcome="First hard ASCVD event: nonfatal myocardial infarction, CHD death, or fatal or nonfatal stroke",
    horizon="10 years",
    intended_use=(
        "Primary prevention in adults aged 40-79 without clinical ASCVD and with LDL-C below 190 mg/dL, to inform a "
        "clinician-patient risk discussion; derived in white and African American cohorts only."
    ),
    reference=(
        "Goff DC Jr et al. 2013 ACC/AHA Guideline on the Assessment of Cardiovascular Risk. "
        "Circulation 2014;129(25 Suppl 2):S49-S73, Table A. Risk bands and actions: Arnett DK et al. "
        "2019 ACC/AHA Guideline on the Primary Prevention of Cardiovascular Disease, Circulation 2019;140:e596."
    ),
)

REQUIRED = ("age", "sex", "total_cholesterol", "hdl", "systolic_bp")
YES_NO = ("bp_treated", "smoker", "diabetes")
SEVERE_LDL = 190  # mg/dL: primary severe hypercholesterolaemia (2018 AHA/ACC cholesterol guideline)

# (input, lowest, highest) accepted, inclusive, as the ACC/AHA app checks them
RANGES = (
    ("age", 40, 79),
    ("total_cholesterol", 130, 320),
    ("hdl", 20, 100),
    ("systolic_bp", 90, 200),
)


@dataclass(frozen=True)
class Equation:
    """One of the four sex- and race-specific equations: β per covariate, S₀(10) and the cohort mean ΣβX."""

    label: str  # who it is for: "white women"
    beta: dict[str, float]
    baseline_survival: float
    mean: float


EQUATIONS: dict[tuple[str, str], Equation] = {
    ("female", "white"): Equation(
        "white women",
        {
            "ln_age": -29.799,
            "ln_age_squared": 4.884,
            "ln_total_cholesterol": 13.540,
            "ln_age_x_ln_total_cholesterol": -3.114,
            "ln_hdl": -13.578,
            "ln_age_x_ln_hdl": 3.149,
            "ln_sbp_treated": 2.019,
            "ln_sbp_untreated": 1.957,
            "smoker": 7.574,
            "ln_age_x_smoker": -1.665,
            "diabetes": 0.661,
        },
        0.96652,
        -29.1817,
    ),
    ("female", "african_american"): Equation(
        "African American women",
        {
            "ln_age": 17.1141,
            "ln_total_cholesterol": 0.9396,
            "ln_hdl": -18.9196,
            "ln_age_x_ln_hdl": 4.4748,
            "ln_sbp_treated": 29.2907,
            "ln_age_x_ln_sbp_treated": -6.4321,
            "ln_sbp_untreated": 27.8197,
            "ln_age_x_ln_sbp_untreated": -6.0873,
            "smoker": 0.6908,
            "diabetes": 0.8738,
        },
        0.95334,
        86.6081,
    ),
    ("male", "white"): Equation(
        "white men",
        {
            "ln_age": 12.344,
            "ln_total_cholesterol": 11.853,
            "ln_age_x_ln_total_cholesterol": -2.664,
            "ln_hdl": -7.990,
            "ln_age_x_ln_hdl": 1.769,
            "ln_sbp_treated": 1.797,
            "ln_sbp_untreated": 1.764,
            "smoker": 7.837,
            "ln_age_x_smoker": -1.795,
            "diabetes": 0.658,
        },
        0.91436,
        61.1816,
    ),
    ("male", "african_american"): Equation(
        "African American men",
        {
            "ln_age": 2.469,
            "ln_total_cholesterol": 0.302,
            "ln_hdl": -0.307,
            "ln_sbp_treated": 1.916,
            "ln_sbp_untreated": 1.809,
            "smoker": 0.549,
            "diabetes": 0.645,
        },
        0.89536,
        19.5425,
    ),
}

# 2019 ACC/AHA primary prevention guideline (Arnett et al.), 10-year ASCVD risk categories and first actions
MITIGATION = {
    "low": "Emphasise lifestyle to reduce risk factors (2019 ACC/AHA primary prevention guideline, <5 %).",
    "borderline": (
        "Emphasise lifestyle; if risk-enhancing factors are present, discuss moderate-intensity statin therapy "
        "(2019 ACC/AHA primary prevention guideline, 5 % to <7.5 %)."
    ),
    "intermediate": (
        "Emphasise lifestyle; if the risk estimate and risk-enhancing factors favour it, start a moderate-intensity "
        "statin to lower LDL-C by 30-49 %; coronary artery calcium scoring can inform an uncertain decision "
        "(2019 ACC/AHA primary prevention guideline, 7.5 % to <20 %)."
    ),
    "high": (
        "Emphasise lifestyle and start a statin to lower LDL-C by 50 % or more "
        "(2019 ACC/AHA primary prevention guideline, ≥20 %)."
    ),
}


@dataclass(frozen=True, kw_only=True)
class PooledCohortInputs:
    """The equation's inputs in conventional units; None means not known."""

    age: float | None = None  # years
    sex: Sex | None = None
    race: Race | None = None  # "other" is scored with the white equation; None: not recorded
    several_races: bool = False  # Black or African American recorded with other categories
    total_cholesterol: float | None = None  # mg/dL
    hdl: float | None = None  # mg/dL
    systolic_bp: float | None = None  # mmHg
    bp_treated: bool | None = None  # on blood-pressure-lowering treatment
    smoker: bool | None = None  # current smoker
    diabetes: bool | None = None
    ldl: float | None = None  # mg/dL, the highest recorded
    clinical_ascvd: tuple[str, ...] = ()  # clinical ASCVD on record, in words


def pooled_cohort(inputs: PooledCohortInputs) -> Score:
    """10-year hard ASCVD risk by the Pooled Cohort Equations (Goff et al. 2013, Table A)."""
    missing = missing_inputs(inputs, REQUIRED)
    if missing:
        return Score.insufficient(MODEL, missing)
    _check(inputs)
    if inputs.clinical_ascvd:
        return Score.not_applicable(
            MODEL,
            f"clinical ASCVD is on record ({'; '.join(inputs.clinical_ascvd)}): the patient is in secondary "
            "prevention, which the 2018 AHA/ACC cholesterol guideline treats without a risk estimate",
        )
    if inputs.ldl is not None and inputs.ldl >= SEVERE_LDL:
        return Score.not_applicable(
            MODEL,
            f"LDL cholesterol {inputs.ldl:g} mg/dL is {SEVERE_LDL} or more (severe hypercholesterolaemia): "
            "high-intensity statin therapy is indicated without a risk estimate (2018 AHA/ACC cholesterol guideline)",
        )
    outside = [
        f"{name.replace('_', ' ')} {getattr(inputs, name):g} outside {low}-{high}"
        for name, low, high in RANGES
        if not low <= getattr(inputs, name) <= high
    ]
    if outside:
        return Score.not_applicable(MODEL, "; ".join(outside) + " (ACC/AHA Pooled Cohort Equations ranges)")

    assumed, assumptions = risk_factors.assume_no(inputs, YES_NO, _risk)
    if assumed.race is None:
        other = _risk(assumed, race="african_american")
        assumptions += (
            f"No race is recorded: scored with the white equation, as Goff et al. advise for every group but African "
            f"American; the African American equation would give {100 * other:.1f} %.",
        )
    probability = _risk(assumed)
    equation = _equation(vars(assumed))
    band = _band(probability)
    factors = {**risk_factors.in_words(assumed), "diabetes": "diabetes"}
    contributions = risk_factors.contributions(assumed, _risk, factors)
    rationale = (
        f"10-year risk of a first heart attack, coronary death or stroke: {100 * probability:.1f} % ({band}), by "
        f"the Pooled Cohort Equation for {equation.label}. With optimal risk factors it would be "
        f"{100 * risk_factors.optimal(assumed, _risk):.1f} %"
    )
    rationale += risk_factors.largest(contributions)
    if inputs.race == "other":
        rationale += (
            " Race is neither white nor African American, so the white equation is used, as Goff et al. advise; "
            "the equations were derived in white and African American cohorts only and may over- or underestimate "
            "risk in other groups."
        )
    if inputs.several_races and inputs.race == "african_american":
        other = _risk(assumed, race="white")
        rationale += (
            " Black or African American is recorded with other race categories: the African American equation is "
            f"used, the only one derived for a group other than white; the white equation gives {100 * other:.1f} %."
        )
    return Score.complete(
        MODEL,
        value=100 * probability,
        probability=probability,
        band=band,
        contributions=contributions,
        rationale=rationale,
        mitigation=MITIGATION[band],
        assumptions=assumptions,
    )


def _equation(values: Mapping[str, Any]) -> Equation:
    return EQUATIONS[values["sex"], "african_american" if values["race"] == "african_american" else "white"]


def terms(inputs: PooledCohortInputs) -> tuple[Contribution, ...]:
    """The β·X terms of the patient's equation, whose sum is Table A's "individual sum" ΣβX."""
    equation = _equation(vars(inputs))
    covariates, labels = _covariates(vars(inputs)), _labels(inputs)
    return tuple(
        linear_term(name, beta, covariates[name], labels[name])
        for name, beta in equation.beta.items()
        if name in covariates
    )


def _risk(inputs: PooledCohortInputs, **changes: Any) -> float:
    """1 − S₀(10)^exp(ΣβX − mean) of the patient's equation (inputs complete, yes/no answered), with
    ``changes`` to the inputs; the explanations evaluate it a dozen times a run, so it forms no text
    and copies no dataclass."""
    values = {**vars(inputs), **changes} if changes else vars(inputs)
    equation = _equation(values)
    covariates = _covariates(values)
    linear_predictor = sum(beta * covariates[name] for name, beta in equation.beta.items() if name in covariates)
    return 1 - equation.baseline_survival ** math.exp(linear_predictor - equation.mean)


def _covariates(values: Mapping[str, Any]) -> dict[str, float]:
    """Each X of the equations from the inputs' values; only the SBP terms of the treatment given."""
    ln_age = math.log(values["age"])
    ln_total_cholesterol = math.log(values["total_cholesterol"])
    ln_hdl = math.log(values["hdl"])
    ln_sbp = math.log(values["systolic_bp"])
    smoker = float(bool(values["smoker"]))
    treatment = "treated" if values["bp_treated"] else "untreated"
    return {
        "ln_age": ln_age,
        "ln_age_squared": ln_age**2,
        "ln_total_cholesterol": ln_total_cholesterol,
        "ln_age_x_ln_total_cholesterol": ln_age * ln_total_cholesterol,
        "ln_hdl": ln_hdl,
        "ln_age_x_ln_hdl": ln_age * ln_hdl,
        f"ln_sbp_{treatment}": ln_sbp,
        f"ln_age_x_ln_sbp_{treatment}": ln_age * ln_sbp,
        "smoker": smoker,
        "ln_age_x_smoker": ln_age * smoker,
        "diabetes": float(bool(values["diabetes"])),
    }


def _labels(inputs: PooledCohortInputs) -> dict[str, str]:
    """How each X of ``_covariates`` was formed from the inputs, for its β·X term."""
    treatment = "treated" if inputs.bp_treated else "untreated"
    age = f"ln(age {inputs.age:g})"
    total_cholesterol = f"ln(total cholesterol {inputs.total_cholesterol:g} mg/dL)"
    hdl = f"ln(HDL {inputs.hdl:g} mg/dL)"
    sbp = f"ln({treatment} SBP {inputs.systolic_bp:g} mmHg)"
    smoking = f"smoker ({'yes' if inputs.smoker else 'no'})"
    return {
        "ln_age": age,
        "ln_age_squared": f"{age}²",
        "ln_total_cholesterol": total_cholesterol,
        "ln_age_x_ln_total_cholesterol": f"{age} × {total_cholesterol}",
        "ln_hdl": hdl,
        "ln_age_x_ln_hdl": f"{age} × {hdl}",
        f"ln_sbp_{treatment}": sbp,
        f"ln_age_x_ln_sbp_{treatment}": f"{age} × {sbp}",
        "smoker": smoking,
        "ln_age_x_smoker": f"{age} × {smoking}",
        "diabetes": f"diabetes ({'yes' if inputs.diabetes else 'no'})",
    }


def _band(probability: float) -> str:
    """ACC/AHA categories: <5 % low, 5 to <7.5 % borderline, 7.5 to <20 % intermediate, ≥20 % high."""
    if probability < 0.05:
        return "low"
    if probability < 0.075:
        return "borderline"
    if probability < 0.20:
        return "intermediate"
    return "high"


def _check(inputs: PooledCohortInputs) -> None:
    """Reject values of the wrong kind; out-of-range measurements are handled as not applicable."""
    if inputs.sex not in get_args(Sex):
        raise InputError("sex", f"must be one of {get_args(Sex)}, not {inputs.sex!r}")
    if inputs.race is not None and inputs.race not in get_args(Race):
        raise InputError("race", f"must be one of {get_args(Race)}, not {inputs.race!r}")
    for name, _, _ in RANGES:
        value = getattr(inputs, name)
        if not math.isfinite(value):
            raise InputError(name, f"must be a finite number, not {value!r}")
