"""Bundles the server answers with: ``history`` and ``searchset`` (R4 bundle.html, http.html#history).

Stored bodies go in as ``RawJSON`` so a page of resources is built without parsing them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_twin.fhir.json import RawJSON


@dataclass(frozen=True)
class Entry:
    """One Bundle entry; ``body`` is the stored JSON text, None for a deleted version."""

    full_url: str
    body: str | None
    request: dict[str, str] | None = None
    response: dict[str, str] | None = None
    search_mode: str | None = None


def bundle(
    bundle_type: str, entries: list[Entry], links: dict[str, str], total: int | None, bundle_id: str, timestamp: str
) -> dict[str, Any]:
    """A Bundle of ``bundle_type`` with the given paging links (``self``, ``next``, ...)."""
    out: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id,
        "meta": {"lastUpdated": timestamp},
        "type": bundle_type,
    }
    if total is not None:
        out["total"] = total
    out["link"] = [{"relation": relation, "url": url} for relation, url in links.items()]
    out["entry"] = [_entry(entry) for entry in entries]
    if not out["entry"]:
        del out["entry"]
    return out


def _entry(entry: Entry) -> dict[str, Any]:
    out: dict[str, Any] = {"fullUrl": entry.full_url}
    if entry.body is not None:
        out["resource"] = RawJSON(entry.body)
    if entry.search_mode:
        out["search"] = {"mode": entry.search_mode}
    if entry.request:
        out["request"] = entry.request
    if entry.response:
        out["response"] = entry.response
    return out
