"""The language a display is asked in: ``displayLanguage`` of ``$lookup`` and ``$expand``
(R4 codesystem-operation-lookup.html, valueset-operation-expand.html), else the request's
``Accept-Language`` header (RFC 9110 §12.5.4), the order the FHIR terminology ecosystem IG
(languages.html) gives them.

The display in a language is a designation in that language (R4 codesystem.html#designations);
where there is none, it is the code system's own display: never a translation guessed at.
Tags match as RFC 4647 ranges do, either way by prefix: ``fr`` finds ``fr-CA`` and ``fr-CA`` finds
``fr``; the header's ranges are tried by weight, ``*`` taking the code system's display.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def requested(display_language: str | None, accept_language: str | None) -> list[str]:
    """The language ranges asked for, most wanted first (``q=0`` means not wanted)."""
    if display_language:
        return [display_language.strip().lower()]
    weighted: list[tuple[float, int, str]] = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, *params = (piece.strip() for piece in item.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if tag and weight > 0:
            weighted.append((-weight, position, tag.lower()))
    return [tag for _, _, tag in sorted(weighted)]


def matches(wanted: str, tag: str | None) -> bool:
    if not tag:
        return False
    tag = tag.lower()
    return tag == wanted or tag.startswith(wanted + "-") or wanted.startswith(tag + "-")


def display(
    designations: Iterable[dict[str, Any]], default: str | None, source_language: str | None, languages: list[str]
) -> str | None:
    """The display in the first of ``languages`` there is one in, else ``default``."""
    designations = list(designations)
    for wanted in languages:
        if wanted == "*" or matches(wanted, source_language):
            return default
        found = next((d["value"] for d in designations if d.get("value") and matches(wanted, d.get("language"))), None)
        if found is not None:
            return str(found)
    return default


def in_language(designations: Iterable[dict[str, Any]], languages: list[str]) -> list[dict[str, Any]]:
    """The designations in one of ``languages`` (every one when none is asked for)."""
    if not languages:
        return list(designations)
    return [d for d in designations if any(matches(wanted, d.get("language")) for wanted in languages)]
