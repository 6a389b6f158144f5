"""SMART scopes (v1 and v2), what they grant, and how a patient-context grant confines a search."""

from __future__ import annotations

from functools import partial

import pytest

from fhir_twin.errors import Forbidden
from fhir_twin.search.parser import parse
from fhir_twin.search.query import AnyOf, Criterion, InCompartment, ReverseChain, Search
from fhir_twin.security import access
from fhir_twin.security.principal import Principal
from fhir_twin.security.scopes import Scope, is_scope, parse_scope, parse_scopes, within
from tests import factories

pytestmark = pytest.mark.audited


def search(types: tuple[str, ...], *query: tuple[str, str]) -> Search:
    return parse(types, list(query), strict=True, default_count=20, max_count=100)


# --- parse_scope -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # SMART v1: read is rs, write is cud, * is everything.
        ("patient/Observation.read", Scope("patient", "Observation", "rs")),
        ("user/*.write", Scope("user", "*", "cud")),
        ("system/*.*", Scope("system", "*", "cruds")),
        ("user/Patient.*", Scope("user", "Patient", "cruds")),
        # SMART v2: the letters themselves.
        ("patient/Observation.rs", Scope("patient", "Observation", "rs")),
        ("system/*.cruds", Scope("system", "*", "cruds")),
        ("user/Encounter.c", Scope("user", "Encounter", "c")),
        ("patient/*.r", Scope("patient", "*", "r")),
        ("system/Patient.ud", Scope("system", "Patient", "ud")),
    ],
)
def test_resource_scopes(text: str, expected: Scope) -> None:
    assert parse_scope(text) == expected
    assert is_scope(text)


@pytest.mark.parametrize(
    "text",
    [
        # v2 letters must come in the order c r u d s.
        "patient/Observation.sr",
        "system/*.dc",
        "user/*.rr",
        # Not a level, not a permission, nothing granted.
        "admin/*.rs",
        "patient/Observation.",
        "patient/Observation.zz",
        "patient/Observation.readwrite",
        "Observation.rs",
        "patient/Observation",
        " patient/Observation.rs",
        # Other scopes: identity and launch context.
        "openid",
        "fhirUser",
        "launch/patient",
        "launch",
        "offline_access",
        # A v2 scope narrowed by a query it cannot honour exactly grants nothing rather than more.
        "patient/Observation.rs?nonsense=x",
        "patient/Observation.rs?_sort=date",
        "patient/Observation.rs?",
        "patient/*.rs?category=laboratory",
        "patient/Observation.read?category=laboratory",
        "patient/Frobnicate.rs?category=laboratory",
        "",
    ],
)
def test_not_resource_scopes(text: str) -> None:
    assert parse_scope(text) is None
    assert not is_scope(text)


def test_a_scope_narrowed_by_a_search_of_its_type() -> None:
    text = "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
    found = parse_scope(text)
    assert found is not None and is_scope(text)
    assert (found.level, found.resource_type, found.permissions) == ("patient", "Observation", "rs")
    assert found.conditions is not None
    assert [condition.parameter.code for condition in found.conditions] == ["category"]  # type: ignore[union-attr]


def test_parse_scopes_keeps_only_resource_scopes() -> None:
    text = "openid fhirUser launch/patient patient/Observation.rs?nonsense=x patient/Observation.read  user/*.write"
    assert parse_scopes(text) == (Scope("patient", "Observation", "rs"), Scope("user", "*", "cud"))


def test_principal_grants_nothing_for_non_resource_scopes() -> None:
    principal = Principal("app", "openid fhirUser launch/patient patient/Observation.rs?nonsense=x", patient="p1")
    assert principal.scopes == ()
    assert access.reach(principal, "Observation", "r") is None
    assert access.reach(principal, "Observation", "s") is None


# --- reach and require -------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["user/Observation.rs", "system/Observation.rs", "user/*.read", "system/*.*"])
def test_user_and_system_scopes_reach_everything(scope: str) -> None:
    principal = Principal("app", scope, patient="p1")
    assert access.reach(principal, "Observation", "r") == access.ALL
    assert access.require(principal, "Observation", "s") == access.ALL


def test_patient_scope_reaches_the_launch_patient() -> None:
    principal = Principal("app", "patient/Observation.rs", patient="p1")
    assert access.reach(principal, "Observation", "r") == "p1"
    assert access.require(principal, "Observation", "s") == "p1"


def test_patient_scope_without_a_patient_grants_nothing() -> None:
    principal = Principal("app", "patient/*.cruds")
    assert access.reach(principal, "Observation", "r") is None
    with pytest.raises(Forbidden):
        access.require(principal, "Observation", "r")


def test_a_user_scope_beside_a_patient_scope_reaches_everything() -> None:
    for scope in ("patient/Observation.rs user/Observation.r", "user/Observation.r patient/Observation.rs"):
        principal = Principal("app", scope, patient="p1")
        assert access.reach(principal, "Observation", "r") == access.ALL
        # Search is granted only through the patient scope.
        assert access.reach(principal, "Observation", "s") == "p1"


@pytest.mark.parametrize(
    ("scope", "resource_type", "permission"),
    [
        ("system/Observation.rs", "Observation", "c"),
        ("system/Observation.rs", "Observation", "u"),
        ("system/Observation.rs", "Observation", "d"),
        ("system/Observation.rs", "Condition", "r"),
        ("patient/*.read", "Patient", "c"),
        ("user/*.write", "Patient", "r"),
        ("user/*.write", "Patient", "s"),
        ("", "Patient", "r"),
    ],
)
def test_permissions_not_granted(scope: str, resource_type: str, permission: str) -> None:
    principal = Principal("app", scope, patient="p1")
    assert access.reach(principal, resource_type, permission) is None
    with pytest.raises(Forbidden):
        access.require(principal, resource_type, permission)


def test_trusted_principal_reaches_everything_without_scopes() -> None:
    principal = Principal("server", trusted=True)
    for permission in "cruds":
        assert access.reach(principal, "Observation", permission) == access.ALL
        assert access.require(principal, "AuditEvent", permission) == access.ALL


@pytest.mark.parametrize(
    ("permission", "verb"), [("c", "create"), ("r", "read"), ("u", "update"), ("d", "delete"), ("s", "search")]
)
def test_forbidden_names_the_verb_and_the_type(permission: str, verb: str) -> None:
    principal = Principal("app", "system/Patient.cruds")
    with pytest.raises(Forbidden) as caught:
        access.require(principal, "Observation", permission)
    assert caught.value.status == 403
    assert caught.value.issues[0].code == "forbidden"
    assert caught.value.diagnostics == f"The credential's scopes do not allow {verb} on Observation"


# --- the patient compartment -------------------------------------------------------------------


# Observation/o1, named by text alone: only its references matter here.
observation = partial(factories.observation, res_id="o1", code_text="x")


def test_patient_is_in_its_own_compartment_only() -> None:
    patient = {"resourceType": "Patient", "id": "p1"}
    assert access.in_compartment(patient, "p1")
    assert not access.in_compartment(patient, "p2")
    assert access.patients_of(patient) == {"p1"}


def test_observation_is_in_its_subjects_compartment() -> None:
    resource = observation(subject="Patient/p1")
    assert access.in_compartment(resource, "p1")
    assert not access.in_compartment(resource, "p2")
    assert access.patients_of(resource) == {"p1"}


def test_observation_is_in_its_performers_compartment() -> None:
    resource = observation(subject="Patient/p1", performer=[{"reference": "Patient/p2"}])
    assert access.in_compartment(resource, "p1")
    assert access.in_compartment(resource, "p2")
    assert not access.in_compartment(resource, "p3")
    assert access.patients_of(resource) == {"p1", "p2"}


def test_observation_about_no_patient_is_in_no_compartment() -> None:
    for resource in (
        observation(),
        observation(subject="Group/p1"),
        observation(performer=[{"reference": "Practitioner/p1"}]),
    ):
        assert not access.in_compartment(resource, "p1")
        assert access.patients_of(resource) == set()


def test_organization_is_never_in_a_patient_compartment() -> None:
    organization = {"resourceType": "Organization", "id": "p1", "name": "Clinic"}
    assert not access.in_compartment(organization, "p1")
    assert access.patients_of(organization) == set()


def test_an_observation_with_the_patients_id_is_not_the_patient() -> None:
    resource = observation(subject="Patient/p2") | {"id": "p1"}
    assert not access.in_compartment(resource, "p1")


# --- confine -----------------------------------------------------------------------------------


def test_confine_holds_a_patient_scope_to_the_compartment() -> None:
    query = search(("Observation",), ("code", "1234-5"))
    principal = Principal("app", "patient/Observation.rs", patient="p1")
    confined = access.confine(query, principal)
    assert confined.conditions == (InCompartment("p1"), *query.conditions)
    assert confined.resource_types == query.resource_types


def test_confine_leaves_a_system_scope_search_alone() -> None:
    query = search(("Observation",), ("code", "1234-5"), ("subject:Patient.name", "x"))
    for scope in ("system/*.rs", "user/Observation.s system/Patient.s"):
        assert access.confine(query, Principal("app", scope, patient="p1")) == query


def test_confine_leaves_a_trusted_principal_alone() -> None:
    query = search(("Observation",), ("subject:Patient.name", "x"))
    assert access.confine(query, Principal("server", trusted=True)) == query


def test_confine_refuses_a_type_not_searchable() -> None:
    query = search(("Observation",), ("code", "1"))
    with pytest.raises(Forbidden, match="search on Observation"):
        access.confine(query, Principal("app", "system/Observation.r system/Patient.s"))


def test_confine_refuses_when_one_of_several_types_is_not_searchable() -> None:
    query = search(("Observation", "Condition"))
    with pytest.raises(Forbidden, match="search on Condition"):
        access.confine(query, Principal("app", "system/Observation.s"))


def test_confine_of_a_patient_scope_without_a_patient_is_refused() -> None:
    with pytest.raises(Forbidden, match="search on Observation"):
        access.confine(search(("Observation",)), Principal("app", "patient/Observation.rs"))


# A chain reads the type it goes into, a _has the type it comes from (R4 search.html#chaining,
# #has): the searched type, the parameter, the condition confine makes of it, the condition's
# attribute naming the other type, and that type.
OTHER_TYPE_SEARCHES = [
    pytest.param("Observation", ("subject:Patient.name", "x"), Criterion, "chain_type", "Patient", id="chain"),
    pytest.param(
        "Patient", ("_has:Observation:patient:code", "1234-5"), ReverseChain, "source_type", "Observation", id="has"
    ),
]


@pytest.mark.parametrize(("searched", "parameter", "condition", "attribute", "other"), OTHER_TYPE_SEARCHES)
def test_confine_refuses_a_search_into_a_type_not_searchable(
    searched: str, parameter: tuple[str, str], condition: type, attribute: str, other: str
) -> None:
    query = search((searched,), parameter)
    with pytest.raises(Forbidden, match=f"search on {other}"):
        access.confine(query, Principal("app", f"patient/{searched}.rs", patient="p1"))
    with pytest.raises(Forbidden, match=f"search on {other}"):
        access.confine(query, Principal("app", f"system/{searched}.rs"))


@pytest.mark.parametrize(("searched", "parameter", "condition", "attribute", "other"), OTHER_TYPE_SEARCHES)
def test_confine_holds_a_search_into_another_type_to_the_compartment(
    searched: str, parameter: tuple[str, str], condition: type, attribute: str, other: str
) -> None:
    confined = access.confine(search((searched,), parameter), Principal("app", "patient/*.rs", patient="p1"))
    assert confined.conditions[0] == InCompartment("p1")
    held = confined.conditions[1]
    assert isinstance(held, condition)
    assert getattr(held, attribute) == other
    assert held.within == "p1"


def test_confine_holds_a_chain_only_where_the_grant_is_a_patients() -> None:
    # Observations through a patient scope, Patients through a system one: the chain is open.
    query = search(("Observation",), ("subject:Patient.name", "x"))
    confined = access.confine(query, Principal("app", "patient/Observation.rs system/Patient.s", patient="p1"))
    chained = confined.conditions[1]
    assert isinstance(chained, Criterion)
    assert chained.within is None
    assert confined.conditions[0] == InCompartment("p1")


def test_confine_leaves_a_has_alone_for_system_scopes() -> None:
    query = search(("Patient",), ("_has:Observation:patient:code", "1234-5"))
    confined = access.confine(query, Principal("app", "system/*.s"))
    assert confined == query
    reverse = confined.conditions[0]
    assert isinstance(reverse, ReverseChain)
    assert reverse.within is None


def test_confine_reaches_into_any_of() -> None:
    chained = search(("Observation",), ("subject:Patient.name", "x")).conditions[0]
    assert isinstance(chained, Criterion)
    query = Search(("Observation",), conditions=(AnyOf((chained,)),))
    confined = access.confine(query, Principal("app", "patient/*.rs", patient="p1"))
    any_of = confined.conditions[1]
    assert isinstance(any_of, AnyOf)
    assert any_of.criteria[0].within == "p1"
    with pytest.raises(Forbidden, match="search on Patient"):
        access.confine(query, Principal("app", "patient/Observation.rs", patient="p1"))


VITALS = "category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


@pytest.mark.parametrize(
    ("asked", "registered", "allowed"),
    [
        ("patient/Observation.rs", "patient/*.rs", True),
        (f"patient/Observation.rs?{VITALS}", "patient/*.rs", True),  # less than registered
        (f"patient/Observation.r?{VITALS}", f"patient/Observation.rs?{VITALS}", True),
        ("patient/Observation.rs", f"patient/Observation.rs?{VITALS}", False),  # more than registered
        ("patient/Observation.rs?status=final", f"patient/Observation.rs?{VITALS}", False),
        ("patient/Observation.rs", "patient/Observation.r patient/Observation.s", True),
        ("patient/Observation.rs", "user/*.rs", False),  # another level
        ("system/*.rs", "system/Patient.rs", False),
        ("patient/Observation.c", "patient/*.rs", False),
    ],
)
def test_a_client_may_ask_for_less_than_it_was_registered_with_never_more(
    asked: str, registered: str, allowed: bool
) -> None:
    scope = parse_scope(asked)
    assert scope is not None
    assert within(scope, parse_scopes(registered)) is allowed
