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

from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header


def requested(display_language: str | None, accept_language: str | None) -> list[str]:
    """The language ranges asked for, most wanted first (``q=0`` means not wanted)."""
    if display_language:
        return [display_language.strip().lower()]
    # Werkzeug's parser orders the ranges by weight, stably, and drops malformed weights.
    ranges = parse_accept_header(accept_language or "", LanguageAccept)
    return [tag.lower() for tag, weight in ranges if weight > 0]


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
