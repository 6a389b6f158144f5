"""What a request's own URL and headers decide, asked again and again: the FHIR base the server
names in its answers (R4 http.html#general: the service base URL, taken from the request when
``base_url`` is not set) and the format ``Accept`` asks for (R4 http.html#mime-type). Both are
kept between requests; these tests hold each answer to the request that asked, not an earlier one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from fhir_twin.app import create_app, services_of
from tests.factories import FHIR_JSON

PATIENT = {"resourceType": "Patient", "name": [{"family": "Okafor"}]}


@pytest.fixture(scope="module")
def app(module_database_url: str) -> Iterator[Flask]:
    built = create_app({"database_url": module_database_url, "auth_mode": "none", "audit": False})
    yield built
    services_of(built).repository.engine.dispose()


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_each_host_gets_locations_under_its_own_base(client: FlaskClient) -> None:
    for host in ("fhir.example.org", "twin.example.net:8443", "fhir.example.org"):
        created = client.post("/fhir/Patient", json=PATIENT, headers={"Host": host, "Content-Type": FHIR_JSON})
        assert created.status_code == 201, created.get_data(as_text=True)
        assert created.headers["Location"].startswith(f"http://{host}/fhir/Patient/")


def test_search_links_follow_the_host_and_scheme_asked(client: FlaskClient) -> None:
    plain = client.get("/fhir/Patient?_count=1", headers={"Host": "a.example.org"})
    secure = client.get("/fhir/Patient?_count=1", headers={"Host": "a.example.org"}, base_url="https://a.example.org")
    assert plain.get_json()["link"][0]["url"].startswith("http://a.example.org/fhir/Patient?")
    assert secure.get_json()["link"][0]["url"].startswith("https://a.example.org/fhir/Patient?")


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        ("application/fhir+xml", "application/fhir+xml; charset=utf-8"),
        ("application/fhir+json", "application/fhir+json; charset=utf-8"),
        ("application/fhir+xml", "application/fhir+xml; charset=utf-8"),
        ("text/html;q=0.9, application/xml;q=0.5, application/json;q=0.8", "application/fhir+json; charset=utf-8"),
    ],
)
def test_each_accept_header_gets_its_own_format(client: FlaskClient, accept: str, content_type: str) -> None:
    answer = client.get("/fhir/metadata", headers={"Accept": accept})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == content_type


def test_an_unservable_accept_is_refused_every_time(client: FlaskClient) -> None:
    for _ in range(2):
        answer = client.get("/fhir/metadata", headers={"Accept": "image/png"})
        assert answer.status_code == 406
        assert "image/png" in answer.get_json()["issue"][0]["diagnostics"]
