"""SMART App Launch standalone launch against a live server, driven by Authlib's OAuth 2 client:
sign in, pick a patient, exchange the code with PKCE S256, read the picked patient (and not
another), refresh, introspect, revoke. Clients and users are made with the CLI."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from click.testing import CliRunner
from flask import Flask
from werkzeug.serving import make_server

from fhir_twin.app import create_app, services_of
from fhir_twin.cli import main
from tests.factories import Server, patient

REDIRECT = "https://app.example/callback"
SCOPES = "launch/patient openid fhirUser offline_access patient/*.rs"
VERIFIER = "v" * 50


@pytest.fixture(scope="module")
def live(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A live server with Patients p1 and p2, a public and a confidential client, two users."""
    data_dir = tmp_path_factory.mktemp("smart")
    app: Flask = create_app(
        {"database_url": module_database_url, "auth_mode": "tokens", "audit": False, "data_dir": str(data_dir)}
    )
    seeder = Server(app)
    for patient_id, given in (("p1", "Ann"), ("p2", "Bob")):
        seeder.put(patient(patient_id, name=[{"given": [given], "family": "Test"}]))
    runner = CliRunner()
    database = ["--database", module_database_url]

    def cli(*args: str, stdin: str | None = None) -> str:
        result = runner.invoke(main, [*args, *database], input=stdin, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    public = re.search(
        r"client_id: (\S+)",
        cli("client", "create", "--name", "Chart", "--redirect-uri", REDIRECT, "--public", "--scopes", SCOPES),
    )
    confidential = cli(
        "client", "create", "--name", "Backend chart", "--redirect-uri", REDIRECT, "--confidential", "--scopes", SCOPES
    )
    cli("user", "create", "doc", "--fhir-user", "Practitioner/d1", "--password-stdin", stdin="correct horse\n")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    assert public is not None
    yield {
        "base": base,
        "fhir": base + "/fhir",
        "public": public.group(1),
        "confidential": re.search(r"client_id: (\S+)", confidential).group(1),  # type: ignore[union-attr]
        "secret": re.search(r"client_secret: (\S+)", confidential).group(1),  # type: ignore[union-attr]
        "app": app,
    }
    server.shutdown()
    thread.join(5)
    services_of(app).repository.engine.dispose()


def _form(html: str, form_id: str) -> dict[str, str]:
    """The hidden fields of a form on a page."""
    found = re.search(rf'<form[^>]*id="{form_id}".*?</form>', html, re.S)
    assert found is not None, html
    return {unescape(n): unescape(v) for n, v in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', found[0])}


def _authorize(
    live: dict[str, Any], session: OAuth2Session, password: str = "correct horse", patient_id: str = "p1", **extra: str
) -> requests.Response:
    """Sign in at the authorization endpoint and allow, picking ``patient_id``; the final answer."""
    url, _ = session.create_authorization_url(live["base"] + "/auth/authorize", aud=live["fhir"], **extra)
    browser = requests.Session()
    page = browser.get(url)
    assert page.status_code == 200, page.text
    assert "script-src" not in page.headers["Content-Security-Policy"]
    fields = _form(page.text, "sign-in")
    answer = browser.post(
        live["base"] + "/auth/authorize",
        data={**fields, "username": "doc", "password": password},
        allow_redirects=False,
    )
    if answer.status_code != 200:
        return answer
    assert 'value="p2"' in answer.text  # the picker lists the patients
    fields = _form(answer.text, "consent")
    return browser.post(
        live["base"] + "/auth/authorize",
        data={**fields, "patient": patient_id, "decision": "allow"},
        allow_redirects=False,
    )


def _code(answer: requests.Response) -> dict[str, str]:
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT)
    return {k: v[0] for k, v in parse_qs(urlparse(location).query).items()}


def _session(live: dict[str, Any], **settings: Any) -> OAuth2Session:
    return OAuth2Session(live["public"], redirect_uri=REDIRECT, scope=SCOPES, code_challenge_method="S256", **settings)


def _launch(live: dict[str, Any]) -> tuple[OAuth2Session, dict[str, Any]]:
    session = _session(live)
    params = _code(_authorize(live, session, state="st-1", code_verifier=VERIFIER))
    assert params["state"] == "st-1"
    token = session.fetch_token(live["base"] + "/auth/token", code=params["code"], code_verifier=VERIFIER)
    return session, token


def test_standalone_launch_reads_the_picked_patient_only(live: dict[str, Any]) -> None:
    session, token = _launch(live)
    assert token["patient"] == "p1"
    assert set(token["scope"].split()) == set(SCOPES.split())
    assert token["expires_in"] > 0 and token["refresh_token"]
    picked = session.get(live["fhir"] + "/Patient/p1")
    assert picked.status_code == 200 and picked.json()["id"] == "p1"
    # Outside the launch patient's compartment answers as what does not exist (the Guard's rule).
    assert session.get(live["fhir"] + "/Patient/p2").status_code == 404
    claims = jwt.decode(token["id_token"], options={"verify_signature": False})
    assert claims["fhirUser"] == live["fhir"] + "/Practitioner/d1"
    assert claims["aud"] == [live["public"]]
    keys = requests.get(live["base"] + "/auth/jwks").json()
    key = jwt.PyJWKSet.from_dict(keys).keys[0]
    jwt.decode(token["id_token"], key, algorithms=["RS256"], audience=live["public"], issuer=live["fhir"])


def test_refresh_then_revoke(live: dict[str, Any]) -> None:
    session, token = _launch(live)
    fresh = session.refresh_token(live["base"] + "/auth/token", refresh_token=token["refresh_token"])
    assert fresh["access_token"] != token["access_token"] and fresh["patient"] == "p1"
    old = requests.get(live["fhir"] + "/Patient/p1", headers={"Authorization": f"Bearer {token['access_token']}"})
    assert old.status_code == 401  # the refreshed grant's tokens are revoked with it
    assert session.get(live["fhir"] + "/Patient/p1").status_code == 200
    revoked = requests.post(
        live["base"] + "/auth/revoke", data={"token": fresh["access_token"], "client_id": live["public"]}
    )
    assert revoked.status_code == 200
    assert session.get(live["fhir"] + "/Patient/p1").status_code == 401
    again = requests.post(
        live["base"] + "/auth/token",
        data={"grant_type": "refresh_token", "client_id": live["public"], "refresh_token": fresh["refresh_token"]},
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_confidential_client_and_introspection(live: dict[str, Any]) -> None:
    session = OAuth2Session(
        live["confidential"],
        live["secret"],
        redirect_uri=REDIRECT,
        scope=SCOPES,
        code_challenge_method="S256",
        token_endpoint_auth_method="client_secret_basic",
    )
    params = _code(_authorize(live, session, patient_id="p2", code_verifier=VERIFIER))
    token = session.fetch_token(live["base"] + "/auth/token", code=params["code"], code_verifier=VERIFIER)
    auth = (live["confidential"], live["secret"])
    active = requests.post(live["base"] + "/auth/introspect", data={"token": token["access_token"]}, auth=auth).json()
    assert active["active"] is True and active["patient"] == "p2" and active["client_id"] == live["confidential"]
    requests.post(live["base"] + "/auth/revoke", data={"token": token["access_token"]}, auth=auth)
    inactive = requests.post(live["base"] + "/auth/introspect", data={"token": token["access_token"]}, auth=auth)
    assert inactive.json() == {"active": False}
    wrong = requests.post(live["base"] + "/auth/introspect", data={"token": "x"}, auth=(live["confidential"], "bad"))
    assert wrong.status_code == 401


def test_wrong_pkce_verifier_is_invalid_grant(live: dict[str, Any]) -> None:
    session = _session(live)
    params = _code(_authorize(live, session, code_verifier=VERIFIER))
    answer = requests.post(
        live["base"] + "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT,
            "client_id": live["public"],
            "code_verifier": "w" * 50,
        },
    )
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("method", ["plain", None])
def test_plain_pkce_is_refused(live: dict[str, Any], method: str | None) -> None:
    query = {
        "response_type": "code",
        "client_id": live["public"],
        "redirect_uri": REDIRECT,
        "scope": SCOPES,
        "state": "s",
        "aud": live["fhir"],
        "code_challenge": VERIFIER if method else create_s256_code_challenge(VERIFIER),
    }
    if method:
        query["code_challenge_method"] = method
    answer = requests.get(live["base"] + "/auth/authorize", params=query, allow_redirects=False)
    assert answer.status_code == 302
    assert "error=invalid_request" in answer.headers["Location"]


def test_refusals_before_sign_in(live: dict[str, Any]) -> None:
    challenge = create_s256_code_challenge(VERIFIER)
    good = {
        "response_type": "code",
        "client_id": live["public"],
        "redirect_uri": REDIRECT,
        "scope": SCOPES,
        "state": "s",
        "aud": live["fhir"],
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    elsewhere = requests.get(
        live["base"] + "/auth/authorize",
        params={**good, "redirect_uri": "https://evil.example/"},
        allow_redirects=False,
    )
    assert elsewhere.status_code == 400 and "Location" not in elsewhere.headers
    other_aud = requests.get(live["base"] + "/auth/authorize", params={**good, "aud": "https://other.example/fhir"})
    assert other_aud.status_code == 400 and "aud" in other_aud.json()["error_description"]


def test_bad_password_is_refused(live: dict[str, Any]) -> None:
    answer = _authorize(live, _session(live), password="wrong horse", code_verifier=VERIFIER)
    assert answer.status_code == 401 and "wrong" in answer.text


def test_discovery_and_capability_statement(live: dict[str, Any]) -> None:
    found = requests.get(live["fhir"] + "/.well-known/smart-configuration").json()
    assert found["authorization_endpoint"] == live["base"] + "/auth/authorize"
    assert found["token_endpoint"] == live["base"] + "/auth/token"
    assert found["code_challenge_methods_supported"] == ["S256"]
    assert {"launch-standalone", "context-standalone-patient", "sso-openid-connect"} <= set(found["capabilities"])
    metadata = requests.get(live["fhir"] + "/metadata", headers={"Accept": "application/fhir+json"}).json()
    uris = metadata["rest"][0]["security"]["extension"][0]["extension"]
    assert {"url": "authorize", "valueUri": live["base"] + "/auth/authorize"} in uris


def test_signing_key_is_kept_outside_the_database(live: dict[str, Any]) -> None:
    config = services_of(live["app"]).config
    assert Path(config.resolved_smart_signing_key_file).stat().st_mode & 0o077 == 0


def test_a_code_is_exchanged_once_even_by_two_racing_requests(live: dict[str, Any]) -> None:
    params = _code(_authorize(live, _session(live), code_verifier=VERIFIER))
    exchange = {
        "grant_type": "authorization_code",
        "code": params["code"],
        "redirect_uri": REDIRECT,
        "client_id": live["public"],
        "code_verifier": VERIFIER,
    }
    start = threading.Barrier(2)

    def attempt() -> requests.Response:
        start.wait()
        return requests.post(live["base"] + "/auth/token", data=exchange, timeout=30)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: attempt(), range(2)))
    assert sorted(answer.status_code for answer in answers) == [200, 400]
    refused = next(answer for answer in answers if answer.status_code == 400)
    assert refused.json()["error"] == "invalid_grant"
    # Once spent, never again.
    again = requests.post(live["base"] + "/auth/token", data=exchange, timeout=30)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
