"""FHIR search semantics, table-driven, through the real server (R4 search.html).

One module-level dataset of small hand-written resources is PUT once; every case is a search
and the set (or, for ``_sort``, the order) of ids it must find. Sections follow the spec:
string (#string), token (#token), reference (#reference), chaining (#chaining), ``_has``
(#has), date (#date, #prefix), number (#number), quantity (#quantity), uri (#uri), composite
(#composite), combining (#combining, #escaping), sorting (#sort) and errors (#errors).

The app is built once for the module on the database the suite runs on (SQLite, or the
PostgreSQL that ``FHIR_TWIN_TEST_DATABASE_URL`` names); the cases only read the dataset (one
test adds a Practitioner, a type no other case searches).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from flask.testing import FlaskClient

from fhir_twin.app import create_app, services_of
from tests.factories import observation, put

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
EXAMPLE_CODES = "http://example.org/codes"
TAGS = "http://example.org/tags"
PROFILES = "http://example.org/StructureDefinition"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
ID_TYPES = "http://example.org/identifier-types"
SNOMED = "http://snomed.info/sct"


# --- The dataset --------------------------------------------------------------------------------


def _identifier(type_code: str | None, system: str | None, value: str, text: str | None = None) -> dict[str, Any]:
    identifier: dict[str, Any] = {"value": value}
    if system:
        identifier["system"] = system
    if type_code:
        identifier["type"] = {"coding": [{"system": V2_0203, "code": type_code}], **({"text": text} if text else {})}
    return identifier


def _loinc(code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": LOINC, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding]}


def _ucum(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def _procedure(res_id: str, **performed: Any) -> dict[str, Any]:
    return {
        "resourceType": "Procedure",
        "id": res_id,
        "status": "completed",
        "subject": {"reference": "Patient/p-anna"},
        **performed,
    }


def _risk(res_id: str, probability: float | None) -> dict[str, Any]:
    prediction: dict[str, Any] = {"outcome": {"text": "stroke"}}
    if probability is not None:
        prediction["probabilityDecimal"] = probability
    return {
        "resourceType": "RiskAssessment",
        "id": res_id,
        "status": "final",
        "subject": {"reference": "Patient/p-anna"},
        "prediction": [prediction],
    }


def _value_set(res_id: str, url: str | None) -> dict[str, Any]:
    return {"resourceType": "ValueSet", "id": res_id, "status": "active", **({"url": url} if url else {})}


def _blood_pressure(res_id: str, systolic: float, diastolic: float) -> dict[str, Any]:
    return observation(
        _loinc("85354-6", "Blood pressure panel"),
        res_id=res_id,
        subject={"reference": "Patient/p-dora"},
        category=[{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
        component=[
            {"code": _loinc("8480-6", "Systolic"), "valueQuantity": _ucum(systolic, "mm[Hg]")},
            {"code": _loinc("8462-4", "Diastolic"), "valueQuantity": _ucum(diastolic, "mm[Hg]")},
        ],
    )


DORA = {"reference": "Patient/p-dora"}
DOSE = {"coding": [{"system": EXAMPLE_CODES, "code": "dose"}]}

DATASET: list[dict[str, Any]] = [
    # Organizations: a two-level hierarchy for chains and _has; a comma in a name for escaping.
    {"resourceType": "Organization", "id": "org-parent", "name": "Parent Health"},
    {
        "resourceType": "Organization",
        "id": "org-child",
        "name": "Child Clinic",
        "partOf": {"reference": "Organization/org-parent"},
    },
    {
        "resourceType": "Organization",
        "id": "org-acme",
        "name": "Acme, Inc",
        "identifier": [{"system": "urn:acme", "value": "A|1"}],
    },
    {"resourceType": "Organization", "id": "org-labs", "name": "Acme Labs", "alias": ["Labs Unlimited"]},
    # Patients: p-empty has nothing but an id, for :missing, :not and sorting.
    {
        "resourceType": "Patient",
        "id": "p-anna",
        "meta": {
            "tag": [{"system": TAGS, "code": "vip"}],
            "profile": [f"{PROFILES}/special-patient"],
            "security": [{"system": CONFIDENTIALITY, "code": "R"}],
        },
        "active": True,
        "gender": "female",
        "birthDate": "1970-05-01",
        "name": [{"text": "Annie Müller", "family": "Müller", "given": ["Anna"], "prefix": ["Dr."]}],
        "identifier": [_identifier("MR", "urn:mrn", "12345", "Medical record number")],
        "address": [{"line": ["12 Main Street"], "city": "Boston", "postalCode": "02134", "country": "USA"}],
        "telecom": [{"system": "phone", "value": "555-1234"}, {"system": "email", "value": "anna@example.org"}],
        "managingOrganization": {"reference": "Organization/org-child"},
    },
    {
        "resourceType": "Patient",
        "id": "p-bob",
        "meta": {"tag": [{"system": TAGS, "code": "new"}], "profile": [f"{PROFILES}/other-patient"]},
        "active": True,
        "gender": "male",
        "birthDate": "1985-07-20",
        "name": [{"family": "Mullins", "given": ["Bob", "Robert"]}],
        "identifier": [
            _identifier("MR", "urn:mrn", "67890"),
            {
                "type": {"coding": [{"system": ID_TYPES, "code": "LOCAL"}, {"system": V2_0203, "code": "PPN"}]},
                "system": "urn:passport",
                "value": "P-777",
            },
        ],
        "address": [{"city": "Bostwick", "postalCode": "K1A 0B1", "country": "Canada"}],
        "telecom": [{"system": "email", "value": "bob@example.org"}],
        "managingOrganization": {"reference": "Organization/org-parent"},
    },
    {
        "resourceType": "Patient",
        "id": "p-carl",
        "active": False,
        "deceasedDateTime": "2020-03-04",
        "name": [{"family": "Smith", "given": ["Carl"]}],
        "identifier": [_identifier("DL", "urn:dl", "12345")],
        "telecom": [{"system": "phone", "value": "555-9999"}],
    },
    {
        "resourceType": "Patient",
        "id": "p-dora",
        "gender": "female",
        "birthDate": "1990-02-28",
        "name": [{"family": "Zimmer", "given": ["Dora"]}],
        "identifier": [_identifier(None, None, "12345")],
        "address": [{"city": "Zürich", "country": "Switzerland"}],
    },
    {"resourceType": "Patient", "id": "p-empty"},
    {"resourceType": "Group", "id": "p-anna", "type": "person", "actual": True},
    # Observations for tokens and references; none has a value or an effective time.
    observation(
        {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}], "text": "Pulse"},
        res_id="o-hr",
        subject={"reference": "Patient/p-anna"},
        category=[{"coding": [{"system": CATEGORY, "code": "vital-signs"}]}],
    ),
    observation(
        {"coding": [{"code": "local-1", "display": "Local code"}]},
        res_id="o-local",
        subject={"reference": "Patient/p-bob"},
    ),
    observation(
        {"coding": [{"system": EXAMPLE_CODES, "code": "local-1"}]},
        res_id="o-local-sys",
        subject={"reference": "Patient/p-carl"},
    ),
    observation(_loinc("8867-4"), res_id="o-ext", subject={"reference": "http://other.org/fhir/Patient/1"}),
    observation(_loinc("8867-4"), res_id="o-ident", subject={"identifier": {"system": "urn:mrn", "value": "12345"}}),
    observation(_loinc("8310-5"), res_id="o-group", subject={"reference": "Group/p-anna"}),
    observation({"text": "Free text only"}, res_id="o-nosubj", subject=None),
    observation({"text": "Versioned"}, res_id="o-versioned", subject={"reference": "Patient/p-bob/_history/1"}),
    # A reference to this server written as an absolute URL (search.html#reference).
    observation({"text": "Absolute"}, res_id="o-abs", subject={"reference": "http://localhost/fhir/Patient/p-carl"}),
    # Observations for quantities, all about p-dora.
    observation(DOSE, res_id="q-mg", subject=DORA, valueQuantity=_ucum(5.4, "mg")),
    observation(DOSE, res_id="q-unit", subject=DORA, valueQuantity={"value": 5.4, "unit": "mg"}),
    observation(
        DOSE,
        res_id="q-other",
        subject=DORA,
        valueQuantity={"value": 5.4, "unit": "milligram", "system": "http://example.org/units", "code": "mg"},
    ),
    observation(_loinc("2345-7", "Glucose"), res_id="q-mgdl", subject=DORA, valueQuantity=_ucum(100, "mg/dL")),
    observation(_loinc("2345-7", "Glucose"), res_id="q-gl", subject=DORA, valueQuantity=_ucum(2, "g/L")),
    # Observations with string, CodeableConcept and dateTime values.
    observation(_loinc("94500-6", "SARS-CoV-2 RNA"), res_id="o-str", subject=DORA, valueString="Detected"),
    observation(
        _loinc("94500-6", "SARS-CoV-2 RNA"),
        res_id="o-concept",
        subject=DORA,
        valueCodeableConcept={"coding": [{"system": SNOMED, "code": "260373001"}], "text": "Detected"},
    ),
    observation(_loinc("21112-8", "Birth date"), res_id="o-date", subject=DORA, valueDateTime="2024-05-05T10:00:00Z"),
    # Blood pressure panels: bp-cross has a diastolic above the systolic of bp-high.
    _blood_pressure("bp-high", 150, 90),
    _blood_pressure("bp-cross", 130, 145),
    # Procedures for dates: performedDateTime at every precision, and Periods, closed and open.
    _procedure("dt-old", performedDateTime="1990-06-15"),
    _procedure("dt-year", performedDateTime="2023"),
    _procedure("dt-month", performedDateTime="2024-02"),
    _procedure("dt-day", performedDateTime="2024-01-15"),
    _procedure("dt-sec", performedDateTime="2024-01-15T10:30:15Z"),
    _procedure("dt-frac", performedDateTime="2024-01-15T10:30:15.250Z"),
    _procedure("dt-tz", performedDateTime="2024-01-01T23:30:00-05:00"),  # 2024-01-02T04:30:00Z
    _procedure("pr-closed", performedPeriod={"start": "2024-03-01", "end": "2024-03-31"}),
    _procedure("pr-open-end", performedPeriod={"start": "2024-06-01"}),
    _procedure("pr-open-start", performedPeriod={"end": "2022-12-31"}),
    _procedure("pr-none"),
    # Risk assessments for numbers.
    _risk("ra-45", 0.45),
    _risk("ra-50", 0.50),
    _risk("ra-54", 0.54),
    _risk("ra-55", 0.55),
    _risk("ra-56", 0.56),
    _risk("ra-none", None),
    # Canonical URLs for uri.
    _value_set("vs-123", "http://acme.org/fhir/ValueSet/123"),
    _value_set("vs-124", "http://acme.org/fhir/ValueSet/124"),
    _value_set("vs-bp", "http://acme.org/fhir/ValueSet/blood_pressure"),
    _value_set("vs-other", "http://other.org/fhir/ValueSet/123"),
    _value_set("vs-nourl", None),
    {
        "resourceType": "Questionnaire",
        "id": "qn-intake",
        "status": "active",
        "url": "http://example.org/Questionnaire/intake",
    },
]

# Written after DATASET, one after the other, for _lastUpdated (search.html#lastUpdated).
EARLY = {"resourceType": "Basic", "id": "lu-early", "code": {"text": "early"}}
LATE = {"resourceType": "Basic", "id": "lu-late", "code": {"text": "late"}}


@dataclass(frozen=True)
class Server:
    client: FlaskClient
    # meta.lastUpdated of lu-early and lu-late as the server wrote them, for {early} and {late}.
    stamps: dict[str, str]


@pytest.fixture(scope="module")
def server(module_database_url: str) -> Iterator[Server]:
    """The app with DATASET loaded, shared by every case of this module (they only read)."""
    app = create_app({"database_url": module_database_url, "auth_mode": "none"})
    app.testing = True
    client = app.test_client()
    for resource in DATASET:
        put(client, resource)
    early = put(client, EARLY)["meta"]["lastUpdated"]
    # The next write must get a later millisecond: wait for the clock, not for a fixed time.
    while datetime.now(UTC) <= datetime.fromisoformat(early) + timedelta(milliseconds=2):
        time.sleep(0.001)
    late = put(client, LATE)["meta"]["lastUpdated"]
    yield Server(client, {"early": early, "late": late})
    services_of(app).repository.engine.dispose()


# --- Running a case -----------------------------------------------------------------------------


def _get(server: Server, query: str) -> Any:
    """GET ``[base]/query``; the query is written unencoded, ``{early}``/``{late}`` filled in."""
    path, _, text = query.format(**server.stamps).partition("?")
    pairs = [tuple(part.split("=", 1)) for part in text.split("&") if part]
    if not any(name == "_count" for name, *_ in pairs):
        pairs.append(("_count", "200"))
    return server.client.get(f"/fhir/{path}", query_string=urlencode(pairs))


def _matches(server: Server, query: str) -> list[str]:
    """The ids the search matches, in the order the server gave them (all on one page)."""
    response = _get(server, query)
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["resourceType"] == "Bundle"
    assert "next" not in {link["relation"] for link in body.get("link", [])}
    return [entry["resource"]["id"] for entry in body.get("entry", []) if entry["search"]["mode"] == "match"]


def case(query: str, *expected: str, id: str | None = None, xfail: str | None = None) -> Any:
    """One row: the query and the ids it must find; ``xfail`` names a known bug (strict)."""
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(query, list(expected), id=id or query, marks=marks)


def _check_set(server: Server, query: str, expected: list[str]) -> None:
    assert sorted(_matches(server, query)) == sorted(expected)


OBSERVATIONS = (
    "o-hr", "o-local", "o-local-sys", "o-ext", "o-ident", "o-group", "o-nosubj", "o-abs",
    "o-versioned", "o-str", "o-concept", "o-date",
    "q-mg", "q-unit", "q-other", "q-mgdl", "q-gl", "bp-high", "bp-cross",
)  # fmt: skip


def _except(*ids: str) -> tuple[str, ...]:
    """Every Observation but ``ids``."""
    return tuple(res_id for res_id in OBSERVATIONS if res_id not in ids)


# --- string (search.html#string) ----------------------------------------------------------------

STRING_CASES = [
    # Default: starts with, on any part of a HumanName, ignoring case and accents.
    case("Patient?name=mül", "p-anna", "p-bob", id="name=mul-with-umlaut"),
    case("Patient?name=MUL", "p-anna", "p-bob"),
    case("Patient?name=MÜLLER", "p-anna", id="name=MULLER-with-umlaut"),
    case("Patient?name=muller", "p-anna"),
    case("Patient?name=ller"),
    case("Patient?name=dr", "p-anna", id="name=dr-prefix"),
    case("Patient?name=annie", "p-anna", id="name=annie-text"),
    case("Patient?name=rob", "p-bob", id="name=rob-second-given"),
    case("Patient?given=anna", "p-anna"),
    case("Patient?given=müller", id="given=muller-is-family"),
    case("Patient?family=mu", "p-anna", "p-bob"),
    case("Patient?family=anna"),
    # :exact is whole and case- and accent-sensitive.
    case("Patient?name:exact=Müller", "p-anna", id="name:exact=Muller-umlaut"),
    case("Patient?name:exact=müller", id="name:exact=muller-lowercase"),
    case("Patient?name:exact=Muller", id="name:exact=Muller-no-accent"),
    case("Patient?name:exact=Mül", id="name:exact=Mul-partial"),
    case("Patient?name:exact=Annie Müller", "p-anna", id="name:exact=text"),
    # :contains anywhere, still folded.
    case("Patient?name:contains=ULL", "p-anna", "p-bob"),
    case("Patient?name:contains=lle", "p-anna"),
    case("Patient?name:contains=mith", "p-carl"),
    case("Patient?name:contains=%", id="name:contains=percent-is-literal"),
    case("Patient?name:contains=_", id="name:contains=underscore-is-literal"),
    # Address parts.
    case("Patient?address-city=bost", "p-anna", "p-bob"),
    case("Patient?address-city=BOSTON", "p-anna"),
    case("Patient?address-city:exact=Boston", "p-anna"),
    case("Patient?address-city=zur", "p-dora", id="address-city=zur-umlaut"),
    case("Patient?address=12 main", "p-anna", id="address=line"),
    case("Patient?address=main", id="address=main-not-start"),
    case("Patient?address=can", "p-bob", id="address=country"),
    case("Patient?address:contains=street", "p-anna"),
    case("Patient?address-postalcode=021", "p-anna"),
    case("Patient?address-postalcode=k1a", "p-bob"),
    case("Patient?address-country=us", "p-anna"),
    case("Patient?address-country=switz", "p-dora"),
    # :missing
    case("Patient?address:missing=true", "p-carl", "p-empty"),
    case("Patient?family:missing=false", "p-anna", "p-bob", "p-carl", "p-dora"),
    case("Patient?given:missing=true", "p-empty"),
    case("Organization?name=acme", "org-acme", "org-labs"),
    case("Organization?name=labs", "org-labs", id="name=labs-alias"),
    case("Observation?value-string=det", "o-str", "o-concept", id="value-string=string-and-concept-text"),
    case("Observation?value-string:exact=Detected", "o-str", "o-concept"),
]


@pytest.mark.parametrize("query, expected", STRING_CASES)
def test_string(server: Server, query: str, expected: list[str]) -> None:
    """search.html#string: starts-with, :exact, :contains, :missing on HumanName, Address, string."""
    _check_set(server, query, expected)


# --- token (search.html#token) ------------------------------------------------------------------

LOINC_CODED = (
    "o-hr", "o-ext", "o-ident", "o-group", "q-mgdl", "q-gl", "bp-high", "bp-cross", "o-str", "o-concept", "o-date",
)  # fmt: skip

TOKEN_CASES = [
    case("Patient?gender=female", "p-anna", "p-dora"),
    case("Patient?gender=female,male", "p-anna", "p-bob", "p-dora"),
    case("Patient?gender:not=female", "p-bob", "p-carl", "p-empty"),
    case("Patient?gender:not=female,male", "p-carl", "p-empty"),
    case("Patient?gender:missing=true", "p-carl", "p-empty"),
    case("Patient?gender:missing=false", "p-anna", "p-bob", "p-dora"),
    case("Patient?active=true", "p-anna", "p-bob"),
    case("Patient?active=false", "p-carl"),
    case("Patient?active:not=true", "p-carl", "p-dora", "p-empty"),
    case("Patient?active:missing=true", "p-dora", "p-empty"),
    # Identifier: code, system|code, system|, |code, :of-type, :text, :not.
    case("Patient?identifier=12345", "p-anna", "p-carl", "p-dora"),
    case("Patient?identifier=urn:mrn|12345", "p-anna"),
    case("Patient?identifier=urn:mrn|", "p-anna", "p-bob"),
    case("Patient?identifier=|12345", "p-dora"),
    case("Patient?identifier=urn:other|12345"),
    case(f"Patient?identifier:of-type={V2_0203}|MR|12345", "p-anna", id="identifier:of-type=MR|12345"),
    case(f"Patient?identifier:of-type={V2_0203}|MR|67890", "p-bob", id="identifier:of-type=MR|67890"),
    case(f"Patient?identifier:of-type={V2_0203}|DL|12345", "p-carl", id="identifier:of-type=DL|12345"),
    case(f"Patient?identifier:of-type={V2_0203}|MR|99999", id="identifier:of-type=MR|99999"),
    case("Patient?identifier:of-type=http://other.org|MR|12345", id="identifier:of-type=other-system"),
    case(f"Patient?identifier:of-type={ID_TYPES}|LOCAL|P-777", "p-bob", id="identifier:of-type=first-coding"),
    case(
        f"Patient?identifier:of-type={V2_0203}|PPN|P-777",
        "p-bob",
        id="identifier:of-type=second-coding",
    ),
    case("Patient?identifier:text=medical", "p-anna"),
    case("Patient?identifier:not=urn:mrn|12345", "p-bob", "p-carl", "p-dora", "p-empty"),
    # ContactPoint: the value alone; email and phone filter on ContactPoint.system.
    case("Patient?telecom=555-1234", "p-anna"),
    case("Patient?telecom=anna@example.org", "p-anna"),
    case("Patient?phone=555-9999", "p-carl"),
    case("Patient?email=anna@example.org", "p-anna"),
    case("Patient?email=555-1234"),
    case("Patient?email:missing=true", "p-carl", "p-dora", "p-empty"),
    # meta: _tag and _security are tokens, _profile a uri (search.html#all).
    case(f"Patient?_tag={TAGS}|vip", "p-anna"),
    case("Patient?_tag=new", "p-bob"),
    case(f"Patient?_tag={TAGS}|", "p-anna", "p-bob"),
    case("Patient?_tag:not=vip", "p-bob", "p-carl", "p-dora", "p-empty"),
    case(f"Patient?_security={CONFIDENTIALITY}|R", "p-anna"),
    case("Patient?_security:missing=true", "p-bob", "p-carl", "p-dora", "p-empty"),
    case(f"Patient?_profile={PROFILES}/special-patient", "p-anna"),
    case(f"Patient?_profile:below={PROFILES}/", "p-anna", "p-bob"),
    case("Patient?_profile:missing=true", "p-carl", "p-dora", "p-empty"),
    # CodeableConcept: codings with and without a system; :text on text and display.
    case("Observation?code=8867-4", "o-hr", "o-ext", "o-ident"),
    case("Observation?code=http://loinc.org|8867-4", "o-hr", "o-ext", "o-ident"),
    case("Observation?code=http://example.org/codes|8867-4"),
    case("Observation?code=http://loinc.org|", *LOINC_CODED),
    case("Observation?code=local-1", "o-local", "o-local-sys"),
    case("Observation?code=|local-1", "o-local"),
    case("Observation?code=http://example.org/codes|local-1", "o-local-sys"),
    case("Observation?code=LOCAL-1", id="code=LOCAL-1-case-sensitive"),
    case("Observation?code:text=pulse", "o-hr", id="code:text=concept-text"),
    case("Observation?code:text=HEART", "o-hr", id="code:text=display"),
    case("Observation?code:text=local", "o-local"),
    case("Observation?code:text=free text", "o-nosubj"),
    case("Observation?code:text=gluc", "q-mgdl", "q-gl"),
    case("Observation?code:text=8867"),
    case("Observation?code:text=sars-cov", "o-str", "o-concept"),
    case(f"Observation?value-concept={SNOMED}|260373001", "o-concept", id="value-concept=snomed|260373001"),
    case("Observation?value-concept:text=detected", "o-concept"),
    case("Observation?code:not=http://loinc.org|8867-4", *_except("o-hr", "o-ext", "o-ident")),
    case("Observation?category=vital-signs", "o-hr", "bp-high", "bp-cross"),
    case("Observation?category:not=vital-signs", *_except("o-hr", "bp-high", "bp-cross")),
    case("Observation?category:missing=true", *_except("o-hr", "bp-high", "bp-cross")),
    case("Observation?component-code=8480-6", "bp-high", "bp-cross"),
    case("Observation?combo-code=2345-7,8462-4", "q-mgdl", "q-gl", "bp-high", "bp-cross"),
    case("Patient?_id=p-anna,p-empty", "p-anna", "p-empty"),
    # deceased is computed: Patient.deceased.exists() and Patient.deceased != false.
    case("Patient?deceased=true", "p-carl"),
    case("Patient?deceased=false", "p-anna", "p-bob", "p-dora", "p-empty"),
    case("Patient?_id:not=p-anna", "p-bob", "p-carl", "p-dora", "p-empty"),
]


@pytest.mark.parametrize("query, expected", TOKEN_CASES)
def test_token(server: Server, query: str, expected: list[str]) -> None:
    """search.html#token: code, system|code, system|, |code and the modifiers."""
    _check_set(server, query, expected)


# --- reference, chaining, _has (search.html#reference, #chaining, #has) ----------------------


REFERENCE_CASES = [
    case("Observation?subject=Patient/p-anna", "o-hr"),
    case("Observation?subject=p-anna", "o-hr", "o-group", id="subject=bare-id-any-type"),
    case("Observation?subject:Patient=p-anna", "o-hr"),
    case("Observation?subject:Group=p-anna", "o-group"),
    case("Observation?subject=Group/p-anna", "o-group"),
    case("Observation?subject=http://localhost/fhir/Patient/p-anna", "o-hr", id="subject=local-absolute-url"),
    case("Observation?subject=http://other.org/fhir/Patient/1", "o-ext", id="subject=external-url"),
    case("Observation?subject=Patient/1", id="subject=Patient/1-not-external"),
    case("Observation?subject=http://localhost/fhir/Patient/1", id="subject=local-url-not-external"),
    case(
        "Observation?subject=http://localhost/fhir/Patient/p-carl",
        "o-local-sys",
        "o-abs",
        id="subject=local-url-finds-both-spellings",
    ),
    case(
        "Observation?subject=Patient/p-carl",
        "o-local-sys",
        "o-abs",
        id="subject=Type/id-finds-absolute-local-url",
    ),
    case(
        "Observation?subject:Patient.name=smith",
        "o-local-sys",
        "o-abs",
        id="chain-through-absolute-local-url",
    ),
    case("Observation?subject=Patient/p-bob", "o-local", "o-versioned", id="subject=also-versioned-reference"),
    case("Observation?subject=Patient/p-anna,Patient/p-bob", "o-hr", "o-local", "o-versioned"),
    case("Observation?subject:missing=true", "o-nosubj"),
    case("Observation?subject:missing=false", *_except("o-nosubj")),
    case("Observation?subject:identifier=urn:mrn|12345", "o-ident"),
    case("Observation?subject:identifier=12345", "o-ident"),
    case("Observation?subject:identifier=urn:other|12345"),
    case("Observation?patient=p-anna", "o-hr", id="patient=p-anna-not-group"),
    case("Patient?organization=org-child", "p-anna"),
    case("Patient?organization:missing=true", "p-carl", "p-dora", "p-empty"),
    case("Organization?partof=Organization/org-parent", "org-child"),
    # Chains, one to three references long.
    case("Observation?subject:Patient.name=müller", "o-hr", id="subject:Patient.name=muller"),
    case("Observation?subject:Patient.gender=male", "o-local", "o-versioned"),
    case("Observation?subject.gender=male", "o-local", "o-versioned", id="subject.gender-untyped"),
    case("Observation?subject:Patient.organization.name=parent", "o-local", "o-versioned"),
    case("Observation?subject:Patient.organization.name=child", "o-hr"),
    case("Observation?subject:Patient.organization.partof.name=parent", "o-hr"),
    case("Observation?subject:Patient.organization.partof:missing=true", "o-local", "o-versioned"),
    case("Observation?subject:Group.type=person", "o-group"),
    # _has, once and nested twice.
    case("Patient?_has:Observation:patient:code=local-1", "p-bob", "p-carl"),
    case("Patient?_has:Observation:subject:code=8310-5", id="_has-group-subject-is-not-patient"),
    case("Organization?_has:Patient:organization:gender=male", "org-parent"),
    case("Organization?_has:Patient:organization:_has:Observation:patient:code=8867-4", "org-child"),
    case("Organization?_has:Patient:organization:_has:Observation:patient:code=local-1", "org-parent"),
    case("Organization?_has:Patient:organization:_has:Observation:subject:code=85354-6"),
]


@pytest.mark.parametrize("query, expected", REFERENCE_CASES)
def test_reference(server: Server, query: str, expected: list[str]) -> None:
    """search.html#reference, #chaining and #has."""
    _check_set(server, query, expected)


# --- date (search.html#date, #prefix) -----------------------------------------------------------

BEFORE_2024_01_15 = ("dt-old", "dt-year", "dt-tz", "pr-open-start")
ON_2024_01_15 = ("dt-day", "dt-sec", "dt-frac")

DATE_CASES = [
    # eq at every precision: the target must lie within the search value's range.
    case("Procedure?date=2023", "dt-year"),
    case("Procedure?date=2024", "dt-day", "dt-month", "dt-sec", "dt-frac", "dt-tz", "pr-closed"),
    case("Procedure?date=2024-01", "dt-day", "dt-sec", "dt-frac", "dt-tz"),
    case("Procedure?date=2024-01-15", *ON_2024_01_15),
    case("Procedure?date=eq2024-01-15", *ON_2024_01_15),
    case("Procedure?date=2024-01-15T10:30", "dt-sec", "dt-frac", id="date=minute"),
    case("Procedure?date=2024-01-15T10:30Z", "dt-sec", "dt-frac", id="date=minute-Z"),
    case("Procedure?date=2024-01-15T10:31Z", id="date=other-minute"),
    case("Procedure?date=2024-01-15T10:30:15Z", "dt-sec", "dt-frac", id="date=second"),
    case("Procedure?date=2024-01-15T10:30:15.25Z", "dt-frac", id="date=fraction-2"),
    case("Procedure?date=2024-01-15T10:30:15.2Z", "dt-frac", id="date=fraction-1"),
    case("Procedure?date=2024-01-15T10:30:15.250Z", "dt-frac", id="date=fraction-3"),
    case("Procedure?date=2024-01-15T10:30:15.3Z", id="date=other-fraction"),
    # Time zones: everything compares in UTC.
    case("Procedure?date=2024-01-15T11:30:15+01:00", "dt-sec", "dt-frac", id="date=second+01:00"),
    case("Procedure?date=2024-01-01", id="date=local-day-of-dt-tz"),
    case("Procedure?date=2024-01-02", "dt-tz", id="date=utc-day-of-dt-tz"),
    case("Procedure?date=2024-01-01T23:30:00-05:00", "dt-tz", id="date=dt-tz-as-written"),
    case("Procedure?date=2024-01-02T04:30:00Z", "dt-tz", id="date=dt-tz-in-utc"),
    case("Procedure?date=2024-01-02T04:30Z", "dt-tz", id="date=dt-tz-minute-utc"),
    # Periods: contained, or not, by the search range.
    case("Procedure?date=2024-03", "pr-closed"),
    case("Procedure?date=2024-03-15", id="date=day-inside-period"),
    case("Procedure?date=2030", id="date=year-inside-open-period"),
    # Every prefix, against instants, dates and (open) periods.
    case("Procedure?date=ne2024-01", "dt-old", "dt-year", "dt-month", "pr-closed", "pr-open-end", "pr-open-start"),
    case("Procedure?date=gt2024-01-15", "dt-month", "pr-closed", "pr-open-end"),
    case("Procedure?date=gt2024-02-15", "dt-month", "pr-closed", "pr-open-end"),
    case("Procedure?date=sa2024-02-15", "pr-closed", "pr-open-end"),
    case("Procedure?date=lt2024-01-15", *BEFORE_2024_01_15),
    case("Procedure?date=eb2024-01-15", *BEFORE_2024_01_15),
    case("Procedure?date=lt2023-06", "dt-old", "dt-year", "pr-open-start"),
    case("Procedure?date=eb2023-06", "dt-old", "pr-open-start"),
    case("Procedure?date=ge2024-01-15", *ON_2024_01_15, "dt-month", "pr-closed", "pr-open-end"),
    case("Procedure?date=le2024-01-15", *BEFORE_2024_01_15, *ON_2024_01_15),
    case("Procedure?date=gt2024-03-15", "pr-closed", "pr-open-end"),
    case("Procedure?date=sa2024-03-15", "pr-open-end"),
    case("Procedure?date=eb2024-03-15", *BEFORE_2024_01_15, *ON_2024_01_15, "dt-month"),
    case("Procedure?date=ge2024-06-01T00:00:00Z", "pr-open-end"),
    case("Procedure?date=gt2100", "pr-open-end"),
    case("Procedure?date=lt1900", "pr-open-start"),
    case("Procedure?date=le0001", "pr-open-start", id="date=le0001"),
    case("Procedure?date=ge9999", "pr-open-end", id="date=ge9999"),
    # ap: a window around the value (10 % of its distance from now); old dates only, so the
    # answer is the same whichever year the suite runs in.
    case("Procedure?date=ap1990-06-15", "dt-old", "pr-open-start"),
    case("Procedure?date=ap0001-01-01", "pr-open-start", id="date=ap0001"),
    case("Procedure?date=ap9999-12-31", "pr-open-end", id="date=ap9999"),
    case("Procedure?date:missing=true", "pr-none"),
    case("Procedure?date:missing=false", *BEFORE_2024_01_15, *ON_2024_01_15, "dt-month", "pr-closed", "pr-open-end"),
    case("Procedure?date=ge2024-01-15&date=lt2024-02", *ON_2024_01_15),
    case("Procedure?date=2023,2024-03", "dt-year", "pr-closed"),
    # birthdate: a date.
    case("Patient?birthdate=1970", "p-anna"),
    case("Patient?birthdate=1970-05", "p-anna"),
    case("Patient?birthdate=1970-05-01", "p-anna"),
    case("Patient?birthdate=1970-05-02"),
    case("Patient?birthdate=1970-05-01T10:00:00Z", id="birthdate=second-inside-the-day"),
    case("Patient?birthdate=ge1970-05-01T10:00:00Z", "p-anna", "p-bob", "p-dora", id="birthdate=ge-second"),
    case("Patient?birthdate=gt1980", "p-bob", "p-dora"),
    case("Patient?birthdate=lt1985-07-20", "p-anna"),
    case("Patient?birthdate=le1985-07-20", "p-anna", "p-bob"),
    case("Patient?birthdate=ge1985-07-20", "p-bob", "p-dora"),
    case("Patient?birthdate=ne1985-07-20", "p-anna", "p-dora"),
    case("Patient?birthdate=sa1985", "p-dora"),
    case("Patient?birthdate=eb1985", "p-anna"),
    case("Patient?birthdate:missing=true", "p-carl", "p-empty"),
    case("Patient?death-date=2020-03", "p-carl"),
    case("Patient?birthdate=ap1970", "p-anna"),
    case("Observation?value-date=lt2025", "o-date"),
    # _lastUpdated against the instants the server wrote lu-early and lu-late at.
    case("Basic?_lastUpdated={early}", "lu-early", id="_lastUpdated=early"),
    case("Basic?_lastUpdated=ne{early}", "lu-late", id="_lastUpdated=ne-early"),
    case("Basic?_lastUpdated=gt{early}", "lu-late", id="_lastUpdated=gt-early"),
    case("Basic?_lastUpdated=sa{early}", "lu-late", id="_lastUpdated=sa-early"),
    case("Basic?_lastUpdated=ge{early}", "lu-early", "lu-late", id="_lastUpdated=ge-early"),
    case("Basic?_lastUpdated=ge{late}", "lu-late", id="_lastUpdated=ge-late"),
    case("Basic?_lastUpdated=lt{late}", "lu-early", id="_lastUpdated=lt-late"),
    case("Basic?_lastUpdated=eb{late}", "lu-early", id="_lastUpdated=eb-late"),
    case("Basic?_lastUpdated=le{early}", "lu-early", id="_lastUpdated=le-early"),
    case("Basic?_lastUpdated=le{late}", "lu-early", "lu-late", id="_lastUpdated=le-late"),
    case("Basic?_lastUpdated=gt2000", "lu-early", "lu-late"),
    case("Basic?_lastUpdated=lt2000"),
]


@pytest.mark.parametrize("query, expected", DATE_CASES)
def test_date(server: Server, query: str, expected: list[str]) -> None:
    """search.html#date and #prefix: precision ranges, every prefix, time zones, Periods, _lastUpdated."""
    _check_set(server, query, expected)


# --- number and quantity (search.html#number, #quantity) --------------------------------------

NUMBER_CASES = [
    # 0.5 means [0.45, 0.55): as precise as written (search.html#number).
    case("RiskAssessment?probability=0.5", "ra-45", "ra-50", "ra-54"),
    case("RiskAssessment?probability=5e-1", "ra-45", "ra-50", "ra-54"),
    case("RiskAssessment?probability=0.50", "ra-50"),
    case("RiskAssessment?probability=0.54", "ra-54"),
    case("RiskAssessment?probability=gt0.5", "ra-54", "ra-55", "ra-56"),
    case("RiskAssessment?probability=ge0.54", "ra-54", "ra-55", "ra-56"),
    case("RiskAssessment?probability=lt0.5", "ra-45"),
    case("RiskAssessment?probability=le0.5", "ra-45", "ra-50"),
    case("RiskAssessment?probability=ne0.5", "ra-55", "ra-56"),
    case("RiskAssessment?probability=sa0.54", "ra-55", "ra-56"),
    case("RiskAssessment?probability=eb0.5", "ra-45"),
    case("RiskAssessment?probability=ap0.52", "ra-50", "ra-54", "ra-55", "ra-56"),
    case("RiskAssessment?probability:missing=true", "ra-none"),
    case("RiskAssessment?probability=0.45,0.56", "ra-45", "ra-56"),
    case("RiskAssessment?probability=gt0.5&probability=lt0.56", "ra-54", "ra-55"),
]


@pytest.mark.parametrize("query, expected", NUMBER_CASES)
def test_number(server: Server, query: str, expected: list[str]) -> None:
    """search.html#number: implicit precision ranges and prefixes."""
    _check_set(server, query, expected)


QUANTITIES = ("q-mg", "q-unit", "q-other", "q-mgdl", "q-gl")
MG_5_4 = ("q-mg", "q-unit", "q-other")

QUANTITY_CASES = [
    case(f"Observation?value-quantity=5.4|{UCUM}|mg", "q-mg", id="value-quantity=5.4|ucum|mg"),
    case("Observation?value-quantity=5.4||mg", *MG_5_4),
    case("Observation?value-quantity=5.4|http://example.org/units|mg", "q-other"),
    case(f"Observation?value-quantity=5.4|{UCUM}|g", id="value-quantity=5.4|ucum|g"),
    case("Observation?value-quantity=5.4", *MG_5_4),
    case("Observation?value-quantity=5.40", *MG_5_4),
    case("Observation?value-quantity=5", *MG_5_4, id="value-quantity=5-covers-5.4"),
    case("Observation?value-quantity=5.0"),
    case("Observation?value-quantity=gt5", *MG_5_4, "q-mgdl"),
    case("Observation?value-quantity=lt5", "q-gl"),
    case("Observation?value-quantity=ge100", "q-mgdl"),
    case("Observation?value-quantity=le2", "q-gl"),
    case("Observation?value-quantity=ne5.4", "q-mgdl", "q-gl"),
    case("Observation?value-quantity=sa5.4", "q-mgdl"),
    case("Observation?value-quantity=eb5.4", "q-gl"),
    case("Observation?value-quantity=ap95", "q-mgdl"),
    case("Observation?value-quantity=gt5.4||mg", id="value-quantity=gt5.4||mg"),
    # Canonical UCUM: 100 mg/dL is 1 g/L, 2 g/L is 200 mg/dL, 5.4 mg is 0.0054 g.
    case(f"Observation?value-quantity=1|{UCUM}|g/L", "q-mgdl", id="value-quantity=1|ucum|g/L"),
    case(f"Observation?value-quantity=gt0.5|{UCUM}|g/L", "q-mgdl", "q-gl", id="value-quantity=gt0.5|ucum|g/L"),
    case(f"Observation?value-quantity=lt0.5|{UCUM}|g/L", id="value-quantity=lt0.5|ucum|g/L"),
    case(f"Observation?value-quantity=100|{UCUM}|mg/dL", "q-mgdl", id="value-quantity=100|ucum|mg/dL"),
    case(f"Observation?value-quantity=200|{UCUM}|mg/dL", "q-gl", id="value-quantity=200|ucum|mg/dL"),
    case(f"Observation?value-quantity=0.0054|{UCUM}|g", "q-mg", id="value-quantity=0.0054|ucum|g"),
    case("Observation?value-quantity:missing=true", *_except(*QUANTITIES)),
    case("Observation?value-quantity=5.4,2", *MG_5_4, "q-gl"),
]


@pytest.mark.parametrize("query, expected", QUANTITY_CASES)
def test_quantity(server: Server, query: str, expected: list[str]) -> None:
    """search.html#quantity: number|system|code, number||unit, bare numbers, canonical units."""
    _check_set(server, query, expected)


# --- uri (search.html#uri) ----------------------------------------------------------------------

URI_CASES = [
    case("ValueSet?url=http://acme.org/fhir/ValueSet/123", "vs-123"),
    case("ValueSet?url=http://acme.org/fhir/ValueSet"),
    case("ValueSet?url=http://acme.org/fhir/ValueSet/12", id="url=no-prefix-match"),
    case("ValueSet?url:below=http://acme.org/fhir/", "vs-123", "vs-124", "vs-bp"),
    case("ValueSet?url:below=http://ACME.org/fhir/", id="url:below=case-sensitive"),
    case("ValueSet?url:above=http://ACME.org/fhir/ValueSet/123", id="url:above=case-sensitive"),
    case("ValueSet?url:below=http://acme.org/fhir/ValueSet/blood%", id="url:below=percent-is-literal"),
    case("ValueSet?url:above=http://acme.org/fhir/ValueSet/blood-pressure", id="url:above=underscore-is-literal"),
    case("ValueSet?url:above=http://acme.org/fhir/ValueSet/blood_pressure/_history/2", "vs-bp"),
    case("ValueSet?url:below=http://acme.org/fhir/ValueSet/123", "vs-123"),
    case("ValueSet?url:above=http://acme.org/fhir/ValueSet/123/_history/5", "vs-123"),
    case("ValueSet?url:above=http://acme.org/fhir/ValueSet/124", "vs-124"),
    case("ValueSet?url:above=http://acme.org/fhir"),
    case("ValueSet?url:missing=true", "vs-nourl"),
    case("ValueSet?url=http://acme.org/fhir/ValueSet/123,http://other.org/fhir/ValueSet/123", "vs-123", "vs-other"),
    case("Questionnaire?url:below=http://example.org/", "qn-intake"),
    case("Questionnaire?url:above=http://example.org/Questionnaire/intake/extra", "qn-intake"),
]


@pytest.mark.parametrize("query, expected", URI_CASES)
def test_uri(server: Server, query: str, expected: list[str]) -> None:
    """search.html#uri: exact, :below, :above, :missing."""
    _check_set(server, query, expected)


# --- composite (search.html#composite) --------------------------------------------------------

COMPOSITE_CASES = [
    case("Observation?component-code-value-quantity=http://loinc.org|8480-6$gt140", "bp-high"),
    case("Observation?component-code-value-quantity=http://loinc.org|8462-4$gt140", "bp-cross"),
    case("Observation?component-code-value-quantity=8480-6$gt100", "bp-high", "bp-cross"),
    case("Observation?component-code-value-quantity=8462-4$90", "bp-high"),
    case(
        f"Observation?component-code-value-quantity=8462-4$90|{UCUM}|mm[Hg]",
        "bp-high",
        id="component-code-value-quantity=8462-4$90|ucum|mm[Hg]",
    ),
    case("Observation?component-code-value-quantity=8480-6$gt140,8462-4$gt140", "bp-high", "bp-cross"),
    case(
        "Observation?component-code-value-quantity=8480-6$gt140&component-code-value-quantity=8462-4$lt100",
        "bp-high",
    ),
    case("Observation?component-code-value-quantity:missing=false", "bp-high", "bp-cross"),
    case("Observation?component-code-value-quantity:missing=true", *_except("bp-high", "bp-cross")),
    case("Observation?combo-code-value-quantity=http://loinc.org|8480-6$gt140", "bp-high"),
    case("Observation?combo-code-value-quantity=http://loinc.org|2345-7$100", "q-mgdl"),
    case(
        f"Observation?combo-code-value-quantity=http://loinc.org|2345-7$gt0.5|{UCUM}|g/L",
        "q-mgdl",
        "q-gl",
        id="combo-code-value-quantity=2345-7$gt0.5|ucum|g/L",
    ),
    case("Observation?code-value-quantity=http://loinc.org|2345-7$lt50", "q-gl"),
    case("Observation?code-value-quantity=http://loinc.org|8480-6$gt140", id="code-value-quantity=component-only"),
    case(f"Observation?code-value-quantity={EXAMPLE_CODES}|dose$5.4", *MG_5_4, id="code-value-quantity=dose$5.4"),
    case("Observation?code-value-string=http://loinc.org|94500-6$det", "o-str"),
    case("Observation?code-value-string=94500-6$detected,8867-4$detected", "o-str"),
    case("Observation?code-value-concept=94500-6$260373001", "o-concept"),
    case(f"Observation?code-value-concept=94500-6${SNOMED}|260373001", "o-concept", id="code-value-concept=system"),
    case("Observation?code-value-concept=8867-4$260373001"),
    case("Observation?code-value-date=21112-8$2024-05-05", "o-date"),
    case("Observation?code-value-date=21112-8$ge2024", "o-date"),
    case("Observation?code-value-date=21112-8$gt2024-05-05"),
    case("Observation?code-value-date=21112-8$2024-05-05T12:00:00+02:00", "o-date", id="code-value-date=tz"),
]


@pytest.mark.parametrize("query, expected", COMPOSITE_CASES)
def test_composite(server: Server, query: str, expected: list[str]) -> None:
    """search.html#composite: both values must hold for the same element (component)."""
    _check_set(server, query, expected)


# --- combining and escaping (search.html#combining, #escaping) --------------------------------

COMBINING_CASES = [
    case("Organization?name=parent,child", "org-parent", "org-child"),
    case("Organization?name=acme\\,", "org-acme", id="name=acme-escaped-comma"),
    case("Organization?name=acme\\, inc", "org-acme", id="name=acme-escaped-comma-inc"),
    case("Organization?name=acme\\,inc", id="name=acme-escaped-comma-no-space"),
    case("Organization?name=acme\\, inc,parent", "org-acme", "org-parent", id="name=escaped-comma-then-or"),
    case("Organization?name:exact=Acme\\, Inc", "org-acme", id="name:exact=escaped-comma"),
    case("Organization?name:contains=e\\, i", "org-acme", id="name:contains=escaped-comma"),
    case("Organization?name=acme&name=labs", "org-labs"),
    case("Organization?name=acme&name:contains=inc", "org-acme"),
    case("Organization?identifier=urn:acme|A\\|1", "org-acme", id="identifier=escaped-pipe"),
    case("Organization?identifier=A\\|1", "org-acme", id="identifier=escaped-pipe-no-system"),
    case("Organization?identifier=urn:acme|A", id="identifier=unescaped-part"),
    case("Patient?given=anna&family=müller", "p-anna", id="given&family"),
    case("Patient?given=anna&family=mullins", id="given&family-no-match"),
    case("Patient?gender=female&birthdate=gt1980", "p-dora"),
    case("Patient?gender=female,male&active=true", "p-anna", "p-bob"),
    case("Observation?code=8867-4&subject:missing=false", "o-hr", "o-ext", "o-ident"),
]


@pytest.mark.parametrize("query, expected", COMBINING_CASES)
def test_combining(server: Server, query: str, expected: list[str]) -> None:
    """search.html#combining: commas OR, repeated parameters AND; ``\\,`` is a literal comma."""
    _check_set(server, query, expected)


# --- _sort (search.html#sort) -----------------------------------------------------------------

BY_START = (
    "pr-open-start", "dt-old", "dt-year", "dt-tz", "dt-day", "dt-sec", "dt-frac",
    "dt-month", "pr-closed", "pr-open-end", "pr-none",
)  # fmt: skip
BY_END_DESCENDING = (
    "pr-open-end", "pr-closed", "dt-month", "dt-day", "dt-sec", "dt-frac", "dt-tz",
    "dt-year", "pr-open-start", "dt-old", "pr-none",
)  # fmt: skip

SORT_CASES = [
    case("Patient?_sort=family", "p-anna", "p-bob", "p-carl", "p-dora", "p-empty"),
    case("Patient?_sort=-family", "p-dora", "p-carl", "p-bob", "p-anna", "p-empty"),
    case("Patient?_sort=-gender", "p-bob", "p-anna", "p-dora", "p-carl", "p-empty"),
    case("Patient?_sort=gender,family", "p-anna", "p-dora", "p-bob", "p-carl", "p-empty"),
    case("Patient?_sort=-gender,-family", "p-bob", "p-dora", "p-anna", "p-carl", "p-empty"),
    case("Patient?_sort=birthdate", "p-anna", "p-bob", "p-dora", "p-carl", "p-empty"),
    case("Patient?_sort=-birthdate", "p-dora", "p-bob", "p-anna", "p-carl", "p-empty"),
    case("Patient?_sort=birthdate,-family&gender:missing=false", "p-anna", "p-bob", "p-dora"),
    # Ascending by the earliest instant each covers, descending by the latest.
    case("Procedure?_sort=date", *BY_START),
    case("Procedure?_sort=-date", *BY_END_DESCENDING),
    case("RiskAssessment?_sort=probability", "ra-45", "ra-50", "ra-54", "ra-55", "ra-56", "ra-none"),
    case("RiskAssessment?_sort=-probability", "ra-56", "ra-55", "ra-54", "ra-50", "ra-45", "ra-none"),
    case("ValueSet?_sort=url", "vs-123", "vs-124", "vs-bp", "vs-other", "vs-nourl"),
    case("ValueSet?_sort=-url", "vs-other", "vs-bp", "vs-124", "vs-123", "vs-nourl"),
    case("Patient?_sort=-_id", "p-empty", "p-dora", "p-carl", "p-bob", "p-anna"),
]


@pytest.mark.parametrize("query, expected", SORT_CASES)
def test_sort(server: Server, query: str, expected: list[str]) -> None:
    """search.html#sort: keys in priority order, ``-`` descending; resources without the value last."""
    assert _matches(server, query) == expected


@pytest.mark.parametrize("query, expected", SORT_CASES)
def test_sort_across_pages(server: Server, query: str, expected: list[str]) -> None:
    """http.html#paging with search.html#sort: two at a time, the same order, missing values still last."""
    response = _get(server, f"{query}&_count=2")
    seen: list[str] = []
    while True:
        body = response.get_json()
        assert response.status_code == 200, body
        seen += [entry["resource"]["id"] for entry in body.get("entry", []) if entry["search"]["mode"] == "match"]
        links = {link["relation"]: link["url"] for link in body["link"]}
        if "next" not in links or len(seen) > len(expected):
            break
        response = server.client.get(links["next"].removeprefix("http://localhost"))
    assert seen == expected


# --- Values longer than the index columns ----------------------------------------------------


def test_string_longer_than_its_index_column(server: Server) -> None:
    """search.html#string: a 3,000-character name is stored, found by its start and by :exact
    (posted as a form: the name alone is past ``max_url_bytes`` once percent-encoded)."""
    name = "Zed" + "ü" * 2997
    practitioner = {"resourceType": "Practitioner", "id": "pr-long", "name": [{"text": name}]}
    response = server.client.put("/fhir/Practitioner/pr-long", json=practitioner)
    assert response.status_code == 201, response.get_json()
    _check_set(server, "Practitioner?name=zeduu", ["pr-long"])
    found = server.client.post("/fhir/Practitioner/_search", data={"name:exact": name})
    assert found.status_code == 200, found.get_json()
    assert [entry["resource"]["id"] for entry in found.get_json()["entry"]] == ["pr-long"]


# --- errors (search.html#errors) --------------------------------------------------------------

MALFORMED = [
    ("Patient?birthdate=2024-13-01", "birthdate"),
    ("Patient?birthdate=2024-02-30", "birthdate"),
    ("Patient?birthdate=gt", "birthdate"),
    ("Patient?birthdate=yesterday", "birthdate"),
    ("Procedure?date=2024-01-15T25:00", "date"),
    ("Patient?_lastUpdated=2024-1-1", "_lastUpdated"),
    ("RiskAssessment?probability=abc", "probability"),
    ("RiskAssessment?probability=.5", "probability"),
    ("RiskAssessment?probability=xx0.5", "probability"),
    ("Observation?value-quantity=5.4|http://unitsofmeasure.org", "value-quantity"),
    ("Observation?value-quantity=5.4||", "value-quantity"),
    ("Observation?value-quantity=five||mg", "value-quantity"),
    ("Observation?subject=Encounter/e1", "subject"),
    ("Observation?subject=Patient/a/b", "subject"),
    ("Observation?subject:Patient=Group/p-anna", "subject:Patient"),
    ("Observation?subject:identifier=|", "subject:identifier"),
    ("Observation?subject:Patient.birthdate=notadate", "subject:Patient.birthdate"),
    ("Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR", "identifier:of-type"),
    ("Patient?gender:of-type=a|b|c", "gender:of-type"),
    ("Patient?gender:missing=maybe", "gender:missing"),
    ("Patient?gender:missing=true,false", "gender:missing"),
    ("Patient?_id:missing=true", "_id:missing"),
    ("Patient?identifier=|", "identifier"),
    ("Patient?name:below=x", "name:below"),
    ("Patient?name=", "name"),
    ("Patient?gender=female,", "gender"),
    ("Patient?_id:text=x", "_id:text"),
    ("ValueSet?url:contains=x", "url:contains"),
    ("Observation?component-code-value-quantity=8480-6", "component-code-value-quantity"),
    ("Observation?component-code-value-quantity=8480-6$abc", "component-code-value-quantity"),
    ("Observation?code-value-quantity=8480-6$gt140$x", "code-value-quantity"),
    ("Patient?_has:Observation:nope:code=x", "_has:Observation:nope:code"),
    ("Patient?_has:Nope:patient:code=x", "_has:Nope:patient:code"),
    ("Patient?_sort=nonsense", "_sort"),
    ("Observation?_sort=component-code-value-quantity", "_sort"),
    ("Patient?_count=-1", "_count"),
]


@pytest.mark.parametrize("query, parameter", [pytest.param(q, p, id=q) for q, p in MALFORMED])
def test_malformed_is_400_naming_the_parameter(server: Server, query: str, parameter: str) -> None:
    """search.html#errors: a known parameter with a bad value is refused with an OperationOutcome."""
    response = _get(server, query)
    body = response.get_json()
    assert response.status_code == 400, body
    assert body["resourceType"] == "OperationOutcome"
    issue = body["issue"][0]
    assert issue["severity"] == "error"
    assert issue["expression"] == [parameter]
    assert issue["diagnostics"]


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("Observation?code:in=http://example.org/ValueSet/vitals", "not-found"),
        ("Observation?code:not-in=http://hl7.org/fhir/ValueSet/observation-codes", "not-supported"),
        ("Observation?code:above=http://loinc.org|8867-4", "not-supported"),
        ("Observation?code:below=http://loinc.org|8867-4", "not-supported"),
    ],
)
def test_terminology_modifiers_beyond_what_is_held_are_refused(server: Server, query: str, code: str) -> None:
    """search.html#modifiers: :in, :not-in, :above, :below are answered from the value sets and code
    systems the server holds; a value set it does not know, or one needing a code system it does not
    hold (LOINC), is refused naming the parameter rather than answered wrongly (search.html#errors)."""
    response = _get(server, query)
    body = response.get_json()
    assert response.status_code == 400, body
    issue = body["issue"][0]
    assert issue["code"] == code
    assert issue["expression"] == ["code"]
