"""What the terminology operations share (R4 terminology-service.html): their inputs, with the
Coding and CodeableConcept values that ``parameters`` flattens, booleans, the display languages
asked for, the stored resource invoked on, and their Parameters answers."""

from __future__ import annotations

from typing import Any

from fhir_twin.errors import Invalid, NotFound
from fhir_twin.fhir.json import loads
from fhir_twin.interactions.message import Request
from fhir_twin.store.repository import DatabaseTransaction
from fhir_twin.terminology.code_system import CodeSystem
from fhir_twin.terminology.language import requested

Inputs = list[tuple[str, Any]]


def inputs(request: Request) -> Inputs:
    """The query string, then the Parameters body: a value as sent (a string, a Coding, ...) or a resource."""
    found: Inputs = [(name, value) for name, value in request.query if name not in ("_format", "_pretty")]
    body = request.body
    if body is None:
        return found
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise Invalid("A terminology operation takes a Parameters body")
    for part in body.get("parameter", []):
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise Invalid("Each Parameters.parameter needs a name")
        values = [value for key, value in part.items() if key.startswith("value") or key == "resource"]
        if len(values) != 1:
            raise Invalid.at(part["name"], f"Parameter {part['name']!r} needs exactly one value[x] or resource")
        value = values[0]
        found.append((part["name"], str(value).lower() if isinstance(value, bool) else value))
    return found


def one(given: Inputs, name: str, kind: type = str) -> Any:
    """The single value of ``name`` (None when absent), of the JSON type ``kind``."""
    values = [value for key, value in given if key == name]
    if len(values) > 1:
        raise Invalid.at(name, f"{name} may be given only once")
    if values and not isinstance(values[0], kind):
        raise Invalid.at(name, f"{name} must be a {'string' if kind is str else 'complex value'}")
    if kind is str and values and not values[0]:
        raise Invalid.at(name, f"{name} is empty")
    return values[0] if values else None


def whole_number(given: Inputs, name: str) -> int | None:
    value = one(given, name, object)
    if value is None:
        return None
    text = str(value)
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise Invalid.at(name, f"{name} must be a whole number, not {text[:40]!r}")
    return int(text)


def flag(given: Inputs, name: str) -> bool | None:
    """A boolean input (``true`` / ``false``), None when absent."""
    value = one(given, name, object)
    if value is None:
        return None
    if value not in ("true", "false"):
        raise Invalid.at(name, f"{name} must be true or false, not {str(value)[:40]!r}")
    return bool(value == "true")


def languages(given: Inputs, request: Request) -> tuple[str, ...]:
    """The display languages asked for: ``displayLanguage``, else the ``Accept-Language`` header."""
    return tuple(requested(one(given, "displayLanguage"), request.header("accept-language")))


def instance(tx: DatabaseTransaction, res_type: str, res_id: str | None) -> dict[str, Any] | None:
    """The stored resource an instance-level call is invoked on (None at type level)."""
    if res_id is None:
        return None
    found = tx.current(res_type, res_id)
    if found is None or found.body is None:
        raise NotFound(f"{res_type}/{res_id} is not known")
    resource: dict[str, Any] = loads(found.body)
    return resource


def code_system_instance(resource: dict[str, Any], system: str | None, res_id: str | None) -> CodeSystem:
    """The stored CodeSystem invoked on; a ``system`` sent with it must be its ``url``."""
    url = resource.get("url")
    if not isinstance(url, str) or not url:
        raise Invalid(f"CodeSystem/{res_id} has no url, so its codes have no system")
    if system and system != url:
        raise Invalid.at("system", f"system {system} is not the url of CodeSystem/{res_id}, {url}")
    return CodeSystem(resource)


def part(name: str, value: Any, kind: str = "String") -> dict[str, Any]:
    return {"name": name, f"value{kind}": value}


def answer(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": parts}
