"""Build ``fhir_twin/fhir/data/elements.json``: the element table and the required value sets.

fhir.resources checks structure but not required code bindings (R4 terminologies.html#required),
so the server needs, per type, each element's JSON name, type, repetition and bound value set.
This script distils that from the official R4 definitions in ``../shared/spec`` (beside the checkout) into one
compact JSON file the runtime (``fhir_twin.fhir.terminology``) loads fast.

Output shape::

    {"types": {TypeName: {jsonName: [childType, bindingKey | null, isArray]}},
     "valuesets": {bindingKey: {system: [sorted codes]}},
     "summary": {ResourceType: [jsonName]}, "mandatory": {ResourceType: [jsonName]},
     "required": {TypeName: {elementName: [jsonName]}},   # min >= 1, any one name satisfies
     "choices": {TypeName: {elementName: [jsonName]}}}    # value[x]: at most one name present

* TypeName is every concrete resource, every complex datatype, and every backbone element,
  named by its path (``Observation.component``, ``Timing.repeat``).
* Choice elements are expanded to their JSON names (``value[x]`` -> ``valueQuantity``, ...,
  R4 formats.html#choice); a ``contentReference`` points at the referenced backbone path.
* childType is a type name from the table, a primitive type name (``code``, ``string``, the
  FHIRPath ``System.*`` types lower-cased), or ``Resource`` (any resource, by its resourceType).
* bindingKey is the value set URL without its ``|4.0.1`` version, set only when the binding is
  ``required``, the element type is ``code``, ``Coding`` or ``CodeableConcept``, and the value
  set can be expanded from ``valuesets.json``.

A value set cannot be expanded here, and its bindings stay unchecked, when it is missing from
``valuesets.json``, when it (or a value set it includes) uses a ``filter``, or when it includes a
whole code system that is absent or not ``content = complete``: external terminologies such as
BCP-13 mime types, ISO 4217 currencies and UCUM. The summary printed at the end counts them.

Regenerate with ``python scripts/build_spec_data.py`` (from any directory) whenever this script
changes; ``tests/fhir/test_terminology.py`` fails while the committed file is stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec"
OUT = Path(__file__).resolve().parent.parent / "fhir_twin" / "fhir" / "data" / "elements.json"
FHIRPATH_SYSTEM = "http://hl7.org/fhirpath/System."
BINDABLE = {"code", "Coding", "CodeableConcept"}

Json = dict[str, Any]
Pair = tuple[str, str]


class Unexpandable(Exception):
    """A value set whose codes cannot be enumerated from the files at hand."""


def bundle_resources(name: str) -> Iterator[Json]:
    """The resources of one spec Bundle."""
    with (SPEC / name).open(encoding="utf-8") as f:
        for entry in json.load(f)["entry"]:
            yield entry["resource"]


def type_name(code: str) -> str:
    """Element type code as the table names it: ``System.String`` becomes ``string``."""
    if code.startswith(FHIRPATH_SYSTEM):
        code = code[len(FHIRPATH_SYSTEM) :]
        return code[0].lower() + code[1:]
    return code


class Terminology:
    """Expands value sets from the R4 ValueSet and CodeSystem resources (R4 valueset.html#compose)."""

    def __init__(self, resources: Iterable[Json]) -> None:
        self.valuesets: dict[str, Json] = {}
        self.codesystems: dict[str, Json] = {}
        for res in resources:
            if res["resourceType"] == "ValueSet":
                self.valuesets[res["url"]] = res
            elif res["resourceType"] == "CodeSystem":
                self.codesystems[res["url"]] = res
        self._cache: dict[str, frozenset[Pair] | None] = {}

    def expand(self, url: str) -> frozenset[Pair] | None:
        """(system, code) pairs of a value set, or None if it cannot be expanded here."""
        if url not in self._cache:
            try:
                self._cache[url] = self._expand(url)
            except Unexpandable:
                self._cache[url] = None
        return self._cache[url]

    def _expand(self, url: str) -> frozenset[Pair]:
        vs = self.valuesets.get(url)
        if vs is None or "compose" not in vs:
            raise Unexpandable(url)
        compose = vs["compose"]
        included = set().union(*(self._component(c) for c in compose.get("include", [])))
        excluded = set().union(*(self._component(c) for c in compose.get("exclude", [])))
        return frozenset(included - excluded)

    def _component(self, component: Json) -> set[Pair]:
        """One include/exclude: its system part intersected with each listed value set."""
        if "filter" in component:
            raise Unexpandable(component.get("system", ""))
        parts: list[set[Pair]] = []
        system = component.get("system")
        if system and "concept" in component:
            parts.append({(system, c["code"]) for c in component["concept"]})
        elif system:
            parts.append(self._all_codes(system))
        for ref in component.get("valueSet", []):
            expansion = self.expand(ref.split("|")[0])
            if expansion is None:
                raise Unexpandable(ref)
            parts.append(set(expansion))
        return set.intersection(*parts) if parts else set()

    def _all_codes(self, system: str) -> set[Pair]:
        """Every code of a complete code system, nested ``concept`` hierarchies included."""
        cs = self.codesystems.get(system)
        if cs is None or cs.get("content") != "complete":
            raise Unexpandable(system)
        pairs: set[Pair] = set()
        stack = list(cs.get("concept", []))
        while stack:
            concept = stack.pop()
            pairs.add((system, concept["code"]))
            stack.extend(concept.get("concept", []))
        return pairs


class TableBuilder:
    """Collects the element table from StructureDefinition snapshots."""

    def __init__(self, terminology: Terminology) -> None:
        self.terminology = terminology
        self.types: dict[str, dict[str, list[Any]]] = {}
        self.bound: set[str] = set()
        self.bound_elements = 0
        self.skipped: dict[str, list[str]] = {}
        self.summary: dict[str, list[str]] = {}
        self.mandatory: dict[str, list[str]] = {}
        self.required: dict[str, dict[str, list[str]]] = {}
        self.choices: dict[str, dict[str, list[str]]] = {}

    def add(self, sd: Json) -> None:
        """Add one resource or datatype definition with all its backbone elements."""
        elements = sd["snapshot"]["element"]
        parents = {el["path"].rsplit(".", 1)[0] for el in elements if "." in el["path"]}
        self.types.setdefault(sd["type"], {})
        for el in elements[1:]:
            owner, name = el["path"].rsplit(".", 1)
            if el["path"] in parents:
                self.types.setdefault(el["path"], {})
                child_types = [el["path"]]
            elif "contentReference" in el:
                child_types = [el["contentReference"].split("#", 1)[1]]
            else:
                child_types = [type_name(t["code"]) for t in el.get("type", [])]
            is_array = el.get("max") != "1"
            json_names = [name[:-3] + c[0].upper() + c[1:] for c in child_types] if name.endswith("[x]") else [name]
            if el.get("min", 0) > 0:
                self.required.setdefault(owner, {})[name] = json_names
            if name.endswith("[x]"):
                self.choices.setdefault(owner, {})[name] = json_names
            for child in child_types:
                json_name = name
                if name.endswith("[x]"):
                    json_name = name[:-3] + child[0].upper() + child[1:]
                binding = self._binding(el, child)
                self.types.setdefault(owner, {})[json_name] = [child, binding, is_array]
                # R4 search.html#summary: _summary=true keeps the summary elements (and the
                # mandatory ones, so the answer stays valid).
                if sd["kind"] == "resource" and owner == sd["type"]:
                    if el.get("isSummary") or el.get("min", 0) > 0:
                        self.summary.setdefault(owner, []).append(json_name)
                    if el.get("min", 0) > 0:
                        self.mandatory.setdefault(owner, []).append(json_name)

    def _binding(self, el: Json, child: str) -> str | None:
        """Value set key if this element's required binding is checkable, else None."""
        binding = el.get("binding", {})
        if binding.get("strength") != "required" or child not in BINDABLE:
            return None
        url = binding["valueSet"].split("|")[0]
        if self.terminology.expand(url) is None:
            self.skipped.setdefault(url, []).append(el["path"])
            return None
        self.bound.add(url)
        self.bound_elements += 1
        return url

    def valuesets(self) -> dict[str, dict[str, list[str]]]:
        """Each bound value set as ``{system: [sorted codes]}``."""
        out: dict[str, dict[str, list[str]]] = {}
        for url in sorted(self.bound):
            by_system: dict[str, list[str]] = {}
            for system, code in sorted(self.terminology.expand(url) or ()):
                by_system.setdefault(system, []).append(code)
            out[url] = by_system
        return out


def wanted(sd: Json) -> bool:
    """Concrete resources and complex datatypes; constraint profiles add no elements."""
    return (
        sd["resourceType"] == "StructureDefinition"
        and sd["kind"] in ("resource", "complex-type")
        and sd.get("derivation") == "specialization"
        and not sd.get("abstract")
    )


def build() -> tuple[Json, TableBuilder]:
    """The table to write, and the builder that holds the counts for the summary."""
    terminology = Terminology(bundle_resources("valuesets.json"))
    builder = TableBuilder(terminology)
    for name in ("profiles-types.json", "profiles-resources.json"):
        for sd in bundle_resources(name):
            if wanted(sd):
                builder.add(sd)
    table = {
        "types": {t: dict(sorted(els.items())) for t, els in sorted(builder.types.items())},
        "valuesets": builder.valuesets(),
        "summary": {t: sorted(set(names)) for t, names in sorted(builder.summary.items())},
        "mandatory": {t: sorted(set(names)) for t, names in sorted(builder.mandatory.items())},
        "required": {t: dict(sorted(els.items())) for t, els in sorted(builder.required.items())},
        "choices": {t: dict(sorted(els.items())) for t, els in sorted(builder.choices.items())},
    }
    return table, builder


def main() -> None:
    table, builder = build()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(table, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    OUT.write_text(text + "\n", encoding="utf-8")
    elements = sum(len(els) for els in builder.types.values())
    skipped_elements = sum(len(paths) for paths in builder.skipped.values())
    print(f"wrote {OUT} ({len(text.encode()):,} bytes)")
    print(f"types: {len(builder.types)} ({elements} JSON element names)")
    print(f"required bindings checked: {builder.bound_elements} elements, {len(builder.bound)} value sets expanded")
    print(f"required bindings skipped as unexpandable: {skipped_elements} elements, {len(builder.skipped)} value sets")
    for url, paths in sorted(builder.skipped.items()):
        print(f"  {url}: {', '.join(sorted(paths))}")


if __name__ == "__main__":
    main()
