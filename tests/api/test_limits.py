"""What the server reads of a request, and the 4xx OperationOutcome past each limit (R4 http.html#errors).

Bodies nest at most 100 levels (400 ``too-long``), a chunked body is counted while it is read
(413), the URL and the header fields have their own limits (414, 431) answered by the app, not
the WSGI server's page, and a body of a type the request does not take is 415 naming the types
it does (a form only for ``POST [type]/_search``).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"
FORM = "application/x-www-form-urlencoded"
LIMIT = 2000


def outcome(response: TestResponse | http.client.HTTPResponse, status: int, code: str, body: bytes) -> str:
    """The diagnostics of the JSON OperationOutcome answer with ``status`` and ``code``."""
    assert (response.status if isinstance(response, http.client.HTTPResponse) else response.status_code) == status, body
    assert response.headers["Content-Type"] == f"{FHIR_JSON}; charset=utf-8"
    document = json.loads(body)
    assert document["resourceType"] == "OperationOutcome"
    issue = document["issue"][0]
    assert (issue["severity"], issue["code"]) == ("error", code)
    diagnostics: str = issue["diagnostics"]
    return diagnostics


def stored(client: FlaskClient, res_type: str = "Patient") -> int:
    total: int = client.get(f"/fhir/{res_type}?_summary=count").get_json()["total"]
    return total


def nested_patient(depth: int) -> dict[str, Any]:
    """A valid Patient whose objects and arrays nest exactly ``depth`` levels (extensions in extensions)."""
    # Patient {1} > extension [2] > Extension {3} > extension [4] > ...: each Extension adds two.
    chained, even = divmod(depth - 1, 2)
    inner: dict[str, Any] = {"url": "http://example.org/leaf"}
    inner.update({"valueCodeableConcept": {"text": "x"}} if even else {"valueString": "x"})
    for _ in range(chained - 1):
        inner = {"url": "http://example.org/level", "extension": [inner]}
    return {"resourceType": "Patient", "extension": [inner]}


def deep_json(depth: int) -> bytes:
    return b'{"resourceType":"Patient","extension":' + b"[" * depth + b"]" * depth + b"}"


# --- nesting (400 too-long) ------------------------------------------------------------


def test_json_nested_50000_deep_is_400_naming_the_limit(client: FlaskClient) -> None:
    response = client.post("/fhir/Patient", data=deep_json(50_000), content_type=FHIR_JSON)
    assert "100 levels" in outcome(response, 400, "too-long", response.data)
    assert stored(client) == 0


@pytest.mark.parametrize(("depth", "status"), [(100, 201), (101, 400), (400, 400)])
def test_nesting_limit_boundary(client: FlaskClient, depth: int, status: int) -> None:
    """The limit is inclusive: a body nesting exactly 100 levels is stored."""
    body = nested_patient(depth)
    assert _depth(body) == depth
    response = client.post("/fhir/Patient", json=body, content_type=FHIR_JSON)
    assert response.status_code == status, response.data
    assert stored(client) == (1 if status == 201 else 0)


def test_deep_transaction_entry_is_400_and_stores_nothing(client: FlaskClient) -> None:
    entries = [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": nested_patient(400), "request": {"method": "POST", "url": "Patient"}},
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = client.post("/fhir", json=bundle, content_type=FHIR_JSON)
    outcome(response, 400, "too-long", response.data)
    assert stored(client) == 0


def test_deep_json_patch_is_400_and_changes_nothing(client: FlaskClient) -> None:
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    patch = b'[{"op":"add","path":"/extension","value":' + b"[" * 5000 + b"]" * 5000 + b"}]"
    response = client.patch("/fhir/Patient/p1", data=patch, content_type="application/json-patch+json")
    outcome(response, 400, "too-long", response.data)
    assert client.get("/fhir/Patient/p1").get_json()["meta"]["versionId"] == "1"


def test_deep_json_patch_in_a_bundle_entry_is_400(client: FlaskClient) -> None:
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    patch = b'[{"op":"add","path":"/extension","value":' + b"[" * 5000 + b"]" * 5000 + b"}]"
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(patch).decode(),
    }
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": binary, "request": {"method": "PATCH", "url": "Patient/p1"}}],
    }
    response = client.post("/fhir", json=bundle, content_type=FHIR_JSON)
    assert "entry[0]" in outcome(response, 400, "too-long", response.data)
    assert client.get("/fhir/Patient/p1").get_json()["meta"]["versionId"] == "1"


def _nested_questionnaire_xml(levels: int) -> bytes:
    item = b'<item><linkId value="a"/><type value="group"/>'
    return (
        b'<Questionnaire xmlns="http://hl7.org/fhir"><status value="draft"/>'
        + item * levels
        + b"</item>" * levels
        + b"</Questionnaire>"
    )


@pytest.mark.parametrize(
    "levels",
    [
        pytest.param(50_000, id="past-libxml2-limit"),
        pytest.param(200, id="past-the-limit"),
        pytest.param(60, id="deeper-in-json-form"),
    ],
)
def test_deep_xml_is_400_naming_the_limit(client: FlaskClient, levels: int) -> None:
    """Elements nest at most 100 levels, and so does the resource's JSON form (where arrays are levels)."""
    response = client.post("/fhir/Questionnaire", data=_nested_questionnaire_xml(levels), content_type=FHIR_XML)
    assert "100 levels" in outcome(response, 400, "too-long", response.data)
    assert stored(client, "Questionnaire") == 0


def test_xml_within_the_limit_is_stored(client: FlaskClient) -> None:
    response = client.post("/fhir/Questionnaire", data=_nested_questionnaire_xml(30), content_type=FHIR_XML)
    assert response.status_code == 201, response.data


# --- chunked bodies (413, counted while read) ------------------------------------------


class EndlessBody(io.RawIOBase):
    """A body that never ends, counting what the server reads of it."""

    def __init__(self) -> None:
        self.read_bytes = 0
        self.prefix = b'{"resourceType":"Patient","name":[{"text":"'

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = len(buffer)
        chunk = (self.prefix + b"x" * size)[:size] if self.read_bytes == 0 else b"x" * size
        buffer[:size] = chunk
        self.read_bytes += size
        return size


def post_chunked(client: FlaskClient, stream: Any, path: str = "/fhir/Patient") -> TestResponse:
    """A body without Content-Length, its end marked by the server (as gunicorn and waitress do)."""
    return client.post(
        path,
        headers={"Content-Type": FHIR_JSON, "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input": stream, "wsgi.input_terminated": True},
    )


def patient_of_size(size: int) -> bytes:
    body = json.dumps({"resourceType": "Patient", "name": [{"text": ""}]}).encode()
    return body.replace(b'"text": ""', b'"text": "' + b"x" * (size - len(body)) + b'"')


def test_chunked_body_over_the_limit_is_413_not_a_cut_body(make_app: Callable[..., Flask]) -> None:
    client = make_app(max_body_bytes=LIMIT).test_client()
    response = post_chunked(client, io.BytesIO(patient_of_size(50 * LIMIT)))
    assert f"{LIMIT} bytes" in outcome(response, 413, "too-costly", response.data)
    assert stored(client) == 0


def test_chunked_body_is_counted_while_read(make_app: Callable[..., Flask]) -> None:
    """An endless body is refused after one byte past the limit, not read into memory first."""
    client = make_app(max_body_bytes=LIMIT).test_client()
    body = EndlessBody()
    response = post_chunked(client, body)
    outcome(response, 413, "too-costly", response.data)
    assert body.read_bytes <= LIMIT + 1


@pytest.mark.parametrize(("size", "status"), [(LIMIT, 201), (LIMIT + 1, 413)])
def test_chunked_body_limit_boundary(make_app: Callable[..., Flask], size: int, status: int) -> None:
    client = make_app(max_body_bytes=LIMIT).test_client()
    response = post_chunked(client, io.BytesIO(patient_of_size(size)))
    assert response.status_code == status, response.data
    assert stored(client) == (1 if status == 201 else 0)


# --- URL and header fields (414, 431) ---------------------------------------------------


@pytest.mark.parametrize("path", ["/fhir/Patient?name=", "/twin/patients/p1?at=", "/fhir/metadata?x="])
def test_long_url_is_414(client: FlaskClient, path: str) -> None:
    response = client.get(path + "a" * 20_000)
    assert "8192" in outcome(response, 414, "too-long", response.data)


@pytest.mark.parametrize(("length", "status"), [(100, 200), (101, 414)])
def test_url_limit_boundary(make_app: Callable[..., Flask], length: int, status: int) -> None:
    """``max_url_bytes`` counts the path and the query string as sent."""
    client = make_app(max_url_bytes=100).test_client()
    path = "/fhir/Patient?name="
    response = client.get(path + "a" * (length - len(path)))
    assert response.status_code == status, response.data


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Big": "a" * 20_000}, id="one-big"),
        pytest.param({f"X-Field-{n}": "a" * 100 for n in range(200)}, id="many"),
        pytest.param({"Authorization": "Bearer " + "a" * 20_000}, id="big-credential"),
    ],
)
def test_big_header_fields_are_431(make_app: Callable[..., Flask], headers: dict[str, str]) -> None:
    """Before authentication: an oversized credential is not looked up."""
    client = make_app(auth_mode="tokens").test_client()
    response = client.get("/fhir/Patient", headers=headers)
    assert "16384" in outcome(response, 431, "too-long", response.data)


def test_header_fields_within_the_limit_are_read(client: FlaskClient) -> None:
    assert client.get("/fhir/Patient", headers={"X-Big": "a" * 10_000}).status_code == 200


# --- media types (415) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "content_type", "body"),
    [
        pytest.param("POST", "/fhir/Patient", FORM, b"gender=female", id="create-form"),
        pytest.param("PUT", "/fhir/Patient/p1", FORM, b"gender=female", id="update-form"),
        pytest.param("POST", "/fhir", FORM, b"type=transaction", id="transaction-form"),
        pytest.param("POST", "/fhir", "text/plain", b'{"resourceType":"Bundle"}', id="transaction-text"),
        pytest.param("POST", "/fhir/Patient", "application/json-patch+json", b"[]", id="create-json-patch"),
        pytest.param("PATCH", "/fhir/Patient/p1", "text/plain", b"[]", id="patch-text"),
    ],
)
def test_body_of_a_type_the_request_does_not_take_is_415(
    client: FlaskClient, method: str, path: str, content_type: str, body: bytes
) -> None:
    response = client.open(path, method=method, data=body, content_type=content_type)
    diagnostics = outcome(response, 415, "not-supported", response.data)
    assert content_type in diagnostics
    assert ("application/json-patch+json" if method == "PATCH" else FHIR_JSON) in diagnostics.split("send ")[1]
    assert stored(client) == 0


def test_form_search_keeps_working(client: FlaskClient) -> None:
    """R4 http.html#search: ``POST [type]/_search`` takes its parameters as a form."""
    client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"})
    client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "male"})
    response = client.post("/fhir/Patient/_search", data=b"gender=female", content_type=FORM)
    assert response.status_code == 200, response.data
    assert [entry["resource"]["gender"] for entry in response.get_json()["entry"]] == ["female"]


# --- the same answers from a served app ---------------------------------------------------


@pytest.fixture
def served(database_url: str) -> Iterator[int]:
    """``fhir-twin serve`` on a free port with a 100 kB body limit; its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    env = {
        **os.environ,
        "FHIR_TWIN_LOG_LEVEL": "WARNING",
        "FHIR_TWIN_AUTH_MODE": "none",
        "FHIR_TWIN_DATABASE_URL": database_url,
        "FHIR_TWIN_MAX_BODY_BYTES": "100000",
    }
    command = [str(Path(sys.executable).with_name("fhir-twin")), "serve", "--port", str(port), "--workers", "1"]
    with subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as process:
        try:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not answer"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.2)
            yield port
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_served_limits_are_operation_outcomes(served: int) -> None:
    """Over HTTP, the app answers each limit, not the WSGI server's own page."""
    connection = http.client.HTTPConnection("127.0.0.1", served, timeout=30)

    def chunks() -> Iterator[bytes]:
        yield b'{"resourceType":"Patient","name":[{"text":"'
        yield from (b"x" * 10_000 for _ in range(20))
        yield b'"}]}'

    connection.request("POST", "/fhir/Patient", body=chunks(), headers={"Content-Type": FHIR_JSON}, encode_chunked=True)
    response = connection.getresponse()
    assert "100000 bytes" in outcome(response, 413, "too-costly", response.read())
    connection.close()

    connection = http.client.HTTPConnection("127.0.0.1", served, timeout=30)
    connection.request("GET", "/fhir/Patient?name=" + "a" * 20_000)
    response = connection.getresponse()
    outcome(response, 414, "too-long", response.read())
    connection.request("GET", "/fhir/Patient", headers={"X-Big": "a" * 20_000})
    response = connection.getresponse()
    outcome(response, 431, "too-long", response.read())
    # More fields than gunicorn's default of 100, and larger ones than its default 8190 bytes.
    connection.request("GET", "/fhir/Patient", headers={f"X-Field-{n}": "a" for n in range(300)})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    response.read()
    connection.request("GET", "/fhir/Patient", headers={"X-Big": "a" * 10_000})
    response = connection.getresponse()
    assert response.status == 200, response.read()
    response.read()
    connection.close()


def _depth(value: Any) -> int:
    """How many levels of objects and arrays ``value`` nests."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
