"""ATP III hard-CHD equation: the official FHIR R4 cardiac RiskAssessment example, age caps,
applicability (CHD and its risk equivalents, diabetes, LDL-C ≥ 190), assumptions said."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from fhir_twin.ml.scores.atp3 import MODEL, Atp3Inputs, atp3, terms

CARDIAC_EXAMPLE = (
    Path(__file__).resolve().parents[2] / "fixtures" / "official-r4-examples" / "RiskAssessment-cardiac.json"
)

# RiskAssessment-cardiac's narrative: 39-year-old man, TC 244, HDL 50, SBP 107, not treated, non-smoker
CARDIAC = Atp3Inputs(
    age=39,
    sex="male",
    total_cholesterol=244,
    hdl=50,
    systolic_bp=107,
    bp_treated=False,
    smoker=False,
    diabetes=False,
)


def test_reproduces_the_official_fhir_cardiac_example() -> None:
    example = json.loads(CARDIAC_EXAMPLE.read_text())
    score = atp3(CARDIAC)
    assert score.probability == pytest.approx(0.0168, abs=0.00005)
    assert round(score.probability, 2) == example["prediction"][0]["probabilityDecimal"] == 0.02
    assert score.value is not None and round(score.value) == 2  # the narrative's "2%"
    assert score.band == "low"
    assert score.rationale.startswith("10-year risk of a heart attack or coronary death: 1.7 % (low)")
    assert score.assumptions == ()


@pytest.mark.parametrize(
    ("inputs", "percent"),
    [
        # regression values computed from this equation (no published equation values beyond the FHIR example)
        (replace(CARDIAC, age=55, smoker=True), 13.44),
        (replace(CARDIAC, age=55, smoker=True, bp_treated=True, systolic_bp=150, hdl=35), 32.61),
        (replace(CARDIAC, sex="female", age=60, total_cholesterol=240, hdl=45, systolic_bp=140), 3.70),
        (replace(CARDIAC, sex="female", age=65, total_cholesterol=260, hdl=40, systolic_bp=160, bp_treated=True,
                 smoker=True), 22.17),
    ],
)  # fmt: skip
def test_regression_vectors(inputs: Atp3Inputs, percent: float) -> None:
    score = atp3(inputs)
    assert score.value == pytest.approx(percent, abs=0.01)


@pytest.mark.parametrize(
    ("sex", "cap", "older"),
    [("male", 70, 75), ("female", 78, 79)],
)
def test_the_smoking_interaction_caps_age(sex: str, cap: int, older: int) -> None:
    def smoking_term(age: int) -> float:
        found = terms(replace(CARDIAC, sex=sex, age=age, smoker=True))  # type: ignore[arg-type]
        return {c.input: c for c in found}["ln_age_x_smoker"].value  # type: ignore[return-value]

    assert smoking_term(older) == smoking_term(cap) == pytest.approx(math.log(cap))
    assert smoking_term(cap - 1) == pytest.approx(math.log(cap - 1))


def test_women_have_no_age_squared_term() -> None:
    inputs = {c.input for c in terms(replace(CARDIAC, sex="female"))}
    assert "ln_age_squared" not in inputs
    assert "ln_age_squared" in {c.input for c in terms(CARDIAC)}


def test_the_terms_sum_to_the_linear_predictor() -> None:
    linear_predictor = sum(c.points for c in terms(CARDIAC))
    assert atp3(CARDIAC).probability == pytest.approx(1 - 0.9402 ** math.exp(linear_predictor - 172.300168))


def test_the_rationale_is_in_words_with_the_largest_contributors() -> None:
    score = atp3(replace(CARDIAC, age=55, smoker=True))
    assert score.rationale.startswith("10-year risk of a heart attack or coronary death: 13.4 % (intermediate)")
    assert "largest contributors, in percentage points of risk: smoker (+" in score.rationale
    assert "ΣβX" not in score.rationale and score.contributions[0].input == "smoker"


@pytest.mark.parametrize(
    "evidence", [("Myocardial infarction (Condition/mi)",), ("Peripheral arterial disease (Condition/pad)",)]
)
def test_chd_or_a_risk_equivalent_makes_it_not_applicable(evidence: tuple[str, ...]) -> None:
    score = atp3(replace(CARDIAC, clinical_ascvd=evidence))
    assert score.value is None
    assert "CHD or a CHD risk equivalent is on record" in score.rationale and evidence[0] in score.rationale


def test_ldl_190_or_more_makes_it_not_applicable() -> None:
    assert atp3(replace(CARDIAC, ldl=195)).value is None
    assert atp3(replace(CARDIAC, ldl=189)).value is not None


@pytest.mark.parametrize(
    ("inputs", "band"),
    [
        (replace(CARDIAC, age=55, smoker=True, hdl=40), "intermediate"),
        (replace(CARDIAC, age=65, smoker=True, hdl=35, systolic_bp=160, bp_treated=True), "high"),
    ],
)
def test_bands(inputs: Atp3Inputs, band: str) -> None:
    score = atp3(inputs)
    assert score.band == band
    assert score.mitigation is None


def test_diabetes_is_outside_the_equation() -> None:
    score = atp3(replace(CARDIAC, diabetes=True))
    assert score.value is None and "CHD risk equivalent" in score.rationale


def test_unknown_yes_no_inputs_are_assumed_no_and_said() -> None:
    score = atp3(replace(CARDIAC, diabetes=None, smoker=None, bp_treated=None))
    assert score.probability == atp3(CARDIAC).probability
    assert score.assumptions == (
        "No blood-pressure-lowering medicine is ordered, which does not show that none is taken: assumed untreated "
        "blood pressure; if treated, the risk would be 2.1 %.",
        "No current smoking status is recorded: assumed a non-smoker; as a current smoker, the risk would be 8.7 %.",
        "Neither diabetes nor its absence is recorded (no diagnosis, no HbA1c or fasting glucose): assumed no "
        "diabetes; with diabetes the equation would not apply.",
    )


@pytest.mark.parametrize(("age", "scored"), [(19, False), (20, True), (79, True), (80, False)])
def test_age_range(age: int, scored: bool) -> None:
    score = atp3(replace(CARDIAC, age=age))
    assert (score.value is not None) == scored
    if not scored:
        assert "not applicable" in score.rationale and "20-79" in score.rationale


@pytest.mark.parametrize("field", ["age", "sex", "total_cholesterol", "hdl", "systolic_bp"])
def test_a_missing_input_gives_no_score(field: str) -> None:
    score = atp3(replace(CARDIAC, **{field: None}))
    assert score.value is None and score.probability is None
    assert score.missing == (field,)
    assert "insufficient data" in score.rationale


@pytest.mark.parametrize(("field", "value"), [("hdl", 0), ("sex", "other"), ("systolic_bp", float("inf"))])
def test_impossible_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        atp3(replace(CARDIAC, **{field: value}))


def test_model_info() -> None:
    assert MODEL.id == "atp3-hard-chd" and MODEL.kind == "rule-based" and MODEL.horizon == "10 years"
    assert re.fullmatch(r"\d+\.\d+\.\d+", MODEL.version)
    assert "ATP III" in MODEL.reference or "Adult Treatment Panel III" in MODEL.reference
