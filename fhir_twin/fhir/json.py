"""FHIR JSON text in and out, keeping decimals exactly as sent.

R4 json.html: decimals are numbers whose precision matters (``1.50`` is not ``1.5``), so the
store keeps the text a client sent. simplejson with ``use_decimal`` round-trips the digits and
embeds stored bodies verbatim (``RawJSON``) when building Bundles.
"""

from __future__ import annotations

from typing import Any

import simplejson

from fhir_twin.errors import Invalid, Issue

RawJSON = simplejson.RawJSON


def loads(body: bytes | str) -> Any:
    """Parse JSON text; 400 with the position of the first syntax error."""
    try:
        return simplejson.loads(body, use_decimal=True)
    except simplejson.JSONDecodeError as exc:
        raise Invalid(f"The body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeDecodeError:
        raise Invalid("The body is not UTF-8 text") from None


def dumps(value: Any, pretty: bool = False) -> bytes:
    """Serialise to UTF-8 JSON; compact unless ``pretty``."""
    if pretty:
        text = simplejson.dumps(value, use_decimal=True, ensure_ascii=False, indent=2)
    else:
        text = simplejson.dumps(value, use_decimal=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def canonical(value: Any) -> str:
    """Text that is equal for equal JSON values, whatever their key order (decimals kept)."""
    return simplejson.dumps(value, use_decimal=True, sort_keys=True, separators=(",", ":"))


def require_object(value: Any, what: str = "The body") -> dict[str, Any]:
    """A resource must be a JSON object with a string ``resourceType`` (R4 json.html#resources)."""
    if not isinstance(value, dict):
        raise Invalid(f"{what} must be a JSON object holding a FHIR resource")
    resource_type = value.get("resourceType")
    if not isinstance(resource_type, str) or not resource_type:
        raise Invalid(
            f"{what} has no resourceType",
            issues=[Issue("required", f"{what} has no resourceType", expression=("resourceType",))],
        )
    return value
