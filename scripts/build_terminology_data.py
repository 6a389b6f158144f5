"""Build ``fhir_twin/terminology/data/definitions.json``: the R4 CodeSystems and ValueSets the
server holds for ``$lookup``, ``$expand``, ``$validate-code`` and the token modifiers ``:in``,
``:not-in``, ``:above`` and ``:below`` (R4 terminology-service.html).

It keeps, from ``valuesets.json`` of the official R4 definitions in ``../shared/spec`` (beside the
checkout), only what those operations read: for a CodeSystem its identity, ``content``,
``hierarchyMeaning``, ``property`` and the concept tree (code, display, definition, designation,
property, nested concepts); for a ValueSet its identity and ``compose``. Narrative, contacts and
the rest are left out so the file loads fast.

Output shape: ``{"CodeSystem": {url: resource}, "ValueSet": {url: resource}}``.

Regenerate with ``python scripts/build_terminology_data.py`` (from any directory);
``tests/terminology/test_packaged_definitions.py`` fails while the committed file is stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "valuesets.json"
OUT = Path(__file__).resolve().parent.parent / "fhir_twin" / "terminology" / "data" / "definitions.json"

IDENTITY = ("resourceType", "id", "url", "version", "name", "title", "status")
KEPT = {
    "CodeSystem": (*IDENTITY, "caseSensitive", "hierarchyMeaning", "content", "property"),
    "ValueSet": (*IDENTITY, "compose"),
}
CONCEPT = ("code", "display", "definition", "designation", "property")

Json = dict[str, Any]


def concept(node: Json) -> Json:
    """One concept with its children, without extensions."""
    kept = {key: node[key] for key in CONCEPT if key in node}
    if "concept" in node:
        kept["concept"] = [concept(child) for child in node["concept"]]
    return kept


def build() -> Json:
    with SPEC.open(encoding="utf-8") as f:
        entries = json.load(f)["entry"]
    out: dict[str, Json] = {"CodeSystem": {}, "ValueSet": {}}
    for entry in entries:
        resource = entry["resource"]
        kind = resource["resourceType"]
        kept = {key: resource[key] for key in KEPT[kind] if key in resource}
        if kind == "CodeSystem" and "concept" in resource:
            kept["concept"] = [concept(node) for node in resource["concept"]]
        out[kind][resource["url"]] = kept
    return out


def main() -> None:
    definitions = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(definitions, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    OUT.write_text(text + "\n", encoding="utf-8")
    counts = ", ".join(f"{len(by_url)} {kind}s" for kind, by_url in definitions.items())
    print(f"wrote {OUT} ({len(text.encode()):,} bytes): {counts}")


if __name__ == "__main__":
    main()
