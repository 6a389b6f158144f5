"""Instance interactions through ``Interactions.route``, without Flask: create, read, vread,
update, patch, delete, and their conditional forms (R4 http.html#create … #delete, #cond-update).

Answers are checked as ``Response`` values and the stored state through the repository.
"""

from __future__ import annotations

import pytest

from fhir_twin.config import Config
from fhir_twin.errors import Gone, Invalid, NotFound, PreconditionFailed, Unprocessable
from fhir_twin.interactions import Interactions, Request, Response
from fhir_twin.store.repository import Repository
from tests.factories import BASE, router, send
from tests.factories import response_json as body


@pytest.fixture
def interactions(repository: Repository) -> Interactions:
    return router(repository, Config())


def stored_versions(repository: Repository, res_type: str, res_id: str) -> int:
    with repository.transaction() as tx:
        current = tx.current(res_type, res_id)
    return 0 if current is None else current.version


def test_create_assigns_an_id_and_answers_201_with_location_and_etag(
    interactions: Interactions, repository: Repository
) -> None:
    response = send(interactions, "POST", "Patient", {"resourceType": "Patient", "gender": "female"})

    assert response.status == 201
    created = body(response)
    assert created["meta"]["versionId"] == "1"
    assert response.headers["ETag"] == 'W/"1"'
    assert response.headers["Location"] == f"{BASE}/Patient/{created['id']}/_history/1"
    assert stored_versions(repository, "Patient", str(created["id"])) == 1


def test_read_and_vread_answer_the_stored_versions(interactions: Interactions) -> None:
    send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1", "gender": "female"})
    send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1", "gender": "male"})

    read = send(interactions, "GET", "Patient/p1")
    first = send(interactions, "GET", "Patient/p1/_history/1")

    assert (read.status, read.headers["ETag"], body(read)["gender"]) == (200, 'W/"2"', "male")
    assert (first.status, first.headers["ETag"], body(first)["gender"]) == (200, 'W/"1"', "female")


def test_read_of_an_unknown_resource_is_404_and_of_a_deleted_one_410(interactions: Interactions) -> None:
    send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1"})
    send(interactions, "DELETE", "Patient/p1")

    with pytest.raises(NotFound):
        send(interactions, "GET", "Patient/nobody")
    with pytest.raises(Gone) as gone:
        send(interactions, "GET", "Patient/p1")
    assert gone.value.headers["ETag"] == 'W/"2"'
    with pytest.raises(NotFound):
        send(interactions, "GET", "Patient/p1/_history/7")


def test_update_creates_then_versions_and_an_unchanged_body_stays_one_version(
    interactions: Interactions, repository: Repository
) -> None:
    resource = {"resourceType": "Patient", "id": "p1", "gender": "female"}

    created = send(interactions, "PUT", "Patient/p1", resource)
    unchanged = send(interactions, "PUT", "Patient/p1", resource)
    changed = send(interactions, "PUT", "Patient/p1", {**resource, "gender": "male"})

    assert (created.status, unchanged.status, changed.status) == (201, 200, 200)
    assert unchanged.headers["ETag"] == 'W/"1"'
    assert changed.headers["ETag"] == 'W/"2"'
    assert stored_versions(repository, "Patient", "p1") == 2


def test_update_whose_body_id_differs_from_the_url_is_refused(
    interactions: Interactions, repository: Repository
) -> None:
    with pytest.raises(Invalid):
        send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p2"})
    assert stored_versions(repository, "Patient", "p1") == 0


def test_if_match_with_a_stale_version_is_412_and_stores_nothing(
    interactions: Interactions, repository: Repository
) -> None:
    send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1"})
    send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1", "gender": "male"})

    with pytest.raises(PreconditionFailed):
        send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1"}, **{"if-match": 'W/"1"'})
    assert stored_versions(repository, "Patient", "p1") == 2


def test_patch_applies_a_json_patch_and_refuses_a_change_of_id(
    interactions: Interactions, repository: Repository
) -> None:
    send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1", "gender": "female"})

    def patch(operations: list[dict[str, object]]) -> Response:
        request = Request("PATCH", "Patient/p1", BASE, body=operations, patch_format="application/json-patch+json")
        return interactions.route(request)

    patched = patch([{"op": "replace", "path": "/gender", "value": "male"}])
    assert (patched.status, body(patched)["gender"], patched.headers["ETag"]) == (200, "male", 'W/"2"')
    with pytest.raises(Unprocessable):
        patch([{"op": "replace", "path": "/id", "value": "p2"}])
    assert stored_versions(repository, "Patient", "p1") == 2


def test_delete_stores_a_deletion_version_and_a_second_delete_changes_nothing(
    interactions: Interactions, repository: Repository
) -> None:
    send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1"})

    deleted = send(interactions, "DELETE", "Patient/p1")
    again = send(interactions, "DELETE", "Patient/p1")

    assert deleted.status == 200
    assert deleted.headers["ETag"] == 'W/"2"'
    assert again.status == 200
    with repository.transaction() as tx:
        current = tx.current("Patient", "p1")
    assert current is not None and current.deleted and current.version == 2


def test_conditional_create_returns_the_match_instead_of_creating(
    interactions: Interactions, repository: Repository
) -> None:
    resource = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "42"}]}
    first = send(interactions, "POST", "Patient", resource)
    second = send(interactions, "POST", "Patient", resource, **{"if-none-exist": "identifier=urn:mrn|42"})

    assert (first.status, second.status) == (201, 200)
    assert body(second)["id"] == body(first)["id"]
    with repository.transaction() as tx:
        current = tx.current("Patient", str(body(first)["id"]))
    assert current is not None and current.version == 1


def test_conditional_create_matching_several_is_412(interactions: Interactions) -> None:
    resource = {"resourceType": "Patient", "gender": "female"}
    send(interactions, "POST", "Patient", resource)
    send(interactions, "POST", "Patient", resource)

    with pytest.raises(PreconditionFailed):
        send(interactions, "POST", "Patient", resource, **{"if-none-exist": "gender=female"})


def test_conditional_update_updates_the_one_match_or_creates(
    interactions: Interactions, repository: Repository
) -> None:
    identifier = [{"system": "urn:mrn", "value": "7"}]
    created = send(
        interactions, "PUT", "Patient?identifier=urn:mrn|7", {"resourceType": "Patient", "identifier": identifier}
    )
    res_id = str(body(created)["id"])
    updated = send(
        interactions,
        "PUT",
        "Patient?identifier=urn:mrn|7",
        {"resourceType": "Patient", "identifier": identifier, "gender": "other"},
    )

    assert (created.status, updated.status) == (201, 200)
    assert body(updated)["id"] == res_id
    assert stored_versions(repository, "Patient", res_id) == 2


def test_conditional_delete_without_criteria_is_refused(interactions: Interactions) -> None:
    with pytest.raises(Invalid):
        send(interactions, "DELETE", "Patient")
