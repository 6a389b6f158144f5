"""Build ``fhir_twin/fhir/data/elements-r4b.json``: the element types of the R4B resources the
server serves beyond R4 (SubscriptionTopic, for the Subscriptions Backport IG), read from the
fhir.resources R4B models, in the shape of ``elements.json``'s ``types`` table
(element -> [type, binding, repeats]; bindings are left to fhir.resources' own checks).

    python scripts/build_r4b_elements.py
"""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "fhir_twin" / "fhir" / "data" / "elements-r4b.json"
RESOURCES = ("SubscriptionTopic", "SubscriptionStatus")
PYTHON_PRIMITIVES = {"bool": "boolean"}


def _fhir_type(annotation: Any) -> tuple[str, bool]:
    """The FHIR type name of a pydantic annotation, and whether the element repeats."""
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)] or [annotation]
    inner = args[0]
    repeats = typing.get_origin(inner) in (list, typing.List)  # noqa: UP006 - the models use typing.List
    if repeats:
        inner = next(arg for arg in typing.get_args(inner) if arg is not type(None))
        inner = ([arg for arg in typing.get_args(inner) if arg is not type(None)] or [inner])[0]
    metadata = getattr(inner, "__metadata__", ())
    if metadata:
        name = type(metadata[0]).__name__
        return name[0].lower() + name[1:], repeats
    name = getattr(inner, "__name__", str(inner)).removesuffix("Type")
    return PYTHON_PRIMITIVES.get(name, name), repeats


def build() -> dict[str, Any]:
    types: dict[str, dict[str, list[Any]]] = {}
    pending = [(name, name, get_fhir_model_class(name)) for name in RESOURCES]
    while pending:
        path, class_name, model = pending.pop()
        fields: dict[str, list[Any]] = {}
        for field_name, info in model.model_fields.items():
            if field_name.endswith("__ext") or field_name in ("resource_type", "fhir_comments"):
                continue
            element = info.alias or field_name
            kind, repeats = _fhir_type(info.annotation)
            if kind.startswith(class_name) and kind != class_name:
                child = f"{path}.{element}"
                pending.append((child, kind, get_fhir_model_class(kind)))
                kind = child
            fields[element] = [kind, None, repeats]
        types[path] = dict(sorted(fields.items()))
    return {"types": dict(sorted(types.items()))}


def main() -> None:
    OUT.write_text(json.dumps(build(), separators=(",", ":"), sort_keys=True) + "\n", encoding="utf-8")
    print(f"-> {OUT}")


if __name__ == "__main__":
    main()
