"""Dispatch by ``Interactions.route`` without Flask (R4 http.html, "Service Base URL"): search at
system, type and compartment level, history and its paging, operations, and the errors for
paths and methods the server does not serve.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from fhir_twin.config import Config
from fhir_twin.errors import Invalid, MethodNotAllowed, NotFound, NotImplementedInteraction
from fhir_twin.interactions import Interactions, Request
from fhir_twin.store.repository import Repository
from tests.factories import BASE, response_json, router, send


@pytest.fixture
def interactions(repository: Repository) -> Interactions:
    interactions = router(repository, Config())
    for patient_id in ("p1", "p2"):
        send(interactions, "PUT", f"Patient/{patient_id}", {"resourceType": "Patient", "id": patient_id})
    for number, patient_id in enumerate(("p1", "p1", "p2")):
        send(
            interactions,
            "PUT",
            f"Observation/o{number}",
            {
                "resourceType": "Observation",
                "id": f"o{number}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": f"Patient/{patient_id}"},
            },
        )
    return interactions


def ids(bundle: dict[str, Any]) -> list[str]:
    return sorted(entry["resource"]["id"] for entry in bundle.get("entry", []))


def test_search_at_type_system_and_compartment_level(interactions: Interactions) -> None:
    by_type = response_json(send(interactions, "GET", "Observation?subject=Patient/p1"))
    by_system = response_json(send(interactions, "GET", "?_type=Patient"))
    by_compartment = response_json(send(interactions, "GET", "Patient/p2/Observation"))
    posted = response_json(send(interactions, "POST", "Observation/_search"))

    assert (by_type["type"], by_type["total"], ids(by_type)) == ("searchset", 2, ["o0", "o1"])
    assert ids(by_system) == ["p1", "p2"]
    assert ids(by_compartment) == ["o2"]
    assert ids(posted) == ["o0", "o1", "o2"]


def test_history_pages_are_linked_and_cover_every_version_once(interactions: Interactions) -> None:
    send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1", "gender": "male"})
    seen: list[str] = []
    page = response_json(send(interactions, "GET", "_history?_count=2"))
    while True:
        assert page["type"] == "history"
        assert len(page["entry"]) <= 2
        seen += [f"{e['request']['url']}@{e['response']['etag']}" for e in page["entry"]]
        following = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not following:
            break
        url = urlsplit(following[0])
        assert url.path.endswith("/_history")
        request = Request("GET", "_history", BASE, parse_qsl(url.query))
        page = response_json(interactions.route(request))

    assert page["total"] == len(seen) == 6
    assert len(set(seen)) == 6
    assert seen[0] == 'Patient/p1@W/"2"'


def test_instance_history_is_newest_first(interactions: Interactions) -> None:
    send(interactions, "PUT", "Patient/p1", {"resourceType": "Patient", "id": "p1", "gender": "male"})

    bundle = response_json(send(interactions, "GET", "Patient/p1/_history"))

    assert [entry["response"]["etag"] for entry in bundle["entry"]] == ['W/"2"', 'W/"1"']


@pytest.mark.parametrize(
    ("method", "target", "allow"),
    [
        ("DELETE", "", "GET, HEAD, POST"),
        ("POST", "Patient/p1", "DELETE, GET, HEAD, PATCH, PUT"),
        ("PUT", "Patient/_history", "GET, HEAD"),
        ("GET", "Patient/_search", "POST"),
        ("GET", "Patient/$validate", "POST"),
    ],
)
def test_a_method_the_path_does_not_take_is_405_naming_the_allowed_ones(
    interactions: Interactions, method: str, target: str, allow: str
) -> None:
    with pytest.raises(MethodNotAllowed) as refused:
        send(interactions, method, target)

    assert refused.value.status == 405
    assert refused.value.headers == {"Allow": allow}


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("Unicorn", NotFound),
        ("Unicorn/1", NotFound),
        ("Patient/p1/_history/2/extra", NotFound),
        ("Patient/not_an_id!", Invalid),
        ("Patient/$nothing", NotImplementedInteraction),
        ("$everything", NotFound),
        ("Observation/o1/$everything", NotFound),
    ],
)
def test_a_path_the_server_does_not_serve_is_refused(
    interactions: Interactions, target: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        send(interactions, "GET", target)


def test_an_operation_is_dispatched_at_its_level(interactions: Interactions) -> None:
    everything = response_json(send(interactions, "GET", "Patient/p1/$everything"))
    validated = send(interactions, "POST", "Patient/$validate", {"resourceType": "Patient", "gender": "neither"})

    assert ids(everything) == ["o0", "o1", "p1"]
    assert validated.status == 200
    outcome = response_json(validated)
    assert outcome["resourceType"] == "OperationOutcome"
    assert any(issue["severity"] == "error" for issue in outcome["issue"])


def test_metadata_lists_the_operations_of_the_router_by_level(interactions: Interactions) -> None:
    statement = response_json(send(interactions, "GET", "metadata"))

    assert statement["resourceType"] == "CapabilityStatement"
    rest = statement["rest"][0]
    (patient,) = [resource for resource in rest["resource"] if resource["type"] == "Patient"]
    assert {operation["name"] for operation in rest["operation"]} >= {"export"}
    assert {operation["name"] for operation in patient["operation"]} >= {"everything", "validate"}
