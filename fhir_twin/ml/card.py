"""The model card of a rule-based score, in Markdown, from what its ``ModelInfo`` says.

A learned model's card comes from its training report (``learned.report.model_card``); a
published score has no report, but a reader of its AI Transparency model card (AI-ModelCard
DocumentReference) still needs its identity, intended use, outcome and exact inputs.
"""

from __future__ import annotations

from fhir_twin.ml.codes import LOINC
from fhir_twin.ml.scores.score import ModelInfo


def score_card(model: ModelInfo) -> str:
    """The card of ``model``: identity, intended use, outcome and horizon, inputs with their codes."""
    lines = [
        f"# Model card: {model.id} {model.version}",
        "",
        f"Kind: {model.kind}: the published score as its reference states it, not trained on this server's data.",
        "",
        "## Intended use",
        "",
        model.intended_use,
        "",
        "## Outcome and horizon",
        "",
        f"- Outcome: {model.outcome}",
        f"- Horizon: {model.horizon or 'none stated'}",
        "",
        "## Inputs",
        "",
        "| input | code (LOINC unless a system is named) |",
        "|---|---|",
    ]
    lines += [f"| {item.name} | {_code(item.loinc)} |" for item in model.inputs]
    lines += ["", "## Reference", "", model.reference, ""]
    return "\n".join(lines)


def _code(code: str | None) -> str:
    if not code:
        return "–"
    system, _, value = code.partition("|")
    return value if system == LOINC else code.replace("|", "\\|")
