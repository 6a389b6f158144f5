"""Every interaction leaves one record, naming what it touched and whose record that was — also
the requests refused before the router saw them, those that failed unexpectedly, deletes, answers
that show less than they read (304, ``_elements``, export files) and refused writes."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

from fhir_twin.interactions import routes
from tests.audit.conftest import Server
from tests.factories import observation, patient

pytestmark = pytest.mark.audited

FHIR_JSON = "application/fhir+json"


def seed(server: Server) -> None:
    for resource in (
        patient("p1", name=[{"family": "Secretname"}]),
        patient("p2"),
        observation(res_id="o1", patient="p1", valueString="seventy"),
    ):
        server.put(resource)


def recorded(server: Server, request: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The answer to ``request()`` and the records it left."""
    mark = server.chain_count()
    answer = request()
    return answer, server.events_since(mark)


def patients(event: dict[str, Any]) -> set[str]:
    return {
        entity["what"]["reference"]
        for entity in event.get("entity", [])
        if entity.get("role", {}).get("code") == "1" and "what" in entity
    }


@pytest.mark.parametrize(
    "send, status",
    [
        (lambda c, h: c.post("/fhir/Patient", data="{bad", content_type=FHIR_JSON, headers=h), 400),
        (lambda c, h: c.post("/fhir/Patient", data="x", content_type="text/plain", headers=h), 415),
        (lambda c, h: c.get("/fhir/Patient/p1", headers={**h, "Accept": "text/csv"}), 406),
        (
            lambda c, h: c.post("/fhir/Patient", data="{" + " " * (17 << 20) + "}", content_type=FHIR_JSON, headers=h),
            413,
        ),
        (lambda c, h: c.get("/fhir/metadata/x", headers=h), 404),
        (lambda c, h: c.open("/fhir/Patient", method="TRACE", headers=h), 405),
    ],
    ids=["unparsable", "unsupported-type", "unacceptable", "too-large", "unknown-path", "unknown-method"],
)
def test_requests_refused_before_routing_are_recorded_once(server: Server, send: Any, status: int) -> None:
    answer, events = recorded(server, lambda: send(server.client, server.ehr))
    assert answer.status_code == status
    assert len(events) == 1
    assert events[0]["outcome"] == "4"
    assert events[0]["outcomeDesc"].startswith(f"{status}:")
    assert server.requestor(events[0])["name"] == "ehr"


def test_an_unauthenticated_request_for_a_path_below_metadata_is_recorded(server: Server) -> None:
    answer, events = recorded(server, lambda: server.client.get("/fhir/metadata/x"))
    assert answer.status_code == 401
    assert [server.requestor(event)["name"] for event in events] == ["unauthenticated"]


def test_an_unexpected_failure_is_recorded_as_a_server_failure(server: Server, monkeypatch: Any) -> None:
    seed(server)

    def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(routes, "search", broken)
    answer, events = recorded(server, lambda: server.client.get("/fhir/Observation?code=x", headers=server.ehr))
    assert answer.status_code == 500
    assert len(events) == 1
    assert events[0]["outcome"] == "8"
    assert server.subtype(events[0]) == "search-type"


def test_an_operation_this_server_does_not_offer_is_recorded_as_refused(server: Server) -> None:
    answer, events = recorded(server, lambda: server.client.post("/fhir/Patient/$nonesuch", headers=server.ehr))
    assert answer.status_code == 501
    assert len(events) == 1
    assert (events[0]["outcome"], events[0]["outcomeDesc"][:4]) == ("4", "501:")


def test_a_delete_names_the_patient_whose_record_it_was(server: Server) -> None:
    seed(server)
    answer, events = recorded(server, lambda: server.client.delete("/fhir/Observation/o1", headers=server.ehr))
    assert answer.status_code == 200
    assert len(events) == 1
    assert server.whats(events[0])[0] == "Observation/o1/_history/2"
    assert patients(events[0]) == {"Patient/p1"}
    assert events[0]["id"] in server.audit_ids("patient=p1&action=D")


def test_a_conditional_read_answered_304_names_the_patient(server: Server) -> None:
    seed(server)
    etag = server.client.get("/fhir/Observation/o1", headers=server.ehr).headers["ETag"]
    answer, events = recorded(
        server, lambda: server.client.get("/fhir/Observation/o1", headers={**server.ehr, "If-None-Match": etag})
    )
    assert answer.status_code == 304
    assert patients(events[0]) == {"Patient/p1"}


@pytest.mark.parametrize("query", ["_elements=valueString", "_summary=text"])
def test_a_search_showing_part_of_each_resource_names_their_patients(server: Server, query: str) -> None:
    seed(server)
    answer, events = recorded(server, lambda: server.client.get(f"/fhir/Observation?{query}", headers=server.ehr))
    assert answer.status_code == 200
    assert answer.get_json()["total"] == 1
    assert "subject" not in answer.get_json()["entry"][0]["resource"]
    assert patients(events[0]) == {"Patient/p1"}


def export_files(server: Server, path: str) -> list[str]:
    """The paths (below /fhir) of the files of a finished ``$export`` kicked off at ``path``."""
    kickoff = server.client.get(f"/fhir/{path}", headers={**server.ehr, "Prefer": "respond-async"})
    assert kickoff.status_code == 202
    status_url = kickoff.headers["Content-Location"].split("/fhir", 1)[1]
    for _ in range(200):
        polled = server.client.get(f"/fhir{status_url}", headers=server.ehr)
        if polled.status_code == 200:
            break
        time.sleep(0.05)
    assert polled.status_code == 200
    return [file["url"].split("/fhir", 1)[1] for file in polled.get_json()["output"]]


def test_an_export_file_names_every_patient_in_it(server: Server) -> None:
    seed(server)
    files = export_files(server, "Patient/$export?_type=Patient")
    assert len(files) == 1
    # Buffered, the test client closes the answer once read, as a WSGI server does once it is sent.
    answer, events = recorded(server, lambda: server.client.get(f"/fhir{files[0]}", headers=server.ehr, buffered=True))
    assert answer.status_code == 200 and len(answer.data.splitlines()) == 2
    assert patients(events[0]) == {"Patient/p1", "Patient/p2"}


def test_an_export_file_is_recorded_once_sent_naming_what_was_sent(server: Server) -> None:
    """A file is streamed: its download is recorded when the answer is closed, naming the patients
    of the parts sent; one dropped unsent (a batch entry, which holds no NDJSON) is recorded too."""
    seed(server)
    [file] = export_files(server, "Patient/$export?_type=Patient")
    mark = server.chain_count()
    sending = server.client.get(f"/fhir{file}", headers=server.ehr, buffered=False)
    assert sending.status_code == 200
    assert server.events_since(mark) == []  # not sent yet, not recorded yet
    sending.close()
    [event] = server.events_since(mark)
    assert event["outcome"] == "0" and patients(event) == {"Patient/p1", "Patient/p2"}

    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": file[1:]}}]}
    answer, events = recorded(server, lambda: server.client.post("/fhir", json=batch, headers=server.ehr))
    assert answer.status_code == 200
    assert answer.get_json()["entry"][0]["response"]["status"] == "200 OK"
    assert "resource" not in answer.get_json()["entry"][0]
    assert {"export-file"} <= {code["code"] for event in events for code in event["subtype"]}


def test_a_patient_export_of_audit_events_holds_those_naming_the_patient(server: Server) -> None:
    """AuditEvents are in the Patient compartment through ``patient`` (held in the audit trail's
    own index), so ``Patient/{id}/$export?_type=AuditEvent`` gives the records of that patient."""
    seed(server)
    assert server.client.get("/fhir/Patient/p2", headers=server.ehr).status_code == 200
    before = {event["id"] for event in server.events() if "Patient/p1" in patients(event)}
    lines = []
    for file in export_files(server, "Patient/p1/$export?_type=AuditEvent"):
        answer = server.client.get(f"/fhir{file}", headers=server.ehr)
        lines += [json.loads(line) for line in answer.data.splitlines()]
    assert before
    assert before <= {event["id"] for event in lines}
    assert all("Patient/p1" in patients(event) for event in lines)


@pytest.mark.parametrize(
    "send, status",
    [
        (lambda c, h: c.put("/fhir/Observation/o1", json={"resourceType": "Observation"}, headers=h), 400),
        (
            lambda c, h: c.put(
                "/fhir/Observation/o1",
                json={"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"}},
                headers={**h, "If-Match": 'W/"9"'},
            ),
            412,
        ),
        (
            lambda c, h: c.patch(
                "/fhir/Observation/o1",
                data=json.dumps([{"op": "remove", "path": "/nope"}]),
                content_type="application/json-patch+json",
                headers=h,
            ),
            422,
        ),
    ],
    ids=["invalid", "version-conflict", "patch-fails"],
)
def test_a_refused_write_names_what_it_would_have_changed(server: Server, send: Any, status: int) -> None:
    seed(server)
    answer, events = recorded(server, lambda: send(server.client, server.ehr))
    assert answer.status_code == status
    assert [server.whats(event) for event in events] == [["Observation/o1"]]
    assert events[0]["id"] in server.audit_ids("entity=Observation/o1&outcome=4")


def test_a_failed_patch_keeps_the_stored_content_out_of_the_trail(server: Server) -> None:
    seed(server)
    operations = [{"op": "test", "path": "/gender", "value": "x"}]
    answer, events = recorded(
        server,
        lambda: server.client.patch(
            "/fhir/Patient/p1",
            data=json.dumps(operations),
            content_type="application/json-patch+json",
            headers=server.ehr,
        ),
    )
    assert answer.status_code == 422
    assert "Secretname" not in json.dumps(events)
    assert "operation 0 (test /gender)" in events[0]["outcomeDesc"]


@pytest.mark.parametrize("claimed", ["delete", "read", "document", 123])
def test_a_bundle_cannot_choose_its_records_subtype(server: Server, claimed: Any) -> None:
    answer, events = recorded(
        server,
        lambda: server.client.post("/fhir", json={"resourceType": "Bundle", "type": claimed}, headers=server.ehr),
    )
    assert answer.status_code == 400
    assert [server.subtype(event) for event in events] == ["transaction"]


def test_lookups_inside_an_interaction_leave_no_records_of_their_own(server: Server) -> None:
    seed(server)
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "x"},
                    "subject": {"reference": "Patient?_id=p1"},
                },
                "request": {"method": "POST", "url": "Observation", "ifNoneExist": "code:text=nothing-like-it"},
            }
        ],
    }
    answer, events = recorded(server, lambda: server.client.post("/fhir", json=transaction, headers=server.ehr))
    assert answer.status_code == 200
    assert sorted(server.subtype(event) for event in events) == ["create", "transaction"]


def test_the_twin_api_leaves_one_record_and_keeps_a_failures_reason(make_app: Any) -> None:
    server = Server(make_app(auth_mode="tokens", doctor=True))
    seed(server)
    answer, events = recorded(server, lambda: server.client.get("/twin/patients/p1", headers=server.ehr))
    assert answer.status_code == 200
    assert [server.requestor(event)["name"] for event in events] == ["ehr"]
    answer, events = recorded(server, lambda: server.client.get("/twin/patients/p1/series", headers=server.ehr))
    assert answer.status_code == 200
    assert [server.requestor(event)["name"] for event in events] == ["ehr"]
    answer, events = recorded(server, lambda: server.client.get("/twin/patients/p1?at=garbage", headers=server.ehr))
    assert answer.status_code == 400
    assert len(events) == 1
    assert events[0]["outcomeDesc"] == f"400: {answer.get_json()['issue'][0]['diagnostics']}"


def test_a_token_in_the_query_string_is_refused_and_not_kept(server: Server) -> None:
    secret = server.ehr["Authorization"].split()[1]
    answer, events = recorded(server, lambda: server.client.get(f"/fhir/Patient?access_token={secret}&name=x"))
    assert answer.status_code == 401
    assert secret not in json.dumps(events)
    answer, events = recorded(
        server, lambda: server.client.get(f"/fhir/Patient?access_token={secret}&name=x", headers=server.ehr)
    )
    assert answer.status_code == 400  # access_token is not a search parameter
    assert secret not in answer.get_data(as_text=True) and secret not in json.dumps(events)
    # With a header too, the search goes on (access_token is not a search parameter: ignored when lenient).
    lenient = {**server.ehr, "Prefer": "handling=lenient"}
    answer, events = recorded(
        server, lambda: server.client.get(f"/fhir/Patient?access_token={secret}&name=x", headers=lenient)
    )
    assert answer.status_code == 200
    queries = [base64.b64decode(e["query"]).decode() for event in events for e in event["entity"] if "query" in e]
    assert queries and all(secret not in query and "access_token=%5Bredacted%5D" in query for query in queries)
