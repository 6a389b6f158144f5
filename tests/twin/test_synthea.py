"""Synthea patients, loaded as transaction Bundles, get the twin series their Observations say:
every series is recomputed here from the Bundle alone (codes, units, conversions, plausibility and
duplicate folding written out independently of the mapping files) and must match point for point."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from fhir_twin.app import services_of

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "synthea"
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fhir-test-data" / "synthea"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def bundles() -> Iterator[Any]:
    """The Bundles of fixtures/synthea, then those of the shared test data not copied there."""
    own = sorted(FIXTURES.glob("*.json"))
    assert len(own) >= 2, "fixtures/synthea must hold the two Synthea bundles"
    yield from (pytest.param(path, id=path.stem) for path in own)
    shared = [path for path in sorted(SHARED.glob("*.json")) if path.name not in {p.name for p in own}]
    if not shared:
        yield pytest.param(None, id="shared", marks=pytest.mark.skip(reason=f"no further Synthea bundles in {SHARED}"))
    yield from (pytest.param(path, id=f"shared-{path.stem}") for path in shared)


@dataclass(frozen=True)
class Spec:
    """What the twin does with one field: canonical unit, other units as (factor, offset) with
    canonical = (value + offset) * factor, and the plausible range."""

    unit: str
    low: Fraction
    high: Fraction
    other_units: dict[str, tuple[Fraction, Fraction]] | None = None


def _range(low: str, high: str) -> tuple[Fraction, Fraction]:
    return Fraction(low), Fraction(high)


# The quantity fields Synthea feeds, as README/mappings document them.
QUANTITIES: dict[str, Spec] = {
    "heart_rate": Spec("/min", *_range("0", "600"), {"{beats}/min": (Fraction(1), Fraction(0))}),
    "respiratory_rate": Spec("/min", *_range("0", "150"), {"{breaths}/min": (Fraction(1), Fraction(0))}),
    "body_temperature": Spec("Cel", *_range("10", "47"), {"[degF]": (Fraction(5, 9), Fraction(-32))}),
    "oxygen_saturation": Spec("%", *_range("0", "100")),
    "body_weight": Spec("kg", *_range("0.1", "650"), {"[lb_av]": (Fraction("0.45359237"), Fraction(0))}),
    "body_height": Spec("cm", *_range("20", "275"), {"[in_i]": (Fraction("2.54"), Fraction(0))}),
    "bmi": Spec("kg/m2", *_range("2", "200")),
    "systolic_bp": Spec("mm[Hg]", *_range("0", "500")),
    "diastolic_bp": Spec("mm[Hg]", *_range("0", "400")),
    "glucose": Spec("mg/dL", *_range("0", "2700"), {"mmol/L": (Fraction("18.016"), Fraction(0))}),
    "creatinine": Spec("mg/dL", *_range("0", "80"), {"umol/L": (Fraction(1) / Fraction("88.42"), Fraction(0))}),
    "hba1c": Spec("%", *_range("0", "25")),
    "total_cholesterol": Spec("mg/dL", *_range("10", "3000"), {"mmol/L": (Fraction("38.67"), Fraction(0))}),
    "hdl_cholesterol": Spec("mg/dL", *_range("0", "300"), {"mmol/L": (Fraction("38.67"), Fraction(0))}),
    "ldl_cholesterol": Spec("mg/dL", *_range("0", "3000"), {"mmol/L": (Fraction("38.67"), Fraction(0))}),
    "triglycerides": Spec("mg/dL", *_range("0", "30000"), {"mmol/L": (Fraction("88.57"), Fraction(0))}),
}

# LOINC code of a stand-alone Observation -> field.
STANDALONE = {
    "8867-4": "heart_rate",
    "9279-1": "respiratory_rate",
    "8310-5": "body_temperature",
    "2708-6": "oxygen_saturation",
    "59408-5": "oxygen_saturation",
    "29463-7": "body_weight",
    "8302-2": "body_height",
    "39156-5": "bmi",
    "8480-6": "systolic_bp",
    "8462-4": "diastolic_bp",
    "2339-0": "glucose",
    "2345-7": "glucose",
    "2160-0": "creatinine",
    "38483-4": "creatinine",
    "4548-4": "hba1c",
    "2093-3": "total_cholesterol",
    "2085-9": "hdl_cholesterol",
    "18262-6": "ldl_cholesterol",
    "2571-8": "triglycerides",
    "72166-2": "smoking_status",
}
# Blood-pressure panels (current and older LOINC code) -> component code -> field.
PANELS = {"85354-9", "55284-4"}
PANEL_COMPONENTS = {"8480-6": "systolic_bp", "8462-4": "diastolic_bp"}
SMOKING = {
    "449868002": "current",
    "428041000124106": "current",
    "428071000124103": "current",
    "428061000124105": "current",
    "77176002": "current",
    "8517006": "former",
    "266919005": "never",
    "266927001": "unknown",
}
ACCEPTED_STATUSES = {"final", "amended", "corrected"}
WITHDRAWN = {"entered-in-error", "cancelled"}

Point = tuple[str, float | None, str | None, str | None]  # time, value, category, flag


def instant(value: str) -> str:
    """A FHIR dateTime as the twin API writes it: UTC, milliseconds."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def effective(observation: dict[str, Any]) -> str:
    text = (
        observation.get("effectiveDateTime")
        or (observation.get("effectivePeriod") or {}).get("start")
        or observation.get("issued")
    )
    assert isinstance(text, str), observation
    return instant(text)


def quantity_point(field: str, holder: dict[str, Any], when: str, status: str) -> tuple[str, Any]:
    spec = QUANTITIES[field]
    quantity = holder["valueQuantity"]
    number = Fraction(str(quantity["value"]))
    unit = quantity.get("code") or quantity.get("unit")
    if unit == spec.unit:
        canonical = number
    else:
        assert spec.other_units and unit in spec.other_units, f"{field}: no conversion from {unit!r} known to the test"
        factor, offset = spec.other_units[unit]
        canonical = (number + offset) * factor
    flag = None if spec.low <= canonical <= spec.high else "implausible"
    if flag is None and status not in ACCEPTED_STATUSES:
        flag = "status"
    return field, (when, float(canonical), None, flag)


def coded_point(holder: dict[str, Any], when: str, status: str) -> tuple[str, Any]:
    codes = [c.get("code") for c in holder["valueCodeableConcept"].get("coding", []) if c.get("system") == SNOMED]
    category = next((SMOKING[code] for code in codes if code in SMOKING), None)
    flag = None if category is not None else "unknown-answer"
    if flag is None and status not in ACCEPTED_STATUSES:
        flag = "status"
    return "smoking_status", (when, None, category, flag)


def expected_series(resources: list[dict[str, Any]], patient_url: str) -> dict[str, list[tuple[Point, int]]]:
    """Per field, the points of the patient's Observations with how many duplicates each absorbed."""
    raw: dict[str, list[Point]] = {}
    for observation in resources:
        if observation["resourceType"] != "Observation" or observation["subject"]["reference"] != patient_url:
            continue
        status = observation["status"]
        if status in WITHDRAWN:
            continue
        when = effective(observation)
        codes = [c["code"] for c in observation["code"].get("coding", []) if c.get("system") == LOINC]
        found: dict[str, Point] = {}
        for code in codes:
            if code in PANELS:
                for component in observation.get("component", []):
                    component_codes = [c["code"] for c in component["code"]["coding"] if c.get("system") == LOINC]
                    for component_code in component_codes:
                        if component_code in PANEL_COMPONENTS and "valueQuantity" in component:
                            field, point = quantity_point(PANEL_COMPONENTS[component_code], component, when, status)
                            found.setdefault(field, point)
            elif code in STANDALONE:
                field = STANDALONE[code]
                if field == "smoking_status":
                    field, point = coded_point(observation, when, status)
                else:
                    field, point = quantity_point(field, observation, when, status)
                found.setdefault(field, point)
        for field, point in found.items():
            raw.setdefault(field, []).append(point)
    folded: dict[str, list[tuple[Point, int]]] = {}
    for field, found_points in raw.items():
        counts: dict[Point, int] = {}
        kept: list[tuple[Point, int]] = []
        for point in found_points:
            if point[1] is None and point[2] is None:
                kept.append((point, 0))  # nothing to compare: never a duplicate
                continue
            counts[point] = counts.get(point, -1) + 1
        kept.extend(counts.items())
        folded[field] = sorted(kept, key=repr)
    return folded


def expected_case_counts(resources: list[dict[str, Any]], patient_url: str) -> dict[str, int]:
    def code_of(element: Any) -> str | None:
        codings = (element or {}).get("coding") or []
        return codings[0].get("code") if codings else None

    counts = {"conditions": 0, "encounters": 0}
    for resource in resources:
        if (resource.get("subject") or {}).get("reference") != patient_url:
            continue
        if resource["resourceType"] == "Encounter" and resource.get("status") not in WITHDRAWN:
            counts["encounters"] += 1
        if (
            resource["resourceType"] == "Condition"
            and code_of(resource.get("verificationStatus")) not in {"entered-in-error", "refuted"}
            and code_of(resource.get("clinicalStatus")) not in WITHDRAWN
        ):
            counts["conditions"] += 1
    return counts


def shown(points: list[dict[str, Any]]) -> list[tuple[Point, int]]:
    return sorted(
        (((p["time"], p["value"], p["category"], p["flag"]), p["duplicates"]) for p in points),
        key=repr,
    )


def rounded(series: list[tuple[Point, int]]) -> list[tuple[Point, int]]:
    """Values to 9 significant digits: the comparison is of numbers, not of float arithmetic."""
    return [
        ((time, None if value is None else float(f"{value:.9g}"), category, flag), duplicates)
        for (time, value, category, flag), duplicates in series
    ]


@pytest.mark.parametrize("path", list(bundles()))
def test_twin_series_match_the_bundle(client: FlaskClient, path: Path) -> None:
    bundle = json.loads(path.read_text(), parse_float=Decimal)
    response = client.post("/fhir", data=path.read_bytes(), content_type="application/fhir+json")
    assert response.status_code == 200, response.get_json()
    resources = [entry["resource"] for entry in bundle["entry"]]
    answers = response.get_json()["entry"]
    patients = [
        (entry["fullUrl"], answer["response"]["location"].split("/")[1])
        for entry, answer in zip(bundle["entry"], answers, strict=True)
        if entry["resource"]["resourceType"] == "Patient"
    ]
    assert patients
    fields = sorted(services_of(client.application).twins.mapping.fields)
    for full_url, patient_id in patients:
        expected = expected_series(resources, full_url)
        assert sum(len(points) for points in expected.values()) > 10, "the Bundle feeds the twin"
        twin = client.get(f"/twin/patients/{patient_id}").get_json()
        for field in fields:
            response = client.get(f"/twin/patients/{patient_id}/series/{field}")
            assert response.status_code == 200, response.get_json()
            points = response.get_json()["points"]
            want = expected.get(field, [])
            assert rounded(shown(points)) == rounded(want), field
            times = [point["time"] for point in points]
            assert times == sorted(times), field
            used = [point for point, _ in want if point[3] is None]
            state = twin["body"][field]
            assert state["count"] == len(used), field
            if used:
                latest = max(used, key=lambda point: point[0])
                assert state["latest"]["time"] == latest[0], field
            else:
                assert state["latest"] is None, field
        assert twin["quality"]["duplicates"] == sum(count for want in expected.values() for _, count in want)
        case = expected_case_counts(resources, full_url)
        assert {kind: len(twin["case"][kind]) for kind in case} == case
