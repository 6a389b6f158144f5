"""Batch and transaction Bundles posted to the base, through ``Interactions.route`` without
Flask (R4 http.html#transaction): a transaction is all or nothing, a batch's entries are
independent, ``urn:uuid:`` references between entries and conditional references are resolved.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from fhir_twin.config import Config
from fhir_twin.errors import FhirError, Invalid, PreconditionFailed, Unprocessable
from fhir_twin.interactions import Interactions
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import resource
from tests.factories import observation, response_json, router, send

PATIENT_URN = "urn:uuid:9d3b5a1c-0000-4000-8000-000000000001"


@pytest.fixture
def interactions(repository: Repository) -> Interactions:
    return router(repository, Config())


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def entry(method: str, url: str, resource: dict[str, Any] | None = None, **more: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"request": {"method": method, "url": url, **more.pop("request", {})}, **more}
    if resource is not None:
        item["resource"] = resource
    return item


def stored(repository: Repository, res_type: str) -> list[str]:
    """The ids of the resources of a type that exist now (not deleted), as stored."""
    query = select(resource.c.res_id).where(resource.c.res_type == res_type, resource.c.deleted.is_(False))
    with repository.transaction() as tx:
        return sorted(tx.connection.execute(query).scalars())


def test_a_transaction_creates_its_entries_and_rewrites_urn_uuid_references(
    interactions: Interactions, repository: Repository
) -> None:
    posted = bundle(
        "transaction",
        entry("POST", "Observation", observation(subject=PATIENT_URN)),
        entry("POST", "Patient", {"resourceType": "Patient"}, fullUrl=PATIENT_URN),
    )

    answer = send(interactions, "POST", "", posted)

    assert answer.status == 200
    result = response_json(answer)
    assert result["type"] == "transaction-response"
    assert [item["response"]["status"] for item in result["entry"]] == ["201 Created", "201 Created"]
    (patient_id,) = stored(repository, "Patient")
    (observation_id,) = stored(repository, "Observation")
    assert result["entry"][1]["response"]["location"].startswith(f"Patient/{patient_id}/_history/1")
    read = response_json(send(interactions, "GET", f"Observation/{observation_id}"))
    assert read["subject"]["reference"] == f"Patient/{patient_id}"


def test_one_bad_entry_rolls_the_whole_transaction_back(interactions: Interactions, repository: Repository) -> None:
    send(interactions, "PUT", "Patient/kept", {"resourceType": "Patient", "id": "kept"})
    posted = bundle(
        "transaction",
        entry("POST", "Patient", {"resourceType": "Patient"}),
        entry("DELETE", "Patient/kept"),
        entry("PUT", "Patient/bad", {"resourceType": "Patient", "id": "bad", "gender": "neither"}),
    )

    with pytest.raises(FhirError) as failed:
        send(interactions, "POST", "", posted)

    assert failed.value.status == 400
    assert any("Bundle.entry[2]" in issue.expression[0] for issue in failed.value.issues if issue.expression)
    assert stored(repository, "Patient") == ["kept"]


def test_a_failure_found_while_writing_rolls_back_the_entries_written_before_it(
    interactions: Interactions, repository: Repository
) -> None:
    send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1"})
    posted = bundle(
        "transaction",
        entry("POST", "Patient", {"resourceType": "Patient"}),
        entry(
            "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1", "gender": "male"}, request={"ifMatch": 'W/"9"'}
        ),
    )

    with pytest.raises(PreconditionFailed):
        send(interactions, "POST", "", posted)

    assert stored(repository, "Patient") == ["p1"]
    with repository.transaction() as tx:
        current = tx.current("Patient", "p1")
    assert current is not None and current.version == 1


def test_batch_entries_succeed_or_fail_on_their_own(interactions: Interactions, repository: Repository) -> None:
    posted = bundle(
        "batch",
        entry("PUT", "Patient/good", {"resourceType": "Patient", "id": "good"}),
        entry("PUT", "Patient/bad", {"resourceType": "Patient", "id": "bad", "gender": "neither"}),
        entry("GET", "Patient/missing"),
        entry("GET", "Patient/good"),
    )

    result = response_json(send(interactions, "POST", "", posted))

    assert result["type"] == "batch-response"
    statuses = [item["response"]["status"] for item in result["entry"]]
    assert [status.split()[0] for status in statuses] == ["201", "400", "404", "200"]
    assert result["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert result["entry"][3]["resource"]["id"] == "good"
    assert stored(repository, "Patient") == ["good"]


def test_a_conditional_reference_is_resolved_to_its_one_match(
    interactions: Interactions, repository: Repository
) -> None:
    identifier = [{"system": "urn:mrn", "value": "42"}]
    send(interactions, "PUT", "Patient/p42", {"resourceType": "Patient", "id": "p42", "identifier": identifier})
    posted = bundle("transaction", entry("POST", "Observation", observation(subject="Patient?identifier=urn:mrn|42")))

    send(interactions, "POST", "", posted)

    (observation_id,) = stored(repository, "Observation")
    read = response_json(send(interactions, "GET", f"Observation/{observation_id}"))
    assert read["subject"]["reference"] == "Patient/p42"


@pytest.mark.parametrize(("patients", "error"), [(0, Unprocessable), (2, PreconditionFailed)])
def test_a_conditional_reference_without_exactly_one_match_fails_the_transaction(
    interactions: Interactions, repository: Repository, patients: int, error: type[FhirError]
) -> None:
    for number in range(patients):
        send(
            interactions, "PUT", f"Patient/p{number}", {"resourceType": "Patient", "id": f"p{number}", "gender": "male"}
        )
    posted = bundle("transaction", entry("POST", "Observation", observation(subject="Patient?gender=male")))

    with pytest.raises(error):
        send(interactions, "POST", "", posted)

    assert stored(repository, "Observation") == []


def test_a_conditional_create_in_a_transaction_refers_to_the_existing_match(
    interactions: Interactions, repository: Repository
) -> None:
    identifier = [{"system": "urn:mrn", "value": "7"}]
    send(interactions, "PUT", "Patient/p7", {"resourceType": "Patient", "id": "p7", "identifier": identifier})
    posted = bundle(
        "transaction",
        entry(
            "POST",
            "Patient",
            {"resourceType": "Patient", "identifier": identifier},
            fullUrl=PATIENT_URN,
            request={"ifNoneExist": "identifier=urn:mrn|7"},
        ),
        entry("POST", "Observation", observation(subject=PATIENT_URN)),
    )

    result = response_json(send(interactions, "POST", "", posted))

    assert result["entry"][0]["response"]["status"].startswith("200")
    assert stored(repository, "Patient") == ["p7"]
    (observation_id,) = stored(repository, "Observation")
    assert (
        response_json(send(interactions, "GET", f"Observation/{observation_id}"))["subject"]["reference"]
        == "Patient/p7"
    )


def test_two_entries_claiming_one_identity_are_refused(interactions: Interactions, repository: Repository) -> None:
    posted = bundle(
        "transaction",
        entry("PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1"}),
        entry("DELETE", "Patient/p1"),
    )

    with pytest.raises(Invalid):
        send(interactions, "POST", "", posted)
    assert stored(repository, "Patient") == []


@pytest.mark.parametrize("posted", [{"resourceType": "Patient"}, {"resourceType": "Bundle", "type": "collection"}])
def test_only_a_batch_or_transaction_bundle_is_processed(interactions: Interactions, posted: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        send(interactions, "POST", "", posted)
