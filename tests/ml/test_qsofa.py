"""qSOFA against Sepsis-3 (Singer et al. 2016): published vectors, criterion edges, mentation,
partial inputs, and where it applies: adults with suspected infection, or on request."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from fhir_twin.ml.scores.qsofa import MODEL, QsofaInputs, qsofa

INFECTION = ("Pneumonia (Condition/pn)",)


def inputs(**values: object) -> QsofaInputs:
    """Criteria of an adult with a suspected infection on record."""
    return QsofaInputs(age=60, suspected_infection=INFECTION, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("rr", "sbp", "gcs", "value", "band"),
    [
        (22, 100, 15, 2, "positive"),
        (21, 101, 15, 0, "negative"),
        (30, 90, 13, 3, "positive"),
    ],
)
def test_published_vectors(rr: int, sbp: int, gcs: int, value: int, band: str) -> None:
    score = qsofa(inputs(respiratory_rate=rr, systolic_bp=sbp, gcs=gcs))
    assert (score.value, score.band) == (value, band)
    assert not score.partial and score.missing == ()
    assert score.probability is None


@pytest.mark.parametrize(
    ("inputs", "criterion", "points"),
    [
        (inputs(respiratory_rate=21, systolic_bp=120, gcs=15), "respiratory_rate", 0),
        (inputs(respiratory_rate=22, systolic_bp=120, gcs=15), "respiratory_rate", 1),
        (inputs(respiratory_rate=21.9, systolic_bp=120, gcs=15), "respiratory_rate", 0),
        (inputs(respiratory_rate=16, systolic_bp=101, gcs=15), "systolic_bp", 0),
        (inputs(respiratory_rate=16, systolic_bp=100, gcs=15), "systolic_bp", 1),
        (inputs(respiratory_rate=16, systolic_bp=100.5, gcs=15), "systolic_bp", 0),
        (inputs(respiratory_rate=16, systolic_bp=120, gcs=15), "gcs", 0),
        (inputs(respiratory_rate=16, systolic_bp=120, gcs=14), "gcs", 1),
        (inputs(respiratory_rate=16, systolic_bp=120, consciousness="alert"), "consciousness", 0),
        (inputs(respiratory_rate=16, systolic_bp=120, consciousness="confusion"), "consciousness", 1),
        (inputs(respiratory_rate=16, systolic_bp=120, consciousness="voice"), "consciousness", 1),
        (inputs(respiratory_rate=16, systolic_bp=120, consciousness="pain"), "consciousness", 1),
        (inputs(respiratory_rate=16, systolic_bp=120, consciousness="unresponsive"), "consciousness", 1),
    ],
)
def test_criterion_edges(inputs: QsofaInputs, criterion: str, points: int) -> None:
    score = qsofa(inputs)
    assert {c.input: c.points for c in score.contributions}[criterion] == points
    assert score.value == points


@pytest.mark.parametrize(
    ("consciousness", "gcs", "altered"),
    [
        ("alert", 15, 0),
        ("alert", 14, 1),  # either source showing altered mentation is enough
        ("confusion", 15, 1),
        ("voice", 9, 1),
    ],
)
def test_mentation_from_acvpu_and_gcs(consciousness: str, gcs: int, altered: int) -> None:
    score = qsofa(inputs(respiratory_rate=16, systolic_bp=120, consciousness=consciousness, gcs=gcs))  # type: ignore[arg-type]
    assert score.value == altered
    mentation = score.contributions[-1]
    assert "ACVPU" in mentation.explanation and "GCS" in mentation.explanation


@pytest.mark.parametrize(
    ("inputs", "value", "band", "missing"),
    [
        # two criteria met: the third cannot make it negative
        (inputs(respiratory_rate=25, systolic_bp=90), 2, "positive", ("mentation",)),
        (inputs(respiratory_rate=25, gcs=12), 2, "positive", ("systolic_bp",)),
        (inputs(systolic_bp=95, consciousness="voice"), 2, "positive", ("respiratory_rate",)),
        # none met with one missing: at most 1, negative whatever it is
        (inputs(respiratory_rate=16, systolic_bp=120), 0, "negative", ("mentation",)),
        (inputs(respiratory_rate=16, consciousness="alert"), 0, "negative", ("systolic_bp",)),
    ],
)
def test_partial_when_missing_criteria_cannot_change_the_result(
    inputs: QsofaInputs, value: int, band: str, missing: tuple[str, ...]
) -> None:
    score = qsofa(inputs)
    assert (score.value, score.band, score.partial, score.missing) == (value, band, True, missing)
    assert f"at least {value} of 3" in score.rationale and "cannot change the result" in score.rationale
    assert len(score.contributions) == 2


@pytest.mark.parametrize(
    ("inputs", "missing"),
    [
        (inputs(respiratory_rate=25, systolic_bp=120), ("mentation",)),  # 1 met, the third decides
        (inputs(respiratory_rate=16), ("systolic_bp", "mentation")),  # 0 met, two unknown could make 2
        (inputs(respiratory_rate=25), ("systolic_bp", "mentation")),
        (inputs(), ("respiratory_rate", "systolic_bp", "mentation")),
    ],
)
def test_no_score_when_missing_criteria_could_change_the_result(inputs: QsofaInputs, missing: tuple[str, ...]) -> None:
    score = qsofa(inputs)
    assert "could make it positive" in score.rationale
    assert score.value is None and score.band is None
    assert score.missing == missing
    assert "insufficient data" in score.rationale


@pytest.mark.parametrize(
    ("inputs", "band", "phrase"),
    [
        (inputs(respiratory_rate=30, systolic_bp=90, gcs=15), "positive", "organ dysfunction"),
        (inputs(respiratory_rate=16, systolic_bp=120, gcs=15), "negative", "should not delay"),
    ],
)
def test_mitigation(inputs: QsofaInputs, band: str, phrase: str) -> None:
    score = qsofa(inputs)
    assert score.band == band
    assert score.mitigation is not None and phrase in score.mitigation


@pytest.mark.parametrize(
    "inputs",
    [
        inputs(respiratory_rate=16, systolic_bp=120, gcs=16),
        inputs(respiratory_rate=16, systolic_bp=120, gcs=2),
        inputs(respiratory_rate=16, systolic_bp=120, consciousness="drowsy"),  # type: ignore[arg-type]
        inputs(respiratory_rate=-1, systolic_bp=120, gcs=15),
    ],
)
def test_impossible_values_are_rejected(inputs: QsofaInputs) -> None:
    with pytest.raises(ValueError):
        qsofa(inputs)


def test_model_info() -> None:
    assert MODEL.id == "qsofa" and MODEL.kind == "rule-based"
    assert re.fullmatch(r"\d+\.\d+\.\d+", MODEL.version)
    assert {i.name: i.loinc for i in MODEL.inputs}["gcs"] == "http://loinc.org|9269-2"
    assert "Singer" in MODEL.reference and "not a diagnostic" in MODEL.intended_use


def test_no_suspected_infection_is_not_applicable() -> None:
    """qSOFA prompts a search for organ dysfunction in suspected infection; on everyone it is noise."""
    score = qsofa(replace(inputs(respiratory_rate=25, systolic_bp=90, gcs=15), suspected_infection=()))
    assert score.value is None and score.missing == ()
    assert "not applicable, no suspected infection on record" in score.rationale


def test_on_request_it_is_scored_and_says_it_is_outside_its_use() -> None:
    score = qsofa(replace(inputs(respiratory_rate=25, systolic_bp=90, gcs=15), suspected_infection=(), on_request=True))
    assert (score.value, score.band) == (2, "positive")
    (assumption,) = score.assumptions
    assert assumption.startswith("No suspected infection is on record; qSOFA was scored because it was asked for")


@pytest.mark.parametrize(("age", "applies"), [(17, False), (18, True)])
def test_adults_only(age: int, applies: bool) -> None:
    score = qsofa(replace(inputs(respiratory_rate=25, systolic_bp=90, gcs=15), age=age))
    assert (score.value is not None) is applies


def test_the_rationale_is_in_words() -> None:
    score = qsofa(inputs(respiratory_rate=24, systolic_bp=95, consciousness="alert"))
    assert score.rationale == (
        "qSOFA 2 of 3 (positive): respiratory rate 24/min (≥ 22): 1 point; systolic blood pressure 95 mmHg (≤ 100): "
        "1 point; ACVPU alert, normal mentation: 0 points. Suspected infection: Pneumonia (Condition/pn)"
    )
