"""The one walk the element checks share: what it visits, in which order, with which shape."""

from __future__ import annotations

from fhir_twin.fhir.cardinality import cardinality_issues
from fhir_twin.fhir.datatypes import json_type_issues
from fhir_twin.fhir.elements import walk
from fhir_twin.fhir.terminology import binding_issues


def test_walk_visits_known_elements_in_document_order() -> None:
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"code": "1"}]},
        "unknownElement": {"code": "x"},
        "contained": [{"resourceType": "Patient", "active": True}],
    }
    assert [path for path, *_ in walk(resource)] == [
        "Observation",
        "Observation.status",
        "Observation.code",
        "Observation.code.coding[0]",
        "Observation.code.coding[0].code",
        "Observation.contained[0]",
        "Observation.contained[0].active",
    ]


def test_walk_of_a_body_without_resource_type_is_empty() -> None:
    assert walk({"status": "final"}) == []


def test_checks_report_in_document_order_across_nesting() -> None:
    resource = {
        "resourceType": "Observation",
        "code": {"coding": [{"code": 1}]},
        "status": 2,
        "component": [{"valueBoolean": "yes"}],
    }
    assert [i.expression for i in json_type_issues(walk(resource))] == [
        ("Observation.code.coding[0].code",),
        ("Observation.status",),
        ("Observation.component[0].valueBoolean",),
    ]
    assert [i.expression for i in cardinality_issues(walk(resource))] == [("Observation.component[0].code",)]


def test_binding_left_to_the_structure_check_when_the_json_shape_is_wrong() -> None:
    """``status`` does not repeat: as an array it is fhir.resources' structure error, not a code error."""
    assert binding_issues(walk({"resourceType": "Observation", "status": ["bogus"]})) == []
    [issue] = binding_issues(walk({"resourceType": "Observation", "status": "bogus"}))
    assert issue.expression == ("Observation.status",)


def test_nothing_within_a_nested_resource_of_unknown_type_is_judged_for_cardinality() -> None:
    resource = {"resourceType": "Patient", "contained": [{"resourceType": "Observation.component", "id": "x"}]}
    issues = cardinality_issues(walk(resource))
    assert [(i.code, i.expression) for i in issues] == [("structure", ("Patient.contained[0].resourceType",))]
