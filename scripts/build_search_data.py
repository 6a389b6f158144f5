"""Build ``fhir_twin/search/data/search-parameters.json`` from the official R4 definitions.

Search is driven by the SearchParameter resources of the specification, not by code (R4
searchparameter.html). This keeps, for every parameter whose base is a resource type the server
stores, what search needs — code, type, FHIRPath expression, targets, modifiers, comparators and
composite components — plus the Patient compartment (R4 compartmentdefinition-patient.html).

Run from the repository root with the definitions beside the checkout:

    python scripts/build_search_data.py [../shared/spec]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT.parent / "shared" / "spec"
OUT = ROOT / "fhir_twin" / "search" / "data" / "search-parameters.json"
KEPT = ("code", "type", "expression", "target", "modifier", "comparator", "multipleOr", "multipleAnd")


def build(spec: Path = SPEC) -> dict[str, Any]:
    bundle = json.loads((spec / "search-parameters.json").read_text(encoding="utf-8"))
    parameters = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        item = {key: resource[key] for key in KEPT if key in resource}
        item["url"] = resource["url"]
        item["base"] = resource["base"]
        if "component" in resource:
            item["component"] = [
                {"definition": part["definition"], "expression": part["expression"]} for part in resource["component"]
            ]
        parameters.append(item)
    parameters.sort(key=lambda item: item["url"])
    compartment = json.loads((spec / "compartmentdefinition-patient.json").read_text(encoding="utf-8"))
    patient_compartment = {item["code"]: item.get("param", []) for item in compartment["resource"] if item.get("param")}
    return {"parameters": parameters, "patientCompartment": dict(sorted(patient_compartment.items()))}


def main() -> None:
    spec = Path(sys.argv[1]) if len(sys.argv) > 1 else SPEC
    data = build(spec)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(data['parameters'])} search parameters, {len(data['patientCompartment'])} compartment types -> {OUT}")


if __name__ == "__main__":
    main()
