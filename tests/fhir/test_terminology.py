"""Required bindings (R4 terminologies.html#required) and empty elements (R4 json.html)."""

from __future__ import annotations

import importlib.util
import json
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fhir_twin.fhir.definitions import DATA
from fhir_twin.fhir.elements import walk
from fhir_twin.fhir.terminology import binding_issues, empty_element_issues
from tests import factories
from tests.factories import EHR_BUNDLES, OFFICIAL_EXAMPLES

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "build_spec_data.py"

CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
SNOMED = "http://snomed.info/sct"


observation = partial(factories.observation, code_text="x")


def condition(clinical_status: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Condition", "clinicalStatus": clinical_status, "subject": {"reference": "Patient/1"}}


def bundle_entry(**entry: Any) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        pytest.param(observation(status="bogus"), "Observation.status", id="observation-status"),
        pytest.param({"resourceType": "Patient", "gender": "M"}, "Patient.gender", id="patient-gender"),
        pytest.param({"resourceType": "Patient", "name": [{"use": "nick"}]}, "Patient.name[0].use", id="name-use"),
        pytest.param(
            observation(valueQuantity={"value": Decimal("1.5"), "comparator": "~"}),
            "Observation.valueQuantity.comparator",
            id="quantity-comparator-in-choice",
        ),
        pytest.param(
            observation(
                component=[{"code": {"text": "a"}}, {"code": {"text": "b"}, "valueQuantity": {"comparator": "="}}]
            ),
            "Observation.component[1].valueQuantity.comparator",
            id="backbone",
        ),
        pytest.param(
            observation(component=[{"code": {"text": "a"}, "referenceRange": [{"low": {"comparator": "=="}}]}]),
            "Observation.component[0].referenceRange[0].low.comparator",
            id="content-reference",
        ),
        pytest.param(
            bundle_entry(request={"method": "FETCH", "url": "Patient"}),
            "Bundle.entry[0].request.method",
            id="bundle-request-method",
        ),
        pytest.param(
            bundle_entry(resource=observation(status="done"), request={"method": "POST", "url": "Observation"}),
            "Bundle.entry[0].resource.status",
            id="bundle-entry-resource",
        ),
        pytest.param(
            {
                "resourceType": "Parameters",
                "parameter": [{"name": "p", "resource": {"resourceType": "Patient", "gender": "f"}}],
            },
            "Parameters.parameter[0].resource.gender",
            id="parameters-resource",
        ),
        pytest.param(
            observation(
                contained=[{"resourceType": "Patient", "gender": "unknown"}, {"resourceType": "Patient", "gender": "?"}]
            ),
            "Observation.contained[1].gender",
            id="contained",
        ),
        pytest.param(
            {
                "resourceType": "MedicationRequest",
                "dosageInstruction": [{"timing": {"repeat": {"periodUnit": "week"}}}],
            },
            "MedicationRequest.dosageInstruction[0].timing.repeat.periodUnit",
            id="datatype-backbone",
        ),
        pytest.param(
            {"resourceType": "Patient", "text": {"status": "made-up", "div": "<div>x</div>"}},
            "Patient.text.status",
            id="narrative-status",
        ),
        pytest.param(
            condition({"coding": [{"system": CLINICAL, "code": "bogus"}]}),
            "Condition.clinicalStatus",
            id="codeable-concept-code-not-in-system",
        ),
        pytest.param(
            condition({"coding": [{"system": SNOMED, "code": "55561003"}]}),
            "Condition.clinicalStatus",
            id="codeable-concept-only-foreign-system",
        ),
        pytest.param(condition({"text": "active"}), "Condition.clinicalStatus", id="codeable-concept-text-only"),
    ],
)
def test_required_binding_refused(resource: dict[str, Any], expression: str) -> None:
    issues = binding_issues(walk(resource))
    assert [(i.code, i.severity, i.expression) for i in issues] == [("code-invalid", "error", (expression,))]


def test_binding_diagnostics_name_code_element_and_value_set() -> None:
    [issue] = binding_issues(walk(observation(status="bogus")))
    assert issue.diagnostics == (
        "'bogus' is not a valid code for Observation.status (value set http://hl7.org/fhir/ValueSet/observation-status)"
    )


@pytest.mark.parametrize(
    "status", ["registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"]
)
def test_valid_observation_status_passes(status: str) -> None:
    assert binding_issues(walk(observation(status=status))) == []


@pytest.mark.parametrize(
    "resource",
    [
        pytest.param(
            condition({"coding": [{"system": SNOMED, "code": "55561003"}, {"system": CLINICAL, "code": "active"}]}),
            id="one-coding-in-value-set-is-enough",
        ),
        pytest.param(observation(_status={"extension": [{"url": "http://x", "valueCode": "bogus"}]}), id="companion"),
        pytest.param(observation(madeUpElement={"comparator": "~"}), id="unknown-element"),
        pytest.param(observation(status=7, valueQuantity=[{"comparator": "~"}]), id="malformed-left-to-models"),
        pytest.param({"resourceType": "NotAType", "status": "bogus"}, id="unknown-resource-type"),
        pytest.param({"resourceType": "Binary", "contentType": "no/such-type"}, id="unexpandable-value-set"),
        pytest.param(observation(status=""), id="empty-is-reported-as-empty"),
    ],
)
def test_binding_passes(resource: dict[str, Any]) -> None:
    assert binding_issues(walk(resource)) == []


@pytest.mark.parametrize(
    ("resource", "expressions"),
    [
        pytest.param(observation(code={}), ["Observation.code"], id="empty-object"),
        pytest.param(observation(category=[]), ["Observation.category"], id="empty-array"),
        pytest.param(observation(status=""), ["Observation.status"], id="empty-string"),
        pytest.param(observation(issued=None), ["Observation.issued"], id="null"),
        pytest.param(
            observation(component=[{"code": {"text": "a"}}, {"code": {}}]),
            ["Observation.component[1].code"],
            id="nested",
        ),
        pytest.param(
            observation(contained=[{"resourceType": "Patient", "name": [{"family": ""}]}]),
            ["Observation.contained[0].name[0].family"],
            id="contained",
        ),
        pytest.param(
            {"resourceType": "Patient", "name": [{"given": ["Ann", None]}]},
            ["Patient.name[0].given[1]"],
            id="null-in-array-without-companion",
        ),
        pytest.param(
            {"resourceType": "Patient", "name": [{"given": ["Ann", None], "_given": [None, {"id": "g2"}]}]},
            [],
            id="nulls-aligned-with-companion",
        ),
        pytest.param(
            {"resourceType": "Patient", "name": [{"given": ["Ann", ""], "_given": [None, {}]}]},
            ["Patient.name[0].given[1]", "Patient.name[0].given[1]"],
            id="companion-entries-still-checked",
        ),
        pytest.param({"resourceType": "Patient", "_birthDate": {}}, ["Patient.birthDate"], id="companion-object"),
        pytest.param(
            observation(
                valueQuantity={"value": Decimal(0)}, component=[{"code": {"text": "a"}, "valueBoolean": False}]
            ),
            [],
            id="zero-and-false-are-values",
        ),
    ],
)
def test_empty_elements(resource: dict[str, Any], expressions: list[str]) -> None:
    issues = empty_element_issues(resource)
    assert [i.expression for i in issues] == [(e,) for e in expressions]
    assert all(i.code == "invalid" and i.severity == "error" for i in issues)


def test_empty_diagnostics_name_the_json_property_of_a_companion() -> None:
    [issue] = empty_element_issues({"resourceType": "Patient", "_birthDate": {}})
    assert (
        issue.diagnostics
        == "Patient.birthDate (JSON property '_birthDate') is an empty object, which FHIR JSON does not allow"
    )


@pytest.mark.parametrize("path", OFFICIAL_EXAMPLES, ids=lambda p: p.name)
def test_official_examples_are_clean(path: Path) -> None:
    resource = json.loads(path.read_text(encoding="utf-8"))
    assert binding_issues(walk(resource)) + empty_element_issues(resource) == []


@pytest.mark.parametrize("path", EHR_BUNDLES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_generated_bundles_are_clean(path: Path) -> None:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    for resource in [bundle] + [entry["resource"] for entry in bundle["entry"]]:
        assert binding_issues(walk(resource)) + empty_element_issues(resource) == [], resource.get("id")


def test_test_data_present() -> None:
    assert len(OFFICIAL_EXAMPLES) > 100 and len(EHR_BUNDLES) >= 7


SPEC = Path(__file__).resolve().parents[3] / "shared" / "spec"


@pytest.mark.skipif(not SPEC.is_dir(), reason=f"the R4 definitions are not at {SPEC}")
def test_packaged_table_matches_build_script() -> None:
    """The packaged table is what the script builds from the R4 definitions beside the checkout."""
    spec = importlib.util.spec_from_file_location("build_spec_data", SCRIPT)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    table, _ = script.build()
    assert json.loads(DATA.read_text(encoding="utf-8")) == table
