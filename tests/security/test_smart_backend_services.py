"""SMART Backend Services and private_key_jwt clients against a live server, driven by Authlib's
OAuth 2 client with its ``PrivateKeyJWT`` authentication: a backend service (registered with the
CLI from a JWK Set file) gets a five-minute ``system/`` token by the client credentials grant and
kicks off a system-level ``$export`` and searches with it; every faulty client assertion or scope is
refused as RFC 6749 section 5.2 says, and nothing is issued. A confidential asymmetric app
exchanges an authorization code with a client assertion."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from click.testing import CliRunner
from flask import Flask
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey
from werkzeug.serving import make_server

from fhir_twin.app import create_app, services_of
from fhir_twin.cli import main
from fhir_twin.store import tokens
from tests.factories import Server, patient
from tests.security.test_smart_launch import REDIRECT, VERIFIER, _authorize, _code

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SYSTEM = "system/*.rs"
RSA_KEY = RSAKey.generate_key(2048, private=True, parameters={"kid": "rsa-1"})
EC_KEY = ECKey.generate_key("P-384", private=True, parameters={"kid": "ec-1"})
OTHER_KEY = RSAKey.generate_key(2048, private=True, parameters={"kid": "rsa-1"})


class FiveMinuteJWT(PrivateKeyJWT):
    """Authlib's ``private_key_jwt`` with the ``kid`` header and a lifetime SMART allows (Authlib
    signs for an hour by default), a new ``jti`` each time."""

    def __init__(self, token_endpoint: str, kid: str, alg: str, expires_in: int = 300) -> None:
        super().__init__(token_endpoint, alg=alg)
        self.kid = kid
        self.expires_in = expires_in

    def sign(self, auth: Any, token_endpoint: str) -> str:
        return str(
            private_key_jwt_sign(
                auth.client_secret,
                client_id=auth.client_id,
                token_endpoint=token_endpoint,
                alg=self.alg,
                header={"kid": self.kid},
                expires_in=self.expires_in,
            )
        )


def _jwks(*keys: RSAKey | ECKey) -> str:
    return json.dumps({"keys": [key.as_dict(private=False) for key in keys]})


@pytest.fixture(scope="module")
def live(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A live server with Patients p1 and p2, a backend service with an RSA and an EC key, a
    confidential asymmetric app, and a client with a secret."""
    data_dir = tmp_path_factory.mktemp("backend")
    app: Flask = create_app(
        {"database_url": module_database_url, "auth_mode": "tokens", "audit": False, "data_dir": str(data_dir)}
    )
    seeder = Server(app)
    for patient_id in ("p1", "p2"):
        seeder.put(patient(patient_id))
    keys = data_dir / "jwks.json"
    keys.write_text(_jwks(RSA_KEY, EC_KEY))
    runner = CliRunner()

    def client_id(*args: str) -> str:
        result = runner.invoke(main, ["client", "create", *args, "--database", module_database_url])
        assert result.exit_code == 0, result.output
        found = re.search(r"client_id: (\S+)", result.output)
        assert found is not None
        return found.group(1)

    backend = client_id("--name", "Warehouse", "--backend", "--jwks", str(keys), "--scopes", SYSTEM)
    app_client = client_id(
        "--name", "Asymmetric chart", "--jwks", str(keys), "--redirect-uri", REDIRECT,
        "--scopes", "launch/patient patient/*.rs",
    )  # fmt: skip
    secret_client = client_id(
        "--name", "Secret", "--confidential", "--redirect-uri", "https://app.example/cb", "--scopes", "patient/*.rs"
    )
    made = runner.invoke(
        main,
        ["user", "create", "doc", "--password-stdin", "--database", module_database_url],
        input="correct horse\n",
    )
    assert made.exit_code == 0, made.output
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    yield {
        "base": base,
        "fhir": base + "/fhir",
        "token_url": base + "/auth/token",
        "backend": backend,
        "app_client": app_client,
        "secret_client": secret_client,
        "app": app,
    }
    server.shutdown()
    thread.join(5)
    services_of(app).repository.engine.dispose()


def _session(live: dict[str, Any], key: RSAKey | ECKey = RSA_KEY, alg: str = "RS384", **settings: Any) -> OAuth2Session:
    client_id = settings.pop("client_id", live["backend"])
    auth = FiveMinuteJWT(settings.pop("aud", live["token_url"]), settings.pop("kid", key.kid), alg, **settings)
    session = OAuth2Session(client_id, key, token_endpoint_auth_method="private_key_jwt", scope="system/Patient.rs")
    session.register_client_auth_method(auth)
    return session


def _issued(live: dict[str, Any]) -> int:
    return len(tokens.listed(services_of(live["app"]).repository))


def _refused(live: dict[str, Any], data: dict[str, str], status: int, error: str, text: str) -> None:
    """The token endpoint answers ``error`` with ``status``, naming ``text``, and issues nothing."""
    before = _issued(live)
    answer = requests.post(live["token_url"], data=data, timeout=10)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == error and text in body["error_description"], body
    assert answer.headers["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" not in answer.headers
    assert _issued(live) == before


def _assertion(live: dict[str, Any], key: RSAKey | ECKey = RSA_KEY, alg: str = "RS384", **changes: Any) -> str:
    """A client assertion for the backend service, with ``changes`` to its claims or header."""
    now = int(time.time())
    claims = {
        "iss": live["backend"],
        "sub": live["backend"],
        "aud": live["token_url"],
        "exp": now + 240,
        "jti": f"jti-{time.monotonic_ns()}",
    }
    header = {"alg": alg, "kid": key.kid, "typ": "JWT", **changes.pop("header", {})}
    claims.update(changes)
    return jwt.encode(header, {k: v for k, v in claims.items() if v is not None}, key, algorithms=[alg])


def _form(assertion: str, scope: str = "system/Patient.rs") -> dict[str, str]:
    return {
        "grant_type": "client_credentials",
        "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }


@pytest.mark.parametrize(("key", "alg"), [(RSA_KEY, "RS384"), (EC_KEY, "ES384")])
def test_backend_service_gets_a_system_token_and_searches(live: dict[str, Any], key: Any, alg: str) -> None:
    session = _session(live, key, alg)
    token = session.fetch_token(live["token_url"], grant_type="client_credentials")
    assert token["token_type"].lower() == "bearer"
    assert token["expires_in"] == 300 and token["scope"] == "system/Patient.rs"
    assert "refresh_token" not in token and "patient" not in token
    found = session.get(live["fhir"] + "/Patient")
    assert found.status_code == 200 and found.json()["total"] == 2  # system/ reaches every patient
    # Only what was granted: Observations need a scope this token lacks.
    assert session.get(live["fhir"] + "/Observation").status_code == 403


def test_a_backend_service_may_ask_a_scope_narrowed_by_a_search(live: dict[str, Any]) -> None:
    """Less than it was registered with (``system/*.rs``): granted, and held to its search."""
    session = _session(live)
    narrowed = "system/Observation.rs?status=final"
    token = session.fetch_token(live["token_url"], grant_type="client_credentials", scope=narrowed)
    assert token["scope"] == narrowed
    found = session.get(live["fhir"] + "/Observation")
    assert found.status_code == 200
    assert all(entry["resource"]["status"] == "final" for entry in found.json().get("entry", []))
    assert session.get(live["fhir"] + "/Patient").status_code == 403


def test_backend_token_kicks_off_a_system_export(live: dict[str, Any]) -> None:
    session = _session(live)
    session.fetch_token(live["token_url"], grant_type="client_credentials", scope="system/*.rs")
    answer = session.get(live["fhir"] + "/$export", headers={"Prefer": "respond-async"})
    assert answer.status_code == 202, answer.text
    assert "_jobId=" in answer.headers["Content-Location"]


def test_deleting_the_client_revokes_its_tokens(live: dict[str, Any], module_database_url: str) -> None:
    keys = Path(services_of(live["app"]).config.resolved_data_dir) / "jwks.json"
    args = ["--name", "Short", "--backend", "--jwks", str(keys), "--scopes", "system/Patient.rs"]
    result = CliRunner().invoke(main, ["client", "create", *args, "--database", module_database_url])
    short = re.search(r"client_id: (\S+)", result.output).group(1)  # type: ignore[union-attr]
    listed = CliRunner().invoke(main, ["client", "list", "--database", module_database_url]).output
    assert f"{short}  Short  backend" in listed
    assert f"{live['app_client']}  Asymmetric chart  private_key_jwt" in listed
    session = _session(live, client_id=short)
    session.fetch_token(live["token_url"], grant_type="client_credentials")
    assert session.get(live["fhir"] + "/Patient").status_code == 200
    CliRunner().invoke(main, ["client", "delete", short, "--database", module_database_url])
    assert session.get(live["fhir"] + "/Patient").status_code == 401


def test_confidential_asymmetric_app_exchanges_its_code_with_an_assertion(live: dict[str, Any]) -> None:
    session = OAuth2Session(
        live["app_client"],
        EC_KEY,
        redirect_uri=REDIRECT,
        scope="launch/patient patient/*.rs",
        code_challenge_method="S256",
        token_endpoint_auth_method="private_key_jwt",
        revocation_endpoint_auth_method="private_key_jwt",
    )
    session.register_client_auth_method(FiveMinuteJWT(live["token_url"], "ec-1", "ES384"))
    params = _code(_authorize(live, session, code_verifier=VERIFIER))
    token = session.fetch_token(live["token_url"], code=params["code"], code_verifier=VERIFIER)
    assert token["patient"] == "p1" and token["expires_in"] == 3600
    assert session.get(live["fhir"] + "/Patient/p1").status_code == 200
    assert session.get(live["fhir"] + "/Patient/p2").status_code == 404
    # Introspection and revocation take the client's assertions too.
    introspected = session.introspect_token(live["base"] + "/auth/introspect", token["access_token"])
    assert introspected.json()["active"] is True and introspected.json()["patient"] == "p1"
    assert session.revoke_token(live["base"] + "/auth/revoke", token["access_token"]).status_code == 200
    assert session.get(live["fhir"] + "/Patient/p1").status_code == 401
    # Without its assertion, the code exchange is refused: the client is confidential.
    params = _code(_authorize(live, session, code_verifier=VERIFIER))
    before = _issued(live)
    answer = requests.post(
        live["token_url"],
        data={
            "grant_type": "authorization_code",
            "code": params["code"],
            "redirect_uri": REDIRECT,
            "client_id": live["app_client"],
            "code_verifier": VERIFIER,
        },
        timeout=10,
    )
    assert answer.json()["error"] == "invalid_client" and _issued(live) == before


def test_authlib_default_hour_long_assertion_is_refused(live: dict[str, Any]) -> None:
    session = OAuth2Session(live["backend"], RSA_KEY, token_endpoint_auth_method="private_key_jwt")
    session.register_client_auth_method(PrivateKeyJWT(live["token_url"], headers={"kid": "rsa-1"}, alg="RS384"))
    before = _issued(live)
    with pytest.raises(Exception, match="five minutes"):
        session.fetch_token(live["token_url"], grant_type="client_credentials", scope="system/Patient.rs")
    assert _issued(live) == before


@pytest.mark.parametrize(
    ("changes", "text"),
    [
        ({"aud": "https://elsewhere.example/token"}, "aud must be the token endpoint"),
        ({"exp": int(time.time()) - 600}, "has expired"),
        ({"exp": int(time.time()) + 3600}, "no more than five minutes"),
        ({"exp": None}, "exp must be a number"),
        ({"exp": float("nan")}, "exp must be a number"),
        ({"exp": True}, "exp must be a number"),
        ({"jti": None}, "jti is required"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"sub": "someone-else"}, "iss and sub"),
        ({"iss": "nobody", "sub": "nobody"}, "no client has the id"),
        ({"header": {"kid": "unknown"}}, "no RSA key with kid 'unknown'"),
        ({"header": {"kid": None}}, "needs the kid"),
        ({"header": {"jku": "https://app.example/jwks"}}, "jku is not taken"),
    ],
)
def test_faulty_assertions_are_invalid_client(live: dict[str, Any], changes: dict[str, Any], text: str) -> None:
    header = {k: v for k, v in changes.pop("header", {}).items()}
    assertion = _assertion(live, **changes, header={k: v for k, v in header.items() if v is not None})
    if header.get("kid", "") is None:
        assertion = jwt.encode({"alg": "RS384"}, _claims(live), RSA_KEY, algorithms=["RS384"])
    _refused(live, _form(assertion), 401, "invalid_client", text)


def _claims(live: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": live["backend"], "sub": live["backend"], "aud": live["token_url"], "exp": now + 60, "jti": "x"}


def test_bad_signature_and_wrong_algorithm_are_invalid_client(live: dict[str, Any]) -> None:
    # Signed by another key that carries the registered kid.
    _refused(live, _form(_assertion(live, OTHER_KEY)), 401, "invalid_client", "signature does not verify")
    # RS256 is not what SMART clients sign with here.
    unsupported = jwt.encode({"alg": "RS256", "kid": "rsa-1"}, _claims(live), RSA_KEY, algorithms=["RS256"])
    _refused(live, _form(unsupported), 401, "invalid_client", "alg must be one of RS384, ES384")
    # The EC key's kid with an RSA algorithm: no key of that type has it.
    mixed = _assertion(live, RSA_KEY, header={"kid": "ec-1"})
    _refused(live, _form(mixed), 401, "invalid_client", "no RSA key with kid 'ec-1'")
    _refused(live, _form("not.a.jwt"), 401, "invalid_client", "not a signed JWT")
    listed = jws.serialize_compact({"alg": "RS384", "kid": "rsa-1"}, b"[1]", RSA_KEY, algorithms=["RS384"])
    _refused(live, _form(listed), 401, "invalid_client", "payload is not a JSON object")
    other = {**_form(_assertion(live)), "client_id": live["app_client"]}
    _refused(live, other, 401, "invalid_client", "client_id is not the client_assertion's iss")


def test_replayed_jti_is_invalid_client(live: dict[str, Any]) -> None:
    assertion = _assertion(live)
    first = requests.post(live["token_url"], data=_form(assertion), timeout=10)
    assert first.status_code == 200, first.text
    _refused(live, _form(assertion), 401, "invalid_client", "jti was used before")


@pytest.mark.parametrize(
    ("scope", "text"),
    [
        ("system/Observation.c", "not within the scopes this client is registered for"),
        ("system/*.cruds", "not within the scopes this client is registered for"),
        ("system/Observation.rs?bogus=1", "not a system/ scope"),
        ("patient/Patient.rs", "not a system/ scope"),
        ("user/*.rs", "not a system/ scope"),
        ("", "scope is required"),
    ],
)
def test_scopes_beyond_registration_are_invalid_scope(live: dict[str, Any], scope: str, text: str) -> None:
    _refused(live, _form(_assertion(live), scope), 400, "invalid_scope", text)


def test_secret_client_cannot_use_an_assertion(live: dict[str, Any]) -> None:
    secret = live["secret_client"]
    assertion = _assertion(live, iss=secret, sub=secret)
    _refused(live, _form(assertion), 401, "invalid_client", "authenticates with a secret")


def test_only_backend_clients_use_client_credentials(live: dict[str, Any]) -> None:
    app_client = live["app_client"]
    assertion = _assertion(live, iss=app_client, sub=app_client)
    _refused(live, _form(assertion), 400, "unauthorized_client", "client_credentials")
    # And a backend service has no other grant.
    form = {"grant_type": "refresh_token", "refresh_token": "x", "client_assertion_type": ASSERTION_TYPE}
    _refused(live, {**form, "client_assertion": _assertion(live)}, 400, "unauthorized_client", "refresh_token")


def test_client_credentials_without_an_assertion_is_invalid_client(live: dict[str, Any]) -> None:
    bare = {"grant_type": "client_credentials", "scope": "system/*.rs"}
    _refused(live, bare, 401, "invalid_client", "client_assertion")
    wrong_type = {**_form(_assertion(live)), "client_assertion_type": "urn:example:other"}
    _refused(live, wrong_type, 401, "invalid_client", "client_assertion_type must be")
    unknown = requests.post(live["token_url"], data={"grant_type": "password"}, timeout=10)
    assert unknown.status_code == 400 and unknown.json()["error"] == "unsupported_grant_type"


def test_smart_configuration_names_backend_services(live: dict[str, Any]) -> None:
    document = requests.get(live["base"] + "/.well-known/smart-configuration", timeout=10).json()
    assert "private_key_jwt" in document["token_endpoint_auth_methods_supported"]
    assert document["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert "client_credentials" in document["grant_types_supported"]
    assert "client-confidential-asymmetric" in document["capabilities"]
    security = requests.get(live["fhir"] + "/metadata", timeout=10).json()["rest"][0]["security"]
    assert "private_key_jwt" in security["description"]
