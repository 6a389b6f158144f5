"""Index rows per parameter type (R4 search.html), from small resources, and from every fixture."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import simplejson

from fhir_twin.search.extract import extract
from fhir_twin.search.index import (
    DateRow,
    IndexRow,
    NumberRow,
    QuantityRow,
    ReferenceRow,
    StringRow,
    TokenRow,
    UriRow,
)
from tests import factories
from tests.factories import EHR_BUNDLES, OFFICIAL_EXAMPLES

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


patient = partial(factories.patient, "p")
observation = partial(factories.observation, res_id="o", code_text="x")


def rows(resource: dict[str, Any], param: str) -> list[IndexRow]:
    return [row for row in extract(resource) if row.param == param]


CASES = [
    # string (search.html#string): each part of a HumanName or Address, folded and as written
    pytest.param(
        patient(name=[{"family": "Müller", "given": ["Jürgen", "K"], "prefix": ["Dr."], "text": "Dr. J. Müller"}]),
        "name",
        [
            StringRow("name", "muller", "Müller"),
            StringRow("name", "jurgen", "Jürgen"),
            StringRow("name", "k", "K"),
            StringRow("name", "dr.", "Dr."),
            StringRow("name", "dr. j. muller", "Dr. J. Müller"),
        ],
        id="string-human-name",
    ),
    pytest.param(
        patient(name=[{"family": "Müller"}]), "family", [StringRow("family", "muller", "Müller")], id="string-family"
    ),
    pytest.param(
        patient(address=[{"line": ["1 Rue Émile"], "city": "Montréal", "postalCode": "H2X"}]),
        "address",
        [
            StringRow("address", "1 rue emile", "1 Rue Émile"),
            StringRow("address", "montreal", "Montréal"),
            StringRow("address", "h2x", "H2X"),
        ],
        id="string-address",
    ),
    pytest.param(
        observation(valueString="Trace"), "value-string", [StringRow("value-string", "trace", "Trace")], id="string"
    ),
    # token (search.html#token)
    pytest.param(patient(gender="female"), "gender", [TokenRow("gender", None, "female")], id="token-code"),
    pytest.param(patient(active=False), "active", [TokenRow("active", None, "false")], id="token-boolean"),
    pytest.param(
        patient(
            identifier=[
                {
                    "system": "urn:oid:1.2.36.146.595.217.0.1",
                    "value": "12345",
                    "type": {"coding": [{"system": V2_0203, "code": "MR"}], "text": "Medical Record Number"},
                },
                {"value": "no-system"},
            ]
        ),
        "identifier",
        [
            TokenRow("identifier", "urn:oid:1.2.36.146.595.217.0.1", "12345", "medical record number", V2_0203, "MR"),
            TokenRow("identifier", None, "no-system"),
        ],
        id="token-identifier-with-type",
    ),
    pytest.param(
        patient(telecom=[{"system": "phone", "value": "555-1234"}, {"system": "email", "value": "a@b.org"}]),
        "phone",
        [TokenRow("phone", None, "555-1234")],
        id="token-contact-point-phone",
    ),
    pytest.param(
        patient(telecom=[{"system": "phone", "value": "555-1234"}, {"system": "email", "value": "a@b.org"}]),
        "telecom",
        [TokenRow("telecom", None, "555-1234"), TokenRow("telecom", None, "a@b.org")],
        id="token-contact-point",
    ),
    pytest.param(
        observation(
            code={
                "coding": [
                    {"system": LOINC, "code": "2339-0", "display": "Glucose Bld-mCnc"},
                    {"system": "http://snomed.info/sct", "code": "33747003"},
                ],
                "text": "Glucose",
            }
        ),
        "code",
        [
            TokenRow("code", LOINC, "2339-0", "glucose bld-mcnc"),
            TokenRow("code", "http://snomed.info/sct", "33747003", "glucose"),
            TokenRow("code", None, None, "glucose"),
        ],
        id="token-codeable-concept-with-text",
    ),
    pytest.param(
        observation(meta={"tag": [{"system": "urn:t", "code": "a", "display": "Tag A"}]}),
        "_tag",
        [TokenRow("_tag", "urn:t", "a", "tag a")],
        id="token-meta-tag",
    ),
    pytest.param(patient(), "deceased", [TokenRow("deceased", None, "false")], id="token-deceased-absent"),
    pytest.param(
        patient(deceasedDateTime="2020-01-01"), "deceased", [TokenRow("deceased", None, "true")], id="token-deceased"
    ),
    # reference (search.html#reference)
    pytest.param(
        observation(subject={"reference": "Patient/1"}),
        "subject",
        [ReferenceRow("subject", "Patient", "1")],
        id="reference-relative",
    ),
    pytest.param(
        observation(subject={"reference": "Patient/1/_history/4"}),
        "patient",
        [ReferenceRow("patient", "Patient", "1")],
        id="reference-versioned",
    ),
    pytest.param(
        observation(subject={"reference": "https://other.org/fhir/Patient/9"}),
        "patient",
        [ReferenceRow("patient", None, None, "https://other.org/fhir/Patient/9")],
        id="reference-absolute",
    ),
    pytest.param(
        observation(subject={"reference": "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"}),
        "subject",
        [ReferenceRow("subject", None, None, "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e")],
        id="reference-urn-uuid",
    ),
    pytest.param(
        observation(subject={"reference": "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"}),
        "patient",
        [],
        id="reference-urn-uuid-names-no-type",
    ),
    pytest.param(
        observation(subject={"reference": "Group/1"}), "patient", [], id="reference-of-another-type-is-not-patient"
    ),
    pytest.param(
        observation(contained=[{"resourceType": "Patient", "id": "c"}], subject={"reference": "#c"}),
        "subject",
        [],
        id="reference-contained",
    ),
    pytest.param(
        observation(subject={"identifier": {"system": "urn:mrn", "value": "7"}}),
        "subject",
        [ReferenceRow("subject", None, None, identifier_system="urn:mrn", identifier_value="7")],
        id="reference-identifier",
    ),
    pytest.param(
        {
            "resourceType": "PlanDefinition",
            "status": "draft",
            "library": ["http://example.org/Library/a"],
            "relatedArtifact": [{"type": "depends-on", "resource": "http://example.org/Library/b|2.0"}],
        },
        "depends-on",
        [
            ReferenceRow("depends-on", None, None, "http://example.org/Library/b|2.0"),
            ReferenceRow("depends-on", None, None, "http://example.org/Library/a"),
        ],
        id="reference-canonical",
    ),
    pytest.param(
        {
            "resourceType": "Bundle",
            "type": "document",
            "entry": [{"resource": {"resourceType": "Composition", "id": "c"}}],
        },
        "composition",
        [ReferenceRow("composition", "Composition", "c")],
        id="reference-embedded-resource",
    ),
    # date (search.html#date): the instants a value covers, naive UTC
    pytest.param(
        observation(effectiveDateTime="2024"),
        "date",
        [DateRow("date", datetime(2024, 1, 1), datetime(2025, 1, 1))],
        id="date-year",
    ),
    pytest.param(
        observation(effectiveDateTime="2024-03-05"),
        "date",
        [DateRow("date", datetime(2024, 3, 5), datetime(2024, 3, 6))],
        id="date-day",
    ),
    pytest.param(
        observation(effectiveDateTime="2024-03-05T10:11:12+01:00"),
        "date",
        [DateRow("date", datetime(2024, 3, 5, 9, 11, 12), datetime(2024, 3, 5, 9, 11, 13))],
        id="date-second",
    ),
    pytest.param(
        observation(effectivePeriod={"start": "2024-03-05"}),
        "date",
        [DateRow("date", datetime(2024, 3, 5), datetime.max)],
        id="date-period-open-end",
    ),
    pytest.param(
        observation(effectivePeriod={"end": "2024-03"}),
        "date",
        [DateRow("date", datetime.min, datetime(2024, 4, 1))],
        id="date-period-open-start",
    ),
    pytest.param(
        {"resourceType": "Encounter", "status": "finished", "period": {"start": "2024-01-01", "end": "2024-01-03"}},
        "date",
        [DateRow("date", datetime(2024, 1, 1), datetime(2024, 1, 4))],
        id="date-encounter-period",
    ),
    pytest.param(
        {
            "resourceType": "ServiceRequest",
            "occurrenceTiming": {"event": ["2024-05-02T08:00:00Z", "2024-05-01T08:00:00Z"]},
        },
        "occurrence",
        [DateRow("occurrence", datetime(2024, 5, 1, 8), datetime(2024, 5, 2, 8, 0, 1))],
        id="date-timing-events",
    ),
    pytest.param(
        {
            "resourceType": "ServiceRequest",
            "occurrenceTiming": {"repeat": {"boundsPeriod": {"start": "2024-05-01"}, "frequency": 1}},
        },
        "occurrence",
        [DateRow("occurrence", datetime(2024, 5, 1), datetime.max)],
        id="date-timing-bounds",
    ),
    pytest.param(
        {"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "onsetString": "childhood"},
        "onset-date",
        [],
        id="date-string-choice-skipped",
    ),
    # number (search.html#number)
    pytest.param(
        {
            "resourceType": "RiskAssessment",
            "status": "final",
            "subject": {"reference": "Patient/1"},
            "prediction": [{"probabilityDecimal": Decimal("0.02")}, {"probabilityRange": {"low": {"value": 1}}}],
        },
        "probability",
        [NumberRow("probability", Decimal("0.02"))],
        id="number-risk-probability",
    ),
    # quantity (search.html#quantity)
    pytest.param(
        observation(valueQuantity={"value": Decimal("100"), "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}),
        "value-quantity",
        [QuantityRow("value-quantity", Decimal("100"), UCUM, "mg/dL", "mg/dL", Decimal("1"), "g/L")],
        id="quantity-ucum-canonical",
    ),
    pytest.param(
        observation(valueQuantity={"value": 3, "unit": "tablets", "system": "urn:local", "code": "tab"}),
        "value-quantity",
        [QuantityRow("value-quantity", Decimal(3), "urn:local", "tab", "tablets")],
        id="quantity-other-system",
    ),
    pytest.param(
        {"resourceType": "Invoice", "status": "issued", "totalGross": {"value": Decimal("12.50"), "currency": "EUR"}},
        "totalgross",
        [QuantityRow("totalgross", Decimal("12.50"), "urn:iso:std:iso:4217", "EUR", None)],
        id="quantity-money",
    ),
    pytest.param(
        {
            "resourceType": "Condition",
            "subject": {"reference": "Patient/1"},
            "onsetRange": {"low": {"value": 40, "system": UCUM, "code": "a"}, "high": {"value": 50, "code": "a"}},
        },
        "onset-age",
        [
            QuantityRow("onset-age", Decimal(40), UCUM, "a", None),
            QuantityRow("onset-age", Decimal(50), None, "a", None),
        ],
        id="quantity-range",
    ),
    # uri (search.html#uri)
    pytest.param(
        observation(meta={"profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"]}),
        "_profile",
        [UriRow("_profile", "http://hl7.org/fhir/StructureDefinition/vitalsigns")],
        id="uri-profile",
    ),
    # the resource table answers these
    pytest.param(patient(meta={"lastUpdated": "2024-01-01T00:00:00Z"}), "_id", [], id="no-id"),
    pytest.param(patient(meta={"lastUpdated": "2024-01-01T00:00:00Z"}), "_lastUpdated", [], id="no-last-updated"),
]


@pytest.mark.parametrize(("resource", "param", "expected"), CASES)
def test_rows(resource: dict[str, Any], param: str, expected: list[IndexRow]) -> None:
    assert rows(resource, param) == expected


BLOOD_PRESSURE = observation(
    code={"coding": [{"system": LOINC, "code": "85354-9"}]},
    component=[
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
            "valueQuantity": {"value": 107, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": 60, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        },
        {"code": {"coding": [{"system": LOINC, "code": "8478-0"}]}, "dataAbsentReason": {"text": "not measured"}},
    ],
)


def _composite(resource: dict[str, Any], code: str) -> list[list[IndexRow]]:
    """The composite's values: its component rows grouped, in order."""
    groups: dict[int, list[IndexRow]] = defaultdict(list)
    for row in extract(resource):
        if row.param.startswith(f"{code}#"):
            groups[row.group].append(row)
    assert all(group >= 1 for group in groups)
    return list(groups.values())


def test_composite_component_rows_share_a_group_per_element() -> None:
    values = _composite(BLOOD_PRESSURE, "component-code-value-quantity")
    first, second = (value[0].group for value in values)
    code, quantity = "component-code-value-quantity#0", "component-code-value-quantity#1"
    assert values == [
        [
            TokenRow(code, LOINC, "8480-6", group=first),
            QuantityRow(quantity, Decimal(107), UCUM, "mm[Hg]", "mmHg", Decimal(107), "mm[Hg]", first),
        ],
        [
            TokenRow(code, LOINC, "8462-4", group=second),
            QuantityRow(quantity, Decimal(60), UCUM, "mm[Hg]", "mmHg", Decimal(60), "mm[Hg]", second),
        ],
    ]
    assert first != second


def test_composite_groups_are_unique_across_parameters() -> None:
    groups = {row.group for row in extract(BLOOD_PRESSURE) if row.group}
    combo = {row.group for row in extract(BLOOD_PRESSURE) if row.param.startswith("combo-code-value-quantity#")}
    component = {row.group for row in extract(BLOOD_PRESSURE) if row.param.startswith("component-code-value-quantity#")}
    assert len(combo) == len(component) == 2
    assert not combo & component
    assert groups >= combo | component


def test_composite_on_the_resource_and_its_components() -> None:
    code_value = _composite(observation(code={"text": "glucose"}, valueQuantity={"value": 5}), "code-value-quantity")
    assert code_value == [
        [
            TokenRow("code-value-quantity#0", None, None, "glucose", group=code_value[0][0].group),
            QuantityRow("code-value-quantity#1", Decimal(5), None, None, None, group=code_value[0][0].group),
        ]
    ]
    assert len(_composite(BLOOD_PRESSURE, "combo-code-value-quantity")) == 2  # the panel itself has no value


def test_plain_parameters_use_group_zero_and_rows_are_unique() -> None:
    found = extract(BLOOD_PRESSURE)
    assert all(row.group == 0 for row in found if "#" not in row.param)
    assert len(found) == len(set(found))
    assert TokenRow("combo-code", LOINC, "8480-6") in found
    assert TokenRow("combo-data-absent-reason", None, None, "not measured") in found


def _fixture_resources(path: Path) -> list[dict[str, Any]]:
    document = simplejson.loads(path.read_text(encoding="utf-8"), use_decimal=True)
    entries = [entry["resource"] for entry in document.get("entry", []) if "resource" in entry]
    return entries if path in EHR_BUNDLES else [document, *entries]


@pytest.mark.parametrize("path", OFFICIAL_EXAMPLES + EHR_BUNDLES, ids=lambda path: path.stem)
def test_every_fixture_extracts(path: Path) -> None:
    for resource in _fixture_resources(path):
        found = extract(resource)
        assert all(isinstance(row.param, str) and row.param for row in found)


def test_synthea_patient_has_the_expected_kinds_of_rows() -> None:
    resources = _fixture_resources(EHR_BUNDLES[0])
    kinds = {type(row) for resource in resources for row in extract(resource)}
    assert kinds >= {StringRow, TokenRow, ReferenceRow, DateRow, QuantityRow}
