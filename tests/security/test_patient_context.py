"""A patient-context token (``patient/*.cruds`` or ``patient/*.rs`` launched for p1) reaches only
p1's compartment, through every route: what is p2's answers exactly as what does not exist, so
the token can neither see p2's records nor learn that they exist. Its own records it can read,
search and write."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhir_twin.app import services_of
from tests import factories
from tests.factories import HEART_RATE, LOINC, batch_of_reads, condition, seed_clinic

pytestmark = pytest.mark.audited

# Only p2 has an Observation with this code.
GLUCOSE = "2339-0"
JSON_PATCH = "application/json-patch+json"
MARK = "urn:test:patient-context"
P1_OBSERVATIONS = {"Observation/p1-obs1", "Observation/p1-obs2"}


class Server(factories.Server):
    """The shared server with p1's patient-context tokens."""

    def __init__(self, app: Flask) -> None:
        super().__init__(app)
        self.p1 = self.token("patient/*.cruds", "p1")
        self.p1_reader = self.token("patient/*.rs", "p1")

    def stored(self, path: str) -> dict[str, Any]:
        """``path`` as the system token reads it."""
        answer = self.read(path)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()


def observation(res_id: str, patient: str, code: str, when: str, value: float) -> dict[str, Any]:
    """An Observation in ``patient``'s encounter, performed by Practitioner/doc."""
    return factories.observation(
        code,
        res_id=res_id,
        patient=patient,
        when=when,
        value=value,
        encounter={"reference": f"Encounter/{patient}-enc"},
        performer=[{"reference": "Practitioner/doc"}],
    )


def seed(server: Server) -> None:
    seed_clinic(server)
    for patient in ("p1", "p2"):
        for suffix in ("cond", "gone"):
            server.put(condition(f"{patient}-{suffix}", patient))
        deleted = server.client.delete(f"/fhir/Condition/{patient}-gone", headers=server.system)
        assert deleted.status_code == 200
    server.put(observation("p1-obs1", "p1", HEART_RATE, "2024-01-01T10:00:00Z", 72))
    server.put(observation("p1-obs2", "p1", HEART_RATE, "2024-01-02T10:00:00Z", 74))
    # p2's heart rate is the newest of all.
    server.put(observation("p2-obs1", "p2", HEART_RATE, "2024-01-03T10:00:00Z", 90))
    server.put(observation("p2-obs2", "p2", GLUCOSE, "2024-01-03T10:00:00Z", 5.5))


@pytest.fixture
def server(make_app: Any) -> Server:
    found = Server(make_app(auth_mode="tokens", doctor=False))
    seed(found)
    return found


@pytest.fixture(params=["cruds", "rs"])
def p1_token(request: pytest.FixtureRequest, server: Server) -> dict[str, str]:
    """Each of p1's patient-context tokens."""
    return server.p1 if request.param == "cruds" else server.p1_reader


def ids(bundle: dict[str, Any]) -> set[str]:
    return {entry["fullUrl"].split("/fhir/", 1)[1] for entry in bundle.get("entry", [])}


def bundle_of(answer: TestResponse) -> dict[str, Any]:
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert body["resourceType"] == "Bundle"
    return body


def assert_forbidden(answer: TestResponse) -> None:
    assert answer.status_code == 403, answer.get_json()
    body = answer.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert [issue["code"] for issue in body["issue"]] == ["forbidden"]


def shape(answer: TestResponse, res_id: str) -> tuple[Any, ...]:
    """What a client sees of an answer, with the id it asked about taken out of the text."""
    body = answer.get_json(silent=True)
    issues = []
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = [
            (issue.get("severity"), issue.get("code"), issue.get("diagnostics", "").replace(res_id, "{id}"))
            for issue in body["issue"]
        ]
    headers = sorted(name for name, _ in answer.headers if name not in ("Content-Length", "X-Request-ID"))
    return answer.status_code, issues, headers


def assert_same_as_nonexistent(
    client: FlaskClient, method: str, template: str, hidden: str, headers: dict[str, str], **kwargs: Any
) -> TestResponse:
    """``template`` with p2's id answers exactly as with an id no resource has, a 404."""
    answer = client.open(template.format(id=hidden), method=method, headers=headers, **kwargs)
    missing = client.open(template.format(id="no-such-id"), method=method, headers=headers, **kwargs)
    assert missing.status_code == 404, missing.get_json()
    assert shape(answer, hidden) == shape(missing, "no-such-id")
    return answer


def patch(client: FlaskClient, path: str, headers: dict[str, str], operations: list[dict[str, Any]]) -> TestResponse:
    return client.patch(path, data=json.dumps(operations), headers={**headers, "Content-Type": JSON_PATCH})


def mentions_p2(value: Any) -> bool:
    return "p2" in json.dumps(value)


# --- p1's own records --------------------------------------------------------------------------


def test_p1_reads_and_searches_its_own_records(server: Server, p1_token: dict[str, str]) -> None:
    patient = server.client.get("/fhir/Patient/p1", headers=p1_token)
    assert patient.status_code == 200
    assert patient.get_json()["name"] == [{"family": "Alpha"}]
    assert server.client.get("/fhir/Observation/p1-obs1", headers=p1_token).status_code == 200
    assert server.client.get("/fhir/Observation/p1-obs1/_history/1", headers=p1_token).status_code == 200
    assert ids(bundle_of(server.client.get("/fhir/Observation/p1-obs1/_history", headers=p1_token))) == {
        "Observation/p1-obs1"
    }
    found = bundle_of(server.client.get(f"/fhir/Observation?code={LOINC}|{HEART_RATE}", headers=p1_token))
    assert ids(found) == P1_OBSERVATIONS
    assert found["total"] == 2
    # p1's own deleted record is gone, as for anyone.
    assert server.client.get("/fhir/Condition/p1-gone", headers=p1_token).status_code == 410


def test_p1_writes_its_own_records(server: Server) -> None:
    changed = observation("p1-obs1", "p1", HEART_RATE, "2024-01-01T10:00:00Z", 73)
    updated = server.client.put("/fhir/Observation/p1-obs1", json=changed, headers=server.p1)
    assert updated.status_code == 200, updated.get_json()
    patched = patch(
        server.client,
        "/fhir/Observation/p1-obs1",
        server.p1,
        [{"op": "replace", "path": "/status", "value": "amended"}],
    )
    assert patched.status_code == 200, patched.get_json()
    stored = server.stored("Observation/p1-obs1")
    assert (stored["meta"]["versionId"], stored["status"], stored["valueQuantity"]["value"]) == ("3", "amended", 73)

    new = {
        **observation("ignored", "p1", HEART_RATE, "2024-02-01T10:00:00Z", 70),
        "identifier": [{"system": MARK, "value": "own"}],
    }
    del new["id"]
    created = server.client.post("/fhir/Observation", json=new, headers=server.p1)
    assert created.status_code == 201, created.get_json()
    assert server.count(f"Observation?identifier={MARK}|own") == 1

    deleted = server.client.delete("/fhir/Condition/p1-cond", headers=server.p1)
    assert deleted.status_code == 200, deleted.get_json()
    assert server.client.get("/fhir/Condition/p1-cond", headers=server.system).status_code == 410


def test_read_only_token_cannot_write_its_own_records(server: Server) -> None:
    changed = observation("p1-obs1", "p1", HEART_RATE, "2024-01-01T10:00:00Z", 73)
    assert_forbidden(server.client.put("/fhir/Observation/p1-obs1", json=changed, headers=server.p1_reader))
    assert_forbidden(server.client.delete("/fhir/Observation/p1-obs1", headers=server.p1_reader))
    assert server.stored("Observation/p1-obs1")["meta"]["versionId"] == "1"


def test_patient_scope_without_a_launch_patient_reaches_nothing(server: Server) -> None:
    unlaunched = server.token("patient/*.cruds")
    assert_forbidden(server.client.get("/fhir/Patient/p1", headers=unlaunched))
    assert_forbidden(server.client.get("/fhir/Observation", headers=unlaunched))
    assert_forbidden(server.client.get("/twin/patients/p1", headers=unlaunched))
    new = {**observation("ignored", "p1", HEART_RATE, "2024-02-01T10:00:00Z", 70)}
    del new["id"]
    assert_forbidden(server.client.post("/fhir/Observation", json=new, headers=unlaunched))
    assert server.count("Observation") == 4
    # It may search no type at all, so a search of every type is refused, as one naming a type is.
    assert_forbidden(server.client.get("/fhir", headers=unlaunched))


# --- reads of p2's records ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "hidden"),
    [
        ("/fhir/Patient/{id}", "p2"),
        ("/fhir/Observation/{id}", "p2-obs1"),
        ("/fhir/Patient/{id}/_history/1", "p2"),
        ("/fhir/Observation/{id}/_history/1", "p2-obs1"),
        ("/fhir/Patient/{id}/_history", "p2"),
        ("/fhir/Observation/{id}/_history", "p2-obs1"),
        # Deleted: 404 as never known, not the 410 that would say it existed.
        ("/fhir/Condition/{id}", "p2-gone"),
        ("/fhir/Condition/{id}/_history/2", "p2-gone"),
        ("/fhir/Condition/{id}/_history", "p2-gone"),
    ],
)
def test_p2_records_read_as_nonexistent(server: Server, p1_token: dict[str, str], template: str, hidden: str) -> None:
    answer = assert_same_as_nonexistent(server.client, "GET", template, hidden, p1_token)
    assert not mentions_p2({k: v for k, v in answer.get_json().items() if k != "issue"})
    # HEAD answers the same.
    assert server.client.head(template.format(id=hidden), headers=p1_token).status_code == 404


def test_p2_records_stay_readable_by_a_system_token(server: Server) -> None:
    assert server.stored("Observation/p2-obs1")["subject"] == {"reference": "Patient/p2"}
    assert server.client.get("/fhir/Condition/p2-gone", headers=server.system).status_code == 410


# --- history -------------------------------------------------------------------------------


def test_type_history_shows_only_p1_versions(server: Server, p1_token: dict[str, str]) -> None:
    body = bundle_of(server.client.get("/fhir/Observation/_history", headers=p1_token))
    assert ids(body) == P1_OBSERVATIONS
    assert body.get("total", 2) == 2

    conditions = bundle_of(server.client.get("/fhir/Condition/_history", headers=p1_token))
    # Held to the compartment as it stands: p1-gone, deleted, is in no compartment any more.
    assert ids(conditions) == {"Condition/p1-cond"}
    assert len(conditions["entry"]) == 1
    assert conditions.get("total", 1) == 1
    assert not mentions_p2(conditions["entry"])


def test_system_history_shows_only_p1_versions(server: Server, p1_token: dict[str, str]) -> None:
    entries = []
    url: str | None = "/fhir/_history?_count=50"
    while url is not None:
        body = bundle_of(server.client.get(url, headers=p1_token))
        assert "total" not in body or body["total"] == len(body.get("entry", []))
        entries += body.get("entry", [])
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        url = url.split("localhost", 1)[1] if url else None
    clinical = {entry["fullUrl"].split("/fhir/", 1)[1] for entry in entries} - {
        entry["fullUrl"].split("/fhir/", 1)[1] for entry in entries if "/AuditEvent/" in entry["fullUrl"]
    }
    assert clinical == {
        "Patient/p1",
        "Encounter/p1-enc",
        "Condition/p1-cond",
        *P1_OBSERVATIONS,
    }
    assert not mentions_p2(entries)


# --- search ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Observation", P1_OBSERVATIONS),
        ("Observation?subject=Patient/p2", set()),
        ("Observation?patient=p2", set()),
        ("Observation?_id=p2-obs1,p1-obs1", {"Observation/p1-obs1"}),
        (f"Observation?code={LOINC}|{GLUCOSE}", set()),
        ("Observation?_include=Observation:subject", {*P1_OBSERVATIONS, "Patient/p1"}),
        ("Observation?_include=Observation:encounter", {*P1_OBSERVATIONS, "Encounter/p1-enc"}),
        ("Patient", {"Patient/p1"}),
        ("Patient?_id=p2", set()),
        ("Patient?_revinclude=Observation:subject", {"Patient/p1", *P1_OBSERVATIONS}),
        ("Encounter?_revinclude=Observation:encounter", {"Encounter/p1-enc", *P1_OBSERVATIONS}),
        ("Observation?subject:Patient.name=Beta", set()),
        ("Observation?subject:Patient.name=Alpha", P1_OBSERVATIONS),
        ("Observation?encounter:Encounter.subject=Patient/p2", set()),
        (f"Patient?_has:Observation:subject:code={GLUCOSE}", set()),
        (f"Patient?_has:Observation:subject:code={HEART_RATE}", {"Patient/p1"}),
        ("Condition?_id=p2-cond", set()),
        ("Practitioner", set()),
        ("?_type=Observation,Patient", {"Patient/p1", *P1_OBSERVATIONS}),
        ("?_type=Condition,Encounter", {"Condition/p1-cond", "Encounter/p1-enc"}),
        ("Patient/p2/Observation", set()),
        ("Patient/p2/Condition", set()),
        ("Patient/p1/Observation", P1_OBSERVATIONS),
    ],
)
def test_search_finds_only_p1_records(server: Server, p1_token: dict[str, str], query: str, expected: set[str]) -> None:
    body = bundle_of(server.client.get(f"/fhir/{query}", headers=p1_token))
    assert ids(body) == expected
    matches = [entry for entry in body.get("entry", []) if entry["search"]["mode"] == "match"]
    assert body["total"] == len(matches)
    assert not mentions_p2(body.get("entry", []))


def test_search_count_counts_only_p1_records(server: Server, p1_token: dict[str, str]) -> None:
    body = bundle_of(server.client.get("/fhir/Observation?_summary=count", headers=p1_token))
    assert body["total"] == 2
    assert bundle_of(server.client.get("/fhir/Observation?_summary=count", headers=server.system))["total"] == 4


def test_system_search_without_type_finds_only_p1_records(server: Server, p1_token: dict[str, str]) -> None:
    body = bundle_of(server.client.get("/fhir?_count=100", headers=p1_token))
    clinical = {url for url in ids(body) if not url.startswith("AuditEvent/")}
    assert clinical == {"Patient/p1", "Encounter/p1-enc", "Condition/p1-cond", *P1_OBSERVATIONS}
    assert not mentions_p2(body.get("entry", []))


def test_search_posted_as_a_form_finds_only_p1_records(server: Server, p1_token: dict[str, str]) -> None:
    answer = server.client.post("/fhir/Observation/_search", data={"subject": "Patient/p2"}, headers=p1_token)
    assert bundle_of(answer)["total"] == 0
    answer = server.client.post("/fhir/Observation/_search", data={"code": HEART_RATE}, headers=p1_token)
    assert ids(bundle_of(answer)) == P1_OBSERVATIONS


# --- operations ------------------------------------------------------------------------------


def test_everything_of_p2_answers_as_a_nonexistent_patient(server: Server, p1_token: dict[str, str]) -> None:
    assert_same_as_nonexistent(server.client, "GET", "/fhir/Patient/{id}/$everything", "p2", p1_token)


def test_everything_of_p1_holds_only_p1_records(server: Server, p1_token: dict[str, str]) -> None:
    body = bundle_of(server.client.get("/fhir/Patient/p1/$everything", headers=p1_token))
    clinical = {url for url in ids(body) if not url.startswith("AuditEvent/")}
    assert clinical == {"Patient/p1", "Encounter/p1-enc", "Condition/p1-cond", *P1_OBSERVATIONS}
    assert not mentions_p2(body["entry"])


def test_everything_over_every_patient_is_forbidden(server: Server, p1_token: dict[str, str]) -> None:
    assert_forbidden(server.client.get("/fhir/Patient/$everything", headers=p1_token))


@pytest.mark.parametrize("path", ["$export", "Patient/$export", "Patient/p1/$export", "Patient/p2/$export"])
def test_export_is_forbidden(server: Server, p1_token: dict[str, str], path: str) -> None:
    assert_forbidden(server.client.get(f"/fhir/{path}", headers={**p1_token, "Prefer": "respond-async"}))


# --- Bundles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_bundle_read_of_p2_answers_as_nonexistent(server: Server, p1_token: dict[str, str], kind: str) -> None:
    def bundle(res_id: str) -> dict[str, Any]:
        return {
            "resourceType": "Bundle",
            "type": kind,
            "entry": [{"request": {"method": "GET", "url": f"Observation/{res_id}"}}],
        }

    hidden = server.client.post("/fhir", json=bundle("p2-obs1"), headers=p1_token)
    missing = server.client.post("/fhir", json=bundle("no-such-id"), headers=p1_token)
    if kind == "batch":
        assert hidden.status_code == missing.status_code == 200
        [hidden_entry] = hidden.get_json()["entry"]
        [missing_entry] = missing.get_json()["entry"]
        assert hidden_entry["response"]["status"].startswith("404")
        assert "resource" not in hidden_entry
        text = json.dumps(hidden_entry).replace("p2-obs1", "{id}")
        assert text == json.dumps(missing_entry).replace("no-such-id", "{id}")
    else:
        assert shape(hidden, "p2-obs1") == shape(missing, "no-such-id")
        assert hidden.status_code == 404


def test_batch_reads_p1_records_beside_p2_ones(server: Server, p1_token: dict[str, str]) -> None:
    batch = batch_of_reads("Observation/p1-obs1", "Observation/p2-obs1", "Observation?subject=Patient/p2")
    own, hidden, search = bundle_of(server.client.post("/fhir", json=batch, headers=p1_token))["entry"]
    assert own["response"]["status"].startswith("200")
    assert own["resource"]["id"] == "p1-obs1"
    assert hidden["response"]["status"].startswith("404")
    assert search["resource"]["total"] == 0


def test_transaction_writing_p2_records_is_refused_whole(server: Server) -> None:
    new = observation("ignored", "p1", HEART_RATE, "2024-02-01T10:00:00Z", 70)
    del new["id"]
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {**new, "identifier": [{"system": MARK, "value": "own"}]},
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {
                    **new,
                    "subject": {"reference": "Patient/p2"},
                    "identifier": [{"system": MARK, "value": "other"}],
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    assert_forbidden(server.client.post("/fhir", json=transaction, headers=server.p1))
    assert server.count(f"Observation?identifier={MARK}|own") == 0
    assert server.count(f"Observation?identifier={MARK}|other") == 0


def test_conditional_reference_resolves_only_within_p1_compartment(server: Server) -> None:
    def transaction(reference: str) -> dict[str, Any]:
        new = {
            **observation("ignored", "p1", HEART_RATE, "2024-02-01T10:00:00Z", 70),
            "subject": {"reference": reference},
        }
        del new["id"]
        new["identifier"] = [{"system": MARK, "value": reference.rpartition("=")[2]}]
        return {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": new, "request": {"method": "POST", "url": "Observation"}}],
        }

    hidden = server.client.post("/fhir", json=transaction("Patient?name=Beta"), headers=server.p1)
    unused = server.client.post("/fhir", json=transaction("Patient?name=Nobody"), headers=server.p1)
    assert hidden.status_code == 422
    assert shape(hidden, "Beta") == shape(unused, "Nobody")
    own = server.client.post("/fhir", json=transaction("Patient?name=Alpha"), headers=server.p1)
    assert own.status_code == 200, own.get_json()
    assert server.count(f"Observation?identifier={MARK}|Beta") == 0
    assert server.count(f"Observation?identifier={MARK}|Alpha") == 1
    assert server.count("Observation?subject=Patient/p1") == 3


# --- writes to p2's records ------------------------------------------------------------------


def test_create_for_p2_is_forbidden(server: Server) -> None:
    new = {
        **observation("ignored", "p2", HEART_RATE, "2024-02-01T10:00:00Z", 70),
        "identifier": [{"system": MARK, "value": "other"}],
    }
    del new["id"]
    assert_forbidden(server.client.post("/fhir/Observation", json=new, headers=server.p1))
    assert_forbidden(
        server.client.put("/fhir/Observation/new-for-p2", json={**new, "id": "new-for-p2"}, headers=server.p1)
    )
    assert_forbidden(server.client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=server.p1))
    assert server.count(f"Observation?identifier={MARK}|other") == 0
    assert server.client.get("/fhir/Observation/new-for-p2", headers=server.system).status_code == 404
    assert server.count("Patient") == 2


def test_update_of_p2_record_answers_as_one_of_an_unused_id_and_changes_nothing(server: Server) -> None:
    """Update-as-create at an unused id would tell taken ids from free ones, so a patient-context
    token updates only its patient's existing resources: both answer the same 403."""
    taken = observation("p2-obs1", "p1", HEART_RATE, "2024-01-03T10:00:00Z", 1)
    answer = server.client.put("/fhir/Observation/p2-obs1", json=taken, headers=server.p1)
    unused = server.client.put("/fhir/Observation/no-such-id", json={**taken, "id": "no-such-id"}, headers=server.p1)
    assert_forbidden(answer)
    assert shape(answer, "p2-obs1") == shape(unused, "no-such-id")
    assert not mentions_p2({k: v for k, v in answer.get_json().items() if k != "issue"})
    assert server.client.get("/fhir/Observation/no-such-id", headers=server.system).status_code == 404
    operations = [{"op": "replace", "path": "/subject/reference", "value": "Patient/p1"}]
    assert_same_as_nonexistent(
        server.client,
        "PATCH",
        "/fhir/Observation/{id}",
        "p2-obs1",
        {**server.p1, "Content-Type": JSON_PATCH},
        data=json.dumps(operations),
    )
    stored = server.stored("Observation/p2-obs1")
    assert (stored["meta"]["versionId"], stored["subject"], stored["valueQuantity"]["value"]) == (
        "1",
        {"reference": "Patient/p2"},
        90,
    )


def test_delete_of_p2_record_answers_404_and_deletes_nothing(server: Server) -> None:
    answer = server.client.delete("/fhir/Observation/p2-obs1", headers=server.p1)
    assert answer.status_code == 404, answer.get_json()
    assert answer.get_json()["issue"][0]["code"] == "not-found"
    assert server.stored("Observation/p2-obs1")["meta"]["versionId"] == "1"
    assert server.client.delete("/fhir/Patient/p2", headers=server.p1).status_code == 404
    assert server.stored("Patient/p2")["meta"]["versionId"] == "1"


def test_moving_own_record_to_p2_is_forbidden(server: Server) -> None:
    moved = observation("p1-obs1", "p2", HEART_RATE, "2024-01-01T10:00:00Z", 72)
    assert_forbidden(server.client.put("/fhir/Observation/p1-obs1", json=moved, headers=server.p1))
    operations = [{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]
    assert_forbidden(patch(server.client, "/fhir/Observation/p1-obs1", server.p1, operations))
    stored = server.stored("Observation/p1-obs1")
    assert (stored["meta"]["versionId"], stored["subject"]) == ("1", {"reference": "Patient/p1"})
    assert ids(bundle_of(server.client.get("/fhir/Observation?subject=Patient/p2", headers=server.system))) == {
        "Observation/p2-obs1",
        "Observation/p2-obs2",
    }


def test_conditional_writes_are_forbidden(server: Server) -> None:
    query = f"code={LOINC}|{HEART_RATE}"
    body = {**observation("ignored", "p1", HEART_RATE, "2024-02-01T10:00:00Z", 1)}
    del body["id"]
    assert_forbidden(server.client.put(f"/fhir/Observation?{query}", json=body, headers=server.p1))
    assert_forbidden(server.client.delete(f"/fhir/Observation?{query}", headers=server.p1))
    operations = [{"op": "replace", "path": "/status", "value": "amended"}]
    assert_forbidden(patch(server.client, f"/fhir/Observation?{query}", server.p1, operations))
    assert_forbidden(server.client.post("/fhir/Observation", json=body, headers={**server.p1, "If-None-Exist": query}))
    for res_id in ("p1-obs1", "p1-obs2", "p2-obs1"):
        stored = server.stored(f"Observation/{res_id}")
        assert (stored["meta"]["versionId"], stored["status"]) == ("1", "final")
    assert server.count("Observation") == 4


# --- writes naming p1 beside p2 --------------------------------------------------------------
# A write through a patient/ grant must leave the resource in p1's compartment alone, and may
# change only what was in it alone: naming p1 somewhere as well does not open p2's record.

SHARED = "another patient's compartment"


def assert_refused_as_shared(answer: TestResponse) -> None:
    """403 saying the resource is (or would be) in another patient's compartment too, not whose."""
    assert_forbidden(answer)
    [issue] = answer.get_json()["issue"]
    assert SHARED in issue["diagnostics"], issue
    assert not mentions_p2(issue)


def shared_observation(res_id: str, subject: str) -> dict[str, Any]:
    """An Observation of ``subject`` with p1 as its performer: in both patients' compartments."""
    return {
        **observation(res_id, "p1", HEART_RATE, "2024-01-05T10:00:00Z", 80),
        "subject": {"reference": subject},
        "performer": [{"reference": "Patient/p1"}],
    }


def test_write_putting_a_record_in_p2_compartment_beside_p1_is_forbidden(server: Server) -> None:
    injected = shared_observation("injected", "Patient/p2")
    assert_refused_as_shared(server.client.put("/fhir/Observation/injected", json=injected, headers=server.p1))
    posted = {**injected, "identifier": [{"system": MARK, "value": "injected"}]}
    del posted["id"]
    assert_refused_as_shared(server.client.post("/fhir/Observation", json=posted, headers=server.p1))
    operations = [
        {"op": "replace", "path": "/subject/reference", "value": "Patient/p2"},
        {"op": "add", "path": "/performer/-", "value": {"reference": "Patient/p1"}},
    ]
    assert_refused_as_shared(patch(server.client, "/fhir/Observation/p1-obs1", server.p1, operations))

    assert server.client.get("/fhir/Observation/injected", headers=server.system).status_code == 404
    assert server.count(f"Observation?identifier={MARK}|injected") == 0
    stored = server.stored("Observation/p1-obs1")
    assert (stored["meta"]["versionId"], stored["subject"]) == ("1", {"reference": "Patient/p1"})
    assert server.count("Observation?subject=Patient/p2") == 2


def test_patient_token_cannot_create_or_link_patients(server: Server) -> None:
    linked = {
        "resourceType": "Patient",
        "id": "made-by-p1",
        "link": [{"other": {"reference": "Patient/p1"}, "type": "seealso"}],
    }
    assert_refused_as_shared(server.client.put("/fhir/Patient/made-by-p1", json=linked, headers=server.p1))
    assert server.client.get("/fhir/Patient/made-by-p1", headers=server.system).status_code == 404

    link = {"other": {"reference": "Patient/p2"}, "type": "seealso"}
    assert_refused_as_shared(
        patch(server.client, "/fhir/Patient/p1", server.p1, [{"op": "add", "path": "/link", "value": [link]}])
    )
    own = server.stored("Patient/p1")
    assert_refused_as_shared(server.client.put("/fhir/Patient/p1", json={**own, "link": [link]}, headers=server.p1))
    stored = server.stored("Patient/p1")
    assert (stored["meta"]["versionId"], "link" in stored) == ("1", False)
    assert server.count("Patient") == 2


def test_p1_may_write_what_is_in_its_compartment_alone(server: Server) -> None:
    own = shared_observation("own-performed", "Patient/p1")
    del own["id"]
    created = server.client.post("/fhir/Observation", json=own, headers=server.p1)
    assert created.status_code == 201, created.get_json()
    own_id = created.headers["Location"].split("/")[-3]
    own["id"] = own_id
    own["status"] = "amended"
    updated = server.client.put(f"/fhir/Observation/{own_id}", json=own, headers=server.p1)
    assert updated.status_code == 200, updated.get_json()
    assert server.stored(f"Observation/{own_id}")["status"] == "amended"
    renamed = patch(
        server.client, "/fhir/Patient/p1", server.p1, [{"op": "replace", "path": "/name/0/family", "value": "Gamma"}]
    )
    assert renamed.status_code == 200, renamed.get_json()
    assert server.stored("Patient/p1")["name"] == [{"family": "Gamma"}]
    deleted = server.client.delete(f"/fhir/Observation/{own_id}", headers=server.p1)
    assert deleted.status_code == 200, deleted.get_json()
    assert server.client.get(f"/fhir/Observation/{own_id}", headers=server.system).status_code == 410


@pytest.mark.parametrize("subject", ["Patient/p2", "http://localhost/fhir/Patient/p2"])
def test_record_shared_with_p2_is_readable_but_not_changeable(server: Server, subject: str) -> None:
    server.put(shared_observation("shared", subject))
    # In p1's compartment (R4 compartmentdefinition-patient.html), so p1's app reads it.
    read = server.client.get("/fhir/Observation/shared", headers=server.p1)
    assert read.status_code == 200, read.get_json()

    operations = [{"op": "replace", "path": "/status", "value": "amended"}]
    assert_refused_as_shared(patch(server.client, "/fhir/Observation/shared", server.p1, operations))
    only_p1 = shared_observation("shared", "Patient/p1")
    assert_refused_as_shared(server.client.put("/fhir/Observation/shared", json=only_p1, headers=server.p1))
    assert_refused_as_shared(server.client.delete("/fhir/Observation/shared", headers=server.p1))
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": "Observation/shared"}}],
    }
    assert_refused_as_shared(server.client.post("/fhir", json=transaction, headers=server.p1))

    stored = server.stored("Observation/shared")
    assert (stored["meta"]["versionId"], stored["status"], stored["subject"]) == ("1", "final", {"reference": subject})


# --- paths the router does not serve -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "template", "hidden"),
    [
        ("GET", "/fhir/Observation/{id}/x", "p2-obs1"),
        ("GET", "/fhir/Observation/{id}/_history/1/x", "p2-obs1"),
        ("GET", "/fhir/Observation/{id}/Patient", "p2-obs1"),
        ("GET", "/fhir/Patient/{id}/NotAType", "p2"),
        ("DELETE", "/fhir/Observation/{id}/x", "p2-obs1"),
    ],
)
def test_unknown_path_answers_alike_for_every_id(
    server: Server, p1_token: dict[str, str], method: str, template: str, hidden: str
) -> None:
    answer = assert_same_as_nonexistent(server.client, method, template, hidden, p1_token)
    [issue] = answer.get_json()["issue"]
    assert issue["diagnostics"].startswith("Unknown path"), issue
    # p1's own record answers the same: the path, not the id, is unknown.
    own = server.client.open(template.format(id="p1-obs1"), method=method, headers=p1_token)
    assert shape(own, "p1-obs1") == shape(answer, hidden)


@pytest.mark.parametrize(
    ("method", "template", "hidden"),
    [
        ("POST", "/fhir/Observation/{id}", "p2-obs1"),
        ("DELETE", "/fhir/Observation/{id}/_history", "p2-obs1"),
        ("PUT", "/fhir/Observation/{id}/_history/1", "p2-obs1"),
        ("POST", "/fhir/Patient/{id}/Observation", "p2"),
    ],
)
def test_method_not_allowed_answers_alike_for_every_id(server: Server, method: str, template: str, hidden: str) -> None:
    answer = server.client.open(template.format(id=hidden), method=method, headers=server.p1)
    missing = server.client.open(template.format(id="no-such-id"), method=method, headers=server.p1)
    assert answer.status_code == 405, answer.get_json()
    assert shape(answer, hidden) == shape(missing, "no-such-id")
    assert server.stored("Observation/p2-obs1")["meta"]["versionId"] == "1"


VALID_OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}


@pytest.mark.parametrize(
    ("method", "path", "options", "status"),
    [
        ("GET", "/fhir/Observation/{id}/_history?_count=-1", {}, 400),
        ("GET", "/fhir/Observation/{id}/_history?_since=garbage", {}, 400),
        ("GET", "/fhir/Observation/{id}/_history?_cursor=bad", {}, 400),
        ("PATCH", "/fhir/Observation/{id}", {"data": '[{"op": "bogus"}]', "content_type": JSON_PATCH}, 400),
        ("PATCH", "/fhir/Observation/{id}", {"data": '{"op": "add"}', "content_type": JSON_PATCH}, 400),
        ("POST", "/fhir/Observation/{id}/$validate?mode=bogus", {}, 400),
        ("POST", "/fhir/Observation/{id}/$validate?mode=update", {}, 400),
        ("POST", "/fhir/Observation/{id}/$validate?mode=update", {"json": VALID_OBSERVATION}, 200),
        ("POST", "/fhir/Observation/{id}/$validate", {"json": VALID_OBSERVATION}, 200),
        ("POST", "/fhir/Observation/{id}/$validate?mode=delete", {}, 404),
        ("PUT", "/fhir/Observation/{id}", {"json": {**VALID_OBSERVATION, "id": "other"}}, 403),
    ],
)
def test_a_request_answers_alike_for_p2s_id_and_an_unused_one(
    server: Server, method: str, path: str, options: dict[str, Any], status: int
) -> None:
    """What is checked before a resource is looked up (parameters, the patch document, the
    validation mode) answers the same for p2's id as for an unused one: a 404 for p2's alone
    would tell the token the id is taken."""
    hidden = server.client.open(path.format(id="p2-obs1"), method=method, headers=server.p1, **options)
    unused = server.client.open(path.format(id="no-such-id"), method=method, headers=server.p1, **options)
    assert hidden.status_code == status, hidden.get_json()
    assert shape(hidden, "p2-obs1") == shape(unused, "no-such-id")
    assert server.stored("Observation/p2-obs1")["meta"]["versionId"] == "1"
    assert server.client.get("/fhir/Observation/no-such-id", headers=server.system).status_code == 404


def audit_records(server: Server) -> list[dict[str, Any]]:
    """The AuditEvents stored so far, read from the database so reading adds none."""
    services_of(server.app).recorder.flush()
    with services_of(server.app).repository.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT rv.body FROM audit_chain c JOIN resource_version rv"
            " ON rv.res_type = 'AuditEvent' AND rv.res_id = c.res_id AND rv.version = 1 ORDER BY c.seq"
        ).all()
    return [json.loads(row[0]) for row in rows]


def test_only_the_capability_statement_goes_unaudited(server: Server, p1_token: dict[str, str]) -> None:
    before = len(audit_records(server))
    assert server.client.get("/fhir/metadata", headers=p1_token).status_code == 200
    assert len(audit_records(server)) == before
    unknown = server.client.get("/fhir/metadata/x", headers=p1_token)
    assert unknown.status_code == 404
    posted = server.client.post("/fhir/metadata", headers=p1_token)
    assert posted.status_code == 405
    new = audit_records(server)[before:]
    assert [event["outcome"] for event in new] == ["4", "4"]


# --- Bundle.total ------------------------------------------------------------------------------


def test_total_stays_when_only_included_entries_are_withheld(server: Server, p1_token: dict[str, str]) -> None:
    """R4 search.html: ``total`` counts matches only, so withholding an included resource leaves
    it true; dropping it then would tell that something was withheld."""
    query = "/fhir/Patient?_revinclude=Observation:focus"
    alone = bundle_of(server.client.get(query, headers=p1_token))
    server.put(
        {**observation("p2-focus", "p2", GLUCOSE, "2024-01-04T10:00:00Z", 6), "focus": [{"reference": "Patient/p1"}]}
    )
    pointed_at = bundle_of(server.client.get(query, headers=p1_token))
    assert (ids(pointed_at), pointed_at["total"]) == (ids(alone), alone["total"]) == ({"Patient/p1"}, 1)
    assert not mentions_p2(pointed_at)

    # Practitioner/doc, their performer, is not in p1's compartment: withheld, not counted.
    performers = bundle_of(server.client.get("/fhir/Observation?_include=Observation:performer", headers=p1_token))
    assert (ids(performers), performers["total"]) == (P1_OBSERVATIONS, 2)


# --- the twin API ----------------------------------------------------------------------------


def test_twin_api_shows_p1_and_hides_p2(server: Server, p1_token: dict[str, str]) -> None:
    own = server.client.get("/twin/patients/p1", headers=p1_token)
    assert own.status_code == 200
    assert own.get_json()["body"]["heart_rate"]["latest"]["value"] == 74
    assert [
        found["field"] for found in server.client.get("/twin/patients/p1/series", headers=p1_token).json["fields"]
    ] == ["heart_rate"]
    for template in ("/twin/patients/{id}", "/twin/patients/{id}/series", "/twin/patients/{id}/series/heart_rate"):
        assert_same_as_nonexistent(server.client, "GET", template, "p2", p1_token)
    assert_same_as_nonexistent(server.client, "GET", "/fhir/Patient/{id}/$twin", "p2", p1_token)


# --- known leaks -----------------------------------------------------------------------------
# Each test below states the behaviour the module docstring promises and fails today; the reason
# names where the product goes wrong. They are strict, so a fix turns them into failures to unmark.


def test_delete_of_p2_record_answers_as_delete_of_nothing(server: Server) -> None:
    hidden = server.client.delete("/fhir/Observation/p2-obs1", headers=server.p1)
    missing = server.client.delete("/fhir/Observation/no-such-id", headers=server.p1)
    assert shape(hidden, "p2-obs1") == shape(missing, "no-such-id")


@pytest.mark.parametrize("scope", ["patient/*.cruds", "patient/Patient.r"])
def test_validate_delete_does_not_tell_whether_p2_record_exists(server: Server, scope: str) -> None:
    headers = server.token(scope, "p1")
    hidden = server.client.post("/fhir/Observation/p2-obs1/$validate?mode=delete", headers=headers)
    missing = server.client.post("/fhir/Observation/no-such-id/$validate?mode=delete", headers=headers)
    assert shape(hidden, "p2-obs1") == shape(missing, "no-such-id")


def test_vread_of_a_non_numeric_version_of_p2_record_answers_as_nonexistent(server: Server) -> None:
    assert_same_as_nonexistent(server.client, "GET", "/fhir/Observation/{id}/_history/abc", "p2-obs1", server.p1)


def test_lastn_holds_only_p1_records(server: Server) -> None:
    body = bundle_of(server.client.get(f"/fhir/Observation/$lastn?code={LOINC}|{HEART_RATE}", headers=server.p1))
    assert ids(body) == {"Observation/p1-obs2"}
    assert body["total"] == 1
    body = bundle_of(server.client.get("/fhir/Observation/$lastn?max=10", headers=server.p1))
    assert ids(body) == P1_OBSERVATIONS
    assert body["total"] == 2
    # Asked about p2 outright, it answers as about a patient nobody has.
    hidden = bundle_of(server.client.get("/fhir/Observation/$lastn?patient=p2&max=10", headers=server.p1))
    unused = bundle_of(server.client.get("/fhir/Observation/$lastn?patient=no-such-id&max=10", headers=server.p1))
    assert (hidden["total"], ids(hidden)) == (unused["total"], ids(unused)) == (0, set())


def test_type_history_pages_do_not_count_p2_versions(server: Server) -> None:
    url: str | None = "/fhir/Observation/_history?_count=1"
    pages = 0
    while url is not None:
        body = bundle_of(server.client.get(url, headers=server.p1))
        pages += 1
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        url = url.split("localhost", 1)[1] if url else None
        assert url is None or body.get("entry"), f"page {pages} is empty but links to another"
    assert pages <= 3


def test_system_history_of_a_mixed_token_counts_and_pages_only_what_it_shows(server: Server) -> None:
    """``patient/`` scopes on some types and ``user/`` on others: the patient-scoped types are
    held to p1's compartment in the query itself, so no page, ``total`` or cursor tells of p2."""
    mixed = server.token("patient/Observation.rs patient/Condition.rs user/Practitioner.rs", "p1")
    first = bundle_of(server.client.get("/fhir/_history?_count=1", headers=mixed))
    entries, url, pages = [], "/fhir/_history?_count=1", 0
    while url is not None:
        body = bundle_of(server.client.get(url, headers=mixed))
        pages += 1
        assert body.get("entry"), f"page {pages} is empty"
        entries += body["entry"]
        url = next((link["url"] for link in body["link"] if link["relation"] == "next"), None)
        url = url.split("localhost", 1)[1] if url else None

    shown = [entry["fullUrl"].split("/fhir/", 1)[1] for entry in entries]
    assert set(shown) == {"Practitioner/doc", "Condition/p1-cond", *P1_OBSERVATIONS}
    assert first["total"] == len(shown) == pages
    assert not mentions_p2(entries)


def test_audit_trail_does_not_name_p2_to_p1(server: Server, p1_token: dict[str, str]) -> None:
    # A clinician's search names p1 and p2 in one AuditEvent.
    clinician = server.token("user/*.rs")
    assert server.client.get("/fhir/Observation", headers=clinician).status_code == 200
    services_of(server.app).recorder.flush()
    assert mentions_p2(server.client.get("/fhir/AuditEvent?_count=100", headers=server.system).get_json()["entry"])

    assert_forbidden(server.client.get("/fhir/AuditEvent", headers=p1_token))
    for path in ("/fhir/_history?_count=100", "/fhir?_count=100", "/fhir/Patient/p1/$everything?_count=100"):
        body = bundle_of(server.client.get(path, headers=p1_token))
        assert not mentions_p2(body.get("entry", [])), path
        assert not any(url.startswith("AuditEvent/") for url in ids(body)), path


def test_update_of_p2_patient_answers_as_update_of_an_unused_id(server: Server) -> None:
    hidden = server.client.put("/fhir/Patient/p2", json={"resourceType": "Patient", "id": "p2"}, headers=server.p1)
    unused = server.client.put(
        "/fhir/Patient/no-such-id", json={"resourceType": "Patient", "id": "no-such-id"}, headers=server.p1
    )
    assert shape(hidden, "p2") == shape(unused, "no-such-id")
    assert server.client.get("/fhir/Patient/no-such-id", headers=server.system).status_code == 404


def test_everything_total_counts_only_what_p1_is_shown(server: Server) -> None:
    body = bundle_of(server.client.get("/fhir/Patient/p1/$everything?_count=100", headers=server.p1))
    # Left out rather than counting the referenced resources withheld from the patient's token.
    assert body.get("total", len(body["entry"])) == len(body["entry"])


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_a_reference_to_p2s_record_is_refused_as_one_to_nothing(server: Server, method: str) -> None:
    """Referential integrity would accept a reference to p2's Observation and refuse one to an
    unused id: the token would learn which ids p2's record holds."""
    answers = {}
    for target in ("p2-obs1", "no-such-id"):
        # Created with POST, or an update of p1's own p1-obs2.
        new = observation("p1-obs2", "p1", HEART_RATE, "2024-02-01T10:00:00Z", 70)
        new["hasMember"] = [{"reference": f"Observation/{target}"}]
        if method == "POST":
            del new["id"]
            answer = server.client.post("/fhir/Observation", json=new, headers=server.p1)
        else:
            answer = server.client.put("/fhir/Observation/p1-obs2", json=new, headers=server.p1)
        assert answer.status_code == 422, answer.get_json()
        diagnostics = answer.get_json()["issue"][0]["diagnostics"]
        answers[target] = re.sub(r"Observation/[\w.-]+ refers", "Observation/{new} refers", diagnostics).replace(
            target, "{target}"
        )
    assert answers["p2-obs1"] == answers["no-such-id"]
    assert server.count("Observation") == 4
    assert server.stored("Observation/p1-obs2")["meta"]["versionId"] == "1"
    mine = observation("p1-obs2", "p1", HEART_RATE, "2024-02-01T10:00:00Z", 70)
    mine["hasMember"] = [{"reference": "Observation/p1-obs1"}]
    assert server.client.put("/fhir/Observation/p1-obs2", json=mine, headers=server.p1).status_code == 200


def test_a_refused_delete_does_not_name_another_patients_referrer(server: Server) -> None:
    referrer = observation("p2-panel", "p2", HEART_RATE, "2024-01-06T10:00:00Z", 91)
    referrer["hasMember"] = [{"reference": "Observation/p1-obs1"}]
    server.put(referrer)
    refused = server.client.delete("/fhir/Observation/p1-obs1", headers=server.p1)
    assert refused.status_code == 409, refused.get_json()
    diagnostics = refused.get_json()["issue"][0]["diagnostics"]
    assert diagnostics == "Observation/p1-obs1 cannot be deleted: another resource refers to it"
    assert server.stored("Observation/p1-obs1")["id"] == "p1-obs1"
    named = server.client.delete("/fhir/Observation/p1-obs1", headers=server.system)
    assert named.status_code == 409
    assert "Observation/p2-panel refers to it" in named.get_json()["issue"][0]["diagnostics"]
