"""Rewriting the references of a transaction's resources (R4 http.html#trules, bundle.html#references).

``urn:uuid:`` / ``urn:oid:`` fullUrls name resources the transaction creates; once they have real
ids every reference to them — wherever it sits: references, extensions, contained resources,
uri elements and the narrative — is replaced by ``Type/id``. Conditional references
(``Patient?identifier=s|v``) are resolved by search and must match exactly one resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_CONDITIONAL = re.compile(r"^([A-Z][A-Za-z]+)\?(.+)$")


def rewrite(value: Any, mapping: dict[str, str], resolve: Callable[[str], str]) -> Any:
    """``value`` with mapped strings replaced and conditional references resolved."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and _CONDITIONAL.match(item):
                out[key] = resolve(item)
            elif key == "div" and isinstance(item, str) and mapping:
                out[key] = _in_text(item, mapping)
            else:
                out[key] = rewrite(item, mapping, resolve)
        return out
    if isinstance(value, list):
        return [rewrite(item, mapping, resolve) for item in value]
    if isinstance(value, str):
        return mapping.get(value, value)
    return value


def has_conditional_reference(value: Any) -> bool:
    """Whether ``value`` holds a ``reference`` of the form ``Type?query``."""
    if isinstance(value, dict):
        reference = value.get("reference")
        if isinstance(reference, str) and _CONDITIONAL.match(reference):
            return True
        return any(has_conditional_reference(item) for item in value.values() if isinstance(item, dict | list))
    if isinstance(value, list):
        return any(has_conditional_reference(item) for item in value)
    return False


def conditional_parts(reference: str) -> tuple[str, str]:
    """The type and query of a conditional reference ``Type?query``."""
    match = _CONDITIONAL.match(reference)
    assert match is not None
    return match.group(1), match.group(2)


def _in_text(text: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        if old in text:
            text = text.replace(old, new)
    return text
