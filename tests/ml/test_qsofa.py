"""qSOFA against Sepsis-3 (Singer et al. 2016): published vectors, criterion edges, mentation, partial inputs."""

from __future__ import annotations

import re

import pytest

from fhir_twin.ml.scores.qsofa import MODEL, QsofaInputs, qsofa


@pytest.mark.parametrize(
    ("rr", "sbp", "gcs", "value", "band"),
    [
        (22, 100, 15, 2, "positive"),
        (21, 101, 15, 0, "negative"),
        (30, 90, 13, 3, "positive"),
    ],
)
def test_published_vectors(rr: int, sbp: int, gcs: int, value: int, band: str) -> None:
    score = qsofa(QsofaInputs(respiratory_rate=rr, systolic_bp=sbp, gcs=gcs))
    assert (score.value, score.band) == (value, band)
    assert not score.partial and score.missing == ()
    assert score.probability is None


@pytest.mark.parametrize(
    ("inputs", "criterion", "points"),
    [
        (QsofaInputs(respiratory_rate=21, systolic_bp=120, gcs=15), "respiratory_rate", 0),
        (QsofaInputs(respiratory_rate=22, systolic_bp=120, gcs=15), "respiratory_rate", 1),
        (QsofaInputs(respiratory_rate=21.9, systolic_bp=120, gcs=15), "respiratory_rate", 0),
        (QsofaInputs(respiratory_rate=16, systolic_bp=101, gcs=15), "systolic_bp", 0),
        (QsofaInputs(respiratory_rate=16, systolic_bp=100, gcs=15), "systolic_bp", 1),
        (QsofaInputs(respiratory_rate=16, systolic_bp=100.5, gcs=15), "systolic_bp", 0),
        (QsofaInputs(respiratory_rate=16, systolic_bp=120, gcs=15), "gcs", 0),
        (QsofaInputs(respiratory_rate=16, systolic_bp=120, gcs=14), "gcs", 1),
        (QsofaInputs(respiratory_rate=16, systolic_bp=120, consciousness="alert"), "consciousness", 0),
        (QsofaInputs(respiratory_rate=16, systolic_bp=120, consciousness="confusion"), "consciousness", 1),
        (QsofaInputs(respiratory_rate=16, systolic_bp=120, consciousness="voice"), "consciousness", 1),
        (QsofaInputs(respiratory_rate=16, systolic_bp=120, consciousness="pain"), "consciousness", 1),
        (QsofaInputs(respiratory_rate=16, systolic_bp=120, consciousness="unresponsive"), "consciousness", 1),
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
    score = qsofa(QsofaInputs(respiratory_rate=16, systolic_bp=120, consciousness=consciousness, gcs=gcs))  # type: ignore[arg-type]
    assert score.value == altered
    mentation = score.contributions[-1]
    assert "consciousness" in mentation.explanation and "gcs" in mentation.explanation


@pytest.mark.parametrize(
    ("inputs", "value", "band", "missing"),
    [
        # two criteria met: the third cannot make it negative
        (QsofaInputs(respiratory_rate=25, systolic_bp=90), 2, "positive", ("mentation",)),
        (QsofaInputs(respiratory_rate=25, gcs=12), 2, "positive", ("systolic_bp",)),
        (QsofaInputs(systolic_bp=95, consciousness="voice"), 2, "positive", ("respiratory_rate",)),
        # none met with one missing: at most 1, negative whatever it is
        (QsofaInputs(respiratory_rate=16, systolic_bp=120), 0, "negative", ("mentation",)),
        (QsofaInputs(respiratory_rate=16, consciousness="alert"), 0, "negative", ("systolic_bp",)),
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
        (QsofaInputs(respiratory_rate=25, systolic_bp=120), ("mentation",)),  # 1 met, the third decides
        (QsofaInputs(respiratory_rate=16), ("systolic_bp", "mentation")),  # 0 met, two unknown could make 2
        (QsofaInputs(respiratory_rate=25), ("systolic_bp", "mentation")),
        (QsofaInputs(), ("respiratory_rate", "systolic_bp", "mentation")),
    ],
)
def test_no_score_when_missing_criteria_could_change_the_result(inputs: QsofaInputs, missing: tuple[str, ...]) -> None:
    score = qsofa(inputs)
    assert score.value is None and score.band is None
    assert score.missing == missing
    assert "insufficient data" in score.rationale


@pytest.mark.parametrize(
    ("inputs", "band", "phrase"),
    [
        (QsofaInputs(respiratory_rate=30, systolic_bp=90, gcs=15), "positive", "organ dysfunction"),
        (QsofaInputs(respiratory_rate=16, systolic_bp=120, gcs=15), "negative", "should not delay"),
    ],
)
def test_mitigation(inputs: QsofaInputs, band: str, phrase: str) -> None:
    score = qsofa(inputs)
    assert score.band == band
    assert score.mitigation is not None and phrase in score.mitigation


@pytest.mark.parametrize(
    "inputs",
    [
        QsofaInputs(respiratory_rate=16, systolic_bp=120, gcs=16),
        QsofaInputs(respiratory_rate=16, systolic_bp=120, gcs=2),
        QsofaInputs(respiratory_rate=16, systolic_bp=120, consciousness="drowsy"),  # type: ignore[arg-type]
        QsofaInputs(respiratory_rate=-1, systolic_bp=120, gcs=15),
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
