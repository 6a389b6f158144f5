"""Unknown search parameters, ``_count=0``, ``_summary=count`` and values no resource can hold
(R4 search.html#errors, #count, #summary; http.html ``Prefer: handling``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import create_app, services_of
from fhir_twin.config import Config
from tests.factories import HEART_RATE, batch_of_reads, observation, put

LENIENT = {"Prefer": "handling=lenient"}
STRICT = {"Prefer": "handling=strict"}


def populate(client: FlaskClient) -> FlaskClient:
    put(client, {"resourceType": "Organization", "id": "org1", "name": "General Hospital"})
    for res_id, family in (("p1", "Chalmers"), ("p2", "Windsor"), ("p3", "Baxter")):
        patient = {"resourceType": "Patient", "id": res_id, "name": [{"family": family}]}
        put(client, patient | {"managingOrganization": {"reference": "Organization/org1"}})
    put(client, observation(HEART_RATE, when="2024-01-01T10:00:00Z", res_id="o1", patient="p1", value=72))
    put(client, observation(HEART_RATE, when="2024-01-01T10:00:00Z", res_id="o2", patient="p1", value=130))
    return client


@pytest.fixture(scope="module")
def apps(module_database_url: str) -> Iterator[tuple[Flask, Flask]]:
    """The default server and a lenient one on one database, filled once: these tests only read."""
    built = [
        create_app({"database_url": module_database_url, "auth_mode": "none", "audit": False, **settings})
        for settings in ({}, {"search_handling": "lenient"})
    ]
    populate(built[0].test_client())
    yield built[0], built[1]
    for app in built:
        services_of(app).repository.engine.dispose()


@pytest.fixture
def strict(apps: tuple[Flask, Flask]) -> FlaskClient:
    """The default server: unknown parameters are refused."""
    return apps[0].test_client()


@pytest.fixture
def lenient(apps: tuple[Flask, Flask]) -> FlaskClient:
    return apps[1].test_client()


def refused(response: Any, parameter: str) -> str:
    """The 400's single issue, naming ``parameter``; its diagnostics."""
    assert response.status_code == 400, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    [issue] = body["issue"]
    assert issue["severity"] == "error"
    assert issue["expression"] == [parameter]
    return str(issue["diagnostics"])


def entries(response: Any, mode: str = "match") -> list[dict[str, Any]]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [entry for entry in response.get_json().get("entry", []) if entry["search"]["mode"] == mode]


def ids(response: Any) -> set[str]:
    return {entry["resource"]["id"] for entry in entries(response)}


def links(response: Any) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in response.get_json()["link"]}


# --- strict by default -------------------------------------------------------------------


def test_misspelt_parameter_is_a_400_naming_it_and_the_valid_ones(strict: FlaskClient) -> None:
    """The issue's example: with the typo ignored, every Observation of the patient came back."""
    response = strict.get("/fhir/Observation?subject=Patient/p1&valuequantity=gt100")
    diagnostics = refused(response, "valuequantity")
    assert response.get_json()["issue"][0]["code"] == "not-supported"
    assert "'valuequantity'" in diagnostics and "did you mean 'value-quantity'?" in diagnostics
    valid = diagnostics.partition("are: ")[2]
    for code in ("code", "subject", "value-quantity", "_id", "_lastUpdated"):
        assert code in valid
    assert "_count" in valid  # the result parameters are named too


@pytest.mark.parametrize("code", ["_filter", "_text", "_content", "_list", "_query", "_contained"])
def test_parameters_declared_unsupported_are_a_400(strict: FlaskClient, code: str) -> None:
    diagnostics = refused(strict.get(f"/fhir/Patient?{code}=x"), code)
    assert "not supported" in diagnostics and "family" in diagnostics


@pytest.mark.parametrize(
    ("method", "url", "data"),
    [
        pytest.param("GET", "/fhir/Patient/p1/Observation?valuequantity=gt100", None, id="compartment"),
        pytest.param("GET", "/fhir?_type=Patient&nonsense=1", None, id="system-with-type"),
        pytest.param("GET", "/fhir?nonsense=1", None, id="system"),
        pytest.param("POST", "/fhir/Patient/_search", {"nonsense": "1"}, id="post-search"),
        pytest.param("GET", "/fhir/Patient/p1/$everything?nonsense=1", None, id="everything"),
        pytest.param("GET", "/fhir/Observation/$lastn?nonsense=1", None, id="lastn"),
        pytest.param("GET", "/fhir/Patient/_history?nonsense=1", None, id="history"),
    ],
)
def test_every_kind_of_search_refuses_unknown_parameters(
    strict: FlaskClient, method: str, url: str, data: dict[str, str] | None
) -> None:
    response = strict.open(url, method=method, data=data)
    name = "valuequantity" if "valuequantity" in url else "nonsense"
    assert name in refused(response, name)


def test_a_batch_get_entry_refuses_unknown_parameters(strict: FlaskClient) -> None:
    batch = batch_of_reads("Patient?nonsense=1", "Patient?family=Chalmers")
    response = strict.post("/fhir", json=batch)
    assert response.status_code == 200
    first, second = response.get_json()["entry"]
    assert first["response"]["status"].startswith("400")
    assert "nonsense" in first["response"]["outcome"]["issue"][0]["expression"]
    assert second["response"]["status"].startswith("200")


def test_result_and_transport_parameters_are_accepted(strict: FlaskClient) -> None:
    query = (
        "_format=json&_pretty=true&_summary=true&_elements=name&_count=5&_sort=family&_total=accurate"
        "&_include=Patient:organization&_revinclude=Observation:subject&family=Chalmers"
    )
    assert ids(strict.get(f"/fhir/Patient?{query}")) == {"p1"}
    assert strict.get("/fhir?_type=Patient&_count=1").status_code == 200
    assert strict.get("/fhir/Patient/_history?_since=2000-01-01T00:00:00Z&_count=2").status_code == 200
    assert strict.get("/fhir/Patient/p1/$everything?_type=Patient&_count=2").status_code == 200


# --- lenient, by setting or per request --------------------------------------------------


def test_lenient_setting_ignores_with_a_warning_entry(lenient: FlaskClient) -> None:
    response = lenient.get("/fhir/Observation?subject=Patient/p1&valuequantity=gt100&_filter=x")
    assert ids(response) == {"o1", "o2"}
    self_query = dict(parse_qsl(urlsplit(links(response)["self"]).query))
    assert self_query == {"subject": "Patient/p1"}
    [outcome] = entries(response, "outcome")
    issues = outcome["resource"]["issue"]
    assert outcome["resource"]["resourceType"] == "OperationOutcome"
    assert [issue["expression"] for issue in issues] == [["valuequantity"], ["_filter"]]
    assert {issue["severity"] for issue in issues} == {"warning"}
    assert "ignored" in issues[0]["diagnostics"]


def test_lenient_everything_and_lastn_warn_too(lenient: FlaskClient) -> None:
    for url in ("/fhir/Patient/p1/$everything?nonsense=1", "/fhir/Observation/$lastn?patient=p1&nonsense=1"):
        [outcome] = entries(lenient.get(url), "outcome")
        assert outcome["resource"]["issue"][0]["expression"] == ["nonsense"]


def test_no_warning_entry_when_nothing_is_ignored(lenient: FlaskClient) -> None:
    assert entries(lenient.get("/fhir/Patient?family=Chalmers"), "outcome") == []


def test_prefer_handling_overrides_the_setting(strict: FlaskClient, lenient: FlaskClient) -> None:
    assert ids(strict.get("/fhir/Patient?nonsense=1", headers=LENIENT)) == {"p1", "p2", "p3"}
    refused(lenient.get("/fhir/Patient?nonsense=1", headers=STRICT), "nonsense")
    # RFC 7240: a preference value not understood is ignored; the setting decides.
    refused(strict.get("/fhir/Patient?nonsense=1", headers={"Prefer": "handling=sloppy"}), "nonsense")
    assert lenient.get("/fhir/Patient?nonsense=1", headers={"Prefer": "handling=sloppy"}).status_code == 200


def test_the_setting_is_read_from_the_environment_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Config.from_env().search_handling == "strict"
    monkeypatch.setenv("FHIR_TWIN_SEARCH_HANDLING", "lenient")
    assert Config.from_env().search_handling == "lenient"
    monkeypatch.setenv("FHIR_TWIN_SEARCH_HANDLING", "loose")
    with pytest.raises(ValueError, match="search_handling must be strict or lenient"):
        Config.from_env()


def test_the_capability_statement_says_how_unknown_parameters_are_treated(
    strict: FlaskClient, lenient: FlaskClient
) -> None:
    for client, treatment in ((strict, "are refused with a 400"), (lenient, "are ignored, with a warning")):
        documentation = client.get("/fhir/metadata").get_json()["rest"][0]["documentation"]
        assert (
            f"Unknown or unsupported search parameters (_text _content _list _filter _query _contained) {treatment}"
            in (documentation)
        )
        assert "Prefer: handling=strict or handling=lenient" in documentation


# --- totals only -------------------------------------------------------------------------


def test_count_zero_answers_the_total_alone(strict: FlaskClient) -> None:
    """fhirpy's count() sends _count=0 with Aidbox's _totalMethod=count."""
    response = strict.get("/fhir/Patient?_count=0&_totalMethod=count")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["total"] == 3 and "entry" not in body
    assert set(links(response)) == {"self"}


@pytest.mark.parametrize("url", ["/fhir/Patient/_history?_count=0", "/fhir/Patient/p1/$everything?_count=0"])
def test_count_zero_elsewhere(strict: FlaskClient, url: str) -> None:
    response = strict.get(url)
    assert response.status_code == 200, response.get_json()
    assert "entry" not in response.get_json() and "next" not in links(response)
    assert response.get_json()["total"] >= 3


def test_summary_count_has_no_next_link(strict: FlaskClient) -> None:
    """A client following ``next`` of a count made ~95 empty requests."""
    response = strict.get("/fhir/Patient?_summary=count&_count=1")
    assert response.get_json()["total"] == 3 and "entry" not in response.get_json()
    assert set(links(response)) == {"self"}


# --- values that cannot match ------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("Patient?_id=FHIRPypy_not_existing_id", id="id-with-underscore"),
        pytest.param("Patient?_id=" + "a" * 65, id="id-too-long"),
        pytest.param("Patient?_id=p1,no_such", id="or-with-a-good-one"),
        pytest.param("Observation?subject=Patient/not_an_id", id="reference-type-id"),
        pytest.param("Observation?subject=not_an_id", id="reference-bare-id"),
        pytest.param("Observation?subject:Patient=not_an_id", id="reference-type-modifier"),
        pytest.param("Patient?name=a%00b", id="nul-string"),
        pytest.param("Patient?identifier=a%00b", id="nul-token"),
        pytest.param("Patient?_id=a%00b", id="nul-id"),
        pytest.param("Observation?subject=Patient/a%00b", id="nul-reference"),
        pytest.param("Observation?subject:Patient.name=a%00b", id="nul-chained"),
        pytest.param("Patient?_has:Observation:subject:code=a%00b", id="nul-reverse-chained"),
    ],
)
def test_a_value_no_resource_can_hold_finds_nothing(strict: FlaskClient, query: str) -> None:
    response = strict.get(f"/fhir/{query}")
    expected = {"p1"} if "p1," in query else set()
    assert ids(response) == expected


def test_negated_unmatchable_id_matches_everything(strict: FlaskClient) -> None:
    assert ids(strict.get("/fhir/Patient?_id:not=no_such")) == {"p1", "p2", "p3"}


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        pytest.param("Patient?birthdate=notadate", "birthdate", id="bad-date"),
        pytest.param("Observation?value-quantity=xx100", "value-quantity", id="bad-number-prefix"),
        pytest.param("Observation?subject=Patient/a/b", "subject", id="reference-shape"),
        pytest.param("Patient?organization=Patient/p1", "organization", id="reference-wrong-type"),
        pytest.param("Patient?birthdate=2020%00", "birthdate", id="nul-in-date"),
    ],
)
def test_malformed_typed_values_stay_400(strict: FlaskClient, query: str, parameter: str) -> None:
    refused(strict.get(f"/fhir/{query}"), parameter)
