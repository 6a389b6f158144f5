"""``includeAssociatedData`` (Bulk Data IG v2 export.html#query-parameters): the Provenance
resources clients stored whose ``target`` is an exported resource, in Provenance files after the
rest: all of them (``RelevantProvenanceResources``) or per target the latest by ``recorded``
(``LatestProvenanceResources``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient

from fhir_twin.app import create_app, services_of
from fhir_twin.fhir.resource_types import resource_types
from fhir_twin.security import tokens
from tests.api.test_export_selection import ASYNC, LENIENT, bearer, exported, ids, kick_off, refused, wait
from tests.factories import observation, put

RELEVANT, LATEST = "RelevantProvenanceResources", "LatestProvenanceResources"


def provenance(res_id: str, recorded: str, *targets: str) -> dict[str, Any]:
    return {
        "resourceType": "Provenance",
        "id": res_id,
        "target": [{"reference": target} for target in targets],
        "recorded": recorded,
        "agent": [{"who": {"display": "lab system"}}],
    }


DATA: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "Patient", "id": "p2"},
    observation("8867-4", res_id="o1", patient="p1", value=70),
    observation("8867-4", res_id="o2", patient="p2", value=80),
    {"resourceType": "Practitioner", "id": "pr1"},
    # o1 was recorded, then corrected: two Provenance, the later one the latest.
    provenance("prov-o1-first", "2024-01-01T08:00:00Z", "Observation/o1"),
    provenance("prov-o1-fix", "2024-01-02T08:00:00Z", "Observation/o1"),
    # One about o2 and a Practitioner at once, one about p1 (in p1's compartment by ``patient``).
    provenance("prov-o2", "2024-01-03T08:00:00Z", "Observation/o2", "Practitioner/pr1"),
    provenance("prov-p1", "2024-01-04T08:00:00Z", "Patient/p1"),
    # About nothing exported here.
    provenance("prov-none", "2024-01-05T08:00:00Z", "Observation/elsewhere"),
]


@pytest.fixture(scope="module")
def client(module_database_url: str) -> Iterator[FlaskClient]:
    app = create_app(
        {"database_url": module_database_url, "auth_mode": "none", "audit": False, "referential_integrity": False}
    )
    app.testing = True
    client = app.test_client()
    for body in DATA:
        put(client, body)
    yield client
    services_of(app).exports.stop()
    services_of(app).repository.engine.dispose()


def test_relevant_provenance_of_the_exported_resources_comes_in_provenance_files(client: FlaskClient) -> None:
    location = kick_off(client, "$export", _type="Observation", includeAssociatedData=RELEVANT)
    assert ids(exported(client, location)) == {
        "Observation": ["o1", "o2"],
        "Provenance": ["prov-o1-first", "prov-o1-fix", "prov-o2"],
    }


def test_latest_provenance_is_per_target_the_last_recorded(client: FlaskClient) -> None:
    location = kick_off(client, "$export", _type="Observation,Practitioner", includeAssociatedData=LATEST)
    # prov-o2 is the latest of o2 and of pr1: written once.
    assert ids(exported(client, location)) == {
        "Observation": ["o1", "o2"],
        "Practitioner": ["pr1"],
        "Provenance": ["prov-o1-fix", "prov-o2"],
    }


def test_group_and_patient_exports_add_the_provenance_of_their_members_records(client: FlaskClient) -> None:
    location = kick_off(client, "Patient/p1/$export", includeAssociatedData=LATEST)
    # prov-p1 is in p1's compartment: exported once, by the Provenance pass of the compartment.
    assert ids(exported(client, location)) == {
        "Patient": ["p1"],
        "Observation": ["o1"],
        "Provenance": ["prov-o1-fix", "prov-p1"],
    }


def test_a_system_export_of_every_type_writes_each_provenance_once(client: FlaskClient) -> None:
    found = ids(exported(client, kick_off(client, "$export", includeAssociatedData=f"{LATEST},{RELEVANT}")))
    assert found["Provenance"] == ["prov-none", "prov-o1-first", "prov-o1-fix", "prov-o2", "prov-p1"]


def test_since_and_elements_apply_to_the_associated_provenance(client: FlaskClient) -> None:
    location = kick_off(
        client, "$export", _type="Patient", includeAssociatedData=RELEVANT, _elements="Provenance.recorded"
    )
    found = exported(client, location)
    assert ids(found) == {"Patient": ["p1", "p2"], "Provenance": ["prov-p1"]}
    assert set(found["Provenance"][0]) == {"resourceType", "id", "meta", "recorded", "target", "agent"}
    future = kick_off(client, "$export", _type="Patient", includeAssociatedData=RELEVANT, _since="2999-01-01T00:00:00Z")
    assert ids(exported(client, future)) == {}


def test_no_provenance_when_only_provenance_is_exported(client: FlaskClient) -> None:
    location = kick_off(client, "Patient/p2/$export", _type="Provenance", includeAssociatedData=RELEVANT)
    assert ids(exported(client, location)) == {}


@pytest.mark.parametrize("value", ["_custom", f"{LATEST},_custom", "Latest"])
def test_other_values_are_refused_naming_them(client: FlaskClient, value: str) -> None:
    response = client.get("/fhir/$export", query_string={"includeAssociatedData": value}, headers=ASYNC)
    assert value.split(",")[-1] in refused(response, "includeAssociatedData")
    assert response.get_json()["issue"][0]["code"] == "not-supported"


def test_other_values_are_ignored_with_a_warning_when_lenient(client: FlaskClient) -> None:
    response = client.get(
        "/fhir/$export",
        query_string={"includeAssociatedData": f"_custom,{RELEVANT}", "_type": "Patient"},
        headers=LENIENT,
    )
    assert response.status_code == 202
    issues = response.get_json()["issue"]
    assert [issue["severity"] for issue in issues] == ["information", "warning"]
    assert "'_custom'" in issues[1]["diagnostics"] and issues[1]["expression"] == ["includeAssociatedData"]
    assert ids(exported(client, response.headers["Content-Location"])) == {
        "Patient": ["p1", "p2"],
        "Provenance": ["prov-p1"],
    }


def test_associated_provenance_needs_a_scope_that_reads_provenance(make_app: Any) -> None:
    """An export needs a scope reading every type exported, Provenance among them: one reading
    every other type may not export, so it can never be handed Provenance."""
    app = make_app(auth_mode="tokens")
    repository = services_of(app).repository
    all_but = " ".join(f"system/{name}.rs" for name in sorted(resource_types()) if name != "Provenance")
    without, _ = tokens.create(repository, "without", all_but, None, None)
    with_it, _ = tokens.create(repository, "with", f"{all_but} system/Provenance.rs", None, None)
    query = {"includeAssociatedData": RELEVANT, "_type": "Patient"}
    response = app.test_client().get("/fhir/$export", query_string=query, headers={**ASYNC, **bearer(without)})
    assert response.status_code == 403, response.get_json()
    response = app.test_client().get("/fhir/$export", query_string=query, headers={**ASYNC, **bearer(with_it)})
    assert response.status_code == 202
    assert wait(app.test_client(), response.headers["Content-Location"], bearer(with_it)).status_code == 200
