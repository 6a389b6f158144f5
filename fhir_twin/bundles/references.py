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
    """``value`` with mapped strings replaced and conditional references resolved.

    Copies only the objects and arrays where something changed; the rest of ``value`` is
    shared (most of a resource holds no reference to another entry).
    """
    kind = type(value)
    if kind is not dict and kind is not list:
        return mapping.get(value, value) if isinstance(value, str) else value
    copied: Any = None
    # An array's keys are its indexes, never "reference" or "div".
    for key, item in value.items() if kind is dict else enumerate(value):
        if type(item) is str:
            if key == "reference" and "?" in item and _CONDITIONAL.match(item):
                new = resolve(item)
            elif key == "div" and mapping:
                new = _in_text(item, mapping)
            else:
                new = mapping.get(item, item)
        elif type(item) is dict or type(item) is list:
            new = rewrite(item, mapping, resolve)
        else:
            continue
        if new is not item:
            if copied is None:
                copied = kind(value)
            copied[key] = new
    return value if copied is None else copied


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
