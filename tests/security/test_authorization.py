"""SMART scopes per interaction (``c r u d s``, v1 ``read``/``write``), checked over HTTP in auth
mode "tokens": each interaction class allowed by the letter it needs and refused without it, a
refusal being a 403 OperationOutcome that leaves the store as it was (read back with a system
token). Also Bundles, operations, the read-only audit trail and the auditor role."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhir_twin.app import services_of
from fhir_twin.store.export_jobs import run_pending_exports
from tests import factories
from tests.factories import HEART_RATE, Server, batch_of_reads, condition, seed_clinic

pytestmark = pytest.mark.audited

JSON_PATCH = "application/json-patch+json"
MARK = "urn:test:authorization"


def observation(res_id: str, patient: str, when: str, value: float) -> dict[str, Any]:
    """A heart rate that Practitioner/doc performed."""
    performer = [{"reference": "Practitioner/doc"}]
    return factories.observation(
        HEART_RATE, res_id=res_id, patient=patient, when=when, value=value, performer=performer
    )


def seed(server: Server) -> None:
    seed_clinic(server)
    for patient, value in (("p1", 72), ("p2", 90)):
        server.put(observation(f"{patient}-obs", patient, "2024-01-01T10:00:00Z", value))
        server.put(condition(f"{patient}-cond", patient))
    server.put(
        {
            "resourceType": "Provenance",
            "id": "prov",
            "target": [{"reference": "Observation/p1-obs"}],
            "recorded": "2024-01-01T10:00:00Z",
            "agent": [{"who": {"reference": "Practitioner/doc"}}],
        }
    )


@pytest.fixture
def server(make_app: Any) -> Server:
    found = Server(make_app(auth_mode="tokens", doctor=False))
    seed(found)
    return found


def assert_forbidden(answer: TestResponse) -> None:
    assert answer.status_code == 403, answer.get_json()
    body = answer.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert [(issue["severity"], issue["code"]) for issue in body["issue"]] == [("error", "forbidden")]


def ids(bundle: dict[str, Any]) -> set[str]:
    return {entry["fullUrl"].split("/fhir/", 1)[1] for entry in bundle.get("entry", [])}


def new_observation(patient: str = "p1") -> dict[str, Any]:
    """A new Observation the test can find again by its identifier."""
    identifier = [{"system": MARK, "value": "new"}]
    return factories.observation(HEART_RATE, patient=patient, value=60, identifier=identifier)


def patch_status(client: FlaskClient, path: str, headers: dict[str, str]) -> TestResponse:
    operations = [{"op": "replace", "path": "/status", "value": "amended"}]
    return client.patch(path, data=json.dumps(operations), headers={**headers, "Content-Type": JSON_PATCH})


# --- create (c) ------------------------------------------------------------------------------


def test_create_needs_c(server: Server) -> None:
    refused = server.client.post(
        "/fhir/Observation", json=new_observation(), headers=server.token("user/Observation.rsud")
    )
    assert_forbidden(refused)
    assert server.count(f"Observation?identifier={MARK}|new") == 0

    created = server.client.post(
        "/fhir/Observation", json=new_observation(), headers=server.token("user/Observation.c")
    )
    assert created.status_code == 201, created.get_json()
    assert server.count(f"Observation?identifier={MARK}|new") == 1


# --- read and vread (r) --------------------------------------------------------------------


def test_read_and_vread_need_r(server: Server) -> None:
    allowed = server.token("user/Observation.r")
    read = server.client.get("/fhir/Observation/p1-obs", headers=allowed)
    assert read.status_code == 200
    assert read.get_json()["id"] == "p1-obs"
    vread = server.client.get("/fhir/Observation/p1-obs/_history/1", headers=allowed)
    assert vread.status_code == 200
    assert vread.get_json()["meta"]["versionId"] == "1"

    denied = server.token("user/Observation.cuds")
    assert_forbidden(server.client.get("/fhir/Observation/p1-obs", headers=denied))
    assert_forbidden(server.client.get("/fhir/Observation/p1-obs/_history/1", headers=denied))
    # A type the scopes do not name at all.
    assert_forbidden(server.client.get("/fhir/Observation/p1-obs", headers=server.token("user/Patient.cruds")))


# --- update and patch (u) ------------------------------------------------------------------


def test_update_and_patch_need_u(server: Server) -> None:
    denied = server.token("user/Observation.crds")
    changed = {**observation("p1-obs", "p1", "2024-01-01T10:00:00Z", 75)}
    assert_forbidden(server.client.put("/fhir/Observation/p1-obs", json=changed, headers=denied))
    assert_forbidden(patch_status(server.client, "/fhir/Observation/p1-obs", denied))
    stored = server.read("Observation/p1-obs").get_json()
    assert (stored["meta"]["versionId"], stored["status"], stored["valueQuantity"]["value"]) == ("1", "final", 72)

    allowed = server.token("user/Observation.u")
    updated = server.client.put("/fhir/Observation/p1-obs", json=changed, headers=allowed)
    assert updated.status_code == 200, updated.get_json()
    # A patch reads what it changes (its test operations compare stored values): it needs r too.
    refused = patch_status(server.client, "/fhir/Observation/p1-obs", allowed)
    assert_forbidden(refused)
    assert "read" in refused.get_json()["issue"][0]["diagnostics"]
    patched = patch_status(server.client, "/fhir/Observation/p1-obs", server.token("user/Observation.ru"))
    assert patched.status_code == 200, patched.get_json()
    stored = server.read("Observation/p1-obs").get_json()
    assert (stored["meta"]["versionId"], stored["status"], stored["valueQuantity"]["value"]) == ("3", "amended", 75)


# --- delete (d) ----------------------------------------------------------------------------


def test_delete_needs_d(server: Server) -> None:
    assert_forbidden(server.client.delete("/fhir/Condition/p1-cond", headers=server.token("user/Condition.crus")))
    assert server.read("Condition/p1-cond").status_code == 200

    deleted = server.client.delete("/fhir/Condition/p1-cond", headers=server.token("user/Condition.d"))
    assert deleted.status_code == 200, deleted.get_json()
    assert server.read("Condition/p1-cond").status_code == 410


# --- search (s) ----------------------------------------------------------------------------


def test_type_search_needs_s(server: Server) -> None:
    allowed = server.token("user/Observation.s")
    found = server.client.get("/fhir/Observation", headers=allowed)
    assert found.status_code == 200
    # Searching is allowed; the matches are shown to a client that may also read them.
    assert found.get_json()["total"] == 2
    assert ids(found.get_json()) == set()
    found = server.client.get("/fhir/Observation", headers=server.token("user/Observation.rs"))
    assert ids(found.get_json()) == {"Observation/p1-obs", "Observation/p2-obs"}
    posted = server.client.post("/fhir/Observation/_search", data={"subject": "Patient/p1"}, headers=allowed)
    assert posted.status_code == 200, posted.get_json()
    assert posted.get_json()["total"] == 1

    denied = server.token("user/Observation.crud")
    assert_forbidden(server.client.get("/fhir/Observation", headers=denied))
    assert_forbidden(server.client.post("/fhir/Observation/_search", data={"subject": "Patient/p1"}, headers=denied))


def test_system_search_with_type_needs_s(server: Server) -> None:
    allowed = server.client.get("/fhir?_type=Observation", headers=server.token("user/Observation.s"))
    assert allowed.status_code == 200
    assert allowed.get_json()["total"] == 2
    allowed = server.client.get(
        "/fhir?_type=Observation,Patient", headers=server.token("user/Observation.rs user/Patient.s")
    )
    assert allowed.status_code == 200
    assert ids(allowed.get_json()) == {"Observation/p1-obs", "Observation/p2-obs"}
    assert allowed.get_json()["total"] == 4


@pytest.mark.parametrize(
    ("scope", "types"),
    [("user/Observation.r", "Observation"), ("user/Observation.rs", "Observation,Patient"), ("openid", "Observation")],
)
def test_system_search_naming_a_type_not_granted_is_forbidden(server: Server, scope: str, types: str) -> None:
    assert_forbidden(server.client.get(f"/fhir?_type={types}", headers=server.token(scope)))


def test_system_search_without_type_keeps_to_the_types_granted(server: Server) -> None:
    answer = server.client.get("/fhir", headers=server.token("user/Patient.rs"))
    assert answer.status_code == 200
    body = answer.get_json()
    assert ids(body) == {"Patient/p1", "Patient/p2"}
    assert body["total"] == 2


@pytest.mark.parametrize("query", ["", "?_id=p1", "?_lastUpdated=gt2000"])
@pytest.mark.parametrize("scope", ["user/Observation.r", "system/Observation.c", "openid"])
def test_system_search_by_a_token_that_may_search_no_type_is_forbidden(server: Server, scope: str, query: str) -> None:
    assert_forbidden(server.client.get(f"/fhir{query}", headers=server.token(scope)))


def test_chained_search_needs_s_on_the_chained_type(server: Server) -> None:
    query = "/fhir/Observation?subject:Patient.name=Alpha"
    assert_forbidden(server.client.get(query, headers=server.token("user/Observation.rs")))
    answer = server.client.get(query, headers=server.token("user/Observation.rs user/Patient.s"))
    assert answer.status_code == 200
    assert ids(answer.get_json()) == {"Observation/p1-obs"}


def test_include_of_a_type_not_granted_is_left_out(server: Server) -> None:
    answer = server.client.get(
        "/fhir/Observation?_include=Observation:subject&subject=Patient/p1", headers=server.token("user/Observation.rs")
    )
    assert answer.status_code == 200
    assert ids(answer.get_json()) == {"Observation/p1-obs"}


# --- history: instance (r), type (s) -------------------------------------------------------


def test_instance_history_needs_r_and_type_history_needs_s(server: Server) -> None:
    reader = server.token("user/Observation.r")
    instance = server.client.get("/fhir/Observation/p1-obs/_history", headers=reader)
    assert instance.status_code == 200
    assert ids(instance.get_json()) == {"Observation/p1-obs"}
    assert_forbidden(server.client.get("/fhir/Observation/_history", headers=reader))

    searcher = server.token("user/Observation.s")
    of_type = server.client.get("/fhir/Observation/_history", headers=searcher)
    assert of_type.status_code == 200
    assert_forbidden(server.client.get("/fhir/Observation/p1-obs/_history", headers=searcher))

    both = server.client.get("/fhir/Observation/_history", headers=server.token("user/Observation.rs"))
    assert both.status_code == 200
    assert ids(both.get_json()) == {"Observation/p1-obs", "Observation/p2-obs"}


# --- Bundles ---------------------------------------------------------------------------------


def _bundle(kind: str) -> dict[str, Any]:
    patient = {"resourceType": "Patient", "identifier": [{"system": MARK, "value": "bundled"}]}
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {
                "fullUrl": "urn:uuid:0b0c2d3e-0000-4000-8000-000000000001",
                "resource": patient,
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": new_observation(), "request": {"method": "POST", "url": "Observation"}},
        ],
    }


def test_transaction_with_an_entry_not_granted_is_refused_whole(server: Server) -> None:
    answer = server.client.post("/fhir", json=_bundle("transaction"), headers=server.token("user/Patient.cruds"))
    assert_forbidden(answer)
    assert server.count(f"Patient?identifier={MARK}|bundled") == 0
    assert server.count(f"Observation?identifier={MARK}|new") == 0


def test_transaction_with_every_entry_granted_is_written(server: Server) -> None:
    answer = server.client.post(
        "/fhir", json=_bundle("transaction"), headers=server.token("user/Patient.c user/Observation.c")
    )
    assert answer.status_code == 200, answer.get_json()
    assert [entry["response"]["status"] for entry in answer.get_json()["entry"]] == ["201 Created", "201 Created"]
    assert server.count(f"Patient?identifier={MARK}|bundled") == 1
    assert server.count(f"Observation?identifier={MARK}|new") == 1


def test_batch_refuses_only_the_entry_not_granted(server: Server) -> None:
    answer = server.client.post("/fhir", json=_bundle("batch"), headers=server.token("user/Patient.cruds"))
    assert answer.status_code == 200, answer.get_json()
    created, refused = answer.get_json()["entry"]
    assert created["response"]["status"].startswith("201")
    assert refused["response"]["status"].startswith("403")
    assert refused["response"]["outcome"]["issue"][0]["code"] == "forbidden"
    assert server.count(f"Patient?identifier={MARK}|bundled") == 1
    assert server.count(f"Observation?identifier={MARK}|new") == 0


def test_batch_read_of_a_type_not_granted_is_refused(server: Server) -> None:
    batch = batch_of_reads("Patient/p1", "Observation/p1-obs")
    answer = server.client.post("/fhir", json=batch, headers=server.token("user/Patient.rs"))
    assert answer.status_code == 200
    read, refused = answer.get_json()["entry"]
    assert read["response"]["status"].startswith("200")
    assert read["resource"]["id"] == "p1"
    assert refused["response"]["status"].startswith("403")
    assert "resource" not in refused


# --- operations ----------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["user/Patient.rs", "patient/Condition.r", "openid fhirUser"])
def test_validate_is_open_to_any_token(server: Server, scope: str) -> None:
    answer = server.client.post(
        "/fhir/Observation/$validate", json=new_observation(), headers=server.token(scope, "p1")
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["resourceType"] == "OperationOutcome"
    assert server.count(f"Observation?identifier={MARK}|new") == 0


def test_everything_needs_patient_read(server: Server) -> None:
    assert_forbidden(server.client.get("/fhir/Patient/p1/$everything", headers=server.token("user/Observation.rs")))

    answer = server.client.get("/fhir/Patient/p1/$everything", headers=server.token("user/*.rs"))
    assert answer.status_code == 200
    assert {"Patient/p1", "Observation/p1-obs", "Condition/p1-cond", "Encounter/p1-enc"} <= ids(answer.get_json())

    # Reading the Patient alone lets it run, but shows only what the scopes let the client read.
    only_patient = server.client.get("/fhir/Patient/p1/$everything", headers=server.token("user/Patient.r"))
    assert only_patient.status_code == 200
    assert ids(only_patient.get_json()) == {"Patient/p1"}


@pytest.mark.parametrize(
    ("scope", "patient"),
    [("patient/*.rs", "p1"), ("system/Patient.rs", None), ("user/*.s", None)],
    ids=["patient-scope", "one-type", "search-only"],
)
def test_export_needs_user_or_system_read_of_every_type(server: Server, scope: str, patient: str | None) -> None:
    headers = {**server.token(scope, patient), "Prefer": "respond-async"}
    assert_forbidden(server.client.get("/fhir/$export", headers=headers))
    assert_forbidden(server.client.get("/fhir/Patient/$export", headers=headers))


def test_export_kick_off_with_system_read(server: Server) -> None:
    headers = {**server.token("system/*.rs"), "Prefer": "respond-async"}
    answer = server.client.get("/fhir/$export?_type=Patient", headers=headers)
    assert answer.status_code == 202, answer.get_json()
    status_url = answer.headers["Content-Location"].split("/fhir/", 1)[1]
    # Polling a job needs the same grant.
    assert_forbidden(server.client.get(f"/fhir/{status_url}", headers=server.token("patient/*.rs", "p1")))
    cancelled = server.client.delete(f"/fhir/{status_url}", headers=headers)
    assert cancelled.status_code == 202


def test_an_export_job_belongs_to_the_client_that_started_it(server: Server) -> None:
    """Another client allowed to export gets 404 for the job's status, files and cancellation,
    exactly as for a job that never was; the job is left as it was."""
    repository = services_of(server.app).interactions.repository
    owner = server.token("system/*.rs", name="exporter a")
    other = server.token("system/*.rs", name="exporter b")
    answer = server.client.get("/fhir/$export?_type=Patient", headers={**owner, "Prefer": "respond-async"})
    assert answer.status_code == 202, answer.get_json()
    status_url = "/fhir/" + answer.headers["Content-Location"].split("/fhir/", 1)[1]
    job_id = status_url.split("_jobId=", 1)[1]
    run_pending_exports(repository, "test")  # unless the server's own worker was first
    deadline = time.monotonic() + 20
    while (manifest := server.client.get(status_url, headers=owner)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manifest.status_code == 200, manifest.headers
    file_url = "/fhir/" + manifest.get_json()["output"][0]["url"].split("/fhir/", 1)[1]

    never = f"/fhir/$export-poll-status?_jobId={'0' * len(job_id)}"
    for refused, unknown in (
        (server.client.get(status_url, headers=other), server.client.get(never, headers=other)),
        (
            server.client.get(file_url, headers=other),
            server.client.get(never.replace("poll-status", "file") + "&file=1", headers=other),
        ),
        (server.client.delete(status_url, headers=other), server.client.delete(never, headers=other)),
    ):
        assert refused.status_code == unknown.status_code == 404
        assert refused.get_json()["issue"][0]["code"] == unknown.get_json()["issue"][0]["code"] == "not-found"

    assert server.client.get(status_url, headers=owner).status_code == 200
    lines = server.client.get(file_url, headers=owner).get_data(as_text=True).splitlines()
    assert {json.loads(line)["id"] for line in lines} == {"p1", "p2"}
    assert server.client.delete(status_url, headers=owner).status_code == 202
    assert server.client.get(status_url, headers=owner).status_code == 404


# --- v1 and v2 scope syntax ----------------------------------------------------------------


def test_v1_read_reads_and_searches_but_cannot_write(server: Server) -> None:
    reader = server.token("user/Patient.read")
    assert server.client.get("/fhir/Patient/p1", headers=reader).status_code == 200
    found = server.client.get("/fhir/Patient?name=Alpha", headers=reader)
    assert found.status_code == 200
    assert ids(found.get_json()) == {"Patient/p1"}

    new = {"resourceType": "Patient", "identifier": [{"system": MARK, "value": "v1"}]}
    assert_forbidden(server.client.post("/fhir/Patient", json=new, headers=reader))
    assert_forbidden(
        server.client.put(
            "/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "gender": "male"}, headers=reader
        )
    )
    assert_forbidden(server.client.delete("/fhir/Patient/p1", headers=reader))
    assert server.count(f"Patient?identifier={MARK}|v1") == 0
    stored = server.read("Patient/p1").get_json()
    assert stored["meta"]["versionId"] == "1"
    assert "gender" not in stored


def test_v1_write_writes_but_cannot_read(server: Server) -> None:
    writer = server.token("user/Patient.write")
    new = {"resourceType": "Patient", "identifier": [{"system": MARK, "value": "v1"}]}
    created = server.client.post("/fhir/Patient", json=new, headers=writer)
    assert created.status_code == 201, created.get_json()
    updated = server.client.put(
        "/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1", "gender": "male"}, headers=writer
    )
    assert updated.status_code == 200, updated.get_json()
    assert server.count(f"Patient?identifier={MARK}|v1") == 1
    assert server.read("Patient/p1").get_json()["gender"] == "male"

    assert_forbidden(server.client.get("/fhir/Patient/p1", headers=writer))
    assert_forbidden(server.client.get("/fhir/Patient", headers=writer))


def test_v2_create_and_update_cannot_read(server: Server) -> None:
    writer = server.token("user/Patient.cu")
    new = {"resourceType": "Patient", "identifier": [{"system": MARK, "value": "v2"}]}
    created = server.client.post("/fhir/Patient", json=new, headers=writer)
    assert created.status_code == 201, created.get_json()
    location = created.headers["Location"].split("/fhir/", 1)[1]
    new_id = location.split("/")[1]

    assert_forbidden(server.client.get(f"/fhir/Patient/{new_id}", headers=writer))
    assert_forbidden(server.client.get(f"/fhir/Patient?identifier={MARK}|v2", headers=writer))
    assert_forbidden(server.client.delete(f"/fhir/Patient/{new_id}", headers=writer))
    assert server.read(f"Patient/{new_id}").status_code == 200


def test_scope_narrowed_by_a_query_grants_only_what_it_matches(server: Server) -> None:
    """Granular scopes in full: tests/security/test_granular_scopes.py."""
    narrowed = server.token("user/Observation.rs?category=vital-signs")
    assert server.client.get("/fhir/Observation/p1-obs", headers=narrowed).status_code == 404
    assert ids(server.client.get("/fhir/Observation", headers=narrowed).get_json()) == set()
    p1 = server.token("user/Observation.rs?subject=Patient/p1")
    assert server.client.get("/fhir/Observation/p1-obs", headers=p1).status_code == 200
    assert ids(server.client.get("/fhir/Observation", headers=p1).get_json()) == {"Observation/p1-obs"}


# --- the audit trail and the auditor -------------------------------------------------------


def _audit_event() -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "rest"},
        "recorded": "2024-01-01T10:00:00Z",
        "agent": [{"who": {"display": "forger"}, "name": "forger", "requestor": True}],
        "source": {"observer": {"display": "forger"}},
    }


def test_audit_events_cannot_be_written_through_the_api(server: Server) -> None:
    services_of(server.app).recorder.flush()
    stored = server.client.get("/fhir/AuditEvent?_count=1", headers=server.system).get_json()
    some_id = stored["entry"][0]["resource"]["id"]
    before = server.read(f"AuditEvent/{some_id}").get_json()

    answers = {
        "POST": server.client.post("/fhir/AuditEvent", json=_audit_event(), headers=server.system),
        "PUT": server.client.put(
            f"/fhir/AuditEvent/{some_id}", json={**_audit_event(), "id": some_id}, headers=server.system
        ),
        "DELETE": server.client.delete(f"/fhir/AuditEvent/{some_id}", headers=server.system),
        "PATCH": patch_status(server.client, f"/fhir/AuditEvent/{some_id}", server.system),
    }
    for method, answer in answers.items():
        assert answer.status_code == 405, (method, answer.get_json())
        assert answer.get_json()["resourceType"] == "OperationOutcome"
        allowed = {name.strip() for name in answer.headers["Allow"].split(",")}
        assert {"GET", "HEAD"} <= allowed, method
        assert not {"POST", "PUT", "PATCH", "DELETE"} & allowed, method

    after = server.read(f"AuditEvent/{some_id}")
    assert after.status_code == 200
    assert after.get_json() == before
    forged = server.client.get("/fhir/AuditEvent?agent-name=forger", headers=server.system).get_json()
    assert forged.get("total") == 0


def test_audit_events_cannot_be_written_in_a_transaction(server: Server) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": _audit_event(), "request": {"method": "POST", "url": "AuditEvent"}}],
    }
    answer = server.client.post("/fhir", json=bundle, headers=server.system)
    assert answer.status_code == 405
    assert server.client.get("/fhir/AuditEvent?agent-name=forger", headers=server.system).get_json()["total"] == 0


def test_auditor_searches_the_trail_and_provenance_but_no_clinical_data(server: Server) -> None:
    services_of(server.app).recorder.flush()
    auditor = server.token("user/AuditEvent.rs user/Provenance.rs")
    events = server.client.get("/fhir/AuditEvent", headers=auditor)
    assert events.status_code == 200
    assert events.get_json()["total"] > 0
    one = events.get_json()["entry"][0]["resource"]["id"]
    assert server.client.get(f"/fhir/AuditEvent/{one}", headers=auditor).status_code == 200
    provenance = server.client.get("/fhir/Provenance", headers=auditor)
    assert provenance.status_code == 200
    assert ids(provenance.get_json()) == {"Provenance/prov"}

    assert_forbidden(server.client.get("/fhir/Patient/p1", headers=auditor))
    assert_forbidden(server.client.get("/fhir/Patient", headers=auditor))
    assert_forbidden(server.client.get("/fhir/Observation?subject=Patient/p1", headers=auditor))
    # _include of the Provenance's target does not bring clinical data along.
    included = server.client.get("/fhir/Provenance?_include=Provenance:target", headers=auditor)
    assert included.status_code == 200
    assert ids(included.get_json()) == {"Provenance/prov"}
    # Nor does a system search without _type.
    everything = server.client.get("/fhir", headers=auditor)
    assert everything.status_code == 200
    assert {url.split("/")[0] for url in ids(everything.get_json())} <= {"AuditEvent", "Provenance"}


# --- the twin API ----------------------------------------------------------------------------


def test_twin_api_needs_patient_read(server: Server) -> None:
    assert_forbidden(server.client.get("/twin/patients/p1", headers=server.token("user/Observation.rs")))
    # The twin shows the Body, the Case and the assessments: it needs reading each of them.
    assert_forbidden(server.client.get("/twin/patients/p1", headers=server.token("user/Patient.r user/Observation.r")))
    twin_reader = " ".join(
        f"user/{name}.r"
        for name in (
            "Patient",
            "Observation",
            "Condition",
            "DiagnosticReport",
            "Encounter",
            "Procedure",
            "MedicationRequest",
            "CarePlan",
            "Goal",
            "RiskAssessment",
        )
    )
    # Goals feed the Digital Case (mappings/case.yaml): a twin reader must be able to read them.
    assert_forbidden(
        server.client.get("/twin/patients/p1", headers=server.token(twin_reader.replace(" user/Goal.r", "")))
    )
    answer = server.client.get("/twin/patients/p1", headers=server.token(twin_reader))
    assert answer.status_code == 200
    assert answer.get_json()["body"]["heart_rate"]["latest"]["value"] == 72


def test_twin_api_does_not_give_observations_to_a_token_that_cannot_read_them(server: Server) -> None:
    only_patient = server.token("user/Patient.rs")
    assert_forbidden(server.client.get("/fhir/Observation/p1-obs", headers=only_patient))
    for path in ("/twin/patients/p1", "/fhir/Patient/p1/$twin"):
        answer = server.client.get(path, headers=only_patient)
        assert answer.status_code == 403 or b"Observation/p1-obs" not in answer.data, path


# --- history of the whole system -----------------------------------------------------------


def test_system_history_total_counts_only_what_the_token_may_see(server: Server) -> None:
    for scope in ("user/Patient.rs", "openid fhirUser"):
        answer = server.client.get("/fhir/_history?_count=1000", headers=server.token(scope))
        if answer.status_code == 403:
            continue
        body = answer.get_json()
        assert body.get("total", len(body.get("entry", []))) == len(body.get("entry", [])), scope


# --- what a write reveals or creates besides itself --------------------------------------------


def test_a_conditional_create_needs_search_and_read(server: Server) -> None:
    """Its criteria search, and a match is answered with the stored resource (SMART v2 keeps
    ``s`` and ``r`` apart from ``c``)."""
    new = observation("ignored", "p1", "2024-03-01T10:00:00Z", 60)
    del new["id"]
    before = server.count("Observation")
    for scope in ("user/Observation.c", "user/Observation.cs", "user/Observation.cr"):
        refused = server.client.post(
            "/fhir/Observation", json=new, headers={**server.token(scope), "If-None-Exist": "_id=p1-obs"}
        )
        assert_forbidden(refused)
        assert "72" not in refused.get_data(as_text=True)
    assert server.count("Observation") == before
    matched = server.client.post(
        "/fhir/Observation", json=new, headers={**server.token("user/Observation.crs"), "If-None-Exist": "_id=p1-obs"}
    )
    assert matched.status_code == 200
    assert server.count("Observation") == before


def test_an_update_that_would_create_needs_c(server: Server) -> None:
    refused = server.client.put(
        "/fhir/Observation/new-one",
        json=observation("new-one", "p1", "2024-03-01T10:00:00Z", 60),
        headers=server.token("user/Observation.u"),
    )
    assert_forbidden(refused)
    assert "create" in refused.get_json()["issue"][0]["diagnostics"]
    assert server.read("Observation/new-one").status_code == 404
    created = server.client.put(
        "/fhir/Observation/new-one",
        json=observation("new-one", "p1", "2024-03-01T10:00:00Z", 60),
        headers=server.token("user/Observation.cu"),
    )
    assert created.status_code == 201


@pytest.mark.parametrize(
    ("method", "scope", "body"),
    [
        ("PUT", "user/Observation.u", observation("x", "p1", "2024-03-01T10:00:00Z", 60)),
        ("PATCH", "user/Observation.ru", [{"op": "replace", "path": "/status", "value": "amended"}]),
        ("DELETE", "user/Observation.d", None),
    ],
)
def test_a_conditional_write_needs_s(server: Server, method: str, scope: str, body: Any) -> None:
    """Its criteria are a search: without ``s`` they would tell what matches."""
    if method == "PUT":
        del body["id"]
    headers = server.token(scope)
    content = {"json": body} if method == "PUT" else {"data": json.dumps(body)} if body is not None else {}
    if method == "PATCH":
        headers = {**headers, "Content-Type": "application/json-patch+json"}
    refused = server.client.open("/fhir/Observation?_id=p1-obs", method=method, headers=headers, **content)
    assert_forbidden(refused)
    assert "search" in refused.get_json()["issue"][0]["diagnostics"]
    stored = server.read("Observation/p1-obs").get_json()
    assert (stored["meta"]["versionId"], stored["status"]) == ("1", "final")


def test_everything_hides_the_count_of_types_the_token_may_not_read(server: Server) -> None:
    answer = server.client.get("/fhir/Patient/p1/$everything", headers=server.token("system/Patient.rs"))
    assert answer.status_code == 200
    body = answer.get_json()
    assert ids(body) == {"Patient/p1"}
    assert "total" not in body
    everything = server.client.get("/fhir/Patient/p1/$everything", headers=server.token("system/*.rs"))
    assert everything.get_json()["total"] > 1


def test_a_refusal_for_scope_says_insufficient_scope(server: Server) -> None:
    refused = server.client.get("/fhir/Observation/p1-obs", headers=server.token("user/Patient.rs"))
    assert_forbidden(refused)
    assert refused.headers["WWW-Authenticate"] == 'Bearer realm="fhir-twin", error="insufficient_scope"'


# --- operations: each declares its permission, and none is open by default -------------------


def test_every_offered_operation_refuses_a_token_with_no_permission_at_any_level(server: Server) -> None:
    """Walks the router's own table: every operation, at every level and method it is offered,
    is refused to a token that may only read Practitioners."""
    operations = services_of(server.app).interactions.operations
    assert {"validate", "everything", "lastn", "export", "twin", "predict", "whatif"} <= set(operations)
    narrow = server.token("user/Practitioner.r")
    for operation in operations.values():
        assert operation.permission is not None, operation.name
        for level in operation.levels:
            if (operation.name, level) == ("validate", "type"):
                continue  # checks a resource sent in the body: reads and stores nothing, any token may

            res_type = "Patient" if operation.types is None or "Patient" in operation.types else min(operation.types)
            path = {"system": "", "type": f"/{res_type}", "instance": f"/{res_type}/p1"}[level]
            for method in operation.methods:
                answer = server.client.open(f"/fhir{path}/${operation.name}", method=method, headers=narrow)
                assert answer.status_code in (403, 404), (operation.name, level, method, answer.status_code)
                assert answer.get_json()["resourceType"] == "OperationOutcome"


def test_an_operation_that_declares_no_permission_is_refused_to_all_but_system_star(server: Server) -> None:
    operations = services_of(server.app).interactions.operations
    # An operation registered without a declared permission: open to nobody but system/*.
    operations["new-op"] = replace(operations["lastn"], name="new-op", permission=None)
    try:
        for scope in ("user/Observation.rs", "system/Observation.cruds", "user/*.cruds", "system/*.rs"):
            answer = server.client.get("/fhir/Observation/$new-op", headers=server.token(scope))
            assert answer.status_code == 403, scope
            assert "declares no permission" in answer.get_json()["issue"][0]["diagnostics"]
        answer = server.client.get("/fhir/Observation/$new-op", headers=server.token("system/*.cruds"))
        assert answer.status_code == 200
    finally:
        del operations["new-op"]


def test_an_operation_the_server_does_not_offer_is_refused_before_it_is_looked_up(server: Server) -> None:
    answer = server.client.post("/fhir/$reindex-everything", headers=server.token("user/Observation.rs"))
    assert answer.status_code == 403
    answer = server.client.post("/fhir/$reindex-everything", headers=server.token("system/*.cruds"))
    assert answer.status_code == 501
