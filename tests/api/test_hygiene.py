"""HTTP hygiene (``fhir_twin.api.hygiene``): request ids, the access log, security headers, CORS.

FHIR answers hold patient data (R4 security.html): every answer, errors included, carries the
OWASP secure headers and ``no-store``; logs name paths, never query strings or bodies; browsers
get CORS (Fetch standard) only from origins the operator allowed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from fhir_twin.api import hygiene
from fhir_twin.app import services_of
from fhir_twin.config import Config

pytestmark = pytest.mark.audited

PATIENT: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": "Zebediah"}]}
FHIR_JSON = {"Content-Type": "application/fhir+json"}
ORIGIN = "https://app.example.org"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization",
}


@pytest.fixture
def build(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """An app without authentication, hygiene installed (a no-op once ``create_app`` does it)."""

    def build(**settings: Any) -> Flask:
        app = make_app(auth_mode="none", **settings)
        hygiene.register(app, services_of(app).config)
        return app

    return build


def cors_headers(response: TestResponse) -> dict[str, str]:
    return {name: value for name, value in response.headers.items() if name.lower().startswith("access-control-")}


# --- X-Request-ID -------------------------------------------------------------------------


@pytest.mark.parametrize("incoming", ["abc-123", "A.b_C-9", "x" * 64, "0123456789abcdef0123456789abcdef"])
def test_a_valid_request_id_is_echoed(build: Callable[..., Flask], incoming: str) -> None:
    """A caller's id of 1-64 ``[A-Za-z0-9._-]`` names the request, so its logs and the server's meet."""
    response = build().test_client().get("/fhir/metadata", headers={"X-Request-ID": incoming})
    assert response.status_code == 200
    assert response.headers["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("x" * 65, id="65-characters"),
        pytest.param("x" * 200, id="200-characters"),
        pytest.param("has space", id="space"),
        pytest.param("tab\there", id="tab"),
        pytest.param("semi;colon", id="punctuation"),
        pytest.param("é", id="non-ascii"),
        pytest.param("", id="empty"),
    ],
)
def test_an_invalid_request_id_is_replaced(build: Callable[..., Flask], incoming: str) -> None:
    """An id that could forge or flood log lines is not trusted; a fresh one is used instead."""
    response = build().test_client().get("/fhir/metadata", headers={"X-Request-ID": incoming})
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    assert request_id != incoming
    assert len(request_id) == 32
    int(request_id, 16)


def test_a_request_id_is_made_when_none_is_sent(build: Callable[..., Flask]) -> None:
    client = build().test_client()
    first, second = client.get("/fhir/metadata"), client.get("/fhir/metadata")
    assert len(first.headers["X-Request-ID"]) == 32
    assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]


def test_a_newline_in_the_request_id_is_not_echoed(build: Callable[..., Flask]) -> None:
    """A header value with a line break (log or header injection) never comes back."""
    client = build().test_client()
    response = client.get("/fhir/metadata", environ_overrides={"HTTP_X_REQUEST_ID": "abc\r\nSet-Cookie: x=1"})
    assert response.status_code == 200
    assert "\n" not in response.headers["X-Request-ID"]
    assert "Set-Cookie" not in response.headers


def test_register_is_idempotent(build: Callable[..., Flask]) -> None:
    """Registering twice installs nothing twice: one header value, one access line per request."""
    app = build()
    hooks = (len(app.before_request_funcs[None]), len(app.after_request_funcs[None]))
    hygiene.register(app, services_of(app).config)
    assert (len(app.before_request_funcs[None]), len(app.after_request_funcs[None])) == hooks
    response = app.test_client().get("/fhir/metadata")
    assert response.headers.getlist("X-Request-ID") == [response.headers["X-Request-ID"]]
    assert response.headers.getlist("X-Frame-Options") == ["DENY"]


# --- security headers (OWASP Secure Headers Project) -----------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("GET", "/fhir/metadata", None, 200, id="200"),
        pytest.param("POST", "/fhir/Patient", json.dumps(PATIENT), 201, id="201"),
        pytest.param("GET", "/fhir/Patient/nope", None, 404, id="404-resource"),
        pytest.param("GET", "/nothing", None, 404, id="404-outside-fhir"),
        pytest.param("POST", "/fhir/Patient", "{", 400, id="400"),
        pytest.param("DELETE", "/fhir/metadata", None, 405, id="405"),
        pytest.param("OPTIONS", "/fhir/Patient", None, 405, id="options-without-cors"),
    ],
)
def test_security_headers_on_every_answer(
    build: Callable[..., Flask], method: str, path: str, body: str | None, status: int
) -> None:
    response = build().test_client().open(path, method=method, data=body, headers=FHIR_JSON)
    assert response.status_code == status, response.data
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name
    assert "Strict-Transport-Security" not in response.headers
    if status >= 400:
        assert response.get_json()["resourceType"] == "OperationOutcome"


def test_an_answers_own_cache_control_is_kept(build: Callable[..., Flask]) -> None:
    """``no-store`` is the default, not an override of an answer that chose its caching."""
    app = build()

    @app.after_request
    def cacheable(response: Any) -> Any:
        response.headers["Cache-Control"] = "private, max-age=60"
        return response

    response = app.test_client().get("/fhir/metadata")
    assert response.headers.getlist("Cache-Control") == ["private, max-age=60"]


def test_hsts_only_over_https(build: Callable[..., Flask]) -> None:
    """RFC 6797 section 7.2: HSTS is sent over secure transport only."""
    client = build().test_client()
    assert "Strict-Transport-Security" not in client.get("/fhir/metadata").headers
    for response in (
        client.get("/fhir/metadata", base_url="https://localhost"),
        client.get("/fhir/metadata", environ_overrides={"wsgi.url_scheme": "https"}),
        client.get("/fhir/Patient/nope", base_url="https://localhost"),
    ):
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


# --- CORS (Fetch standard) ---------------------------------------------------------------


def test_no_cors_by_default(build: Callable[..., Flask]) -> None:
    client = build().test_client()
    response = client.get("/fhir/metadata", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert "Origin" not in response.headers.get("Vary", "")
    preflight = client.options("/fhir/Patient", headers=PREFLIGHT)
    assert preflight.status_code == 405
    assert cors_headers(preflight) == {}


@pytest.mark.parametrize("setting", [ORIGIN, f"https://other.example.org, {ORIGIN}/", f" {ORIGIN} ,"])
def test_an_allowed_origin_may_read_answers(build: Callable[..., Flask], setting: str) -> None:
    client = build(cors_origins=setting).test_client()
    for response in (
        client.get("/fhir/metadata", headers={"Origin": ORIGIN}),
        client.get("/fhir/Patient/nope", headers={"Origin": ORIGIN}),
    ):
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "Origin" in response.headers["Vary"]
        exposed = {name.strip() for name in response.headers["Access-Control-Expose-Headers"].split(",")}
        assert {"Location", "Content-Location", "ETag", "Last-Modified", "X-Request-ID", "WWW-Authenticate"} <= exposed
        assert "Access-Control-Allow-Credentials" not in response.headers


def test_a_preflight_from_an_allowed_origin_is_204(build: Callable[..., Flask]) -> None:
    response = build(cors_origins=ORIGIN).test_client().options("/fhir/Patient", headers=PREFLIGHT)
    assert response.status_code == 204
    assert response.data == b""
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD, POST, PUT, PATCH, DELETE"
    allowed = {name.strip() for name in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"Authorization", "Content-Type", "If-Match", "If-None-Exist", "Prefer", "X-Request-ID"} <= allowed
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert response.headers["X-Request-ID"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_preflight_comes_before_authentication() -> None:
    """Browsers send preflights without credentials: no hook registered earlier may refuse one."""
    app = Flask(__name__)

    @app.before_request
    def refuse() -> Any:
        return {"resourceType": "OperationOutcome"}, 401

    hygiene.register(app, Config(cors_origins=ORIGIN))
    client = app.test_client()
    preflight = client.options("/fhir/Patient", headers=PREFLIGHT)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    refused = client.get("/fhir/metadata", headers={"Origin": ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN  # the browser script may read why
    assert refused.headers["X-Request-ID"]


def test_any_origin_with_a_star(build: Callable[..., Flask]) -> None:
    client = build(cors_origins="*").test_client()
    response = client.get("/fhir/metadata", headers={"Origin": "https://anyone.example.com"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    preflight = client.options("/fhir/Patient/1", headers={**PREFLIGHT, "Origin": "http://localhost:3000"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert cors_headers(client.get("/fhir/metadata")) == {}  # not a cross-origin request


@pytest.mark.parametrize("origin", ["https://evil.example.org", "http://app.example.org", f"{ORIGIN}:8443", "null"])
def test_a_disallowed_origin_gets_no_cors(build: Callable[..., Flask], origin: str) -> None:
    client = build(cors_origins=ORIGIN).test_client()
    response = client.get("/fhir/metadata", headers={"Origin": origin})
    assert response.status_code == 200
    assert cors_headers(response) == {}
    assert "Origin" in response.headers["Vary"]  # a shared cache must not serve it to an allowed origin
    preflight = client.options("/fhir/Patient", headers={**PREFLIGHT, "Origin": origin})
    assert preflight.status_code == 405  # normal handling: /fhir answers no OPTIONS
    assert cors_headers(preflight) == {}


def test_options_without_a_request_method_is_not_a_preflight(build: Callable[..., Flask]) -> None:
    response = build(cors_origins=ORIGIN).test_client().options("/fhir/Patient", headers={"Origin": ORIGIN})
    assert response.status_code == 405
    assert "Access-Control-Allow-Methods" not in response.headers


# --- body size limit (RFC 9110 section 15.5.14) ----------------------------------------


def test_a_body_over_the_limit_is_413_and_stores_nothing(build: Callable[..., Flask]) -> None:
    client = build(max_body_bytes=1000).test_client()
    resource = {**PATIENT, "id": "big", "text": {"status": "generated", "div": "x" * 1000}}
    response = client.put("/fhir/Patient/big", data=json.dumps(resource), headers=FHIR_JSON)
    assert response.status_code == 413
    issue = response.get_json()["issue"][0]
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert issue["code"] == "too-costly"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert client.get("/fhir/Patient/big").status_code == 404
    assert client.get("/fhir/Patient?name=Zebediah").get_json()["total"] == 0
    assert client.get("/fhir/Patient").get_json()["total"] == 0


# --- logs -------------------------------------------------------------------------------------


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "fhir_twin.access"]


def test_the_access_log_names_path_and_status_never_query_or_body(
    build: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    client = build().test_client()
    caplog.set_level(logging.DEBUG)
    created = client.post("/fhir/Patient", data=json.dumps(PATIENT), headers={**FHIR_JSON, "X-Request-ID": "req-1"})
    assert created.status_code == 201
    patient_id = created.get_json()["id"]
    found = client.get("/fhir/Patient?name=Zebediah", headers={"X-Request-ID": "req-2"})
    assert found.get_json()["total"] == 1
    responses = [
        created,
        found,
        client.post("/fhir/Patient/_search", data={"name": "Zebediah"}),
        client.get(f"/fhir/Patient/{patient_id}?_elements=name"),
        client.put(f"/fhir/Patient/{patient_id}", data="{not json Zebediah", headers=FHIR_JSON),
    ]

    records = access_records(caplog)
    assert [record.getMessage().rsplit(" ", 2)[0] for record in records] == [
        "POST /fhir/Patient 201",
        "GET /fhir/Patient 200",
        "POST /fhir/Patient/_search 200",
        f"GET /fhir/Patient/{patient_id} 200",
        f"PUT /fhir/Patient/{patient_id} 400",
    ]
    for record, response in zip(records, responses, strict=True):
        assert record.levelno == logging.INFO
        assert record.getMessage().endswith(" ms")
        assert record.request_id == response.headers["X-Request-ID"]  # type: ignore[attr-defined]
    assert [record.request_id for record in records[:2]] == ["req-1", "req-2"]  # type: ignore[attr-defined]
    assert "Zebediah" not in caplog.text
    for record in caplog.records:
        assert "Zebediah" not in record.getMessage()
        assert "Zebediah" not in str(record.__dict__)


def test_every_log_record_carries_the_request_id(build: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    """Records of any logger made during a request name it; outside a request they say ``-``."""
    app = build()

    @app.get("/probe")
    def probe() -> str:
        logging.getLogger("sqlalchemy.engine").warning("inside")
        return "ok"

    caplog.set_level(logging.INFO)
    response = app.test_client().get("/probe", headers={"X-Request-ID": "probe-1"})
    logging.getLogger("werkzeug").warning("outside")
    by_message = {record.getMessage(): record for record in caplog.records}
    assert by_message["inside"].request_id == "probe-1"  # type: ignore[attr-defined]
    assert by_message["outside"].request_id == "-"  # type: ignore[attr-defined]
    assert response.headers["X-Request-ID"] == "probe-1"
    formatted = logging.Formatter(hygiene.LOG_FORMAT).format(by_message["inside"])
    assert formatted.endswith("WARNING sqlalchemy.engine [probe-1] inside")


def test_the_log_format_never_fails_on_foreign_records() -> None:
    """``configure_logging`` sets the format; records from any logger, in or out of a request, format."""
    script = (
        "import logging\n"
        "from fhir_twin.api.hygiene import configure_logging\n"
        "configure_logging('info')\n"
        "configure_logging('info')\n"
        "logging.getLogger('gunicorn.error').info('booted')\n"
        "logging.getLogger('sqlalchemy.engine').warning('connected')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    lines = result.stderr.splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].endswith("INFO gunicorn.error [-] booted")
    assert lines[1].endswith("WARNING sqlalchemy.engine [-] connected")


def test_the_access_log_cannot_be_forged_through_the_path(
    build: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    """A percent-encoded line break in the path stays encoded in the log: no fake log lines."""
    caplog.set_level(logging.INFO)
    build().test_client().get("/fhir/Patient/%0A2026-01-01%20INFO%20fake")
    (record,) = access_records(caplog)
    assert record.getMessage().startswith("GET /fhir/Patient/%0A2026-01-01%20INFO%20fake 404 ")
    assert "\n" not in record.getMessage()


def test_every_answer_says_the_servers_own_time(client: FlaskClient) -> None:
    """W3C Server Timing: the app's time in milliseconds, which Resource Timing shows a browser."""
    for response in (client.get("/fhir/metadata"), client.get("/fhir/Patient/nowhere"), client.get("/app/")):
        name, duration = response.headers["Server-Timing"].split(";dur=")
        assert name == "app" and float(duration) >= 0
