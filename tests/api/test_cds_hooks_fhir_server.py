"""What the CDS Hooks service reads a call's data from: only FHIR servers the settings allow
(``cds_fhir_servers``, or a registered client's own), every page of every query (next links
followed, none outside the server, no redirects), and never part of a record: past the most it
reads, a 412."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from fhir_twin.api import cds_prefetch
from tests.api.test_cds_hooks import HIGH, SERVICE, call, comparable, hook_request, record
from tests.ml.doctor_data import ago, news2_set, patient


class FakeFhir:
    """A FHIR server on this host answering the prefetch queries for ``p1``: its Patient, and its
    Observations ``per_page`` a page, each page's next link made by ``next_url``; every request kept."""

    def __init__(self, observations: list[dict[str, Any]], per_page: int = 2) -> None:
        self.observations = observations
        self.per_page = per_page
        self.requests: list[str] = []
        self.next_url: Callable[[str, int], str] = lambda base, page: f"{base}/Observation?patient=p1&page={page}"
        self.redirect = False
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.requests.append(self.path)
                if fake.redirect:
                    self.send_response(302)
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                    self.end_headers()
                    return
                body = fake.answer(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, path: str) -> dict[str, Any]:
        parts = urlsplit(path)
        if parts.path == "/fhir/Patient/p1":
            return patient("p1")
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": []}
        if parts.path != "/fhir/Observation":
            return bundle
        page = int(parse_qs(parts.query).get("page", ["0"])[0])
        chunk = self.observations[page * self.per_page : (page + 1) * self.per_page]
        bundle["entry"] = [{"resource": resource, "search": {"mode": "match"}} for resource in chunk]
        if (page + 1) * self.per_page < len(self.observations):
            bundle["link"] = [{"relation": "next", "url": self.next_url(self.base, page + 1)}]
        return bundle

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def observations() -> list[dict[str, Any]]:
    return [{**resource, "id": f"o{index}"} for index, resource in enumerate(news2_set("p1", HIGH, ago(minutes=10)))]


@pytest.fixture
def fake() -> Iterator[FakeFhir]:
    server = FakeFhir(observations())
    yield server
    server.close()


def test_another_server_is_read_only_when_the_setting_allows_it(make_app: Callable[..., Flask], fake: FakeFhir) -> None:
    refused = make_app(doctor=False).test_client().post(SERVICE, json=hook_request(fhirServer=fake.base))
    assert refused.status_code == 400
    issue = refused.get_json()["issue"][0]
    assert issue["expression"] == ["fhirServer"]
    assert "cds_fhir_servers" in issue["diagnostics"]
    assert fake.requests == []  # nothing was sent to it
    allowed = make_app(doctor=False, cds_fhir_servers=f"https://other.example/fhir, {fake.base}/")
    found = call(allowed.test_client(), hook_request(fhirServer=fake.base))
    assert found[0]["summary"].startswith("NEWS2 10")


def test_every_page_of_another_server_is_read(make_app: Callable[..., Flask], fake: FakeFhir) -> None:
    client = make_app(doctor=False, cds_fhir_servers=fake.base).test_client()
    whole = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": o} for o in observations()]}
    given = call(client, hook_request(fhirServer=fake.base, prefetch={"patient": patient("p1"), "observation": whole}))
    fake.requests.clear()
    remote = call(client, hook_request(fhirServer=fake.base))
    # Seven readings, two a page: four pages, all read, and the cards are those of the whole record.
    assert sum(path.startswith("/fhir/Observation") for path in fake.requests) == 4
    assert comparable(remote) == comparable(given)


def test_a_next_link_outside_the_server_is_not_followed(make_app: Callable[..., Flask], fake: FakeFhir) -> None:
    fake.next_url = lambda _base, page: f"http://127.0.0.1:9/fhir/Observation?page={page}"
    client = make_app(doctor=False, cds_fhir_servers=fake.base).test_client()
    response = client.post(SERVICE, json=hook_request(fhirServer=fake.base))
    assert response.status_code == 503
    assert "outside itself" in response.get_json()["issue"][0]["diagnostics"]


def test_a_redirect_is_not_followed(make_app: Callable[..., Flask], fake: FakeFhir) -> None:
    fake.redirect = True
    client = make_app(doctor=False, cds_fhir_servers=fake.base).test_client()
    response = client.post(SERVICE, json=hook_request(fhirServer=fake.base))
    assert response.status_code == 503
    assert "answered 302" in response.get_json()["issue"][0]["diagnostics"]
    assert len(fake.requests) == 1


def test_a_record_larger_than_the_service_reads_is_412_never_scored_in_part(
    make_app: Callable[..., Flask], fake: FakeFhir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cds_prefetch, "MAX_RESOURCES", 5)
    client = make_app(doctor=False, cds_fhir_servers=fake.base).test_client()
    response = client.post(SERVICE, json=hook_request(fhirServer=fake.base))
    assert response.status_code == 412
    assert "more than the 5 resources" in response.get_json()["issue"][0]["diagnostics"]
    assert "cards" not in response.get_json()


def test_every_page_of_this_servers_store_is_read(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cds_prefetch, "PAGE_SIZE", 2)
    client = make_app(doctor=False).test_client()
    record(client, "p1", HIGH)
    stored = call(client, hook_request())
    # The Patient prefetched, the rest read here two a page: the same cards as the stored twin.
    read_here = call(client, hook_request(prefetch={"patient": patient("p1")}))
    assert comparable(read_here) == comparable(stored)
    monkeypatch.setattr(cds_prefetch, "MAX_RESOURCES", 5)
    assert client.post(SERVICE, json=hook_request(prefetch={"patient": patient("p1")})).status_code == 412


def test_a_prefetch_answered_in_part_is_read_whole(make_app: Callable[..., Flask], fake: FakeFhir) -> None:
    client = make_app(doctor=False, cds_fhir_servers=fake.base).test_client()
    first_page = fake.answer("/fhir/Observation?patient=p1")
    assert "link" in first_page
    found = call(
        client, hook_request(fhirServer=fake.base, prefetch={"patient": patient("p1"), "observation": first_page})
    )
    assert found[0]["summary"].startswith("NEWS2 10")
    assert sum(path.startswith("/fhir/Observation") for path in fake.requests) == 4


def test_bad_settings_stop_the_server(make_app: Callable[..., Flask]) -> None:
    with pytest.raises(ValueError, match="cds_fhir_servers"):
        make_app(cds_fhir_servers="ehr.example/fhir")
    with pytest.raises(ValueError, match="fhirServers"):
        make_app(
            auth_mode="tokens",
            cds_clients=json.dumps({"https://ehr.example": {"jwks": "https://e/j", "fhirServers": "x"}}),
        )
