"""OperationOutcome resources (R4 operationoutcome.html) built from ``Issue`` values."""

from __future__ import annotations

from typing import Any

from fhir_twin.errors import Issue


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """An OperationOutcome whose issues carry severity, code, diagnostics and expression."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [_issue(issue) for issue in issues],
    }


def information(diagnostics: str) -> dict[str, Any]:
    """A success outcome, for ``Prefer: return=OperationOutcome`` and successful deletes."""
    return operation_outcome([Issue(code="informational", severity="information", diagnostics=diagnostics)])


def _issue(issue: Issue) -> dict[str, Any]:
    out: dict[str, Any] = {"severity": issue.severity, "code": issue.code}
    if issue.diagnostics:
        out["diagnostics"] = issue.diagnostics
    if issue.expression:
        out["expression"] = list(issue.expression)
    return out
