"""NEWS2 against the RCP 2017 chart: published vectors, every cell edge, Scale 2, bands; partial sets
scored as a lower bound; where it does not apply (children, pregnancy)."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from fhir_twin.ml.scores.news2 import MODEL, News2Inputs, news2

NORMAL = News2Inputs(
    respiratory_rate=16,
    spo2=98,
    supplemental_oxygen=False,
    systolic_bp=120,
    pulse=70,
    consciousness="alert",
    temperature=37.0,
)


def vitals(rr: float, spo2: float, o2: str, sbp: float, hr: float, alert: bool, t: float) -> News2Inputs:
    """The published vectors' tuple order: (RR, SpO2, O2, SBP, HR, Alert, T)."""
    return News2Inputs(
        respiratory_rate=rr,
        spo2=spo2,
        supplemental_oxygen=o2 == "O2",
        systolic_bp=sbp,
        pulse=hr,
        consciousness="alert" if alert else "voice",
        temperature=t,
    )


def points(inputs: News2Inputs) -> dict[str, int | float]:
    return {c.input: c.points for c in news2(inputs).contributions}


@pytest.mark.parametrize(
    ("inputs", "total", "band"),
    [
        (vitals(16, 98, "air", 120, 70, True, 37.0), 0, "low"),
        (vitals(12, 96, "air", 111, 51, True, 36.1), 0, "low"),
        (vitals(25, 97, "air", 130, 80, True, 37.0), 3, "low-medium"),
        (vitals(22, 94, "air", 105, 95, True, 38.2), 6, "medium"),
        (vitals(24, 93, "O2", 105, 115, True, 38.5), 10, "high"),
        (vitals(8, 91, "O2", 90, 131, False, 35.0), 20, "high"),
    ],
)
def test_published_vectors(inputs: News2Inputs, total: int, band: str) -> None:
    score = news2(inputs)
    assert (score.value, score.band) == (total, band)
    assert score.probability is None
    assert not score.partial and score.missing == ()


def test_medium_vector_parts_and_rationale() -> None:
    score = news2(vitals(22, 94, "air", 105, 95, True, 38.2))
    assert points(vitals(22, 94, "air", 105, 95, True, 38.2)) == {
        "respiratory_rate": 2,
        "spo2": 1,
        "supplemental_oxygen": 0,
        "systolic_bp": 1,
        "pulse": 1,
        "consciousness": 0,
        "temperature": 1,
    }
    assert score.rationale == (
        "NEWS2 6 (medium): respiratory rate 22/min: 2 points; SpO2 94 % (scale 1): 1 point; breathing air: 0 points; "
        "systolic blood pressure 105 mmHg: 1 point; pulse 95/min: 1 point; alert: 0 points; temperature 38.2 °C: "
        "1 point"
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("respiratory_rate", 0, 3),
        ("respiratory_rate", 8, 3),
        ("respiratory_rate", 9, 1),
        ("respiratory_rate", 11, 1),
        ("respiratory_rate", 12, 0),
        ("respiratory_rate", 20, 0),
        ("respiratory_rate", 21, 2),
        ("respiratory_rate", 24, 2),
        ("respiratory_rate", 25, 3),
        ("respiratory_rate", 60, 3),
        ("spo2", 70, 3),
        ("spo2", 91, 3),
        ("spo2", 92, 2),
        ("spo2", 93, 2),
        ("spo2", 94, 1),
        ("spo2", 95, 1),
        ("spo2", 96, 0),
        ("spo2", 100, 0),
        ("systolic_bp", 60, 3),
        ("systolic_bp", 90, 3),
        ("systolic_bp", 91, 2),
        ("systolic_bp", 100, 2),
        ("systolic_bp", 101, 1),
        ("systolic_bp", 110, 1),
        ("systolic_bp", 111, 0),
        ("systolic_bp", 219, 0),
        ("systolic_bp", 220, 3),
        ("pulse", 30, 3),
        ("pulse", 40, 3),
        ("pulse", 41, 1),
        ("pulse", 50, 1),
        ("pulse", 51, 0),
        ("pulse", 90, 0),
        ("pulse", 91, 1),
        ("pulse", 110, 1),
        ("pulse", 111, 2),
        ("pulse", 130, 2),
        ("pulse", 131, 3),
        ("temperature", 33.0, 3),
        ("temperature", 35.0, 3),
        ("temperature", 35.1, 1),
        ("temperature", 36.0, 1),
        ("temperature", 36.1, 0),
        ("temperature", 38.0, 0),
        ("temperature", 38.1, 1),
        ("temperature", 39.0, 1),
        ("temperature", 39.1, 2),
        ("temperature", 41.0, 2),
        ("consciousness", "alert", 0),
        ("consciousness", "confusion", 3),
        ("consciousness", "voice", 3),
        ("consciousness", "pain", 3),
        ("consciousness", "unresponsive", 3),
        ("supplemental_oxygen", False, 0),
        ("supplemental_oxygen", True, 2),
    ],
)
def test_every_cell_edge_of_chart_1(field: str, value: float | str | bool, expected: int) -> None:
    inputs = replace(NORMAL, **{field: value})
    assert points(inputs)[field] == expected
    assert news2(inputs).value == expected  # every other parameter scores 0


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("respiratory_rate", 20.4, 0),  # -> 20
        ("respiratory_rate", 20.5, 2),  # -> 21, half-up
        ("respiratory_rate", 8.5, 1),  # -> 9
        ("spo2", 95.5, 0),  # -> 96
        ("spo2", 91.4, 3),  # -> 91
        ("systolic_bp", 110.5, 0),  # -> 111
        ("pulse", 90.5, 1),  # -> 91
        ("temperature", 38.04, 0),  # -> 38.0
        ("temperature", 38.05, 1),  # -> 38.1
        ("temperature", 35.04, 3),  # -> 35.0
        ("temperature", 36.05, 0),  # -> 36.1
    ],
)
def test_values_are_rounded_before_scoring(field: str, value: float, expected: int) -> None:
    assert points(replace(NORMAL, **{field: value}))[field] == expected


SCALE_2 = replace(NORMAL, spo2_scale_2=True)


@pytest.mark.parametrize(
    ("spo2", "on_oxygen", "expected"),
    [
        (80, False, 3),
        (83, False, 3),
        (84, False, 2),
        (85, False, 2),
        (86, False, 1),
        (87, False, 1),
        (88, False, 0),
        (92, False, 0),
        (93, False, 0),  # ≥93 on air scores 0
        (95, False, 0),
        (97, False, 0),
        (100, False, 0),
        (83, True, 3),
        (84, True, 2),
        (85, True, 2),
        (86, True, 1),
        (87, True, 1),
        (88, True, 0),
        (92, True, 0),
        (93, True, 1),
        (94, True, 1),
        (95, True, 2),
        (96, True, 2),
        (97, True, 3),
        (100, True, 3),
    ],
)
def test_spo2_scale_2_cells(spo2: int, on_oxygen: bool, expected: int) -> None:
    inputs = replace(SCALE_2, spo2=spo2, supplemental_oxygen=on_oxygen)
    assert points(inputs)["spo2"] == expected
    assert news2(inputs).value == expected + (2 if on_oxygen else 0)


@pytest.mark.parametrize(
    ("spo2", "on_oxygen", "spo2_points", "total", "band"),
    [
        (95, False, 0, 0, "low"),
        (95, True, 2, 4, "low"),
        (97, True, 3, 5, "medium"),
    ],
)
def test_scale_2_vectors(spo2: int, on_oxygen: bool, spo2_points: int, total: int, band: str) -> None:
    score = news2(replace(SCALE_2, spo2=spo2, supplemental_oxygen=on_oxygen))
    assert points(replace(SCALE_2, spo2=spo2, supplemental_oxygen=on_oxygen))["spo2"] == spo2_points
    assert (score.value, score.band) == (total, band)
    assert "(scale 2" in score.rationale and "prescribed target of 88-92 %" in score.rationale


def test_scale_2_differs_from_scale_1_only_when_flagged() -> None:
    hypoxic = replace(NORMAL, spo2=88)
    assert news2(hypoxic).value == 3
    assert news2(replace(hypoxic, spo2_scale_2=True)).value == 0


@pytest.mark.parametrize(
    ("changes", "total", "band", "response"),
    [
        ({}, 0, "low", "12-hourly"),
        ({"pulse": 95}, 1, "low", "4–6-hourly"),
        ({"pulse": 115, "temperature": 38.5, "systolic_bp": 105}, 4, "low", "4–6-hourly"),
        ({"respiratory_rate": 25}, 3, "low-medium", "1-hourly"),
        ({"consciousness": "confusion", "pulse": 95}, 4, "low-medium", "1-hourly"),
        ({"respiratory_rate": 25, "pulse": 95, "temperature": 38.5}, 5, "medium", "urgent response threshold"),
        ({"pulse": 115, "temperature": 39.5, "systolic_bp": 105}, 5, "medium", "urgent response threshold"),
        ({"pulse": 115, "temperature": 39.5, "systolic_bp": 100}, 6, "medium", "urgent response threshold"),
        ({"pulse": 115, "temperature": 39.5, "systolic_bp": 95, "spo2": 95}, 7, "high", "Continuous monitoring"),
        ({"respiratory_rate": 25, "consciousness": "pain", "supplemental_oxygen": True}, 8, "high", "HDU or ICU"),
    ],
)
def test_band_edges_and_clinical_response(changes: dict[str, object], total: int, band: str, response: str) -> None:
    score = news2(replace(NORMAL, **changes))
    assert (score.value, score.band) == (total, band)
    assert score.mitigation is not None and response in score.mitigation
    assert "RCP NEWS2 Chart 3" in score.mitigation


def test_low_medium_names_the_red_parameter() -> None:
    assert news2(replace(NORMAL, pulse=35)).rationale.endswith("a single parameter scored 3 (pulse)")


def test_a_partial_set_is_a_lower_bound_said_as_at_least() -> None:
    """No ACVPU and no oxygen record, as on most ward feeds: the five signs present score 6, so the
    complete score is at least 6 (at least medium), preliminary, with the range it could reach."""
    score = news2(replace(vitals(22, 94, "air", 105, 95, True, 38.2), consciousness=None, supplemental_oxygen=None))
    assert (score.value, score.band, score.partial, score.bound) == (6, "medium", True, True)
    assert score.missing == ("supplemental_oxygen", "consciousness")
    assert score.rationale.startswith(
        "NEWS2 at least 6 (at least medium) from 5 of its 7 parameters; with the missing ones it would be between 6 "
        "and 11: respiratory rate 22/min: 2 points;"
    )
    assert score.rationale.endswith("Not observed: air or oxygen, level of consciousness")
    assert score.mitigation is not None and "urgent response threshold" in score.mitigation
    assert "The set is incomplete: observe the missing parameters and score again" in score.mitigation


@pytest.mark.parametrize(
    ("present", "scored"),
    [
        ({"pulse": 95, "temperature": 37.0, "respiratory_rate": 16}, False),  # 3 of 7, nothing calls for a response
        ({"pulse": 95, "temperature": 37.0, "respiratory_rate": 16, "systolic_bp": 120}, True),  # 4 of 7
        ({"pulse": 135}, True),  # a single 3 calls for a response
        ({"pulse": 115, "temperature": 39.5, "respiratory_rate": 21}, True),  # 2 + 2 + 2 = at least 6
    ],
    ids=["three", "four", "red", "five-or-more"],
)
def test_a_partial_set_is_scored_when_it_is_a_set_or_already_calls_for_a_response(
    present: dict[str, float], scored: bool
) -> None:
    score = news2(News2Inputs(age=60, **present))  # type: ignore[arg-type]
    assert (score.value is not None) is scored
    if not scored:
        assert "insufficient data" in score.rationale


def test_unknown_oxygen_on_scale_2_keeps_both_bounds() -> None:
    """On Scale 2, SpO2 ≥ 93 % scores 0 on air and up to 3 on oxygen: air gives the lower bound."""
    score = news2(replace(NORMAL, spo2=97, supplemental_oxygen=None, spo2_scale_2=True))
    assert score.value == 0 and score.band == "low"
    assert "between 0 and 5" in score.rationale


@pytest.mark.parametrize(("age", "applies"), [(8, False), (15, False), (16, True), (90, True)])
def test_news2_is_for_age_16_and_over(age: int, applies: bool) -> None:
    score = news2(replace(NORMAL, age=age))
    assert (score.value is not None) is applies
    if not applies:
        assert f"not applicable, age {age}: NEWS2 is for people aged 16 and over" in score.rationale


def test_an_unrecorded_age_is_assumed_adult_and_said() -> None:
    assert news2(replace(NORMAL, age=None)).assumptions == (
        "No age recorded: NEWS2 applies from 16 years; the patient is assumed to be an adult.",
    )
    assert news2(replace(NORMAL, age=40)).assumptions == ()


def test_pregnancy_is_not_applicable() -> None:
    score = news2(replace(NORMAL, age=30, pregnancy=("Normal pregnancy (Condition/p)",)))
    assert score.value is None
    assert "pregnancy is on record (Normal pregnancy (Condition/p))" in score.rationale


@pytest.mark.parametrize(
    "field",
    ["respiratory_rate", "spo2", "supplemental_oxygen", "systolic_bp", "pulse", "consciousness", "temperature"],
)
def test_a_missing_parameter_gives_a_partial_score(field: str) -> None:
    score = news2(replace(NORMAL, **{field: None}))
    assert (score.value, score.partial, score.missing) == (0, True, (field,))
    assert field not in {c.input for c in score.contributions}


def test_nothing_observed_names_all_seven() -> None:
    score = news2(News2Inputs())
    assert score.missing == (
        "respiratory_rate",
        "spo2",
        "supplemental_oxygen",
        "systolic_bp",
        "pulse",
        "consciousness",
        "temperature",
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("consciousness", "drowsy"), ("spo2", 101), ("pulse", -1), ("temperature", float("nan"))],
)
def test_impossible_values_are_rejected(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        news2(replace(NORMAL, **{field: value}))


def test_model_info() -> None:
    assert MODEL.id == "news2" and MODEL.kind == "rule-based"
    assert re.fullmatch(r"\d+\.\d+\.\d+", MODEL.version)
    assert MODEL.horizon is None
    codes = {i.name: i.loinc for i in MODEL.inputs}
    assert codes["respiratory_rate"] == "http://loinc.org|9279-1"
    assert codes["spo2"] == "http://loinc.org|2708-6"
    assert codes["consciousness"] == "http://loinc.org|67775-7"
    assert "Royal College of Physicians" in MODEL.reference
