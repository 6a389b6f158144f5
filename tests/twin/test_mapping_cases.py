"""Data-driven twin cases: each ``fixtures/mappings/*.json`` file holds FHIR resources in and a
part of the twin document out, so every mapping rule (units, plausibility, statuses, codes, case
lists, quality) is checked end to end through the FHIR write path and the twin API.

A case file is ``{"description", "resources", "expect"}``: the resources are PUT in order (the
Patient first), then ``expect`` must be a recursive subset of ``GET /twin/patients/{id}``.
Decimals in the files reach the server with their digits as written.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import simplejson
from flask.testing import FlaskClient

CASES_DIR = Path(__file__).resolve().parents[2] / "fixtures" / "mappings"
CASES = sorted(CASES_DIR.glob("*.json"))


def assert_subset(expected: Any, actual: Any, where: str = "$") -> None:
    """``expected`` is within ``actual``: dicts by key, lists element-wise and of equal length,
    numbers with a fraction to 1e-6 relative, everything else exactly."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        for key, value in expected.items():
            assert key in actual, f"{where}: no key {key!r} in {sorted(actual)}"
            assert_subset(value, actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{where}: {len(actual)} items, expected {len(expected)}: {actual!r}"
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            assert_subset(want, got, f"{where}[{index}]")
    elif isinstance(expected, Decimal | float):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), f"{where}: {actual!r} is no number"
        assert actual == pytest.approx(float(expected), rel=1e-6), f"{where}: {actual!r} != {expected}"
    elif expected is None or isinstance(expected, bool):
        assert actual is expected, f"{where}: {actual!r} is not {expected!r}"
    else:
        assert type(actual) is type(expected) and actual == expected, f"{where}: {actual!r} != {expected!r}"


def load_case(path: Path) -> dict[str, Any]:
    case = simplejson.loads(path.read_text(encoding="utf-8"), use_decimal=True)
    assert set(case) == {"description", "resources", "expect"}, f"{path.name}: keys {sorted(case)}"
    assert case["resources"][0]["resourceType"] == "Patient", f"{path.name}: the Patient comes first"
    return case


@pytest.mark.parametrize("path", CASES, ids=[path.stem for path in CASES])
def test_twin_case(client: FlaskClient, path: Path) -> None:
    case = load_case(path)
    for resource in case["resources"]:
        response = client.put(
            f"/fhir/{resource['resourceType']}/{resource['id']}",
            data=simplejson.dumps(resource, use_decimal=True),
            content_type="application/fhir+json",
        )
        assert response.status_code in (200, 201), (resource["id"], response.get_json())
    patient_id = case["resources"][0]["id"]
    response = client.get(f"/twin/patients/{patient_id}")
    assert response.status_code == 200, response.get_json()
    assert_subset(case["expect"], response.get_json())


def test_the_cases_are_there_and_the_comparison_bites() -> None:
    """At least a dozen case files; and a wrong value, a missing key or an extra item fails."""
    assert len(CASES) >= 12
    document = {"body": {"glucose": {"count": 1, "latest": {"value": 99.088, "flag": None}}}, "items": [1, 2]}
    assert_subset({"body": {"glucose": {"latest": {"value": Decimal("99.08800001")}}}}, document)
    for wrong in (
        {"body": {"glucose": {"latest": {"value": Decimal("99.1")}}}},
        {"body": {"glucose": {"latest": {"flag": "unit"}}}},
        {"body": {"glucose": {"stale": True}}},
        {"body": {"glucose": {"count": True}}},
        {"items": [1]},
        {"items": [1, 3]},
    ):
        with pytest.raises(AssertionError):
            assert_subset(wrong, document)
