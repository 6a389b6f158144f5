"""Conditional create, update and delete (R4 http.html#ccreate, #cond-update, #cdelete).

Criteria use ``_id``, the search parameter this server understands so far.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

FHIR_JSON = "application/fhir+json"


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "gender": "female", **extra}


def put(client: FlaskClient, res_id: str, **extra: Any) -> None:
    response = client.put(f"/fhir/Patient/{res_id}", json=patient(id=res_id, **extra), content_type=FHIR_JSON)
    assert response.status_code == 201


def count_patients(client: FlaskClient) -> int:
    return client.get("/fhir/Patient?_count=1000").get_json()["total"]


def test_conditional_create_no_match_creates(client: FlaskClient) -> None:
    response = client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": "_id=nobody"})
    assert response.status_code == 201
    assert count_patients(client) == 1


def test_conditional_create_one_match_returns_it_unchanged(client: FlaskClient) -> None:
    put(client, "p1")
    response = client.post("/fhir/Patient", json=patient(gender="male"), headers={"If-None-Exist": "Patient?_id=p1"})
    assert response.status_code == 200
    assert response.headers["Location"].endswith("/Patient/p1/_history/1")
    assert response.get_json()["gender"] == "female"
    assert count_patients(client) == 1


def test_conditional_create_several_matches_is_412(client: FlaskClient) -> None:
    put(client, "p1")
    put(client, "p2")
    response = client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": "_id=p1,p2"})
    assert response.status_code == 412
    assert count_patients(client) == 2


def test_conditional_create_refuses_unknown_criteria(client: FlaskClient) -> None:
    """Ignoring a criterion would match resources the client never meant: 400 instead."""
    response = client.post("/fhir/Patient", json=patient(), headers={"If-None-Exist": "nonsense=1"})
    assert response.status_code == 400
    assert response.get_json()["issue"][0]["expression"] == ["nonsense"]
    assert count_patients(client) == 0


def test_concurrent_conditional_updates_create_once(make_app: Any) -> None:
    """Resolved inside the database transaction: parallel requests cannot both create."""
    app: Flask = make_app()

    def attempt(_: int) -> int:
        return app.test_client().put("/fhir/Patient?_id=p5", json=patient(id="p5")).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(16)))
    assert sorted(statuses) == [200] * 15 + [201]
    history = app.test_client().get("/fhir/Patient/p5/_history").get_json()
    assert history["total"] == 1


def test_concurrent_patches_lose_nothing(make_app: Any) -> None:
    """Each patch applies to the version current when it runs, so no update is lost."""
    app: Flask = make_app()
    put(app.test_client(), "p1", identifier=[{"value": "0"}])

    def add_identifier(n: int) -> int:
        operation = [{"op": "add", "path": "/identifier/-", "value": {"value": str(n)}}]
        return (
            app.test_client()
            .patch("/fhir/Patient/p1", json=operation, content_type="application/json-patch+json")
            .status_code
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(add_identifier, range(1, 17)))
    assert statuses == [200] * 16
    current = app.test_client().get("/fhir/Patient/p1").get_json()
    assert sorted(int(identifier["value"]) for identifier in current["identifier"]) == list(range(17))
    assert current["meta"]["versionId"] == "17"


def test_conditional_update(client: FlaskClient) -> None:
    """No match creates; one match updates; several are 412."""
    created = client.put("/fhir/Patient?_id=nobody", json=patient())
    assert created.status_code == 201
    put(client, "p1")
    updated = client.put("/fhir/Patient?_id=p1", json=patient(gender="male"))
    assert updated.status_code == 200
    assert updated.headers["Location"].endswith("/Patient/p1/_history/2")
    assert client.get("/fhir/Patient/p1").get_json()["gender"] == "male"
    put(client, "p2")
    several = client.put("/fhir/Patient?_id=p1,p2", json=patient(gender="other"))
    assert several.status_code == 412
    assert client.get("/fhir/Patient/p1").get_json()["gender"] == "male"


def test_conditional_update_with_conflicting_id_is_400(client: FlaskClient) -> None:
    put(client, "p1")
    response = client.put("/fhir/Patient?_id=p1", json=patient(id="p9"))
    assert response.status_code == 400
    assert client.get("/fhir/Patient/p9").status_code == 404


def test_conditional_update_with_id_and_no_match_creates_that_id(client: FlaskClient) -> None:
    response = client.put("/fhir/Patient?_id=p7", json=patient(id="p7"))
    assert response.status_code == 201
    assert response.headers["Location"].endswith("/Patient/p7/_history/1")


def test_conditional_delete(client: FlaskClient) -> None:
    """One match is deleted; no match deletes nothing (200); several are 412."""
    put(client, "p1")
    put(client, "p2")
    assert client.delete("/fhir/Patient?_id=nobody").status_code == 200
    several = client.delete("/fhir/Patient?_id=p1,p2")
    assert several.status_code == 412
    assert count_patients(client) == 2
    one = client.delete("/fhir/Patient?_id=p1")
    assert one.status_code == 200
    assert one.headers["ETag"] == 'W/"2"'
    assert client.get("/fhir/Patient/p1").status_code == 410
    assert client.get("/fhir/Patient/p2").status_code == 200


def test_conditional_delete_without_criteria_is_400(client: FlaskClient) -> None:
    put(client, "p1")
    assert client.delete("/fhir/Patient").status_code == 400
    assert client.get("/fhir/Patient/p1").status_code == 200


def test_concurrent_conditional_creates_create_once(make_app: Any) -> None:
    """R4 http.html#ccreate, resolved under a lock inside the transaction: of many parallel
    creates of the same identifier exactly one creates, the others find it."""
    app: Flask = make_app()
    body = patient(identifier=[{"system": "urn:mrn", "value": "42"}])

    def attempt(_: int) -> int:
        return (
            app.test_client()
            .post("/fhir/Patient", json=body, headers={"If-None-Exist": "identifier=urn:mrn|42"})
            .status_code
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(attempt, range(16)))
    assert sorted(statuses) == [200] * 15 + [201]
    found = app.test_client().get("/fhir/Patient?identifier=urn:mrn|42").get_json()
    assert found["total"] == 1
