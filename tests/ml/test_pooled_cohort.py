"""Pooled Cohort Equations against Goff et al. 2013 Table A and the ACC/AHA app's tests; where they
do not apply (clinical ASCVD, LDL-C ≥ 190 mg/dL); what they assume and say when the record does
not give a yes/no; their rationale in words."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest

from fhir_twin.ml.scores.pooled_cohort import MODEL, PooledCohortInputs, _band, pooled_cohort, terms
from tests.factories import PCE_WHITE_MALE, PCE_WORKED


@pytest.mark.parametrize(
    ("sex", "race", "published_sum", "published_percent"),
    [
        ("female", "white", -29.67, 2.1),
        ("female", "african_american", 86.16, 3.0),
        ("male", "white", 60.69, 5.3),
        ("male", "african_american", 18.97, 6.1),
    ],
)
def test_goff_table_a_worked_example(sex: str, race: str, published_sum: float, published_percent: float) -> None:
    score = pooled_cohort(replace(PCE_WORKED, sex=sex, race=race))  # type: ignore[arg-type]
    assert score.value is not None and score.probability is not None
    assert abs(score.value - published_percent) <= 0.1
    assert score.value == pytest.approx(100 * score.probability)
    # Table A prints ΣβX to two decimals from rounded intermediate values
    assert sum(c.points for c in terms(replace(PCE_WORKED, sex=sex, race=race))) == pytest.approx(
        published_sum, abs=0.01
    )  # type: ignore[arg-type]
    assert score.assumptions == ()


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (PooledCohortInputs(sex="male", race="white", age=46, total_cholesterol=150, hdl=40, systolic_bp=140,
                            bp_treated=True, smoker=True, diabetes=True), 12.2),
        (PooledCohortInputs(sex="male", race="other", age=46, total_cholesterol=150, hdl=40, systolic_bp=140,
                            bp_treated=True, smoker=True, diabetes=True), 12.2),
        (PooledCohortInputs(sex="male", race="african_american", age=46, total_cholesterol=150, hdl=40,
                            systolic_bp=140, bp_treated=True, smoker=True, diabetes=True), 24.9),
        (PooledCohortInputs(sex="female", race="white", age=46, total_cholesterol=141, hdl=34, systolic_bp=140,
                            bp_treated=True, smoker=True, diabetes=True), 10.3),
        (PooledCohortInputs(sex="female", race="other", age=46, total_cholesterol=141, hdl=34, systolic_bp=140,
                            bp_treated=True, smoker=True, diabetes=True), 10.3),
        (PooledCohortInputs(sex="female", race="african_american", age=46, total_cholesterol=141, hdl=34,
                            systolic_bp=140, bp_treated=True, smoker=True, diabetes=True), 26.8),
        # "lowest ten-year risk": a white man of 70 with optimal risk factors
        (PooledCohortInputs(sex="male", race="white", age=70, total_cholesterol=130, hdl=100, systolic_bp=90,
                            bp_treated=False, smoker=False, diabetes=False), 5.9),
    ],
)  # fmt: skip
def test_ascvd_risk_calculator_vectors(inputs: PooledCohortInputs, expected: float) -> None:
    """cerner/ascvd-risk-calculator tests/app/load_fhir_data_test.js, which rounds to 0.1."""
    score = pooled_cohort(inputs)
    assert score.value is not None
    assert round(score.value, 1) == expected


@pytest.mark.parametrize(
    ("inputs", "band"),
    [
        (replace(PCE_WORKED, sex="female", race="white"), "low"),  # 2.05 %
        (replace(PCE_WORKED, sex="male", race="white"), "borderline"),  # 5.38 %
        (PooledCohortInputs(sex="male", race="white", age=46, total_cholesterol=150, hdl=40, systolic_bp=140,
                            bp_treated=True, smoker=True, diabetes=True), "intermediate"),  # 12.24 %
        (PooledCohortInputs(sex="male", race="african_american", age=46, total_cholesterol=150, hdl=40,
                            systolic_bp=140, bp_treated=True, smoker=True, diabetes=True), "high"),  # 24.93 %
    ],
)  # fmt: skip
def test_bands_and_mitigation(inputs: PooledCohortInputs, band: str) -> None:
    score = pooled_cohort(inputs)
    assert score.band == band
    assert score.mitigation is not None and "2019 ACC/AHA" in score.mitigation


@pytest.mark.parametrize(
    ("probability", "band"),
    [
        (0.0, "low"),
        (0.0499, "low"),
        (0.05, "borderline"),
        (0.0749, "borderline"),
        (0.075, "intermediate"),
        (0.1999, "intermediate"),
        (0.20, "high"),
        (0.9, "high"),
    ],
)
def test_band_edges(probability: float, band: str) -> None:
    assert _band(probability) == band


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("age", 39),
        ("age", 80),
        ("total_cholesterol", 129),
        ("total_cholesterol", 321),
        ("hdl", 19),
        ("hdl", 101),
        ("systolic_bp", 89),
        ("systolic_bp", 201),
    ],
)
def test_outside_the_calculator_ranges_gives_no_score(field: str, value: float) -> None:
    score = pooled_cohort(replace(PCE_WHITE_MALE, **{field: value}))
    assert score.value is None and score.probability is None and score.band is None
    assert score.missing == ()
    assert "not applicable" in score.rationale and f"{field.replace('_', ' ')} {value} outside" in score.rationale


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("age", 40),
        ("age", 79),
        ("total_cholesterol", 130),
        ("total_cholesterol", 320),
        ("hdl", 20),
        ("hdl", 100),
        ("systolic_bp", 90),
        ("systolic_bp", 200),
    ],
)
def test_range_limits_are_inclusive(field: str, value: float) -> None:
    score = pooled_cohort(replace(PCE_WHITE_MALE, **{field: value}))
    assert score.probability is not None and 0 < score.probability < 1


@pytest.mark.parametrize("field", ["age", "sex", "total_cholesterol", "hdl", "systolic_bp"])
def test_a_missing_measurement_gives_no_score(field: str) -> None:
    score = pooled_cohort(replace(PCE_WHITE_MALE, **{field: None}))
    assert score.value is None and score.probability is None
    assert score.missing == (field,)
    assert "insufficient data" in score.rationale


@pytest.mark.parametrize(
    ("field", "said", "other"),
    [
        ("smoker", "No current smoking status is recorded: assumed a non-smoker; as a current smoker", 10.0),
        ("diabetes", "Neither diabetes nor its absence is recorded", 10.1),
        ("bp_treated", "No blood-pressure-lowering medicine is ordered, which does not show that none is taken", 6.3),
    ],
)
def test_an_unknown_yes_no_is_assumed_no_and_said_with_the_other_answers_risk(
    field: str, said: str, other: float
) -> None:
    """Unknown is never "no" in silence: the score takes no (as the ACC/AHA calculator defaults),
    names the assumption and gives the risk the other answer would give."""
    known = pooled_cohort(PCE_WHITE_MALE)
    score = pooled_cohort(replace(PCE_WHITE_MALE, **{field: None}))
    assert score.probability == known.probability
    (assumption,) = score.assumptions
    assert assumption.startswith(said)
    assert assumption.endswith(f"the risk would be {other} %.")
    assert other == round(100 * pooled_cohort(replace(PCE_WHITE_MALE, **{field: True})).probability, 1)  # type: ignore[operator]


def test_an_unrecorded_race_is_scored_with_the_white_equation_and_said() -> None:
    score = pooled_cohort(replace(PCE_WHITE_MALE, race=None))
    assert score.value == pooled_cohort(PCE_WHITE_MALE).value
    (assumption,) = score.assumptions
    assert assumption == (
        "No race is recorded: scored with the white equation, as Goff et al. advise for every group but African "
        "American; the African American equation would give 6.1 %."
    )


def test_several_races_with_black_use_the_african_american_equation_and_give_the_other() -> None:
    score = pooled_cohort(replace(PCE_WORKED, sex="male", race="african_american", several_races=True))
    assert round(score.value, 1) == 6.1  # type: ignore[arg-type]
    assert "the white equation gives 5.4 %" in score.rationale
    assert score.assumptions == ()


@pytest.mark.parametrize(
    "evidence",
    [("Myocardial infarction, since 2019-04-01 (Condition/mi)",), ("Coronary artery bypass grafting (Procedure/c)",)],
)
def test_clinical_ascvd_makes_it_not_applicable(evidence: tuple[str, ...]) -> None:
    """A man after a myocardial infarction needs secondary prevention, not a "low" primary-prevention
    band and lifestyle advice (2018 AHA/ACC cholesterol guideline)."""
    score = pooled_cohort(replace(PCE_WHITE_MALE, clinical_ascvd=evidence))
    assert score.value is None and score.band is None and score.mitigation is None
    assert "not applicable, clinical ASCVD is on record" in score.rationale and evidence[0] in score.rationale


@pytest.mark.parametrize(("ldl", "applies"), [(189.9, True), (190, False), (240, False), (None, True)])
def test_ldl_190_or_more_makes_it_not_applicable(ldl: float | None, applies: bool) -> None:
    score = pooled_cohort(replace(PCE_WHITE_MALE, ldl=ldl))
    assert (score.value is not None) is applies
    if not applies:
        assert f"LDL cholesterol {ldl:g} mg/dL is 190 or more" in score.rationale


def test_other_race_says_the_white_equation_is_used() -> None:
    other = pooled_cohort(replace(PCE_WORKED, sex="female", race="other"))
    white = pooled_cohort(replace(PCE_WORKED, sex="female", race="white"))
    assert other.probability == white.probability
    assert "white equation is used" in other.rationale
    assert "white equation is used" not in white.rationale


def test_the_rationale_is_in_words_with_the_largest_contributors() -> None:
    """ "largest contributors: smoker (+7.4)", each against the optimal level, never "ΣβX 60.700"."""
    inputs = PooledCohortInputs(sex="male", race="white", age=46, total_cholesterol=150, hdl=40, systolic_bp=140,
                                bp_treated=True, smoker=True, diabetes=True)  # fmt: skip
    score = pooled_cohort(inputs)
    assert score.rationale == (
        "10-year risk of a first heart attack, coronary death or stroke: 12.2 % (intermediate), by the Pooled Cohort "
        "Equation for white men. With optimal risk factors it would be 1.3 %; largest contributors, in percentage "
        "points of risk: smoker (+7.4); diabetes (+5.7); systolic BP 140 mmHg, treated (+5.2)."
    )
    assert "ΣβX" not in score.rationale
    by_factor = {c.input: c.points for c in score.contributions}
    optimal_smoking = pooled_cohort(replace(inputs, smoker=False)).probability
    assert by_factor["smoker"] == pytest.approx(100 * (score.probability - optimal_smoking), abs=0.01)  # type: ignore[operator]


def test_the_beta_x_terms_of_the_linear_predictor() -> None:
    inputs = replace(PCE_WORKED, sex="female", race="african_american", bp_treated=True)
    found = {c.input: c for c in terms(inputs)}
    assert set(found) == {
        "ln_age",
        "ln_total_cholesterol",
        "ln_hdl",
        "ln_age_x_ln_hdl",
        "ln_sbp_treated",
        "ln_age_x_ln_sbp_treated",
        "smoker",
        "diabetes",
    }
    assert found["ln_sbp_treated"].points == pytest.approx(29.2907 * math.log(120))
    assert found["ln_age_x_ln_sbp_treated"].points == pytest.approx(-6.4321 * math.log(55) * math.log(120))
    assert found["smoker"].points == 0
    linear_predictor = sum(c.points for c in found.values())
    assert pooled_cohort(inputs).probability == pytest.approx(1 - 0.95334 ** math.exp(linear_predictor - 86.6081))


def test_impossible_categories_are_rejected() -> None:
    with pytest.raises(ValueError, match="race"):
        pooled_cohort(replace(PCE_WORKED, sex="male", race="asian"))  # type: ignore[arg-type]


def test_model_info() -> None:
    assert MODEL.kind == "rule-based" and MODEL.horizon == "10 years"
    assert re.fullmatch(r"\d+\.\d+\.\d+", MODEL.version)
    codes = {i.name: i.loinc for i in MODEL.inputs}
    assert codes["total_cholesterol"] == "http://loinc.org|2093-3"
    assert codes["hdl"] == "http://loinc.org|2085-9"
    assert "Goff" in MODEL.reference
