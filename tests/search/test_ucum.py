"""Canonical UCUM units for quantity search (R4 search.html#quantity), checked against hand arithmetic."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fhir_twin.search.ucum import canonical


@pytest.mark.parametrize(
    ("value", "code", "expected_value", "expected_code"),
    [
        ("100", "mg/dL", "1", "g/L"),  # 1e-3 g / 1e-1 L
        ("1.5", "g/L", "1.5", "g/L"),
        ("5", "ug/mL", "0.005", "g/L"),  # 1e-6 g / 1e-3 L
        ("5.4", "mmol/L", "0.0054", "mol/L"),
        ("70", "kg", "70000", "g"),
        ("180", "cm", "1.8", "m"),
        ("4.5", "10*9/L", "4500000000", "/L"),
        ("7.2", "10*3/uL", "7200000000", "/L"),  # 1e3 / 1e-6 L
        ("7.2", "10^3/uL", "7200000000", "/L"),
        ("3", "{cells}/uL", "3000000", "/L"),  # a lone annotation is the unit 1
        ("3", "10*3{cells}/uL", "3000000000", "/L"),  # an attached one is a comment
        ("24.5", "kg/m2", "24500", "g/m2"),
        ("1", "cm2", "0.0001", "m2"),
        ("9.8", "m/s2", "9.8", "m/s2"),
        ("2", "s-1", "2", "/s"),
        ("250", "ms", "0.25", "s"),
        ("1", "dam", "10", "m"),  # deka, not deci + am
        ("2", "mol/L/s", "2", "mol/L/s"),
        ("3", "L.s", "3", "L.s"),
        ("2", "l", "2", "L"),
        ("5", "{score}", "5", "1"),
    ],
)
def test_conversions(value: str, code: str, expected_value: str, expected_code: str) -> None:
    result = canonical(Decimal(value), code)
    assert result is not None
    assert result[0] == Decimal(expected_value)
    assert result[1] == expected_code


@pytest.mark.parametrize("code", ["%", "/min", "mm[Hg]"])
def test_units_that_are_their_own_canonical_form(code: str) -> None:
    assert canonical(Decimal("72"), code) == (Decimal("72"), code)


@pytest.mark.parametrize(
    "code", ["[lb_av]", "[in_i]", "Cel", "[degF]", "h", "min", "mL/min", "mol/(L.s)", "", "mg/", "/100"]
)
def test_units_outside_the_subset_have_none(code: str) -> None:
    assert canonical(Decimal("1"), code) is None


def test_precision_is_kept() -> None:
    assert str(canonical(Decimal("100.0"), "mg/dL")[0]) == "1.000"  # type: ignore[index]
