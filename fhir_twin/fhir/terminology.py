"""Required code bindings and empty elements: two R4 rules fhir.resources does not enforce.

* A coded element with a ``required`` binding SHALL carry a code from its value set
  (R4 terminologies.html#required). The element table and the expanded value sets come from
  ``data/elements.json``, built by ``scripts/build_spec_data.py``; bindings whose value set
  cannot be expanded there (external terminologies such as mime types, ISO 4217, UCUM) are not
  in the table and stay unchecked.
* JSON elements SHALL NOT be empty: no ``{}``, ``[]``, ``""`` or ``null`` (R4 json.html).

Bindings are checked on what ``elements.walk`` visits; the empty-element scan reads every
property, known to the table or not.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir_twin.errors import Issue
from fhir_twin.fhir.definitions import table
from fhir_twin.fhir.elements import Visit


@dataclass(frozen=True)
class ValueSet:
    """An expanded value set: bare codes for ``code`` elements, (system, code) for codings."""

    url: str
    codes: frozenset[str]
    pairs: frozenset[tuple[str, str]]


@cache
def _valuesets() -> dict[str, ValueSet]:
    """Per URL, the value sets of the table's checked required bindings."""
    return {
        url: ValueSet(
            url,
            frozenset(code for codes in by_system.values() for code in codes),
            frozenset((s, code) for s, codes in by_system.items() for code in codes),
        )
        for url, by_system in table()["valuesets"].items()
    }


def binding_issues(visits: Iterable[Visit]) -> list[Issue]:
    """Codes outside the value set of a required binding among ``visits`` (``elements.walk``).

    ``code`` elements must hold one of the value set's codes. A ``CodeableConcept`` (or
    ``Coding``) follows the HL7 validator that HAPI uses (InstanceValidator.checkCodeableConcept):
    it needs at least one coding whose (system, code) pair is in the value set, so a concept with
    only text, or only codings from other code systems, is refused too. Empty values are left to
    ``empty_element_issues``; values out of their JSON shape (an array where the element does not
    repeat, or the reverse) to fhir.resources.
    """
    issues: list[Issue] = []
    valuesets = _valuesets()
    for path, element, value, _, shaped in visits:
        if element is None or element.binding is None or not shaped or not value:
            continue
        problem = _binding_problem(value, element.type, valuesets[element.binding], path)
        if problem:
            issues.append(Issue("code-invalid", problem, expression=(path,)))
    return issues


def _binding_problem(value: Any, child: str, valueset: ValueSet, path: str) -> str | None:
    """Why ``value`` breaks the required binding, or None (also for malformed values)."""
    where = f"(value set {valueset.url})"
    if child == "code":
        if isinstance(value, str) and value not in valueset.codes:
            return f"'{value}' is not a valid code for {path} {where}"
        return None
    if not isinstance(value, dict):
        return None
    codings = value.get("coding") if child == "CodeableConcept" else [value]
    if not isinstance(codings, list) or not codings:
        return f"{path} has no coding, and a code is required {where}"
    given = [c for c in codings if isinstance(c, dict)]
    # A system or code of the wrong JSON type (a list, say) matches nothing; the structure check
    # names it, and this check may run on the raw JSON before that one has.
    pairs = [(c.get("system"), c.get("code")) for c in given]
    if any(pair in valueset.pairs for pair in pairs if all(isinstance(part, str) for part in pair)):
        return None
    shown = ", ".join(f"{c.get('system', '')}#{c.get('code', '')}" for c in given)
    return f"none of the codings of {path} ({shown}) is in the required value set {where}"


def empty_element_issues(resource: dict[str, Any]) -> list[Issue]:
    """Empty objects, arrays and strings, and nulls, anywhere in ``resource`` (R4 json.html).

    A null inside an array is allowed only as a placeholder that keeps a primitive array aligned
    with its ``_name`` companion (R4 json.html#primitive), so it is flagged only when the
    companion is absent. The expression names the element, ``_name`` reported as ``name``.
    """
    issues: list[Issue] = []
    resource_type = resource.get("resourceType")
    _scan(resource, resource_type if isinstance(resource_type, str) else "Resource", issues)
    return issues


def _scan(node: dict[str, Any], path: str, issues: list[Issue]) -> None:
    for key, value in node.items():
        kind = type(value)
        if kind is dict or kind is list or not value:
            name = key.removeprefix("_")
            companion = name if name != key else f"_{key}"
            _scan_value(value, f"{path}.{name}", key, companion in node, issues)


def _scan_value(value: Any, path: str, key: str, aligned: bool, issues: list[Issue]) -> None:
    """Check one property value; ``aligned`` allows nulls in an array with a companion."""
    kind = type(value)
    if kind is dict:
        if value:
            _scan(value, path, issues)
            return
        what = "an empty object"
    elif kind is list:
        if value:
            for i, item in enumerate(value):
                if item is None and aligned:
                    continue
                if type(item) is dict or type(item) is list or not item:
                    _scan_value(item, f"{path}[{i}]", key, False, issues)
            return
        what = "an empty array"
    elif value is None:
        what = "null"
    elif value == "":
        what = "an empty string"
    else:
        return
    where = f"{path} (JSON property '{key}')" if key.startswith("_") else path
    issues.append(Issue("invalid", f"{where} is {what}, which FHIR JSON does not allow", expression=(path,)))


def without_empty_elements(node: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``node`` without what ``empty_element_issues`` reports, so that the other checks
    still see everything else (a null in a list would stop fhir.resources' model). An empty array
    item becomes ``{}`` so that later items keep their index in what is reported."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        kind = type(value)
        if kind is dict:
            if value:
                out[key] = without_empty_elements(value)
        elif kind is list:
            if value:
                name = key.removeprefix("_")
                aligned = (name if name != key else f"_{key}") in node
                out[key] = [None if item is None and aligned else _kept(item) for item in value]
        elif value is not None and value != "":
            out[key] = value
    return out


def _kept(item: Any) -> Any:
    if type(item) is dict and item:
        return without_empty_elements(item)
    if item is None or item == "" or item == {} or item == []:
        return {}
    return item
