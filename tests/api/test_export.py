"""Bulk Data export (Bulk Data IG v2 export.html): kick-off, status, manifest, NDJSON files,
cancellation, and jobs that survive a crashed worker or meet a second one."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
import sqlalchemy
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhir_twin.app import services_of
from fhir_twin.fhir.instant import now
from fhir_twin.interactions.operations.export import ExportWorker
from fhir_twin.security import tokens
from fhir_twin.store.export_jobs import RUNNING, run_pending_exports
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import export_file, export_job
from tests import factories
from tests.factories import observation

ASYNC = {"Prefer": "respond-async"}
DATA: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "p1", "gender": "female"},
    {"resourceType": "Patient", "id": "p2", "gender": "male"},
    {"resourceType": "Practitioner", "id": "pr1"},
    {"resourceType": "Device", "id": "d1"},
    observation(res_id="o1", subject="Patient/p1", code_text="hr"),
    observation(res_id="o2", subject="Patient/p2", code_text="hr"),
    observation(res_id="o3", subject="Device/d1", code_text="hr"),
    {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}},
]


# Some resources are written again over the dataset.
put = partial(factories.put, status=(200, 201))


def load(client: FlaskClient) -> None:
    """The dataset, with p1 updated once and a deleted Observation."""
    for body in DATA:
        put(client, body)
    put(client, {**DATA[0], "gender": "other"})
    put(client, observation(res_id="gone", code_text="x"))
    assert client.delete("/fhir/Observation/gone").status_code in (200, 204)


def repository(app: Flask) -> Repository:
    return services_of(app).interactions.repository


def kick_off(client: FlaskClient, path: str = "$export", **query: str) -> str:
    response = client.get(f"/fhir/{path}", query_string=query, headers=ASYNC)
    assert response.status_code == 202, response.get_json()
    location = response.headers["Content-Location"]
    assert location.startswith("http://localhost/fhir/$export-poll-status?_jobId=")
    return location


def wait(client: FlaskClient, location: str, seconds: float = 20) -> TestResponse:
    """Poll until the job is no longer in progress."""
    deadline = time.monotonic() + seconds
    while True:
        response = client.get(location)
        if response.status_code != 202 or time.monotonic() > deadline:
            return response
        assert response.headers["Retry-After"].isdigit()
        time.sleep(0.02)


def exported(client: FlaskClient, location: str) -> dict[str, list[dict[str, Any]]]:
    """The resources of a finished export by type, after checking the manifest and each file."""
    response = wait(client, location)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type == "application/json"
    manifest = response.get_json()
    assert set(manifest) == {"transactionTime", "request", "requiresAccessToken", "output", "error"}
    assert manifest["requiresAccessToken"] is False
    assert manifest["error"] == []
    found: dict[str, list[dict[str, Any]]] = {}
    for output in manifest["output"]:
        file = client.get(output["url"])
        assert file.status_code == 200
        assert file.content_type == "application/fhir+ndjson"
        text = file.get_data(as_text=True)
        assert text.endswith("\n")
        lines = text.splitlines()
        assert len(lines) == output["count"]
        resources = [json.loads(line) for line in lines]
        assert {resource["resourceType"] for resource in resources} == {output["type"]}
        found.setdefault(output["type"], []).extend(resources)
    return found


def ids(found: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {name: sorted(resource["id"] for resource in resources) for name, resources in found.items()}


def set_job(app: Flask, job_id: str, **values: Any) -> None:
    with repository(app).engine.begin() as connection:
        connection.execute(sqlalchemy.update(export_job).where(export_job.c.id == job_id).values(**values))


def job_id(location: str) -> str:
    return location.rsplit("=", 1)[1]


def test_kick_off_requires_respond_async(client: FlaskClient) -> None:
    response = client.get("/fhir/$export")
    assert response.status_code == 400
    assert "respond-async" in response.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "query, parameter",
    [
        ({"_outputFormat": "text/csv"}, "_outputFormat"),
        ({"_type": "Patient,Bogus"}, "_type"),
        ({"_since": "2024-01-01"}, "_since"),
        ({"_since": "yesterday"}, "_since"),
        ({"_since": "2024-13-45T00:00:00Z"}, "_since"),
        ({"_typeFilter": "Patient?bogus=male"}, "_typeFilter"),
    ],
)
def test_kick_off_refuses_bad_parameters(client: FlaskClient, query: dict[str, str], parameter: str) -> None:
    response = client.get("/fhir/$export", query_string=query, headers=ASYNC)
    assert response.status_code == 400
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == [parameter]
    assert parameter in issue["diagnostics"]


def test_system_export_has_every_live_resource_once(client: FlaskClient) -> None:
    load(client)
    location = kick_off(client, _outputFormat="application/fhir+ndjson")
    found = exported(client, location)
    assert ids(found) == {
        "Condition": ["c1"],
        "Device": ["d1"],
        "Observation": ["o1", "o2", "o3"],
        "Patient": ["p1", "p2"],
        "Practitioner": ["pr1"],
    }
    stored = client.get("/fhir/Patient/p1").get_json()
    assert next(p for p in found["Patient"] if p["id"] == "p1") == stored
    manifest = client.get(location).get_json()
    assert manifest["request"] == "http://localhost/fhir/$export?_outputFormat=application%2Ffhir%2Bndjson"
    assert manifest["transactionTime"].endswith("+00:00")
    assert [output["url"].split("file=")[1] for output in manifest["output"]] == ["1", "2", "3", "4", "5"]


def test_lines_are_the_stored_json(client: FlaskClient) -> None:
    put(client, {"resourceType": "Patient", "id": "p1", "name": [{"family": "Ünal", "given": ["A\nB"]}]})
    found = exported(client, kick_off(client))
    assert found["Patient"][0]["name"] == [{"family": "Ünal", "given": ["A\nB"]}]


def test_type_filter(client: FlaskClient) -> None:
    load(client)
    assert ids(exported(client, kick_off(client, _type="Patient,Observation"))) == {
        "Observation": ["o1", "o2", "o3"],
        "Patient": ["p1", "p2"],
    }
    body = {"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Condition"}]}
    response = client.post("/fhir/$export", json=body, headers=ASYNC)
    assert response.status_code == 202
    assert ids(exported(client, response.headers["Content-Location"])) == {"Condition": ["c1"]}


def test_since_filter(client: FlaskClient) -> None:
    load(client)
    time.sleep(0.01)
    since = put(client, {"resourceType": "Practitioner", "id": "pr2"})["meta"]["lastUpdated"]
    put(client, {**DATA[1], "gender": "unknown"})
    assert ids(exported(client, kick_off(client, _since=since))) == {"Patient": ["p2"], "Practitioner": ["pr2"]}


def test_patient_level_export_holds_the_patient_compartments(client: FlaskClient) -> None:
    load(client)
    assert ids(exported(client, kick_off(client, "Patient/$export"))) == {
        "Condition": ["c1"],
        "Observation": ["o1", "o2"],
        "Patient": ["p1", "p2"],
    }


def test_patient_instance_export_holds_one_compartment(client: FlaskClient) -> None:
    load(client)
    assert ids(exported(client, kick_off(client, "Patient/p1/$export"))) == {
        "Condition": ["c1"],
        "Observation": ["o1"],
        "Patient": ["p1"],
    }
    assert ids(exported(client, kick_off(client, "Patient/p2/$export", _type="Observation"))) == {"Observation": ["o2"]}
    response = client.get("/fhir/Patient/nobody/$export", headers=ASYNC)
    assert response.status_code == 404


def test_patient_level_types_outside_the_compartment(client: FlaskClient) -> None:
    load(client)
    response = client.get("/fhir/Patient/$export", query_string={"_type": "Practitioner"}, headers=ASYNC)
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["_type"]
    response = client.get(
        "/fhir/Patient/$export",
        query_string={"_type": "Practitioner,Patient"},
        headers={"Prefer": "respond-async, handling=lenient"},
    )
    assert response.status_code == 202
    assert ids(exported(client, response.headers["Content-Location"])) == {"Patient": ["p1", "p2"]}
    assert client.get("/fhir/Group/g1/$export", headers=ASYNC).status_code == 404


def test_progress_cancel_and_unknown_jobs(app: Flask, client: FlaskClient) -> None:
    services_of(app).exports.stop()
    load(client)
    location = kick_off(client)
    response = client.get(location)
    assert response.status_code == 202
    assert response.headers["X-Progress"] == "waiting to start"
    assert client.delete(location).status_code == 202
    assert client.get(location).status_code == 404
    assert client.delete(location).status_code == 404
    assert run_pending_exports(repository(app), "w") == 0
    assert client.get("/fhir/$export-poll-status", query_string={"_jobId": "nope"}).status_code == 404
    assert client.get("/fhir/$export-poll-status").status_code == 400


def test_failed_job_answers_500_with_the_error(app: Flask, client: FlaskClient) -> None:
    services_of(app).exports.stop()
    location = kick_off(client)
    set_job(app, job_id(location), status="failed", error="disk on fire", finished=now())
    response = client.get(location)
    assert response.status_code == 500
    issue = response.get_json()["issue"][0]
    assert issue["severity"] == "error"
    assert issue["code"] == "exception"
    assert "disk on fire" in issue["diagnostics"]


def test_files_are_split_and_served_only_when_complete(app: Flask, client: FlaskClient) -> None:
    services_of(app).exports.stop()
    for number in range(7):
        put(client, {"resourceType": "Patient", "id": f"p{number}"})
    location = kick_off(client)
    url = f"/fhir/$export-file?_jobId={job_id(location)}&file=1"
    assert client.get(url).status_code == 404
    worker = ExportWorker(repository(app), poll_interval=0.05, batch_size=2, file_size=3)
    worker.start()
    try:
        manifest = wait(client, location).get_json()
    finally:
        worker.stop()
    assert [output["count"] for output in manifest["output"]] == [3, 3, 1]
    assert ids(exported(client, location)) == {"Patient": [f"p{number}" for number in range(7)]}
    assert client.get(url).status_code == 200
    assert client.get(url.replace("file=1", "file=9")).status_code == 404
    assert client.get(url.replace("file=1", "file=x")).status_code == 400


def test_export_reads_the_versions_current_at_kick_off(app: Flask, client: FlaskClient) -> None:
    services_of(app).exports.stop()
    load(client)
    location = kick_off(client, _type="Patient,Observation")
    time.sleep(0.01)
    put(client, {**DATA[0], "gender": "unknown"})
    assert client.delete("/fhir/Observation/o2").status_code in (200, 204)
    put(client, {"resourceType": "Patient", "id": "p9"})
    assert run_pending_exports(repository(app), "w") == 1
    found = exported(client, location)
    assert ids(found) == {"Observation": ["o1", "o2", "o3"], "Patient": ["p1", "p2"]}
    assert {p["id"]: p["gender"] for p in found["Patient"]} == {"p1": "other", "p2": "male"}


def test_a_crashed_workers_job_is_reclaimed_and_resumed(app: Flask, client: FlaskClient) -> None:
    services_of(app).exports.stop()
    for number in range(7):
        put(client, {"resourceType": "Patient", "id": f"p{number}"})
    location = kick_off(client)
    checks = iter([False, False, True])  # before the claim, before the first batch, then stop
    run_pending_exports(repository(app), "first", batch_size=2, file_size=3, should_stop=lambda: next(checks, True))
    assert client.get(location).headers["X-Progress"] == "exported 2 of 7 resources"
    # The first worker "crashed" mid-job: running, with a heartbeat nobody renews.
    set_job(app, job_id(location), status=RUNNING, owner="first", heartbeat=now() - timedelta(seconds=5))
    assert run_pending_exports(repository(app), "second", batch_size=2, file_size=3) == 0  # still fresh
    set_job(app, job_id(location), heartbeat=now() - timedelta(hours=1))
    assert run_pending_exports(repository(app), "second", batch_size=2, file_size=3) == 1
    found = exported(client, location)
    assert ids(found) == {"Patient": [f"p{number}" for number in range(7)]}
    assert [output["count"] for output in client.get(location).get_json()["output"]] == [3, 3, 1]


def test_two_workers_never_run_one_job_twice(make_app: Any) -> None:
    first, second = make_app(), make_app()
    for app in (first, second):
        services_of(app).exports.stop()
    client = first.test_client()
    for number in range(9):
        put(client, {"resourceType": "Patient", "id": f"p{number}"})
        put(client, {"resourceType": "Practitioner", "id": f"pr{number}"})
    locations = [kick_off(client) for _ in range(4)]
    completed: list[int] = []
    threads = [
        threading.Thread(
            target=lambda app=app, name=name: completed.append(
                run_pending_exports(repository(app), name, batch_size=1, file_size=4)
            )
        )
        for app, name in ((first, "one"), (second, "two"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(completed) == 4
    for location in locations:
        found = exported(second.test_client(), location)
        assert ids(found) == {
            "Patient": [f"p{number}" for number in range(9)],
            "Practitioner": [f"pr{number}" for number in range(9)],
        }
    with repository(first).engine.connect() as connection:
        rows = connection.execute(sqlalchemy.select(export_file.c.job_id, export_file.c.count)).all()
    assert Counter(job for job, _ in rows) == {job_id(location): 18 for location in locations}


def test_the_worker_pauses_with_its_engine_and_resumes_on_the_next_request(app: Flask, client: FlaskClient) -> None:
    worker: ExportWorker = services_of(app).exports
    assert worker.running
    repository(app).engine.dispose()
    assert not worker.running
    put(client, {"resourceType": "Patient", "id": "p1"})
    assert worker.running
    assert ids(exported(client, kick_off(client))) == {"Patient": ["p1"]}
    worker.stop()
    assert client.get("/fhir/Patient/p1").status_code == 200
    assert not worker.running
    assert "fhir-twin-export" not in {thread.name for thread in threading.enumerate()}


def test_the_manifest_says_a_token_is_needed_when_files_need_one(make_app: Any) -> None:
    """With authentication on, the files answer 401 without a token, and the manifest says so
    (``requiresAccessToken``, IG v2 export.html#response---complete-status)."""
    app = make_app(auth_mode="tokens")
    secret, _ = tokens.create(repository(app), "exporter", "system/*.cruds", None, None)
    auth = {"Authorization": f"Bearer {secret}"}
    client = app.test_client()
    assert client.put("/fhir/Patient/p1", json=DATA[0], headers=auth).status_code == 201
    location = client.get("/fhir/$export", headers={**ASYNC, **auth}).headers["Content-Location"]
    deadline = time.monotonic() + 10
    while (response := client.get(location, headers=auth)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert response.status_code == 200, response.get_data(as_text=True)
    manifest = response.get_json()
    assert manifest["requiresAccessToken"] is True
    url = manifest["output"][0]["url"]
    assert client.get(url).status_code == 401
    assert client.get(url, headers=auth).status_code == 200


def test_a_file_is_sent_as_it_is_read_a_stored_part_at_a_time(app: Flask, client: FlaskClient) -> None:
    """The file request streams (chunked, no Content-Length): one stored batch per chunk, so the
    server holds one batch of a file however large; a job cancelled meanwhile ends the file there."""
    services_of(app).exports.stop()
    for number in range(5):
        put(client, {"resourceType": "Patient", "id": f"p{number}"})
    location = kick_off(client)
    assert run_pending_exports(repository(app), "w", batch_size=2) == 1
    url = f"/fhir/$export-file?_jobId={job_id(location)}&file=1"
    response = client.get(url, buffered=False)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/fhir+ndjson"
    assert "Content-Length" not in response.headers
    chunks = list(response.response)
    response.close()
    assert [chunk.count(b"\n") for chunk in chunks] == [2, 2, 1]
    assert [json.loads(line)["id"] for line in b"".join(chunks).splitlines()] == [f"p{n}" for n in range(5)]

    response = client.get(url, buffered=False)
    parts = iter(response.response)
    assert next(parts).count(b"\n") == 2
    assert client.delete(location).status_code == 202
    assert list(parts) == []
    response.close()
    assert client.get(url).status_code == 404
