"""Validation of a resource against the base R4 specification.

fhir.resources checks structure, cardinality, datatypes and formats; it does not check required
code bindings nor forbid empty elements, so ``terminology`` adds those (R4 json.html,
terminologies.html#required), ``datatypes`` holds primitives to their JSON types (its lax mode
takes ``"yes"`` for true), and ``cardinality`` finds what its model validators leave unsaid.
Every issue is reported in one answer, one per element. A failure is "basic FHIR validation", answered with 400
(R4 http.html#create: "400 Bad Request - resource could not be parsed or failed basic FHIR
validation rules"), never a partial write.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from fhir_twin.errors import Invalid, Issue
from fhir_twin.fhir.cardinality import cardinality_issues
from fhir_twin.fhir.datatypes import json_type_issues
from fhir_twin.fhir.elements import walk
from fhir_twin.fhir.primitives import primitive_issues
from fhir_twin.fhir.resource_types import is_resource_type, is_valid_id, model_class
from fhir_twin.fhir.terminology import binding_issues, empty_element_issues, without_empty_elements


def validate_resource(resource: dict[str, Any]) -> None:
    """Raise ``Invalid`` naming every problem found, or return when the resource is valid."""
    issues = resource_issues(resource)
    if issues:
        summary = (
            issues[0].diagnostics
            if len(issues) == 1
            else f"{len(issues)} validation errors: {issues[0].diagnostics}; ..."
        )
        raise Invalid(summary, issues=issues)


def resource_issues(resource: dict[str, Any]) -> list[Issue]:
    """Every problem in ``resource``, one issue per element; empty when it is valid R4.

    fhir.resources reports every bad field of a model in one pass, but its cardinality and choice
    checks run only on models whose fields are all valid, and a null in a list stops the model it
    is in. So empty elements are taken out before it sees the resource, and when it refuses
    anything, ``cardinality`` judges the whole resource for the checks it skipped. A resource it
    accepts has passed those checks. The resource is walked once (``elements.walk``); JSON types
    and bindings are checked in any case. Used by writes and by $validate.
    """
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or not is_resource_type(resource_type):
        return [Issue("not-supported", f"Unknown resource type {resource_type!r}", expression=("resourceType",))]
    visits = walk(resource)
    issues = empty_element_issues(resource) + primitive_issues(resource) + json_type_issues(visits)
    if "id" in resource and not is_valid_id(resource["id"]):
        issues.append(
            Issue(
                "value",
                f"Invalid id {resource['id']!r}: ids are 1-64 of A-Z a-z 0-9 - .",
                expression=(f"{resource_type}.id",),
            )
        )
    structure = _structure_issues(resource_type, without_empty_elements(resource) if issues else resource)
    if structure is None and not issues:
        return binding_issues(visits)
    issues += cardinality_issues(visits)
    if structure is not None:
        issues += structure
    issues += binding_issues(visits)
    if not issues:
        return [Issue("structure", f"{resource_type} is not a valid resource", expression=(resource_type,))]
    return _one_per_element(issues)


def _structure_issues(resource_type: str, resource: dict[str, Any]) -> list[Issue] | None:
    """What fhir.resources refuses, less its choice-type messages (``cardinality`` names those);
    None when it accepts the resource."""
    try:
        model_class(resource_type).model_validate(resource)
    except ValidationError as exc:
        return [
            _structure_issue(resource_type, error)
            for error in exc.errors(include_url=False)
            if not str(error.get("msg", "")).startswith(_CHOICE_MESSAGES)
        ]
    except KeyError:
        # fhir_core's lookup of a nested resource of unknown type; ``cardinality`` names it.
        return []
    except (ValueError, TypeError) as exc:
        return [Issue("structure", f"{resource_type} is not valid: {exc}", expression=(resource_type,))]
    return None


# fhir_core's one-of-many check (R4 formats.html#choice), raised without naming the element.
_CHOICE_MESSAGES = ("Value error, Any of one field value is expected", "Value error, Expect any of field value")


def _one_per_element(issues: list[Issue]) -> list[Issue]:
    """The first issue found for an element, which covers what lies within it: later checks
    would only restate it (an empty ``code`` is not also a ``code`` missing its parts)."""
    seen: list[str] = []
    kept: list[Issue] = []
    for issue in issues:
        where = issue.expression[0] if issue.expression else ""
        if where and any(where == path or where.startswith((f"{path}.", f"{path}[")) for path in seen):
            continue
        if where:
            seen.append(where)
        kept.append(issue)
    return kept


def _structure_issue(resource_type: str, error: Any) -> Issue:
    path = _expression(resource_type, error.get("loc", ()))
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return Issue("structure", f"Unknown element {path}", expression=(path,))
    if kind in ("missing", "model_field_validation.missing"):
        return Issue("required", f"{path} is required: {message}", expression=(path,))
    return Issue("value", f"{path}: {message}", expression=(path,))


def _expression(resource_type: str, loc: tuple[Any, ...]) -> str:
    """A FHIRPath-style location from a pydantic error location: ``Observation.component[0].code``."""
    text = resource_type
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif isinstance(part, str) and not part.startswith(("function-", "model-")) and part != "__root__":
            text += f".{part}"
    return text
