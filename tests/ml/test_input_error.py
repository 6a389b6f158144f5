"""A value a score cannot take is an ``InputError`` that carries the input's name and the reason as
data: the runner names the parameter from it, and the message reads as before."""

from __future__ import annotations

import pytest

from fhir_twin.ml.scores import news2, qsofa
from fhir_twin.ml.scores.score import InputError


def test_a_score_names_the_input_it_cannot_take() -> None:
    with pytest.raises(InputError) as raised:
        news2.news2(news2.News2Inputs(respiratory_rate=18, spo2=150))
    assert (raised.value.input, raised.value.reason) == ("spo2", "is a percentage, not 150")
    assert str(raised.value) == "spo2 is a percentage, not 150"


def test_an_input_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^gcs must be 3-15, not 20$") as raised:
        qsofa.qsofa(qsofa.QsofaInputs(respiratory_rate=18, systolic_bp=120, gcs=20))
    assert isinstance(raised.value, InputError)
    assert raised.value.input == "gcs"
