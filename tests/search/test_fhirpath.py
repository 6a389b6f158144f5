"""The compiled fast paths select what fhirpathpy selects, for every R4 expression they compile.

The oracle is fhirpathpy on ``normalize(expression)``: the dialect both engines read (``as``
filters a collection, System type names match FHIR ones, ``Resource.`` heads name the type).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from decimal import Decimal
from functools import cache
from typing import Any

import fhirpathpy
import pytest
import simplejson
from fhirpathpy.engine.nodes import ResourceNode

from fhir_twin.search.fhirpath import (
    ENGINE_OPTIONS,
    MODEL,
    Group,
    compile_expression,
    engine_selector,
    fast_selector,
    normalize,
    reference_target,
    split_union,
)
from fhir_twin.search.parameters import _data, parameters_for
from tests.factories import EHR_BUNDLES, OFFICIAL_EXAMPLES

SAME_TYPE = {"SimpleQuantity": "Quantity", "MoneyQuantity": "Quantity"}
CONTEXT_QUANTITY = {"code": {"code": "age"}, "valueQuantity": {"value": Decimal("18"), "unit": "a"}}

# Forms the fixtures lack: resolve() on every kind of reference, choices, canonical targets, %resource.
HAND_WRITTEN: list[dict[str, Any]] = [
    {
        "resourceType": "Appointment",
        "status": "booked",
        "participant": [
            {"actor": {"reference": "Patient/1"}, "status": "accepted"},
            {"actor": {"reference": "https://other.org/fhir/Practitioner/2/_history/3"}, "status": "accepted"},
            {"actor": {"reference": "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"}, "status": "accepted"},
            {"actor": {"reference": "#loc"}, "status": "accepted"},
            {"actor": {"reference": "Location/3"}, "status": "accepted"},
            {"actor": {"identifier": {"system": "urn:x", "value": "9"}}, "status": "accepted"},
        ],
    },
    {
        "resourceType": "Patient",
        "telecom": [{"system": "phone", "value": "555"}, {"system": "email", "value": "a@b.c"}, {"value": "?"}],
        "deceasedDateTime": "2020-01-01",
        "link": [{"other": {"reference": "RelatedPerson/r"}, "type": "seealso"}],
    },
    {
        "resourceType": "ConceptMap",
        "status": "draft",
        "sourceCanonical": "http://example.org/vs|1.0",
        "targetUri": "urn:oid:1.2.3",
        "useContext": [
            {"code": {"code": "focus"}, "valueCodeableConcept": {"coding": [{"code": "x"}], "text": "X"}},
            CONTEXT_QUANTITY,
            {"code": {"code": "age"}, "valueRange": {"low": {"value": 1}, "high": {"value": 2}}},
        ],
    },
    {
        "resourceType": "MolecularSequence",
        "coordinateSystem": 0,
        "referenceSeq": {"chromosome": {"coding": [{"code": "1"}]}, "windowStart": 10, "windowEnd": 20},
        "variant": [{"start": 12, "end": 13}, {"start": 15, "end": 16}],
    },
    {
        "resourceType": "Group",
        "type": "person",
        "actual": True,
        "characteristic": [
            {"code": {"text": "smoker"}, "valueBoolean": True, "exclude": False},
            {"code": {"text": "sex"}, "valueCodeableConcept": {"coding": [{"code": "F"}]}, "exclude": True},
        ],
    },
    {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": "walk"},
        "subject": {"reference": "Patient/1"},
        "startDate": "2024-01-02",
        "target": [{"dueDate": "2024-06"}, {"dueDuration": {"value": 3, "unit": "d"}}],
    },
    {
        "resourceType": "PlanDefinition",
        "status": "draft",
        "library": ["http://example.org/Library/a"],
        "relatedArtifact": [
            {"type": "composed-of", "resource": "http://example.org/PlanDefinition/p"},
            {"type": "depends-on", "resource": "http://example.org/Library/b|2"},
        ],
    },
    {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "onsetAge": {"value": 40, "system": "http://unitsofmeasure.org", "code": "a"},
        "abatementString": "in remission",
    },
    {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
        "valuePeriod": {"start": "2024-01-01"},
        "component": [
            {
                "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
                "valueCodeableConcept": {"text": "a"},
            },
            {"code": {"text": "b"}, "valueDateTime": "2024-02-02"},
            {"code": {"text": "c"}, "valueString": "c"},
        ],
    },
    {
        "resourceType": "Bundle",
        "type": "document",
        "identifier": {"system": "urn:x", "value": "1"},
        "entry": [{"resource": {"resourceType": "Composition", "id": "c1", "status": "final"}}],
    },
]


def _resources() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for path in OFFICIAL_EXAMPLES:
        resource = simplejson.loads(path.read_text(encoding="utf-8"), use_decimal=True)
        entries = [entry["resource"] for entry in resource.get("entry", []) if "resource" in entry]
        yield path.stem, [resource, *entries]
    for path in EHR_BUNDLES:
        bundle = simplejson.loads(path.read_text(encoding="utf-8"), use_decimal=True)
        yield path.stem, [entry["resource"] for entry in bundle["entry"]]
    yield "hand-written", HAND_WRITTEN


CORPUS = dict(_resources())


def _types() -> set[str]:
    return {base for item in _data()["parameters"] for base in item["base"]} - {"Resource", "DomainResource"}


@cache
def _oracle(expression: str, base: str) -> Any:
    return fhirpathpy.compile(normalize(expression, base), MODEL, ENGINE_OPTIONS)


def _texts(values: list[Any]) -> list[str]:
    return sorted(simplejson.dumps(value, sort_keys=True, use_decimal=True) for value in values)


def _typed(groups: list[Group]) -> list[tuple[str | None, str]]:
    return sorted(
        (SAME_TYPE.get(type_name or "", type_name), simplejson.dumps(value, sort_keys=True, use_decimal=True))
        for type_name, values in groups
        for value in values
    )


def _compare(expression: str, base: str, focus: Any, resource: dict[str, Any]) -> list[Group]:
    """Assert fast == fhirpathpy (values) and fast == engine_selector (types); the fast groups."""
    fast = fast_selector(expression, base)
    assert fast is not None
    groups = fast(focus, resource)
    root = focus if focus is resource else ResourceNode.create_node(focus, base)
    expected = _oracle(expression, base)(root, {"resource": resource})
    assert _texts([value for _, values in groups for value in values]) == _texts(expected), expression
    assert _typed(groups) == _typed(engine_selector(expression, base)(focus, resource)), expression
    return groups


def test_fast_path_covers_every_registry_expression() -> None:
    compiled, fallback = set(), set()
    for resource_type in sorted(_types()):
        for parameter in parameters_for(resource_type).values():
            if parameter.expression:
                fast = fast_selector(parameter.expression, resource_type)
                (compiled if fast else fallback).add((resource_type, parameter.expression))
    assert fallback == set()
    assert len(compiled) > 2200


@pytest.mark.parametrize("source", list(CORPUS))
def test_fast_path_selects_what_fhirpathpy_selects(source: str) -> None:
    for resource in CORPUS[source]:
        resource_type = resource["resourceType"]
        for parameter in parameters_for(resource_type).values():
            if not parameter.expression or fast_selector(parameter.expression, resource_type) is None:
                continue
            groups = _compare(parameter.expression, resource_type, resource, resource)
            for base_type, elements in groups if parameter.components else []:
                for element, component in ((e, c) for e in elements for c in parameter.components):
                    assert base_type is not None
                    _compare(component.expression, base_type, element, resource)


def _select(expression: str, resource: dict[str, Any], base: str | None = None) -> list[Any]:
    groups = compile_expression(expression, base or resource["resourceType"])(resource, resource)
    return [(type_name, value) for type_name, values in groups for value in values]


OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"code": "a"}, {"code": "b"}]},
    "effectivePeriod": {"start": "2024"},
    "valueQuantity": {"value": Decimal("1.50"), "code": "mg"},
    "component": [
        {"code": {"text": "x"}, "valueQuantity": {"value": 1}},
        {"code": {"text": "y"}, "valueString": "s"},
        {"code": {"text": "x"}, "valueQuantity": {"value": 1}},
    ],
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Observation.status", [("code", "final")]),
        ("Observation.code.coding.code", [("code", "a"), ("code", "b")]),
        ("Observation.code.coding[1].code", [("code", "b")]),
        ("Observation.effective", [("Period", {"start": "2024"})]),
        ("Observation.value", [("Quantity", {"value": Decimal("1.50"), "code": "mg"})]),
        ("(Observation.value as string)", []),
        ("Observation.component.value.as(string)", [("string", "s")]),
        ("Observation.component.value.ofType(Quantity)", [("Quantity", {"value": 1})] * 2),
        ("(Observation.component.value as Quantity)", [("Quantity", {"value": 1})] * 2),
        ("Observation.component.code | Observation.component.code", [("CodeableConcept", {"text": "x"}),
                                                                       ("CodeableConcept", {"text": "y"})]),
        ("(Observation.value as CodeableConcept).text", []),
        ("Resource.meta.tag", []),
        ("%resource.status", [("code", "final")]),
        ("Observation.subject.where(resolve() is Patient)", []),
    ],
)  # fmt: skip
def test_fast_forms(expression: str, expected: list[Any]) -> None:
    assert fast_selector(expression, "Observation") is not None
    assert _select(expression, OBSERVATION) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("Observation.component.where(code.text = 'y').value", [("string", "s")]),
        ("Observation.component.count()", [("integer", 3)]),
        ("Observation.code.coding.first().code", [("code", "a")]),
    ],
)
def test_other_forms_go_to_fhirpathpy(expression: str, expected: list[Any]) -> None:
    assert fast_selector(expression, "Observation") is None
    assert _select(expression, OBSERVATION) == expected


def test_bare_type_is_the_resource_itself() -> None:
    assert _select("Observation | Observation.component", OBSERVATION)[0] == ("Observation", OBSERVATION)


@pytest.mark.parametrize(
    ("reference", "kept"),
    [
        ("Patient/1", True),
        ("Patient/1/_history/2", True),
        ("https://example.org/fhir/Patient/1", True),
        ("Practitioner/1", False),
        ("urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e", False),
        ("#p1", False),
    ],
)
def test_resolve_keeps_references_that_name_the_type(reference: str, kept: bool) -> None:
    condition = {"resourceType": "Condition", "subject": {"reference": reference}}
    expression = "Condition.subject.where(resolve() is Patient)"
    expected = [("Reference", {"reference": reference})] if kept else []
    assert _select(expression, condition) == expected
    assert [
        value for _, values in engine_selector(expression, "Condition")(condition, condition) for value in values
    ] == [value for _, value in expected]


@pytest.mark.parametrize(
    ("reference", "target"),
    [
        ("Patient/1", ("Patient", "1")),
        ("Patient/a.b-c/_history/7", ("Patient", "a.b-c")),
        ("http://x.org/fhir/Observation/9", ("Observation", "9")),
        ("Patient", None),
        ("urn:uuid:1", None),
        ("#c", None),
    ],
)
def test_reference_target(reference: str, target: tuple[str, str] | None) -> None:
    assert reference_target(reference) == target


@pytest.mark.parametrize(
    ("expression", "base", "normalized"),
    [
        ("(Observation.value as Quantity)", "Observation", "(Observation.value.ofType(Quantity))"),
        ("value.as(DateTime) | value.as(Period)", "Observation", "value.ofType(dateTime) | value.ofType(Period)"),
        ("Resource.meta.tag", "Patient", "Patient.meta.tag"),
        ("(DomainResource.text)", "Patient", "(Patient.text)"),
        ("code", "Observation.component", "code"),
        ("Patient.name.where(text = 'Resource.x as y')", "Patient", "Patient.name.where(text = 'Resource.x as y')"),
    ],
)
def test_normalize(expression: str, base: str, normalized: str) -> None:
    assert normalize(expression, base) == normalized


def test_fhirpathpy_refuses_as_on_a_collection_which_normalize_avoids() -> None:
    expression = "(Observation.component.value as Quantity)"
    with pytest.raises(ValueError, match="singleton"):
        fhirpathpy.compile(expression, MODEL)(OBSERVATION)
    assert len(_oracle(expression, "Observation")(OBSERVATION)) == 2


def test_engine_types_computed_values_by_shape_and_leaves_the_resource_alone() -> None:
    patient = {"resourceType": "Patient", "deceasedBoolean": False, "name": [{"family": "A"}]}
    before = copy.deepcopy(patient)
    select = engine_selector("Patient.deceased.exists() and Patient.deceased != false", "Patient")
    assert select(patient, patient) == [("boolean", [False])]
    assert engine_selector("Patient.name.family | Patient.name", "Patient")(patient, patient) == [
        ("string", ["A"]),
        ("HumanName", [{"family": "A"}]),
    ]
    assert patient == before


def test_split_union() -> None:
    assert split_union("a.where(b = 'x|y') | (c | d) | e[0]") == ["a.where(b = 'x|y')", "(c | d)", "e[0]"]
