"""The Digital Doctor's runs as CDS Hooks 2.0 cards (cds-hooks.hl7.org/2.0, "Card Attributes").

A card is said only where the model has something for a clinician to act on or to know; nothing
stored is changed. Which model speaks and how loud (``indicator``):

- NEWS2 (RCP 2017, Chart 2 and 3): ``critical`` for the high band (emergency response),
  ``warning`` for medium and for a 3 in one parameter (urgent response), ``info`` for low. A
  partial set is a lower bound, said as "at least". A record holding NEWS2 readings that give no
  score gets an ``info`` card naming why (docs/clinical-safety.md H3); a record holding none gets
  no card: "not recorded" is never turned into "low risk".
- qSOFA (Sepsis-3): a ``warning`` when positive; a negative or undecided qSOFA is not
  reassurance (Seymour et al. 2016 derived it to prompt a search, not to rule out), so no card.
- Pooled Cohort Equations: an ``info`` card with the risk and what drives it; a 10-year risk
  informs a discussion, it is not urgent (ACC/AHA 2019).

ATP III is superseded by the PCE for treatment decisions and repeats it, and the learned models
are not validated for alerts (clinical-safety.md "The models"): neither gives cards.

Every card carries the run's rationale, its inputs with their times, its status (``final`` or
``preliminary`` and why) and the Doctor's notes, so a newer reading that needs verification or an
assumed answer is never hidden behind the card's summary (H1, H9).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from fhir_twin.ml import words
from fhir_twin.ml.runners import Run, Runner
from fhir_twin.ml.scores import news2, pooled_cohort, qsofa
from fhir_twin.ml.scores.score import ModelInfo
from fhir_twin.twin.document import TwinDocument

# The models that speak in cards, in the order their cards are listed (most urgent kind first).
MODELS = (news2.MODEL.id, qsofa.MODEL.id, pooled_cohort.MODEL.id)
NAMES = {news2.MODEL.id: "NEWS2", qsofa.MODEL.id: "qSOFA", pooled_cohort.MODEL.id: "Pooled Cohort Equations"}
INDICATORS = ("info", "warning", "critical")
SUMMARY_LIMIT = 140  # CDS Hooks 2.0: summary "<140-character"
NEWS2_INDICATOR = {"high": "critical", "medium": "warning", "low-medium": "warning", "low": "info"}


def cards(
    runs: Sequence[tuple[Runner, Run]],
    document: TwinDocument,
    model_page: Callable[[ModelInfo], str],
    patient_page: str | None,
) -> list[dict[str, Any]]:
    """The cards of ``runs`` on ``document``, most urgent first. ``model_page`` is the URL of a
    model's card; ``patient_page`` the app's page of this patient, when the patient is this
    server's (a patient of another server has no page here, and a link would show another)."""
    by_model = {runner.model.id: run for runner, run in runs}
    made = [
        card
        for model_id in MODELS
        if model_id in by_model
        for card in [_card(model_id, by_model[model_id], document, model_page, patient_page)]
        if card is not None
    ]
    return sorted(made, key=lambda card: -INDICATORS.index(card["indicator"]))


def _card(
    model_id: str,
    run: Run,
    document: TwinDocument,
    model_page: Callable[[ModelInfo], str],
    patient_page: str | None,
) -> dict[str, Any] | None:
    said = _said(model_id, run)
    if said is None:
        return None
    indicator, summary, action = said
    model = run.score.model
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": _short(summary),
        "indicator": indicator,
        "detail": detail(run, document, action),
        "source": {"label": f"fhir-twin Digital Doctor: {NAMES[model_id]} {model.version}", "url": model_page(model)},
    }
    if patient_page is not None:
        card["links"] = [{"label": "The patient's twin in fhir-twin", "url": patient_page, "type": "absolute"}]
    return card


def _said(model_id: str, run: Run) -> tuple[str, str, str | None] | None:
    """(indicator, summary, what to do) for a run that has something to say; None otherwise."""
    score = run.score
    status = " (preliminary)" if run.preliminary else ""
    if model_id == news2.MODEL.id:
        if run.scored and score.band is not None:
            at_least = "at least " if score.bound else ""
            summary = f"NEWS2 {at_least}{score.value:g}: {at_least}{score.band} clinical risk{status}"
            return NEWS2_INDICATOR[score.band], summary, score.mitigation
        if score.missing and (run.unverified or any(not ref.startswith("Patient/") for ref in run.basis)):
            return "info", "NEWS2 not scored: the record holds no set of observations to score", None
        return None
    if model_id == qsofa.MODEL.id:
        if run.scored and score.band == "positive":
            summary = f"qSOFA {score.value:g} of 3, positive: look for organ dysfunction (Sepsis-3){status}"
            return "warning", summary, score.mitigation
        return None
    if model_id == pooled_cohort.MODEL.id and run.scored and score.probability is not None:
        summary = f"10-year ASCVD risk {100 * score.probability:.1f} % ({score.band}), Pooled Cohort Equations{status}"
        return "info", summary, score.mitigation
    return None


def detail(run: Run, document: TwinDocument, action: str | None) -> str:
    """The card's Markdown: what to do, why (or why no score), from what and when, how sure, and
    the notes."""
    score = run.score
    parts = []
    if action:
        parts.append(f"**What to do.** {action}")
    if run.scored:
        parts.append(f"**Why.** {score.rationale}")
    else:
        # A score without a value says why in the notes' words, not the model's field names.
        parts.append(
            "**Why no score.**\n\n" + _items(run.notes) if run.notes else f"**Why no score.** {score.rationale}"
        )
    drivers = [c for c in score.contributions if c.points and score.model.id == pooled_cohort.MODEL.id]
    if drivers:
        parts.append(
            "**What drives it** (percentage points of risk above optimal levels):\n\n"
            + _items(c.explanation for c in drivers)
        )
    inputs = _inputs(run, document)
    if inputs:
        parts.append("**Inputs.**\n\n" + _items(inputs))
    parts.append(f"**Status.** {status(run)}")
    if run.notes and run.scored:
        parts.append("**Notes.**\n\n" + _items(run.notes))
    return "\n\n".join(parts)


def status(run: Run) -> str:
    """``final`` or ``preliminary`` with each reason, as the RiskAssessment's status says it."""
    if not run.scored:
        return "no score."
    reasons = []
    if run.score.partial:
        reasons.append("the set of inputs is incomplete")
    if run.stale:
        reasons.append("an input is older than the model allows")
    if run.unverified:
        reasons.append("a newer reading needs verification")
    if run.score.assumptions:
        reasons.append("an answer the record does not give was assumed")
    if not reasons:
        return "final: every input recorded, current and verified, nothing assumed."
    return f"preliminary: {'; '.join(reasons)} (see the notes)."


def _inputs(run: Run, document: TwinDocument) -> list[str]:
    """Each reading in the run's basis with its value and time; other records by reference."""
    readings = {point.source: (name, point) for name, points in document.series.items() for point in points}
    shown = []
    for reference in run.basis:
        found = readings.get(reference)
        if found is None:
            shown.append(f"`{reference}`")
            continue
        name, point = found
        twin_field = document.mapping.fields[name]
        value = words.quantity(point.value, point.unit) if point.value is not None else point.category or "no value"
        when = f" at {words.moment(point.time)}" if point.time is not None else ""
        shown.append(f"{words.in_sentence(twin_field.label)} {value}{when} (`{reference}`)")
    return shown


def _items(lines: Iterable[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def _short(summary: str) -> str:
    """Under 140 characters, cut at a word with an ellipsis when longer."""
    if len(summary) < SUMMARY_LIMIT:
        return summary
    return summary[: SUMMARY_LIMIT - 2].rsplit(" ", 1)[0] + "…"
