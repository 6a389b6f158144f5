"""OperationOutcome resources (R4 operationoutcome.html) built from ``Issue`` values."""

from __future__ import annotations

import re
from typing import Any

from fhir_twin.errors import Issue

# What R4 strings may not carry (datatypes.html#string: [ \r\n\t\S]+; XML 1.0 cannot carry the
# C0 controls): an issue that quotes a request's bad text shows such characters escaped.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


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
        out["diagnostics"] = _printable(issue.diagnostics)
    if issue.expression:
        out["expression"] = [_printable(expression) for expression in issue.expression]
    return out


def _printable(text: str) -> str:
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
