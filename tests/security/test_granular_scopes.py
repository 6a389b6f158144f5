"""SMART v2 scopes narrowed by a query (``patient/Observation.rs?category=...|vital-signs``) grant
only on the resources that search matches, through every route: searches (paging, totals,
includes, chains, ``_has``), reads, history, writes, Bundle entries; operations that would show
part of the record as the whole refuse them. What such a scope leaves out answers as what does
not exist."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from fhir_twin.fhir.resource_types import resource_types
from fhir_twin.security import access
from fhir_twin.security.principal import Principal
from tests import factories
from tests.factories import HEART_RATE, LOINC, batch_of_reads, seed_clinic

pytestmark = pytest.mark.audited

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
VITALS = f"{CATEGORY}|vital-signs"
LABS = f"{CATEGORY}|laboratory"
GLUCOSE = "2339-0"
JSON_PATCH = "application/json-patch+json"


def observation(res_id: str, patient: str, category: str, code: str = HEART_RATE) -> dict[str, Any]:
    """An Observation of ``patient`` in its encounter, of ``category`` (vital-signs or laboratory)."""
    return factories.observation(
        code,
        res_id=res_id,
        patient=patient,
        when="2024-01-01T10:00:00Z",
        value=72,
        encounter={"reference": f"Encounter/{patient}-enc"},
        category=[{"coding": [{"system": CATEGORY, "code": category}]}],
    )


class Server(factories.Server):
    """The shared server; ``vitals`` reads p1's vital signs (and Patient and Encounter whole)."""

    def __init__(self, app: Flask) -> None:
        super().__init__(app)
        self.vitals = self.token(
            f"patient/Observation.rs?category={VITALS} patient/Patient.rs patient/Encounter.rs", "p1"
        )

    def stored(self, path: str) -> dict[str, Any]:
        answer = self.read(path)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()


@pytest.fixture
def server(make_app: Any) -> Server:
    found = Server(make_app(auth_mode="tokens", doctor=False))
    seed_clinic(found)
    for patient in ("p1", "p2"):
        found.put(observation(f"{patient}-vital", patient, "vital-signs"))
        found.put(observation(f"{patient}-lab", patient, "laboratory", GLUCOSE))
    return found


def ids(answer: TestResponse) -> set[str]:
    assert answer.status_code == 200, answer.get_json()
    return {entry["fullUrl"].split("/fhir/", 1)[1] for entry in answer.get_json().get("entry", [])}


def refused(answer: TestResponse, *named: str) -> str:
    """A 403 insufficient_scope whose diagnostics name ``named``; its diagnostics."""
    assert answer.status_code == 403, answer.get_json()
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]
    diagnostics = " ".join(issue["diagnostics"] for issue in answer.get_json()["issue"])
    for text in named:
        assert text in diagnostics
    return diagnostics


def same_as_missing(server: Server, method: str, template: str, hidden: str, headers: dict[str, str]) -> None:
    """``template`` with ``hidden`` answers exactly as with an id no resource has: 404."""
    answer = server.client.open(template.format(id=hidden), method=method, headers=headers)
    missing = server.client.open(template.format(id="no-such-id"), method=method, headers=headers)
    assert (answer.status_code, missing.status_code) == (404, 404), answer.get_json()
    texts = [
        [issue["diagnostics"].replace(name, "{id}") for issue in reply.get_json()["issue"]]
        for reply, name in ((answer, hidden), (missing, "no-such-id"))
    ]
    assert texts[0] == texts[1]


# --- searches ---------------------------------------------------------------------------------


def test_search_holds_only_what_the_scope_matches(server: Server) -> None:
    assert ids(server.client.get("/fhir/Observation", headers=server.vitals)) == {"Observation/p1-vital"}
    answer = server.client.get(f"/fhir/Observation?code={LOINC}|{GLUCOSE}&_total=accurate", headers=server.vitals)
    assert ids(answer) == set()
    assert answer.get_json()["total"] == 0
    # A user scope narrowed by a query: every patient's matching resources, paged and counted right.
    labs = server.token(f"user/Observation.rs?category={LABS}")
    first = server.client.get("/fhir/Observation?_count=1&_total=accurate", headers=labs)
    assert first.get_json()["total"] == 2
    (link,) = [link["url"] for link in first.get_json()["link"] if link["relation"] == "next"]
    second = server.client.get(link.split("/fhir", 1)[1].join(["/fhir", ""]), headers=labs)
    assert ids(first) | ids(second) == {"Observation/p1-lab", "Observation/p2-lab"}
    assert not [link for link in second.get_json()["link"] if link["relation"] == "next"]


def test_scopes_on_a_type_add_up_and_an_unnarrowed_one_lifts_the_narrowing(server: Server) -> None:
    both = server.token(f"user/Observation.rs?category={LABS} user/Observation.rs?code={LOINC}|{HEART_RATE}")
    assert ids(server.client.get("/fhir/Observation", headers=both)) == {
        "Observation/p1-lab",
        "Observation/p2-lab",
        "Observation/p1-vital",
        "Observation/p2-vital",
    }
    anded = server.token(f"user/Observation.rs?category={VITALS}&subject=Patient/p2")
    assert ids(server.client.get("/fhir/Observation", headers=anded)) == {"Observation/p2-vital"}
    lifted = server.token(f"user/Observation.rs?category={LABS} user/*.rs")
    assert len(ids(server.client.get("/fhir/Observation", headers=lifted))) == 4
    # A patient scope not narrowed lifts it for its compartment only: p1's all, and p2's lab.
    mixed = server.token(f"patient/Observation.rs user/Observation.rs?category={LABS}", "p1")
    assert ids(server.client.get("/fhir/Observation", headers=mixed)) == {
        "Observation/p1-vital",
        "Observation/p1-lab",
        "Observation/p2-lab",
    }
    assert server.client.get("/fhir/Observation/p2-vital", headers=mixed).status_code == 404
    assert server.client.get("/fhir/Observation/p2-lab", headers=mixed).status_code == 200


def test_includes_chains_and_has_see_only_what_the_scope_matches(server: Server) -> None:
    included = server.client.get("/fhir/Encounter?_revinclude=Observation:encounter", headers=server.vitals)
    assert ids(included) == {"Encounter/p1-enc", "Observation/p1-vital"}
    has_glucose = f"/fhir/Encounter?_has:Observation:encounter:code={LOINC}|{GLUCOSE}"
    assert ids(server.client.get(has_glucose, headers=server.vitals)) == set()
    has_heart_rate = f"/fhir/Encounter?_has:Observation:encounter:code={LOINC}|{HEART_RATE}"
    assert ids(server.client.get(has_heart_rate, headers=server.vitals)) == {"Encounter/p1-enc"}
    planned = server.token("user/Observation.rs user/Encounter.rs?status=planned")
    assert ids(server.client.get("/fhir/Observation?encounter:Encounter.status=finished", headers=planned)) == set()
    assert ids(server.client.get("/fhir/Observation?encounter:Encounter.status=finished", headers=server.vitals)) == {
        "Observation/p1-vital"
    }
    # The Observations it may not search are not included through a reference to them either.
    lab_reader = server.token(f"user/Observation.rs?category={LABS} user/Encounter.rs")
    answer = server.client.get("/fhir/Observation?_include=Observation:encounter", headers=lab_reader)
    assert ids(answer) == {"Observation/p1-lab", "Observation/p2-lab", "Encounter/p1-enc", "Encounter/p2-enc"}


def test_lastn_and_the_twin_patient_list_are_held_to_the_scope(server: Server) -> None:
    answer = server.client.get("/fhir/Observation/$lastn?patient=p1", headers=server.vitals)
    assert ids(answer) == {"Observation/p1-vital"}
    factories.put(
        server.client, factories.patient("p1", name=[{"family": "Alpha"}], gender="female"), 200, server.system
    )
    women = server.token("user/Patient.rs?gender=female")
    listed = server.client.get("/twin/patients", headers=women)
    assert listed.status_code == 200, listed.get_json()
    assert [row["id"] for row in listed.get_json()["patients"]] == ["p1"]


# --- reads and history ------------------------------------------------------------------------


def test_what_the_scope_leaves_out_reads_as_missing(server: Server) -> None:
    assert server.client.get("/fhir/Observation/p1-vital", headers=server.vitals).status_code == 200
    assert server.client.get("/fhir/Observation/p1-vital/_history/1", headers=server.vitals).status_code == 200
    for template in ("/fhir/Observation/{id}", "/fhir/Observation/{id}/_history/1", "/fhir/Observation/{id}/_history"):
        same_as_missing(server, "GET", template, "p1-lab", server.vitals)
        same_as_missing(server, "GET", template, "p2-vital", server.vitals)
    # A deleted resource matches nothing: not even that it was deleted is told.
    server.client.delete("/fhir/Observation/p2-lab", headers=server.system)
    labs = server.token(f"user/Observation.rs?category={LABS}")
    same_as_missing(server, "GET", "/fhir/Observation/{id}", "p2-lab", labs)


def test_history_shows_each_version_that_matches_on_its_own(server: Server) -> None:
    changed = observation("p1-vital", "p1", "vital-signs")
    changed["status"] = "amended"
    factories.put(server.client, changed, 200, server.system)
    history = server.client.get("/fhir/Observation/p1-vital/_history", headers=server.vitals)
    assert versions(history) == ["2", "1"]
    assert ids(server.client.get("/fhir/Observation/_history", headers=server.vitals)) == {"Observation/p1-vital"}
    every = server.client.get("/fhir/_history", headers=server.vitals)
    assert "Observation/p1-lab" not in ids(every)
    assert "total" not in every.get_json()
    # Moved out of the scope's search: the versions that matched are shown, the new one is not.
    changed["category"] = [{"coding": [{"system": CATEGORY, "code": "laboratory"}]}]
    factories.put(server.client, changed, 200, server.system)
    history = server.client.get("/fhir/Observation/p1-vital/_history", headers=server.vitals)
    assert versions(history) == ["2", "1"]
    assert "total" not in history.get_json()
    typed = server.client.get("/fhir/Observation/_history", headers=server.vitals)
    assert [entry["resource"]["meta"]["versionId"] for entry in typed.get_json()["entry"]] == ["2", "1"]
    # A vread reads what the history shows, and only that.
    assert server.client.get("/fhir/Observation/p1-vital/_history/1", headers=server.vitals).status_code == 200
    same_as_missing(server, "GET", "/fhir/Observation/{id}/_history/3", "p1-vital", server.vitals)
    # Moved into it: only the version that matches is shown; deletions match nothing.
    lab = observation("p1-lab", "p1", "vital-signs", GLUCOSE)
    factories.put(server.client, lab, 200, server.system)
    server.client.delete("/fhir/Observation/p1-lab", headers=server.system)
    history = server.client.get("/fhir/Observation/p1-lab/_history", headers=server.vitals)
    assert versions(history) == ["2"]
    assert server.client.get("/fhir/Observation/p1-lab/_history/2", headers=server.vitals).status_code == 200
    for version in ("1", "3", "9", "x"):
        same_as_missing(server, "GET", f"/fhir/Observation/{{id}}/_history/{version}", "p1-lab", server.vitals)
    # Pages hold only what matches, and a next link still leads on.
    first = server.client.get("/fhir/Observation/p1-vital/_history?_count=1", headers=server.vitals)
    assert versions(first) == []
    assert "total" not in first.get_json()
    following = next(item["url"] for item in first.get_json()["link"] if item["relation"] == "next")
    assert versions(server.client.get(following.split("localhost", 1)[1], headers=server.vitals)) == ["2"]
    # A resource no version of which ever matched answers as one that does not exist.
    same_as_missing(server, "GET", "/fhir/Observation/{id}/_history", "p2-lab", server.vitals)


def test_a_date_narrowed_scope_judges_each_version_by_its_date(server: Server) -> None:
    """Dates are judged in memory as the database judges them: a version moved out of the
    scope's dates is left out of the history, and its vread answers as a missing version."""
    moved = observation("p2-vital", "p2", "vital-signs")
    moved["effectiveDateTime"] = "2023-06-01T10:00:00Z"
    factories.put(server.client, moved, 200, server.system)
    dated = server.token("user/Observation.rs?date=ge2024-01-01")
    assert versions(server.client.get("/fhir/Observation/p2-vital/_history", headers=dated)) == ["1"]
    assert server.client.get("/fhir/Observation/p2-vital/_history/1", headers=dated).status_code == 200
    same_as_missing(server, "GET", "/fhir/Observation/{id}/_history/2", "p2-vital", dated)


def versions(answer: TestResponse) -> list[str]:
    assert answer.status_code == 200, answer.get_json()
    return [entry["resource"]["meta"]["versionId"] for entry in answer.get_json().get("entry", [])]


def test_history_refuses_a_scope_it_cannot_judge_a_version_against(server: Server) -> None:
    weighed = server.token("user/Observation.rs?value-quantity=gt0 user/Patient.rs")
    scope = "user/Observation.rs?value-quantity=gt0"
    vread = server.client.get("/fhir/Observation/p1-vital/_history/1", headers=weighed)
    refused(vread, "version of Observation", scope)
    for path in ("/fhir/Observation/p1-vital/_history", "/fhir/Observation/_history", "/fhir/_history"):
        refused(server.client.get(path, headers=weighed), "history of Observation", scope)
    # Other types' history, and the search itself, are not refused.
    assert server.client.get("/fhir/Patient/_history", headers=weighed).status_code == 200
    assert ids(server.client.get("/fhir/Observation", headers=weighed)) == {
        f"Observation/{name}" for name in ("p1-vital", "p1-lab", "p2-vital", "p2-lab")
    }


# --- writes -----------------------------------------------------------------------------------


@pytest.fixture
def vital_writer(server: Server) -> dict[str, str]:
    return server.token(f"patient/Observation.cruds?category={VITALS} patient/Encounter.rs", "p1")


def new(category: str) -> dict[str, Any]:
    body = observation("ignored", "p1", category)
    del body["id"]
    return body


def test_writes_must_leave_what_they_write_matching(server: Server, vital_writer: dict[str, str]) -> None:
    created = server.client.post("/fhir/Observation", json=new("vital-signs"), headers=vital_writer)
    assert created.status_code == 201, created.get_json()
    before = server.count("Observation?_total=accurate")
    answer = server.client.post("/fhir/Observation", json=new("laboratory"), headers=vital_writer)
    refused(answer, "as written is not among what the credential may create", f"?category={VITALS}")
    assert server.count("Observation?_total=accurate") == before

    moved = observation("p1-vital", "p1", "laboratory")
    refused(server.client.put("/fhir/Observation/p1-vital", json=moved, headers=vital_writer), "may update")
    operations = [{"op": "replace", "path": "/category/0/coding/0/code", "value": "laboratory"}]
    patched = server.client.patch(
        "/fhir/Observation/p1-vital",
        data=json.dumps(operations),
        headers={**vital_writer, "Content-Type": JSON_PATCH},
    )
    refused(patched, "may update")
    assert server.stored("Observation/p1-vital")["meta"]["versionId"] == "1"

    kept = observation("p1-vital", "p1", "vital-signs")
    kept["status"] = "amended"
    assert server.client.put("/fhir/Observation/p1-vital", json=kept, headers=vital_writer).status_code == 200
    assert server.client.delete("/fhir/Observation/p1-vital", headers=vital_writer).status_code == 200


def test_what_the_scope_leaves_out_cannot_be_changed(server: Server, vital_writer: dict[str, str]) -> None:
    same_as_missing(server, "DELETE", "/fhir/Observation/{id}", "p1-lab", vital_writer)
    # An update is refused alike at an id it leaves out and at an unused one, which it may not
    # create at: that would tell the ids apart.
    answers = [
        server.client.put(
            f"/fhir/Observation/{res_id}", json=observation(res_id, "p1", "vital-signs"), headers=vital_writer
        )
        for res_id in ("p1-lab", "unused")
    ]
    texts = [refused(answer, "create new ones with POST", VITALS) for answer in answers]
    assert texts[0].replace("p1-lab", "{id}") == texts[1].replace("unused", "{id}")
    assert server.stored("Observation/p1-lab")["meta"]["versionId"] == "1"
    assert server.read("Observation/unused").status_code == 404
    # Readable but not writable: the credential may learn it exists, so 403.
    reader = server.token(f"user/Observation.r user/Observation.ud?category={VITALS}")
    refused(server.client.delete("/fhir/Observation/p1-lab", headers=reader), "may delete", "Observation/p1-lab")
    assert server.client.delete("/fhir/Observation/p1-vital", headers=reader).status_code == 200
    assert server.stored("Observation/p1-lab")["meta"]["versionId"] == "1"


def test_conditional_writes_need_scopes_not_narrowed(server: Server) -> None:
    writer = server.token(f"user/Observation.cruds?category={VITALS}")
    refused(server.client.delete("/fhir/Observation?code=x", headers=writer), "Conditional deletes")
    refused(
        server.client.post(
            "/fhir/Observation", json=new("vital-signs"), headers={**writer, "If-None-Exist": "identifier=a|b"}
        ),
        "Conditional creates",
    )


# --- Bundles, operations, Subscriptions --------------------------------------------------------


def test_bundle_entries_are_held_alike(server: Server, vital_writer: dict[str, str]) -> None:
    batch = batch_of_reads("Observation/p1-vital", "Observation/p1-lab", "Observation?_count=10")
    answer = server.client.post("/fhir", json=batch, headers=server.vitals)
    assert answer.status_code == 200, answer.get_json()
    entries = answer.get_json()["entry"]
    assert [entry["response"]["status"][:3] for entry in entries] == ["200", "404", "200"]
    assert [entry["fullUrl"] for entry in entries[2]["resource"]["entry"]] == [
        "http://localhost/fhir/Observation/p1-vital"
    ]
    before = server.count("Observation?_total=accurate")
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Observation"}, "resource": new("vital-signs")},
            {"request": {"method": "POST", "url": "Observation"}, "resource": new("laboratory")},
        ],
    }
    refused(server.client.post("/fhir", json=transaction, headers=vital_writer), "may create")
    assert server.count("Observation?_total=accurate") == before


def test_operations_that_read_the_whole_record_refuse_a_narrowed_scope(server: Server) -> None:
    others = " ".join(f"user/{name}.rs" for name in sorted(resource_types()) if name != "Observation")
    narrowed = server.token(f"{others} user/Observation.rs?category={VITALS}")
    refused(server.client.get("/fhir/Patient/p1/$twin", headers=narrowed), "$twin reads every Observation, and", VITALS)
    refused(server.client.get("/twin/patients/p1", headers=narrowed), VITALS)
    # Not narrowed, the same types read: allowed.
    whole = server.token(f"{others} user/Observation.rs")
    assert server.client.get("/fhir/Patient/p1/$twin", headers=whole).status_code == 200


def test_a_subscription_needs_a_search_not_narrowed(server: Server) -> None:
    author = server.token(f"user/Subscription.cruds user/Observation.rs?category={VITALS}")
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "vitals",
        "criteria": "Observation?code=8867-4",
        "channel": {"type": "rest-hook", "endpoint": "https://ward.example/hook"},
    }
    answer = server.client.post("/fhir/Subscription", json=subscription, headers=author)
    assert answer.status_code == 403, answer.get_json()
    assert "or those its scopes' query matches" in answer.get_json()["issue"][0]["diagnostics"]


# --- invalid scopes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "scope",
    [
        "user/Observation.rs?nonsense=1",
        "user/Observation.rs?_count=1",
        "user/Observation.rs?_include=Observation:subject",
        "user/*.rs?category=laboratory",
        "user/Observation.read?category=laboratory",
    ],
)
def test_an_invalid_narrowed_scope_grants_nothing(server: Server, scope: str) -> None:
    """As a JWT or a SMART grant would carry it: the token is made without ``token create``."""
    token = server.token(scope)
    answer = server.client.get("/fhir/Observation", headers=token)
    assert answer.status_code == 403, answer.get_json()


def test_a_scope_may_narrow_by_a_value_set(server: Server) -> None:
    """Terminology modifiers are resolved in a scope's search as in any other."""
    in_set = server.token(
        f"user/Observation.rs?category:in=http://hl7.org/fhir/ValueSet/observation-category&code={LOINC}|{GLUCOSE}"
    )
    assert ids(server.client.get("/fhir/Observation", headers=in_set)) == {"Observation/p1-lab", "Observation/p2-lab"}


def test_a_write_not_narrowed_reaches_what_reads_leave_out(server: Server) -> None:
    """``u`` granted whole: an update reaches every Observation, whatever the reads are narrowed to."""
    writer = server.token(f"user/Observation.r?category={VITALS} user/Observation.u")
    changed = observation("p1-lab", "p1", "laboratory", GLUCOSE)
    changed["status"] = "amended"
    assert server.client.put("/fhir/Observation/p1-lab", json=changed, headers=writer).status_code == 200
    assert server.client.get("/fhir/Observation/p1-lab", headers=writer).status_code == 404
    assert server.stored("Observation/p1-lab")["status"] == "amended"


def test_narrowed_scopes_that_reach_nothing_are_left_out() -> None:
    """A ``patient/`` scope without a launch patient, or on the audit trail, adds no way in."""
    unlaunched = Principal("app", f"patient/Observation.rs?category={VITALS} user/Observation.rs?category={LABS}")
    narrowed = access.narrowing(unlaunched, "Observation", "r")
    assert narrowed is not None and len(narrowed.ways) == 1
    auditor = Principal("app", "patient/AuditEvent.rs?action=R user/AuditEvent.rs?action=C", patient="p1")
    narrowed = access.narrowing(auditor, "AuditEvent", "s")
    assert narrowed is not None and len(narrowed.ways) == 1
    assert access.narrowing(auditor, "Observation", "s") is None
