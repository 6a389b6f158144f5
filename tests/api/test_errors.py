"""Error answers (R4 http.html "General" and #errors): always an OperationOutcome, never HTML.

Unknown paths and types are 404, malformed ids 400, wrong methods 405 with ``Allow``, oversized
bodies 413 that store nothing, and unexpected failures 500 whose details go to the log, not the
client. Every answer, good or bad, carries an ``X-Request-ID`` that names it in the log.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from lxml import etree
from werkzeug.test import TestResponse

from fhir_twin.app import services_of
from tests.factories import FHIR_JSON

FHIR_NS = "http://hl7.org/fhir"
FHIR_XML = "application/fhir+xml; charset=utf-8"
PATIENT: dict[str, Any] = {"resourceType": "Patient", "gender": "female", "birthDate": "1980-01-02"}
LIMIT = 2000


# --- helpers ------------------------------------------------------------------------------


def assert_no_html(response: TestResponse) -> None:
    """Neither the Content-Type nor the body is HTML."""
    assert "html" not in response.headers.get("Content-Type", "")
    lowered = response.data.lower()
    for marker in (b"<html", b"<!doctype", b"<title", b"<body", b"<h1", b"<p>"):
        assert marker not in lowered, response.data


def outcome(response: TestResponse, status: int, code: str) -> dict[str, Any]:
    """The first issue of a JSON OperationOutcome answer with ``status`` and ``code``."""
    assert response.status_code == status, response.data
    assert_no_html(response)
    assert response.headers["Content-Type"] == FHIR_JSON
    body = json.loads(response.data)
    assert body["resourceType"] == "OperationOutcome"
    issue: dict[str, Any] = body["issue"][0]
    assert issue["severity"] == "error"
    assert issue["code"] == code
    assert issue["diagnostics"]
    return issue


def xml_outcome_code(response: TestResponse) -> str | None:
    """``issue.code`` of an XML OperationOutcome answer."""
    assert response.headers["Content-Type"] == FHIR_XML
    root = etree.fromstring(response.data, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == f"{{{FHIR_NS}}}OperationOutcome"
    code = root.find("f:issue/f:code", {"f": FHIR_NS})
    return None if code is None else code.get("value")


def patient_of_size(size: int, patient_id: str | None = None) -> bytes:
    """A valid Patient whose JSON text is exactly ``size`` bytes."""
    resource: dict[str, Any] = {"resourceType": "Patient", **({"id": patient_id} if patient_id else {})}
    resource["name"] = [{"family": ""}]
    padding = size - len(json.dumps(resource).encode())
    resource["name"][0]["family"] = "x" * padding
    body = json.dumps(resource).encode()
    assert len(body) == size
    return body


def patient_total(client: FlaskClient) -> int:
    response = client.get("/fhir/Patient")
    assert response.status_code == 200
    assert response.get_json()["type"] == "searchset"
    return int(response.get_json()["total"])


# --- unknown paths, types and ids (R4 http.html "General") -----------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/nothing", id="get"),
        pytest.param("POST", "/nothing", id="post"),
        pytest.param("DELETE", "/nothing", id="delete"),
        pytest.param("GET", "/fhirx/Patient", id="fhir-prefix-lookalike"),
        pytest.param("GET", "/static/app.js", id="static"),
        pytest.param("GET", "/nothing?_format=json", id="with-format"),
        pytest.param("GET", "/nothing//else", id="double-slash-outside"),
    ],
)
def test_unknown_paths_outside_the_base_are_404_outcomes(client: FlaskClient, method: str, path: str) -> None:
    """R4 http.html#errors: every error is an OperationOutcome, also outside ``/fhir``; never an HTML page."""
    response = client.open(path, method=method)
    outcome(response, 404, "not-found")


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "diagnostics"),
    [
        pytest.param("GET", "/fhir/Foo/1", 404, "not-found", "Foo", id="unknown-type"),
        pytest.param("GET", "/fhir/Foo", 404, "not-found", "Foo", id="unknown-type-search"),
        pytest.param("GET", "/fhir/patient/1", 404, "not-found", "patient", id="lower-case-type"),
        pytest.param("POST", "/fhir/Foo", 404, "not-found", "Foo", id="unknown-type-create"),
        pytest.param("GET", "/fhir/Patient/1/foo", 404, "not-found", "Patient/1/foo", id="unknown-sub-path"),
        pytest.param("GET", "/fhir/Patient/bad$id", 400, "invalid", "bad$id", id="dollar-in-id"),
        pytest.param("GET", "/fhir/Patient/bad_id", 400, "invalid", "bad_id", id="underscore-in-id"),
        pytest.param("GET", "/fhir/Patient/" + "a" * 65, 400, "invalid", "a" * 65, id="65-character-id"),
        pytest.param("GET", "/fhir/Patient/" + "a" * 64, 404, "not-found", "a" * 64, id="64-character-id-is-valid"),
        pytest.param("DELETE", "/fhir/Patient/bad$id", 400, "invalid", "bad$id", id="delete-bad-id"),
        pytest.param("GET", "/fhir/Patient/bad$id/_history/1", 400, "invalid", "bad$id", id="vread-bad-id"),
        pytest.param("GET", "/fhir/Patient/nope/_history/x", 404, "not-found", "x", id="non-numeric-version"),
    ],
)
def test_unknown_types_and_bad_ids(
    client: FlaskClient, method: str, path: str, status: int, code: str, diagnostics: str
) -> None:
    """R4 http.html "General": 404 for an unknown type or resource; 400 for an id outside R4 datatypes.html#id."""
    response = client.open(path, method=method)
    issue = outcome(response, status, code)
    assert diagnostics in issue["diagnostics"]


@pytest.mark.parametrize("path", ["/fhir//Patient", "/fhir//metadata", "/fhir//"])
def test_double_slash_answer_has_no_html(client: FlaskClient, path: str) -> None:
    """R4 http.html#errors: whatever the server says about ``//`` (404 or a redirect), it is not an HTML page."""
    response = client.get(path)
    assert response.headers["X-Request-ID"]
    assert_no_html(response)


# --- methods (R4 http.html, RFC 9110 section 15.5.6) -----------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        pytest.param("DELETE", "/fhir/metadata", {"GET"}, id="delete-metadata"),
        pytest.param("POST", "/fhir/metadata", {"GET"}, id="post-metadata"),
        pytest.param("POST", "/fhir/Patient/123", {"GET", "PUT", "PATCH", "DELETE"}, id="post-instance"),
        pytest.param("PUT", "/fhir/Patient/_history", {"GET"}, id="put-type-history"),
        pytest.param("PATCH", "/fhir/_history", {"GET"}, id="patch-system-history"),
        pytest.param("GET", "/fhir/Patient/_search", {"POST"}, id="get-search"),
        pytest.param("POST", "/fhir/Patient/1/_history/1", {"GET"}, id="post-vread"),
        pytest.param("DELETE", "/fhir/Patient/1/_history", {"GET"}, id="delete-instance-history"),
        pytest.param("TRACE", "/fhir/Patient", {"GET", "POST"}, id="trace"),
        pytest.param("DELETE", "/fhir/", {"GET", "POST"}, id="delete-base"),
    ],
)
def test_methods_not_allowed(client: FlaskClient, method: str, path: str, allowed: set[str]) -> None:
    """RFC 9110 section 15.5.6: 405 carries ``Allow``; the body is an OperationOutcome (R4 http.html#errors)."""
    response = client.open(path, method=method)
    issue = outcome(response, 405, "not-supported")
    assert method in issue["diagnostics"]
    assert "Allow" in response.headers
    listed = {name.strip() for name in response.headers["Allow"].split(",")}
    assert allowed <= listed
    assert method not in listed
    for other in listed - {"OPTIONS"}:
        assert client.open(path, method=other).status_code != 405, other


def test_405_in_xml(client: FlaskClient) -> None:
    """R4 http.html#errors: a 405 answers in XML when XML is asked for, ``Allow`` included."""
    response = client.post("/fhir/Patient/123", headers={"Accept": "application/fhir+xml"}, json=PATIENT)
    assert response.status_code == 405
    assert "PUT" in response.headers["Allow"]
    assert_no_html(response)
    assert xml_outcome_code(response) == "not-supported"


# --- bodies larger than the server takes (RFC 9110 section 15.5.14) -------------------


def _post_json(client: FlaskClient, body: bytes) -> TestResponse:
    return client.post("/fhir/Patient", data=body, headers={"Content-Type": "application/fhir+json"})


def _put_json(client: FlaskClient, body: bytes) -> TestResponse:
    return client.put("/fhir/Patient/big1", data=body, headers={"Content-Type": "application/fhir+json"})


def _post_xml(client: FlaskClient, body: bytes) -> TestResponse:
    document = (
        b'<Patient xmlns="http://hl7.org/fhir"><name><family value="'
        + b"x" * (len(body) - 80)
        + b'"/></name></Patient>'
    )
    return client.post("/fhir/Patient", data=document, headers={"Content-Type": "application/fhir+xml"})


def _post_chunked(client: FlaskClient, body: bytes) -> TestResponse:
    # No Content-Length: the size is only found out while reading (chunked transfer).
    return client.post(
        "/fhir/Patient",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/fhir+json"},
        environ_overrides={"wsgi.input_terminated": True},
    )


def _post_form_search(client: FlaskClient, body: bytes) -> TestResponse:
    return client.post(
        "/fhir/Patient/_search",
        data=b"name=" + b"x" * len(body),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(_post_json, id="create-json"),
        pytest.param(_put_json, id="update-as-create"),
        pytest.param(_post_xml, id="create-xml"),
        pytest.param(_post_chunked, id="create-without-content-length"),
        pytest.param(_post_form_search, id="search-form"),
    ],
)
def test_body_over_the_limit_is_413_and_stores_nothing(
    make_app: Callable[..., Flask], send: Callable[[FlaskClient, bytes], TestResponse]
) -> None:
    """RFC 9110 section 15.5.14 / R4 http.html#errors: 413 OperationOutcome ``too-costly``; nothing stored."""
    client = make_app(max_body_bytes=LIMIT).test_client()
    response = send(client, patient_of_size(5000, "big1"))
    issue = outcome(response, 413, "too-costly")
    assert "larger" in issue["diagnostics"]
    assert patient_total(client) == 0
    assert client.get("/fhir/Patient/big1").status_code == 404


def test_413_in_xml(make_app: Callable[..., Flask]) -> None:
    """R4 http.html#errors: the 413 OperationOutcome comes in XML when XML is asked for."""
    client = make_app(max_body_bytes=LIMIT).test_client()
    response = client.post(
        "/fhir/Patient",
        data=patient_of_size(5000),
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+xml"},
    )
    assert response.status_code == 413
    assert_no_html(response)
    assert xml_outcome_code(response) == "too-costly"


@pytest.mark.parametrize(("size", "status"), [(LIMIT - 1, 201), (LIMIT, 201), (LIMIT + 1, 413)])
def test_body_limit_boundary(make_app: Callable[..., Flask], size: int, status: int) -> None:
    """The limit is inclusive: a body of exactly ``max_body_bytes`` is accepted."""
    client = make_app(max_body_bytes=LIMIT).test_client()
    response = _post_json(client, patient_of_size(size))
    assert response.status_code == status, response.data
    assert patient_total(client) == (1 if status == 201 else 0)


# --- unexpected failures (R4 http.html#errors: 500) ------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "fmt"),
    [
        pytest.param("GET", {}, "json", id="get-json"),
        pytest.param("POST", {"Content-Type": "application/fhir+json"}, "json", id="post-json"),
        pytest.param("GET", {"Accept": "application/fhir+xml"}, "xml", id="get-xml"),
    ],
)
def test_unexpected_exception_is_a_500_outcome_and_logged(
    app: Flask,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    method: str,
    headers: dict[str, str],
    fmt: str,
) -> None:
    """R4 http.html#errors: 500 OperationOutcome ``exception``; the details are logged, never sent."""

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(services_of(app).interactions, "route", explode)
    caplog.set_level(logging.ERROR)
    body = json.dumps(PATIENT).encode() if method == "POST" else None
    response = app.test_client().open("/fhir/Patient", method=method, headers=headers, data=body)

    assert response.status_code == 500
    assert_no_html(response)
    for leak in (b"secret detail", b"Traceback", b"RuntimeError", b".py"):
        assert leak not in response.data
    if fmt == "xml":
        assert xml_outcome_code(response) == "exception"
    else:
        issue = outcome(response, 500, "exception")
        assert "secret detail" not in issue["diagnostics"]
    request_id = response.headers["X-Request-ID"]
    assert request_id
    assert request_id.encode() in response.data  # the client can quote it to the operator
    logged = [record for record in caplog.records if request_id in record.getMessage()]
    assert logged, caplog.text
    record = logged[0]
    assert record.levelno >= logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[0] is RuntimeError
    assert "secret detail" in caplog.text
    assert "Traceback" in caplog.text


# --- X-Request-ID on every answer ------------------------------------------------------


def _raise(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("boom")


REQUESTS: list[Any] = [
    pytest.param("GET", "/fhir/metadata", {}, None, 200, id="200-metadata"),
    pytest.param("POST", "/fhir/Patient", {"Content-Type": "application/fhir+json"}, PATIENT, 201, id="201-create"),
    pytest.param("GET", "/fhir/Patient/{id}", {}, None, 200, id="200-read"),
    pytest.param("HEAD", "/fhir/Patient/{id}", {}, None, 200, id="200-head"),
    pytest.param("GET", "/fhir/Patient/{id}", {"If-None-Match": 'W/"1"'}, None, 304, id="304"),
    pytest.param("GET", "/fhir/Patient/{id}?_format=xml", {}, None, 200, id="200-xml"),
    pytest.param("POST", "/fhir/Patient", {"Content-Type": "application/fhir+json"}, "{", 400, id="400"),
    pytest.param("GET", "/nothing", {}, None, 404, id="404-outside"),
    pytest.param("GET", "/fhir/Foo/1", {}, None, 404, id="404-type"),
    pytest.param("DELETE", "/fhir/metadata", {}, None, 405, id="405"),
    pytest.param("GET", "/fhir/metadata", {"Accept": "text/plain"}, None, 406, id="406"),
    pytest.param("POST", "/fhir/Patient", {"Content-Type": "text/plain"}, "x", 415, id="415"),
    pytest.param("POST", "/fhir/Patient", {"Content-Type": "application/fhir+json"}, "x" * (LIMIT + 1), 413, id="413"),
    pytest.param("GET", "/fhir/$nonexistent", {}, None, 501, id="501"),
    pytest.param("GET", "/fhir/Patient/{id}?explode=1", {}, None, 500, id="500"),
]


@pytest.mark.parametrize(("method", "path", "headers", "body", "status"), REQUESTS)
def test_every_answer_carries_a_request_id(
    make_app: Callable[..., Flask],
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    path: str,
    headers: dict[str, str],
    body: Any,
    status: int,
) -> None:
    """Every answer names itself with ``X-Request-ID``, distinct per request, so logs and clients can meet."""
    app = make_app(max_body_bytes=LIMIT)
    client = app.test_client()
    created = client.post("/fhir/Patient", json=PATIENT)
    assert created.status_code == 201
    patient_id = created.get_json()["id"]
    if status == 500:
        monkeypatch.setattr(services_of(app).interactions, "route", _raise)
    data = json.dumps(body) if isinstance(body, dict) else body
    response = client.open(path.format(id=patient_id), method=method, headers=headers, data=data)
    assert response.status_code == status, response.data
    request_id = response.headers.get("X-Request-ID")
    assert request_id
    assert request_id != created.headers["X-Request-ID"]
    if status >= 400:
        assert_no_html(response)
