"""The operations of a FHIRPath Patch, read from its Parameters resource (R4 fhirpatch.html,
"Operations" and the example encodings); a malformed one is a 400 naming the parameter."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_twin.errors import Invalid, Issue, Unprocessable
from fhir_twin.fhir.elements import elements
from fhir_twin.fhir.validation import validate_resource
from fhir_twin.search.fhirpath import check_syntax

#: The parts each operation type takes besides ``type`` and ``path`` (fhirpatch.html, "Operations").
PARTS: dict[str, tuple[str, ...]] = {
    "add": ("name", "value"),
    "insert": ("value", "index"),
    "delete": (),
    "replace": ("value",),
    "move": ("source", "destination"),
}
_KNOWN_PARTS = ("type", "path", "name", "value", "index", "source", "destination")


@dataclass(frozen=True)
class Value:
    """An operation's value: a datatype's JSON (``value[x]``, with the ``_value[x]`` of a primitive),
    a resource, or an anonymous element given as ``part``s (``type`` None)."""

    type: str | None
    data: Any
    extension: Any = None


@dataclass(frozen=True)
class Operation:
    """One ``operation`` parameter; ``number`` is its index in ``Parameters.parameter``."""

    number: int
    type: str
    path: str
    name: str | None = None
    value: Value | None = None
    index: int | None = None
    source: int | None = None
    destination: int | None = None

    def refuse(self, why: str) -> Unprocessable:
        message = f"The FHIRPath Patch's operation {self.number} ({self.type} {self.path}) cannot be applied: {why}"
        return Unprocessable(message, issues=[Issue("processing", message, expression=(parameter_at(self.number),))])


def operations(parameters: Any) -> list[Operation]:
    """The operations of a FHIRPath Patch document; 400 naming the first parameter that is not one."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise Invalid(
            "A FHIRPath Patch is a Parameters resource (R4 fhirpatch.html); "
            "a JSON Patch is sent as application/json-patch+json"
        )
    try:
        validate_resource(parameters)
    except Invalid as error:
        raise Invalid(
            f"The FHIRPath Patch is not a valid Parameters resource: {error.diagnostics}", issues=error.issues
        ) from None
    return [_operation(number, parameter) for number, parameter in enumerate(parameters.get("parameter", []))]


def _operation(number: int, parameter: dict[str, Any]) -> Operation:
    where = parameter_at(number)
    if parameter.get("name") != "operation":
        raise Invalid.at(
            f"{where}.name",
            f"{where} is named {parameter.get('name')!r}; a FHIRPath Patch has only 'operation' parameters",
        )
    parts: dict[str, dict[str, Any]] = {}
    for part in parameter.get("part", []):
        name = part.get("name")
        if name not in _KNOWN_PARTS:
            raise Invalid.at(
                f"{where}.part", f"{where} has a part named {name!r}; the parts are {', '.join(_KNOWN_PARTS)}"
            )
        if name in parts:
            raise Invalid.at(f"{where}.part", f"{where} has more than one {name!r} part")
        parts[name] = part
    kind = _primitive(parts, "type", "valueCode", where)
    if kind not in PARTS:
        raise Invalid.at(f"{where}.part", f"{where} has type {kind!r}; it must be one of {', '.join(PARTS)}")
    for name in ("path", *PARTS[kind]):
        if name not in parts:
            raise Invalid.at(f"{where}.part", f"{where} ({kind}) has no {name!r} part")
    for name in parts.keys() - {"type", "path", *PARTS[kind]}:
        raise Invalid.at(f"{where}.part", f"{where} ({kind}) has a {name!r} part, which {kind} does not take")
    path = _primitive(parts, "path", "valueString", where)
    try:
        check_syntax(path)
    except ValueError as error:
        raise Invalid.at(f"{where}.part", f"{where} has path {path!r}, which is not FHIRPath: {error}") from None
    return Operation(
        number,
        kind,
        path,
        name=_primitive(parts, "name", "valueString", where) if "name" in parts else None,
        value=value_of(parts["value"], f"{where}.part") if "value" in parts else None,
        **{
            key: _primitive(parts, key, "valueInteger", where)
            for key in ("index", "source", "destination")
            if key in parts
        },
    )


def _primitive(parts: dict[str, dict[str, Any]], name: str, key: str, where: str) -> Any:
    value = parts[name].get(key)
    if value is None or (key == "valueInteger" and value < 0):
        wanted = "a valueInteger of 0 or more" if key == "valueInteger" else f"a {key}"
        raise Invalid.at(f"{where}.part", f"{where}: the {name!r} part needs {wanted}")
    return value


def value_of(part: dict[str, Any], where: str) -> Value:
    """The value a ``value`` part (or a part of one) gives: ``value[x]``, ``resource`` or ``part``s."""
    given = [key for key in part if key.startswith("value") or key in ("resource", "part")]
    if len(given) != 1:
        raise Invalid.at(where, f"{where}: the {part.get('name')!r} part needs one of value[x], resource or part")
    key = given[0]
    if key == "part":
        return Value(None, part["part"])
    if key == "resource":
        return Value(part["resource"]["resourceType"], part["resource"])
    value_type = (elements("Parameters.parameter") or {})[key].type
    return Value(value_type, part[key], part.get(f"_{key}"))


def parameter_at(number: int) -> str:
    return f"Parameters.parameter[{number}]"
