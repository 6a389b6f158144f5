"""Where CodeSystems and ValueSets come from: those clients stored first, then the packaged R4
definitions (``data/definitions.json``, built by ``scripts/build_terminology_data.py``).

A canonical may carry its version (``url|version``, R4 references.html#canonical); a stored
resource of that url and version wins over the packaged one, as does one stored without a
version asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from fhir_twin.terminology.code_system import CodeSystem

DATA = Path(__file__).with_name("data") / "definitions.json"

# (resourceType, url) -> the current stored resources of that type with that url.
Stored = Callable[[str, str], list[dict[str, Any]]]


@cache
def _packaged() -> dict[str, dict[str, dict[str, Any]]]:
    result: dict[str, dict[str, dict[str, Any]]] = json.loads(DATA.read_text(encoding="utf-8"))
    return result


@cache
def _packaged_code_system(url: str) -> CodeSystem:
    return CodeSystem(_packaged()["CodeSystem"][url])


def _nothing_stored(kind: str, url: str) -> list[dict[str, Any]]:
    return []


class Definitions:
    """Resolves canonicals to resources; one per request, so stored ones are read once each."""

    def __init__(self, stored: Stored = _nothing_stored) -> None:
        self._stored = stored
        self._seen: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def resource(self, kind: str, canonical: str, version: str | None = None) -> dict[str, Any] | None:
        url, _, pinned = canonical.partition("|")
        version = version or pinned or None
        key = (kind, url)
        if key not in self._seen:
            self._seen[key] = self._stored(kind, url)
        for stored in self._seen[key]:
            if version is None or stored.get("version") == version:
                return stored
        packaged = _packaged()[kind].get(url)
        if packaged is not None and (version is None or packaged.get("version") == version):
            return packaged
        return None

    def code_system(self, canonical: str, version: str | None = None) -> CodeSystem | None:
        found = self.resource("CodeSystem", canonical, version)
        if found is None:
            return None
        if found is _packaged()["CodeSystem"].get(found.get("url", "")):
            return _packaged_code_system(found["url"])
        return CodeSystem(found)

    def value_set(self, canonical: str, version: str | None = None) -> dict[str, Any] | None:
        return self.resource("ValueSet", canonical, version)
