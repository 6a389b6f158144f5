"""The search query parser: query string → ``Search`` (R4 search.html), no database."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from fhir_twin.errors import Invalid
from fhir_twin.search.parameters import SearchParameter, parameters_for
from fhir_twin.search.parser import page_size, parse
from fhir_twin.search.query import (
    CompositeValue,
    Criterion,
    DateValue,
    Include,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    ReverseChain,
    Search,
    SortKey,
    StringValue,
    TokenValue,
    Unmatchable,
    UriValue,
)

OBS = ("Observation",)
PAT = ("Patient",)


def pairs(query: str) -> list[tuple[str, str]]:
    """``a=1&b=2`` as decoded pairs (no percent-decoding: values here are written decoded)."""
    return [(name, value) for name, _, value in (item.partition("=") for item in query.split("&"))] if query else []


def run(types: tuple[str, ...], query: str, strict: bool = True) -> Search:
    return parse(types, pairs(query), strict=strict, default_count=20, max_count=100)


def param(resource_type: str, code: str) -> SearchParameter:
    return parameters_for(resource_type)[code]


def day(text: str) -> tuple[datetime, datetime]:
    start = datetime.fromisoformat(text)
    return start, start + timedelta(days=1)


# --- Criteria, one parameter type or feature per row ---------------------------------------

CONDITIONS = [
    # string (search.html#string)
    pytest.param(PAT, "name=peter", Criterion(param("Patient", "name"), values=(StringValue("peter"),)), id="string"),
    pytest.param(
        PAT,
        "name:exact=Peter,Pat",
        Criterion(param("Patient", "name"), "exact", (StringValue("Peter"), StringValue("Pat"))),
        id="string-exact-or",
    ),
    pytest.param(
        PAT,
        "name:contains=eve",
        Criterion(param("Patient", "name"), "contains", (StringValue("eve"),)),
        id="string-contains",
    ),
    pytest.param(
        PAT, "name=gt10", Criterion(param("Patient", "name"), values=(StringValue("gt10"),)), id="string-prefix-is-text"
    ),
    pytest.param(
        PAT,
        r"name=a\,b,c\$d\|e\\f",
        Criterion(param("Patient", "name"), values=(StringValue("a,b"), StringValue("c$d|e\\f"))),
        id="escaping",
    ),
    pytest.param(
        PAT,
        r"name=a\xb",
        Criterion(param("Patient", "name"), values=(StringValue(r"a\xb"),)),
        id="backslash-before-other-character-is-kept",
    ),
    # token (search.html#token)
    pytest.param(
        OBS, "code=1234-5", Criterion(param("Observation", "code"), values=(TokenValue(None, "1234-5"),)), id="code"
    ),
    pytest.param(
        OBS,
        "code=http://loinc.org|1234-5",
        Criterion(param("Observation", "code"), values=(TokenValue("http://loinc.org", "1234-5", True),)),
        id="system-code",
    ),
    pytest.param(
        OBS,
        "code=http://loinc.org|",
        Criterion(param("Observation", "code"), values=(TokenValue("http://loinc.org", None, True),)),
        id="system-any-code",
    ),
    pytest.param(
        OBS,
        "code=|1234-5",
        Criterion(param("Observation", "code"), values=(TokenValue(None, "1234-5", True),)),
        id="no-system",
    ),
    pytest.param(
        OBS,
        r"code=http://s|a\|b",
        Criterion(param("Observation", "code"), values=(TokenValue("http://s", "a|b", True),)),
        id="escaped-bar-in-code",
    ),
    pytest.param(
        OBS, "code=ge5", Criterion(param("Observation", "code"), values=(TokenValue(None, "ge5"),)), id="token-prefix"
    ),
    pytest.param(
        OBS, "code:not=x", Criterion(param("Observation", "code"), "not", (TokenValue(None, "x"),)), id="token-not"
    ),
    pytest.param(
        OBS,
        "code:text=Blood|pressure",
        Criterion(param("Observation", "code"), "text", (TokenValue(None, "Blood|pressure"),)),
        id="token-text",
    ),
    pytest.param(
        PAT,
        "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053",
        Criterion(
            param("Patient", "identifier"),
            "of-type",
            (TokenValue(None, "446053", type_system="http://terminology.hl7.org/CodeSystem/v2-0203", type_code="MR"),),
        ),
        id="token-of-type",
    ),
    pytest.param(
        OBS,
        "code:in=http://example.org/ValueSet/vitals",
        Criterion(param("Observation", "code"), "in", (UriValue("http://example.org/ValueSet/vitals"),)),
        id="token-in",
    ),
    pytest.param(
        OBS,
        "code:not-in=ValueSet/vitals",
        Criterion(param("Observation", "code"), "not-in", (UriValue("ValueSet/vitals"),)),
        id="token-not-in",
    ),
    pytest.param(
        OBS,
        "code:below=http://snomed.info/sct|235862008",
        Criterion(param("Observation", "code"), "below", (TokenValue("http://snomed.info/sct", "235862008", True),)),
        id="token-below",
    ),
    pytest.param(
        OBS,
        "code:above=http://snomed.info/sct|235862008",
        Criterion(param("Observation", "code"), "above", (TokenValue("http://snomed.info/sct", "235862008", True),)),
        id="token-above",
    ),
    pytest.param(
        OBS,
        "code:missing=true",
        Criterion(param("Observation", "code"), "missing", missing=True),
        id="missing-true",
    ),
    pytest.param(
        OBS, "date:missing=false", Criterion(param("Observation", "date"), "missing", missing=False), id="missing-false"
    ),
    # _id and _lastUpdated are ordinary parameters (search.html#id, #lastUpdated)
    pytest.param(
        PAT,
        "_id=a1,b.2",
        Criterion(param("Patient", "_id"), values=(TokenValue(None, "a1"), TokenValue(None, "b.2"))),
        id="id",
    ),
    pytest.param(PAT, "_id:not=a1", Criterion(param("Patient", "_id"), "not", (TokenValue(None, "a1"),)), id="id-not"),
    pytest.param(
        PAT,
        "_lastUpdated=gt2024-03-05",
        Criterion(param("Patient", "_lastUpdated"), values=(DateValue("gt", *day("2024-03-05")),)),
        id="lastUpdated",
    ),
    # date (search.html#date)
    pytest.param(
        PAT,
        "birthdate=1970",
        Criterion(param("Patient", "birthdate"), values=(DateValue("eq", datetime(1970, 1, 1), datetime(1971, 1, 1)),)),
        id="date-year",
    ),
    pytest.param(
        PAT,
        "birthdate=le1970-02,ap1980-01-01",
        Criterion(
            param("Patient", "birthdate"),
            values=(
                DateValue("le", datetime(1970, 2, 1), datetime(1970, 3, 1)),
                DateValue("ap", *day("1980-01-01")),
            ),
        ),
        id="date-prefixes-or",
    ),
    # number (search.html#number)
    pytest.param(
        ("RiskAssessment",),
        "probability=gt0.8",
        Criterion(
            param("RiskAssessment", "probability"),
            values=(NumberValue("gt", Decimal("0.8"), Decimal("0.75"), Decimal("0.85")),),
        ),
        id="number",
    ),
    # quantity (search.html#quantity)
    pytest.param(
        OBS,
        "value-quantity=5.4|http://unitsofmeasure.org|mg",
        Criterion(
            param("Observation", "value-quantity"),
            values=(
                QuantityValue(
                    "eq", Decimal("5.4"), Decimal("5.35"), Decimal("5.45"), "http://unitsofmeasure.org", "mg"
                ),
            ),
        ),
        id="quantity-system-code",
    ),
    pytest.param(
        OBS,
        "value-quantity=le5.4||mg",
        Criterion(
            param("Observation", "value-quantity"),
            values=(QuantityValue("le", Decimal("5.4"), Decimal("5.35"), Decimal("5.45"), None, "mg"),),
        ),
        id="quantity-unit",
    ),
    pytest.param(
        OBS,
        "value-quantity=ap100",
        Criterion(
            param("Observation", "value-quantity"),
            values=(QuantityValue("ap", Decimal("100"), Decimal("99.5"), Decimal("100.5"), None, None),),
        ),
        id="quantity-number-only",
    ),
    # reference (search.html#reference)
    pytest.param(
        OBS,
        "subject=Patient/23",
        Criterion(param("Observation", "subject"), values=(ReferenceValue("Patient", "23"),)),
        id="reference-type-id",
    ),
    pytest.param(
        OBS,
        "subject=23",
        Criterion(param("Observation", "subject"), values=(ReferenceValue(None, "23"),)),
        id="reference-id",
    ),
    pytest.param(
        OBS,
        "subject=http://other.org/fhir/Patient/23",
        Criterion(
            param("Observation", "subject"),
            values=(ReferenceValue(None, None, url="http://other.org/fhir/Patient/23"),),
        ),
        id="reference-absolute-url",
    ),
    pytest.param(
        OBS,
        "subject=urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7",
        Criterion(
            param("Observation", "subject"),
            values=(ReferenceValue(None, None, url="urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7"),),
        ),
        id="reference-urn",
    ),
    pytest.param(
        OBS,
        "subject:Patient=23,Patient/24",
        Criterion(
            param("Observation", "subject"),
            "Patient",
            (ReferenceValue("Patient", "23"), ReferenceValue("Patient", "24")),
        ),
        id="reference-type-modifier",
    ),
    pytest.param(
        OBS,
        "subject:identifier=http://acme.org/mrn|123",
        Criterion(
            param("Observation", "subject"),
            "identifier",
            (ReferenceValue(None, None, identifier_system="http://acme.org/mrn", identifier_value="123"),),
        ),
        id="reference-identifier",
    ),
    pytest.param(
        OBS,
        "subject:identifier=123",
        Criterion(param("Observation", "subject"), "identifier", (ReferenceValue(None, None, identifier_value="123"),)),
        id="reference-identifier-value-only",
    ),
    pytest.param(
        OBS,
        "subject:missing=true",
        Criterion(param("Observation", "subject"), "missing", missing=True),
        id="reference-missing",
    ),
    # uri (search.html#uri)
    pytest.param(
        ("ValueSet",),
        "url=http://acme.org/fhir/ValueSet/123",
        Criterion(param("ValueSet", "url"), values=(UriValue("http://acme.org/fhir/ValueSet/123"),)),
        id="uri",
    ),
    pytest.param(
        ("ValueSet",),
        "url:below=http://acme.org/fhir/",
        Criterion(param("ValueSet", "url"), "below", (UriValue("http://acme.org/fhir/"),)),
        id="uri-below",
    ),
    pytest.param(
        ("ValueSet",),
        "url:above=http://acme.org/fhir/ValueSet/123/_history/5",
        Criterion(param("ValueSet", "url"), "above", (UriValue("http://acme.org/fhir/ValueSet/123/_history/5"),)),
        id="uri-above",
    ),
    # composite (search.html#composite)
    pytest.param(
        OBS,
        "code-value-quantity=http://loinc.org|8480-6$lt60,8462-4$gt90||mm[Hg]",
        Criterion(
            param("Observation", "code-value-quantity"),
            values=(
                CompositeValue(
                    (
                        TokenValue("http://loinc.org", "8480-6", True),
                        QuantityValue("lt", Decimal("60"), Decimal("59.5"), Decimal("60.5"), None, None),
                    )
                ),
                CompositeValue(
                    (
                        TokenValue(None, "8462-4"),
                        QuantityValue("gt", Decimal("90"), Decimal("89.5"), Decimal("90.5"), None, "mm[Hg]"),
                    )
                ),
            ),
        ),
        id="composite",
    ),
    pytest.param(
        OBS,
        r"component-code-value-concept=a\$b$c",
        Criterion(
            param("Observation", "component-code-value-concept"),
            values=(CompositeValue((TokenValue(None, "a$b"), TokenValue(None, "c"))),),
        ),
        id="composite-escaped-dollar",
    ),
    # chaining (search.html#chaining)
    pytest.param(
        OBS,
        "subject:Patient.name=peter",
        Criterion(
            param("Observation", "subject"),
            "Patient",
            chain_type="Patient",
            chain=Criterion(param("Patient", "name"), values=(StringValue("peter"),)),
        ),
        id="chain-typed",
    ),
    pytest.param(
        OBS,
        "patient.birthdate=1970",
        Criterion(
            param("Observation", "patient"),
            chain_type="Patient",
            chain=Criterion(
                param("Patient", "birthdate"), values=(DateValue("eq", datetime(1970, 1, 1), datetime(1971, 1, 1)),)
            ),
        ),
        id="chain-only-target-with-the-parameter",
    ),
    pytest.param(
        PAT,
        "organization.name:exact=Acme",
        Criterion(
            param("Patient", "organization"),
            chain_type="Organization",
            chain=Criterion(param("Organization", "name"), "exact", (StringValue("Acme"),)),
        ),
        id="chain-single-target-with-modifier",
    ),
    pytest.param(
        OBS,
        "subject:Patient.organization.name=x",
        Criterion(
            param("Observation", "subject"),
            "Patient",
            chain_type="Patient",
            chain=Criterion(
                param("Patient", "organization"),
                chain_type="Organization",
                chain=Criterion(param("Organization", "name"), values=(StringValue("x"),)),
            ),
        ),
        id="chain-two-levels",
    ),
    pytest.param(
        OBS,
        "subject:Patient._id=1,2",
        Criterion(
            param("Observation", "subject"),
            "Patient",
            chain_type="Patient",
            chain=Criterion(param("Patient", "_id"), values=(TokenValue(None, "1"), TokenValue(None, "2"))),
        ),
        id="chain-to-id",
    ),
    # reverse chaining (search.html#has)
    pytest.param(
        PAT,
        "_has:Observation:patient:code=1234-5",
        ReverseChain(
            "Observation",
            param("Observation", "patient"),
            Criterion(param("Observation", "code"), values=(TokenValue(None, "1234-5"),)),
        ),
        id="has",
    ),
    pytest.param(
        PAT,
        "_has:Observation:patient:_has:AuditEvent:entity:agent=Practitioner/1",
        ReverseChain(
            "Observation",
            param("Observation", "patient"),
            ReverseChain(
                "AuditEvent",
                param("AuditEvent", "entity"),
                Criterion(param("AuditEvent", "agent"), values=(ReferenceValue("Practitioner", "1"),)),
            ),
        ),
        id="has-nested",
    ),
    pytest.param(
        PAT,
        "_has:Observation:subject:code:text=bp",
        ReverseChain(
            "Observation",
            param("Observation", "subject"),
            Criterion(param("Observation", "code"), "text", (TokenValue(None, "bp"),)),
        ),
        id="has-criterion-with-modifier",
    ),
]


@pytest.mark.parametrize(("types", "query", "expected"), CONDITIONS)
def test_condition(types: tuple[str, ...], query: str, expected: Criterion | ReverseChain) -> None:
    """Each parameter becomes one condition; its values are ORed (search.html#combining)."""
    search = run(types, query)
    assert search.conditions == (expected,)
    assert search.applied == tuple(pairs(query))


def test_repeated_parameters_are_separate_conditions() -> None:
    """``date=ge2020&date=lt2021`` ANDs two criteria (search.html#combining)."""
    search = run(PAT, "birthdate=ge1970&birthdate=lt1980")
    assert [criterion.values for criterion in search.conditions] == [
        (DateValue("ge", datetime(1970, 1, 1), datetime(1971, 1, 1)),),
        (DateValue("lt", datetime(1980, 1, 1), datetime(1981, 1, 1)),),
    ]


# --- Numbers and dates: the range a value's precision covers --------------------------------

NUMBERS = [
    pytest.param("100", "100", "99.5", "100.5", id="integer"),
    pytest.param("100.00", "100.00", "99.995", "100.005", id="trailing-zeros-count"),
    pytest.param("1e2", "100", "50", "150", id="exponent-one-digit"),
    pytest.param("1.5E2", "150", "145", "155", id="exponent-two-digits"),
    pytest.param("2.5e-3", "0.0025", "0.00245", "0.00255", id="negative-exponent"),
    pytest.param("-5", "-5", "-5.5", "-4.5", id="negative"),
    pytest.param("0", "0", "-0.5", "0.5", id="zero"),
    pytest.param(
        "12345678901234567890123456789012.5",
        "12345678901234567890123456789012.5",
        "12345678901234567890123456789012.45",
        "12345678901234567890123456789012.55",
        id="many-digits-exact",
    ),
]


@pytest.mark.parametrize(("text", "value", "low", "high"), NUMBERS)
def test_number_precision(text: str, value: str, low: str, high: str) -> None:
    """search.html#number: a value covers half a unit of its last significant digit either side.

    R4's table gives ``1e2`` as [95, 105), which contradicts its own "1 significant figure";
    the rule is applied as stated (R5 corrects the table to [50, 150)).
    """
    (criterion,) = run(("RiskAssessment",), f"probability={text}").conditions
    assert criterion.values == (NumberValue("eq", Decimal(value), Decimal(low), Decimal(high)),)


DATES = [
    pytest.param("2024", datetime(2024, 1, 1), datetime(2025, 1, 1), id="year"),
    pytest.param("2024-02", datetime(2024, 2, 1), datetime(2024, 3, 1), id="month"),
    pytest.param("2024-02-29", datetime(2024, 2, 29), datetime(2024, 3, 1), id="day"),
    pytest.param("2024-02-29T10:15Z", datetime(2024, 2, 29, 10, 15), datetime(2024, 2, 29, 10, 16), id="minute"),
    pytest.param(
        "2024-02-29T10:15:30Z", datetime(2024, 2, 29, 10, 15, 30), datetime(2024, 2, 29, 10, 15, 31), id="second"
    ),
    pytest.param(
        "2024-02-29T10:15:30.25Z",
        datetime(2024, 2, 29, 10, 15, 30, 250000),
        datetime(2024, 2, 29, 10, 15, 30, 260000),
        id="fraction",
    ),
    pytest.param(
        "2024-02-29T10:15:30+02:00", datetime(2024, 2, 29, 8, 15, 30), datetime(2024, 2, 29, 8, 15, 31), id="timezone"
    ),
    pytest.param(
        "2024-02-29T10:15:30 02:00",
        datetime(2024, 2, 29, 8, 15, 30),
        datetime(2024, 2, 29, 8, 15, 31),
        id="timezone-plus-decoded-as-space",
    ),
]


@pytest.mark.parametrize(("text", "low", "high"), DATES)
def test_date_precision(text: str, low: datetime, high: datetime) -> None:
    """search.html#date: a date at any precision is the range ``[low, high)`` it covers, in UTC."""
    for prefix in ("", "sa", "eb"):
        (criterion,) = run(OBS, f"date={prefix}{text}").conditions
        assert criterion.values == (DateValue(prefix or "eq", low, high),)


# --- System search over several types (search.html#all, _type) -------------------------------


def test_system_search_allows_parameters_every_type_has() -> None:
    """``name`` exists (as string) on Patient and Practitioner: it is allowed; the reference
    parameter's targets are the union of both types' targets."""
    search = run(("Patient", "Practitioner"), "_type=Patient,Practitioner&name=peter&_lastUpdated=2024")
    assert [condition.parameter.code for condition in search.conditions] == ["name", "_lastUpdated"]
    assert search.applied == (("_type", "Patient,Practitioner"), ("name", "peter"), ("_lastUpdated", "2024"))
    (criterion,) = run(("Observation", "Condition"), "subject:Group=1").conditions
    assert set(criterion.parameter.targets) >= {"Group", "Patient", "Device", "Location"}


@pytest.mark.parametrize(
    ("query", "strict", "applied"),
    [
        pytest.param("birthdate=1970", False, (), id="lenient-ignores"),
        pytest.param("gender=male&_id=1", False, (("_id", "1"),), id="lenient-keeps-common"),
    ],
)
def test_system_search_ignores_parameters_not_common(
    query: str, strict: bool, applied: tuple[tuple[str, str], ...]
) -> None:
    search = run(("Patient", "Organization"), query, strict=strict)
    assert search.applied == applied


# --- Result parameters (search.html#return) ------------------------------------------------

RESULTS = [
    pytest.param(OBS, "", {"count": 20, "cursor": None, "sort": ()}, id="defaults"),
    pytest.param(OBS, "_count=5", {"count": 5}, id="count"),
    pytest.param(OBS, "_count=500", {"count": 100}, id="count-capped"),
    pytest.param(OBS, "_cursor=1717-2.a_~", {"cursor": "1717-2.a_~"}, id="cursor"),
    pytest.param(
        OBS,
        "_sort=-date,status,_lastUpdated,_id,subject,value-quantity",
        {
            "sort": (
                SortKey(param("Observation", "date"), descending=True),
                SortKey(param("Observation", "status")),
                SortKey(param("Observation", "_lastUpdated")),
                SortKey(param("Observation", "_id")),
                SortKey(param("Observation", "subject")),
                SortKey(param("Observation", "value-quantity")),
            )
        },
        id="sort",
    ),
    pytest.param(
        PAT,
        "_sort=family,-birthdate",
        {"sort": (SortKey(param("Patient", "family")), SortKey(param("Patient", "birthdate"), True))},
        id="sort-string-date",
    ),
    pytest.param(OBS, "_summary=count", {"summary": "count"}, id="summary"),
    pytest.param(OBS, "_summary=false", {"summary": "false"}, id="summary-false"),
    pytest.param(OBS, "_total=accurate", {"total": "accurate"}, id="total"),
    pytest.param(OBS, "_elements=status,code,status", {"elements": ("status", "code")}, id="elements"),
    pytest.param(
        OBS,
        "_include=Observation:subject",
        {"includes": (Include("Observation", param("Observation", "subject")),)},
        id="include",
    ),
    pytest.param(
        OBS,
        "_include=Observation:subject:Patient&_include=Observation:performer",
        {
            "includes": (
                Include("Observation", param("Observation", "subject"), "Patient"),
                Include("Observation", param("Observation", "performer")),
            )
        },
        id="include-target-and-repeat",
    ),
    pytest.param(OBS, "_include=*", {"includes": (Include("Observation", None),)}, id="include-everything"),
    pytest.param(
        ("Observation", "Condition"),
        "_include=*",
        {"includes": (Include("Observation", None), Include("Condition", None))},
        id="include-everything-system",
    ),
    pytest.param(
        OBS, "_include=Observation:*", {"includes": (Include("Observation", None),)}, id="include-source-star"
    ),
    pytest.param(
        ("MedicationRequest",),
        "_include=MedicationRequest:patient&_include:iterate=Patient:general-practitioner",
        {
            "includes": (
                Include("MedicationRequest", param("MedicationRequest", "patient")),
                Include("Patient", param("Patient", "general-practitioner"), iterate=True),
            )
        },
        id="include-iterate",
    ),
    pytest.param(
        PAT,
        "_revinclude=Provenance:target",
        {"revincludes": (Include("Provenance", param("Provenance", "target"), reverse=True),)},
        id="revinclude",
    ),
    pytest.param(
        PAT,
        "_revinclude=Observation:subject:Patient&_revinclude=Encounter:*",
        {
            "revincludes": (
                Include("Observation", param("Observation", "subject"), "Patient", reverse=True),
                Include("Encounter", None, reverse=True),
            )
        },
        id="revinclude-target-and-star",
    ),
    pytest.param(
        PAT, "_revinclude=*", {"revincludes": (Include("*", None, reverse=True),)}, id="revinclude-everything"
    ),
    pytest.param(
        PAT,
        "_revinclude:iterate=Provenance:target",
        {"revincludes": (Include("Provenance", param("Provenance", "target"), iterate=True, reverse=True),)},
        id="revinclude-iterate",
    ),
]


@pytest.mark.parametrize(("types", "query", "expected"), RESULTS)
def test_result_parameters(types: tuple[str, ...], query: str, expected: dict[str, object]) -> None:
    search = run(types, query)
    assert {field: getattr(search, field) for field in expected} == expected
    assert search.conditions == ()
    assert search.applied == tuple(pairs(query))


# --- applied: what the self link repeats (search.html#return) -------------------------------

APPLIED = [
    pytest.param(
        "name=peter&_format=json&_count=5&_pretty=true&_cursor=abc",
        False,
        (("name", "peter"), ("_count", "5"), ("_cursor", "abc")),
        id="transport-skipped-paging-kept",
    ),
    pytest.param(
        "bogus=1&name:exact=Peter&bogus.name=1", False, (("name:exact", "Peter"),), id="lenient-drops-unknown"
    ),
    pytest.param(
        "_text=x&_content=y&_list=z&_filter=a&_query=b&_contained=true&_containedType=entry&gender=male",
        False,
        (("gender", "male"),),
        id="lenient-drops-unsupported",
    ),
    pytest.param(
        "_has:Observation:patient:code=1&_sort=-birthdate&family=a",
        True,
        (("_has:Observation:patient:code", "1"), ("_sort", "-birthdate"), ("family", "a")),
        id="request-order",
    ),
]


@pytest.mark.parametrize(("query", "strict", "applied"), APPLIED)
def test_applied(query: str, strict: bool, applied: tuple[tuple[str, str], ...]) -> None:
    assert run(PAT, query, strict=strict).applied == applied


# --- Refusals: 400 naming the parameter (search.html#errors) --------------------------------

BAD = [
    # unknown and unsupported, strict only
    pytest.param(PAT, "bogus=1", "bogus", "not-supported", id="unknown-strict"),
    pytest.param(PAT, "bogus:exact=1", "bogus:exact", "not-supported", id="unknown-with-modifier-strict"),
    pytest.param(PAT, "_text=x", "_text", "not-supported", id="text-strict"),
    pytest.param(PAT, "_content=x", "_content", "not-supported", id="content-strict"),
    pytest.param(PAT, "_list=x", "_list", "not-supported", id="list-strict"),
    pytest.param(PAT, "_filter=x", "_filter", "not-supported", id="filter-strict"),
    pytest.param(PAT, "_query=x", "_query", "not-supported", id="query-strict"),
    pytest.param(PAT, "_contained=true", "_contained", "not-supported", id="contained-strict"),
    pytest.param(PAT, "_containedType=entry", "_containedType", "not-supported", id="containedType-strict"),
    pytest.param(("Patient", "Organization"), "gender=male", "gender", "not-supported", id="not-common-strict"),
    # modifiers that do not fit, even when lenient
    pytest.param(PAT, "name:not=x", "name:not", "invalid", id="string-not"),
    pytest.param(PAT, "name:text=x", "name:text", "invalid", id="string-text"),
    pytest.param(OBS, "code:exact=x", "code:exact", "invalid", id="token-exact"),
    pytest.param(OBS, "code:of-type=a|b|c", "code:of-type", "invalid", id="of-type-not-identifier"),
    pytest.param(OBS, "date:exact=2020", "date:exact", "invalid", id="date-modifier"),
    pytest.param(OBS, "value-quantity:not=5", "value-quantity:not", "invalid", id="quantity-modifier"),
    pytest.param(("RiskAssessment",), "probability:above=1", "probability:above", "invalid", id="number-modifier"),
    pytest.param(("ValueSet",), "url:contains=x", "url:contains", "invalid", id="uri-contains"),
    pytest.param(OBS, "subject:Medication=1", "subject:Medication", "invalid", id="reference-type-not-target"),
    pytest.param(OBS, "subject:exact=1", "subject:exact", "invalid", id="reference-exact"),
    pytest.param(OBS, "code-value-quantity:exact=a$1", "code-value-quantity:exact", "invalid", id="composite-modifier"),
    pytest.param(PAT, "_id:text=x", "_id:text", "invalid", id="id-text"),
    pytest.param(PAT, "_id:missing=false", "_id:missing", "invalid", id="id-missing"),
    pytest.param(PAT, "name:=x", "name:", "invalid", id="empty-modifier"),
    pytest.param(PAT, "name:exact:contains=x", "name:exact:contains", "invalid", id="two-modifiers"),
    pytest.param(PAT, "name:missing=yes", "name:missing", "invalid", id="missing-not-boolean"),
    pytest.param(PAT, "name:missing=true,false", "name:missing", "invalid", id="missing-or"),
    # values
    pytest.param(PAT, "name=", "name", "invalid", id="empty-value"),
    pytest.param(PAT, "name=a,,b", "name", "invalid", id="empty-or-value"),
    pytest.param(OBS, "code=|", "code", "invalid", id="token-bar-only"),
    pytest.param(PAT, "identifier:of-type=MR|123", "identifier:of-type", "invalid", id="of-type-two-parts"),
    pytest.param(PAT, "identifier:of-type=a||c", "identifier:of-type", "invalid", id="of-type-empty-part"),
    pytest.param(PAT, "birthdate=1970-13", "birthdate", "invalid", id="date-bad-month"),
    pytest.param(PAT, "birthdate=1970-02-30", "birthdate", "invalid", id="date-no-such-day"),
    pytest.param(PAT, "birthdate=yesterday", "birthdate", "invalid", id="date-word"),
    pytest.param(PAT, "birthdate=xx2020", "birthdate", "invalid", id="date-unknown-prefix"),
    pytest.param(PAT, "_lastUpdated=ge", "_lastUpdated", "invalid", id="date-prefix-only"),
    pytest.param(("RiskAssessment",), "probability=abc", "probability", "invalid", id="number-word"),
    pytest.param(("RiskAssessment",), "probability=01", "probability", "invalid", id="number-leading-zero"),
    pytest.param(("RiskAssessment",), "probability=1e99999999", "probability", "invalid", id="number-huge-exponent"),
    pytest.param(("RiskAssessment",), "probability=NaN", "probability", "invalid", id="number-nan"),
    pytest.param(OBS, "value-quantity=5.4|mg", "value-quantity", "invalid", id="quantity-two-parts"),
    pytest.param(
        OBS, "value-quantity=5.4|http://unitsofmeasure.org|", "value-quantity", "invalid", id="quantity-no-code"
    ),
    pytest.param(OBS, "value-quantity=mg", "value-quantity", "invalid", id="quantity-no-number"),
    pytest.param(OBS, "subject=Medication/1", "subject", "invalid", id="reference-type-not-target-in-value"),
    pytest.param(OBS, "subject=Patient/", "subject", "invalid", id="reference-no-id"),
    pytest.param(OBS, "subject=Patient/1/_history/2", "subject", "invalid", id="reference-versioned"),
    pytest.param(OBS, "subject:Patient=Group/1", "subject:Patient", "invalid", id="reference-type-modifier-other-type"),
    pytest.param(OBS, "subject:identifier=|", "subject:identifier", "invalid", id="reference-identifier-bar-only"),
    pytest.param(OBS, "code-value-quantity=a", "code-value-quantity", "invalid", id="composite-one-part"),
    pytest.param(OBS, "code-value-quantity=a$1$2", "code-value-quantity", "invalid", id="composite-three-parts"),
    pytest.param(OBS, "code-value-quantity=a$x", "code-value-quantity", "invalid", id="composite-bad-component"),
    # chains
    pytest.param(OBS, "code.name=x", "code.name", "invalid", id="chain-on-token"),
    pytest.param(OBS, "subject.name=peter", "subject.name", "invalid", id="chain-ambiguous"),
    pytest.param(OBS, "subject:Patient.bogus=x", "subject:Patient.bogus", "invalid", id="chain-unknown-parameter"),
    pytest.param(PAT, "organization.bogus=x", "organization.bogus", "invalid", id="chain-unknown-on-single-target"),
    pytest.param(OBS, "subject:Medication.code=x", "subject:Medication.code", "invalid", id="chain-type-not-target"),
    pytest.param(OBS, "subject:Patient.name:not=x", "subject:Patient.name:not", "invalid", id="chain-bad-end-modifier"),
    pytest.param(OBS, "subject:Patient.birthdate=x", "subject:Patient.birthdate", "invalid", id="chain-bad-value"),
    # reverse chains
    pytest.param(PAT, "_has=x", "_has", "invalid", id="has-bare"),
    pytest.param(PAT, "_has:Observation:patient=x", "_has:Observation:patient", "invalid", id="has-too-short"),
    pytest.param(PAT, "_has:Bogus:patient:code=x", "_has:Bogus:patient:code", "invalid", id="has-unknown-type"),
    pytest.param(PAT, "_has:Observation:code:code=x", "_has:Observation:code:code", "invalid", id="has-not-reference"),
    pytest.param(
        PAT,
        "_has:Observation:encounter:code=x",
        "_has:Observation:encounter:code",
        "invalid",
        id="has-cannot-point-here",
    ),
    pytest.param(
        PAT, "_has:Observation:patient:bogus=x", "_has:Observation:patient:bogus", "invalid", id="has-unknown"
    ),
    # result parameters
    pytest.param(PAT, "_count=-1", "_count", "invalid", id="count-negative"),
    pytest.param(PAT, "_count=5&_count=6", "_count", "invalid", id="count-twice"),
    pytest.param(PAT, "_cursor=a/b", "_cursor", "invalid", id="cursor-bad-character"),
    pytest.param(PAT, "_cursor=" + "a" * 513, "_cursor", "invalid", id="cursor-too-long"),
    pytest.param(PAT, "_cursor=", "_cursor", "invalid", id="cursor-empty"),
    pytest.param(PAT, "_sort=bogus", "_sort", "invalid", id="sort-unknown"),
    pytest.param(PAT, "_sort=family,", "_sort", "invalid", id="sort-empty-key"),
    pytest.param(OBS, "_sort=code-value-quantity", "_sort", "invalid", id="sort-composite"),
    pytest.param(PAT, "_sort:desc=family", "_sort:desc", "invalid", id="sort-modifier"),
    pytest.param(PAT, "_summary=maybe", "_summary", "invalid", id="summary"),
    pytest.param(PAT, "_total=all", "_total", "invalid", id="total"),
    pytest.param(PAT, "_elements=name,Patient.gender", "_elements", "invalid", id="elements-path"),
    pytest.param(PAT, "_elements=", "_elements", "invalid", id="elements-empty"),
    pytest.param(PAT, "_type=Observation", "_type", "invalid", id="type-not-searched"),
    pytest.param(PAT, "_type=Bogus", "_type", "invalid", id="type-unknown"),
    pytest.param(PAT, "_include=Patient", "_include", "invalid", id="include-no-parameter"),
    pytest.param(PAT, "_include=Patient:name", "_include", "invalid", id="include-not-reference"),
    pytest.param(PAT, "_include=Patient:bogus", "_include", "invalid", id="include-unknown"),
    pytest.param(PAT, "_include=Observation:subject", "_include", "invalid", id="include-other-source"),
    pytest.param(PAT, "_include=Patient:organization:Patient", "_include", "invalid", id="include-target-not-allowed"),
    pytest.param(PAT, "_include=Bogus:x", "_include", "invalid", id="include-unknown-type"),
    pytest.param(PAT, "_include:recurse=Patient:organization", "_include:recurse", "invalid", id="include-modifier"),
    pytest.param(PAT, "_revinclude=Observation:encounter", "_revinclude", "invalid", id="revinclude-cannot-point-here"),
    pytest.param(PAT, "_revinclude=Observation:subject:Group", "_revinclude", "invalid", id="revinclude-other-target"),
]


@pytest.mark.parametrize(("types", "query", "expression", "code"), BAD)
def test_bad_query_is_400_naming_the_parameter(types: tuple[str, ...], query: str, expression: str, code: str) -> None:
    with pytest.raises(Invalid) as raised:
        run(types, query)
    (issue,) = raised.value.issues
    assert raised.value.status == 400
    assert (issue.code, issue.expression) == (code, (expression,))
    assert issue.diagnostics == raised.value.diagnostics
    assert issue.diagnostics


@pytest.mark.parametrize(
    ("types", "query", "expression"),
    [pytest.param(*item.values[:3], id=item.id) for item in BAD if item.values[3] == "invalid"],
)
def test_bad_values_are_refused_even_when_lenient(types: tuple[str, ...], query: str, expression: str) -> None:
    """A known parameter with a bad value or modifier is an error either way (search.html#errors)."""
    with pytest.raises(Invalid) as raised:
        run(types, query, strict=False)
    assert raised.value.issues[0].expression == (expression,)


@pytest.mark.parametrize(
    ("types", "query"),
    [
        pytest.param(PAT, "_id=a b", id="id-not-an-id"),
        pytest.param(PAT, "_id=" + "x" * 65, id="id-too-long"),
        pytest.param(OBS, "subject=a b", id="reference-not-an-id"),
        pytest.param(OBS, "subject=Patient/a_b", id="reference-type-and-not-an-id"),
        pytest.param(OBS, "subject:Patient=a_b", id="reference-type-modifier-not-an-id"),
        pytest.param(PAT, "name=a\x00b", id="string-nul"),
        pytest.param(PAT, "identifier=a\x01b", id="token-control-character"),
        pytest.param(OBS, "subject=http://x/a\x00b", id="url-nul"),
    ],
)
def test_values_no_resource_can_hold_are_unmatchable(types: tuple[str, ...], query: str) -> None:
    """A value no stored resource can hold finds nothing rather than failing (fhirpy searches ``_id``
    for a made-up id with an underscore); the search as a whole stays valid."""
    (criterion,) = run(types, query).conditions
    assert isinstance(criterion, Criterion) and criterion.values == (Unmatchable(),)


def test_unknown_parameters_are_named_with_the_valid_ones() -> None:
    with pytest.raises(Invalid) as raised:
        run(OBS, "valuequantity=gt100")
    diagnostics = raised.value.issues[0].diagnostics
    assert "did you mean 'value-quantity'?" in diagnostics and ", code-value-quantity, " in diagnostics
    lenient = run(OBS, "valuequantity=gt100&code=1", strict=False)
    assert lenient.ignored == (("valuequantity", diagnostics),) and lenient.applied == (("code", "1"),)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, 20, id="default"),
        pytest.param("0", 0, id="zero-asks-for-the-total"),
        pytest.param("000", 0, id="zero-with-leading-zeros"),
        pytest.param("7", 7, id="given"),
        pytest.param("007", 7, id="leading-zeros"),
        pytest.param("101", 100, id="capped"),
        pytest.param("9" * 5000, 100, id="huge"),
    ],
)
def test_page_size(value: str | None, expected: int) -> None:
    assert page_size(value, 20, 100) == expected


@pytest.mark.parametrize("value", ["", "1.5", "²", "-1"])
def test_page_size_refuses(value: str) -> None:
    with pytest.raises(Invalid) as raised:
        page_size(value, 20, 100)
    assert raised.value.issues[0].expression == ("_count",)
