"""The Digital Doctor's runs as CDS Hooks 2.0 cards (``ml.cards``), on twins built in memory from
resources (``twin.transient``): which model speaks, how loud, and what every card carries."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest

from fhir_twin.config import Config
from fhir_twin.fhir.instant import now
from fhir_twin.ml import cards
from fhir_twin.ml.runners import Patient, rule_based
from fhir_twin.ml.scores.score import ModelInfo
from fhir_twin.twin.mapping_file import load_mappings
from fhir_twin.twin.transient import document_of
from tests.ml.doctor_data import (
    MEDIUM,
    NEWS2_VECTORS,
    Vitals,
    ago,
    cardiovascular_set,
    infection,
    news2_set,
    partial_news2_set,
    patient,
    quantity,
)

MAPPING = load_mappings(Config().resolved_mappings_dir)
PAGE = "https://twin.example/app/patients/p1"
HIGH = NEWS2_VECTORS[3][0]
LOW_MEDIUM = NEWS2_VECTORS[1][0]
LOW = NEWS2_VECTORS[0][0]


def model_page(model: ModelInfo) -> str:
    return f"https://twin.example/twin/models/{model.id}"


def with_ids(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**resource, "id": resource.get("id") or f"r{n}"} for n, resource in enumerate(resources)]


def cards_for(resources: list[dict[str, Any]], page: str | None = PAGE, **who: Any) -> list[dict[str, Any]]:
    """The cards of the rule-based scores on p1's twin built from ``resources``."""
    document = document_of(patient("p1", **who), with_ids(resources), MAPPING, now())
    person = Patient("p1", document, None, now())  # type: ignore[arg-type]
    runs = [(runner, runner.run(person)) for runner in rule_based(timedelta(hours=1))]
    return cards.cards(runs, document, model_page, page)


def by_source(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {card["source"]["url"].rsplit("/", 1)[1]: card for card in found}


def assert_card_shape(card: dict[str, Any]) -> None:
    """CDS Hooks 2.0 "Card Attributes"."""
    assert uuid.UUID(card["uuid"])
    assert isinstance(card["summary"], str) and 0 < len(card["summary"]) < 140
    assert card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"].startswith("fhir-twin Digital Doctor: ")
    assert card["source"]["url"].startswith("https://twin.example/twin/models/")
    assert isinstance(card["detail"], str) and "**Status.**" in card["detail"]
    for link in card.get("links", []):
        assert set(link) == {"label", "url", "type"} and link["type"] == "absolute"


@pytest.mark.parametrize(
    ("vitals", "indicator", "summary"),
    [
        (HIGH, "critical", "NEWS2 10: high clinical risk"),
        (MEDIUM, "warning", "NEWS2 6: medium clinical risk"),
        (LOW_MEDIUM, "warning", "NEWS2 3: low-medium clinical risk"),
        (LOW, "info", "NEWS2 0: low clinical risk"),
    ],
)
def test_the_news2_band_sets_the_indicator(vitals: Vitals, indicator: str, summary: str) -> None:
    found = by_source(cards_for(news2_set("p1", vitals, ago(minutes=10))))
    card = found["news2"]
    assert_card_shape(card)
    assert (card["indicator"], card["summary"]) == (indicator, summary)
    assert card["links"] == [{"label": "The patient's twin in fhir-twin", "url": PAGE, "type": "absolute"}]
    assert card["source"] == {"label": "fhir-twin Digital Doctor: NEWS2 1.0.0", "url": model_page_of("news2")}


def model_page_of(model_id: str) -> str:
    return f"https://twin.example/twin/models/{model_id}"


def test_a_card_carries_the_response_rationale_inputs_with_times_and_status() -> None:
    card = by_source(cards_for(news2_set("p1", HIGH, "2026-03-02T09:10:00Z")))["news2"]
    detail = card["detail"]
    assert "emergency response threshold, RCP NEWS2 Chart 3" in detail
    assert "respiratory rate 24/min: 2 points" in detail
    assert "respiratory rate 24/min at 09:10 on 2026-03-02 (`Observation/r0/_history/1`)" in detail
    # A set from March is stale by now: preliminary, and why.
    assert "**Status.** preliminary: an input is older than the model allows" in detail


def test_a_partial_set_is_said_as_at_least_and_preliminary() -> None:
    readings = news2_set("p1", HIGH, ago(minutes=10))
    card = by_source(cards_for([r for r in readings if r["code"]["coding"][0]["code"] != "8310-5"]))["news2"]
    assert card["summary"].startswith("NEWS2 at least ")
    assert card["summary"].endswith("(preliminary)")
    assert "the set of inputs is incomplete" in card["detail"]
    assert "Not observed: temperature" in card["detail"]


def test_nothing_recorded_gives_no_card_never_low_risk() -> None:
    assert cards_for([]) == []


def test_readings_too_few_to_score_are_said_never_low_risk() -> None:
    (card,) = cards_for(partial_news2_set("p1", ago(minutes=10)))
    assert_card_shape(card)
    assert card["indicator"] == "info"
    assert card["summary"] == "NEWS2 not scored: the record holds no set of observations to score"
    assert "low" not in card["summary"]
    # Why in words, from the notes, not the model's field names (hazard H19).
    assert card["detail"].startswith("**Why no score.**\n\n- No ")
    assert "insufficient data" not in card["detail"] and "respiratory_rate" not in card["detail"]


def test_a_newer_reading_that_needs_verification_is_never_hidden() -> None:
    readings = news2_set("p1", MEDIUM, ago(minutes=30))
    # SpO2 of 150 % cannot be a living body's: flagged, and newer than the set.
    readings.append(quantity("p1", "2708-6", 150, "%", ago(minutes=5)))
    card = by_source(cards_for(readings))["news2"]
    assert "(preliminary)" in card["summary"]
    assert "a newer reading needs verification" in card["detail"]
    assert "**Notes.**" in card["detail"]


def test_qsofa_speaks_only_when_positive() -> None:
    sick = Vitals(24, 93, "air", 95, 115, False, 38.5)
    found = by_source(cards_for([infection("p1"), *news2_set("p1", sick, ago(minutes=10))]))
    card = found["qsofa"]
    assert_card_shape(card)
    assert card["indicator"] == "warning"
    assert card["summary"].startswith("qSOFA 3 of 3, positive")
    negative = by_source(cards_for([infection("p1"), *news2_set("p1", LOW, ago(minutes=10))]))
    assert "qsofa" not in negative


def test_pooled_cohort_card_says_what_drives_the_risk() -> None:
    found = by_source(cards_for(cardiovascular_set("p1", ago(hours=2), total_cholesterol=280, hdl=35, systolic_bp=150)))
    card = found["pooled-cohort-ascvd"]
    assert_card_shape(card)
    assert card["indicator"] == "info"
    assert card["summary"].startswith("10-year ASCVD risk ")
    assert "**What drives it**" in card["detail"]
    assert "systolic BP 150 mmHg" in card["detail"]
    # Unrecorded diabetes is assumed "no" and said, never silently (H9).
    assert "assumed no diabetes" in card["detail"]
    assert "atp3-hard-chd" not in found


def test_most_urgent_first_and_no_link_for_another_servers_patient() -> None:
    found = cards_for([*news2_set("p1", HIGH, ago(minutes=10)), *cardiovascular_set("p1", ago(hours=2))], page=None)
    assert [card["indicator"] for card in found] == ["critical", "info"]
    assert all("links" not in card for card in found)


def test_summaries_are_cut_under_140_characters() -> None:
    assert len(cards._short("word " * 60)) < 140
    assert cards._short("short") == "short"
