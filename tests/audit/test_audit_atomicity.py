"""A write's record commits with the write or not at all: a transaction that fails leaves only
the records of its failure, and none of its resources."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from tests.factories import observation

pytestmark = pytest.mark.audited

PATIENT_URN = "urn:uuid:0d5e3f4a-8b1c-4d2e-9f3a-7c6b5a4d3e21"


def bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}
    return entry | ({"fullUrl": full_url} if full_url else {})


def totals(server: Any) -> dict[str, int]:
    """How many Patients and Observations are stored (read straight from the database, so the
    count adds no records of its own)."""
    with server.engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT res_type, COUNT(*) FROM resource WHERE deleted = false AND res_type IN ('Patient', 'Observation')"
            " GROUP BY res_type"
        ).all()
    return {"Patient": 0, "Observation": 0} | {row[0]: row[1] for row in rows}


@pytest.fixture
def before(server: Any) -> tuple[int, dict[str, int]]:
    """A patient to refer to and delete; the trail's length and the totals after it."""
    answer = server.client.put("/fhir/Patient/keep", json={"resourceType": "Patient", "id": "keep"}, headers=server.ehr)
    assert answer.status_code == 201
    return server.chain_count(), totals(server)


def outcomes(server: Any, mark: int) -> Counter[tuple[str, str]]:
    return Counter((server.subtype(event), event["outcome"]) for event in server.events_since(mark))


def test_an_invalid_entry_fails_the_transaction_before_anything_is_recorded(server: Any, before: Any) -> None:
    mark, stored = before
    answer = server.client.post(
        "/fhir",
        json=bundle(
            post({"resourceType": "Patient"}, PATIENT_URN),
            post(observation(subject=PATIENT_URN)),
            post({"resourceType": "Observation", "status": "no-such-status"}),
        ),
        headers=server.ehr,
    )
    assert answer.status_code == 400
    assert outcomes(server, mark) == {("transaction", "4"): 1}
    (event,) = server.events_since(mark)
    assert event["outcomeDesc"].startswith("400")
    assert totals(server) == stored


def test_a_dangling_reference_rolls_back_the_records_of_the_entries_written(server: Any, before: Any) -> None:
    mark, stored = before
    answer = server.client.post(
        "/fhir",
        json=bundle(post({"resourceType": "Patient"}, PATIENT_URN), post(observation(subject="Patient/nobody"))),
        headers=server.ehr,
    )
    assert answer.status_code == 422, answer.get_json()
    # Both creates ran (and were recorded) inside the transaction; the reference check at its
    # end failed it, and their records went with it.
    assert outcomes(server, mark) == {("transaction", "4"): 1}
    assert not any(event["outcome"] == "0" for event in server.events_since(mark))
    assert totals(server) == stored


def test_a_failing_entry_leaves_its_own_failure_and_the_bundles(server: Any, before: Any) -> None:
    mark, stored = before
    answer = server.client.post(
        "/fhir",
        json=bundle(
            {"request": {"method": "DELETE", "url": "Patient/keep"}},
            post({"resourceType": "Patient"}, PATIENT_URN),
            {
                "resource": {"resourceType": "Patient", "id": "other"},
                "request": {"method": "PUT", "url": "Patient/other", "ifMatch": 'W/"3"'},
            },
        ),
        headers=server.ehr,
    )
    assert answer.status_code == 412, answer.get_json()
    # The delete and the create ran first and were recorded in the transaction: rolled back.
    assert outcomes(server, mark) == {("update", "4"): 1, ("transaction", "4"): 1}
    assert all(event["outcomeDesc"].startswith("412") for event in server.events_since(mark))
    assert totals(server) == stored
    assert server.client.get("/fhir/Patient/keep", headers=server.ehr).status_code == 200


def test_a_refused_entry_is_a_refused_transaction(server: Any, before: Any) -> None:
    """A token that may create Patients but not Observations: the Patient entry is written, then
    rolled back with its record when the Observation entry is refused."""
    mark, stored = before
    limited = server.token("system/Patient.cruds", name="registration")
    answer = server.client.post(
        "/fhir",
        json=bundle(post({"resourceType": "Patient"}, PATIENT_URN), post(observation(subject=PATIENT_URN))),
        headers=limited,
    )
    assert answer.status_code == 403, answer.get_json()
    assert outcomes(server, mark) == {("create", "4"): 1, ("transaction", "4"): 1}
    assert all(server.requestor(event)["name"] == "registration" for event in server.events_since(mark))
    assert totals(server) == stored


def test_a_single_write_that_fails_at_commit_leaves_only_its_failure(server: Any, before: Any) -> None:
    mark, stored = before
    answer = server.client.post("/fhir/Observation", json=observation(subject="Patient/nobody"), headers=server.ehr)
    assert answer.status_code == 422
    assert outcomes(server, mark) == {("create", "4"): 1}
    assert totals(server) == stored
    # And a delete refused because something refers to the patient.
    server.client.post("/fhir/Observation", json=observation(subject="Patient/keep"), headers=server.ehr)
    mark = server.chain_count()
    assert server.client.delete("/fhir/Patient/keep", headers=server.ehr).status_code == 409
    assert outcomes(server, mark) == {("delete", "4"): 1}
    assert server.client.get("/fhir/Patient/keep", headers=server.ehr).status_code == 200


def test_a_successful_transaction_records_each_entry_and_itself(server: Any, before: Any) -> None:
    mark, stored = before
    answer = server.client.post(
        "/fhir",
        json=bundle(post({"resourceType": "Patient"}, PATIENT_URN), post(observation(subject=PATIENT_URN))),
        headers=server.ehr,
    )
    assert answer.status_code == 200
    assert outcomes(server, mark) == {("create", "0"): 2, ("transaction", "0"): 1}
    assert totals(server) == {"Patient": stored["Patient"] + 1, "Observation": 1}
    written = [event for event in server.events_since(mark) if server.subtype(event) == "create"]
    locations = [entry["response"]["location"] for entry in answer.get_json()["entry"]]
    assert sorted(server.whats(event)[0] for event in written) == sorted(locations)


def test_a_read_in_a_failed_transaction_is_not_recorded_as_a_success(server: Any, before: Any) -> None:
    mark, _ = before
    answer = server.client.post(
        "/fhir",
        json=bundle(
            post(observation(subject="Patient/nobody")),
            {"request": {"method": "GET", "url": "Patient/keep"}},
        ),
        headers=server.ehr,
    )
    assert answer.status_code == 422
    assert not any(event["outcome"] == "0" for event in server.events_since(mark))
