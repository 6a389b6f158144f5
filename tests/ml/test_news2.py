"""NEWS2 against the RCP 2017 chart: published vectors, every cell edge, Scale 2, bands, missing inputs."""

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
    assert (
        score.rationale
        == "NEWS2 6 (medium): RR 22→2, SpO2 94 (scale 1)→1, air→0, SBP 105→1, HR 95→1, alert→0, T 38.2→1"
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


SCALE_2 = replace(NORMAL, hypercapnic_respiratory_failure=True)


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
    assert "(scale 2)" in score.rationale


def test_scale_2_differs_from_scale_1_only_when_flagged() -> None:
    hypoxic = replace(NORMAL, spo2=88)
    assert news2(hypoxic).value == 3
    assert news2(replace(hypoxic, hypercapnic_respiratory_failure=True)).value == 0


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


@pytest.mark.parametrize(
    "field",
    ["respiratory_rate", "spo2", "supplemental_oxygen", "systolic_bp", "pulse", "consciousness", "temperature"],
)
def test_a_missing_parameter_gives_no_score(field: str) -> None:
    score = news2(replace(NORMAL, **{field: None}))
    assert score.value is None and score.band is None and score.mitigation is None
    assert score.missing == (field,)
    assert score.contributions == ()
    assert "insufficient data" in score.rationale and field in score.rationale


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
