"""Authentication of the FHIR and twin APIs through HTTP: API tokens, JWTs, and auth mode none.

Failures are 401 OperationOutcomes with an RFC 6750 ``WWW-Authenticate: Bearer`` challenge; only
the CapabilityStatement and SMART discovery are open.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from flask.testing import FlaskClient
from jwt.algorithms import RSAAlgorithm

from fhir_twin.app import create_app, services_of
from fhir_twin.security import tokens
from fhir_twin.security.discovery import OAUTH_URIS
from fhir_twin.store import tokens as stored_tokens
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.repository import Repository
from tests.factories import signed_jwt

pytestmark = pytest.mark.audited

REALM = 'Bearer realm="fhir-twin"'
ISSUER = "https://as.example"
AUDIENCE = "https://fhir.example"
TOKEN_ENDPOINT = "https://as.example/token"


def repository(app: Flask) -> Repository:
    return services_of(app).interactions.repository


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def make_token(app: Flask, scope: str = "system/*.cruds", name: str = "client", **kwargs: Any) -> str:
    secret, _ = tokens.create(repository(app), name, scope, kwargs.get("patient_id"), kwargs.get("expires"))
    return secret


def assert_outcome(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code
    return body


def challenge(response: Any) -> str:
    return response.headers.get("WWW-Authenticate", "")


def assert_challenge(response: Any, error: str) -> None:
    assert_outcome(response, 401, "login")
    header = challenge(response)
    assert header.startswith(REALM + ",")
    assert f'error="{error}"' in header


@pytest.fixture
def app(make_app: Any) -> Flask:
    return make_app(auth_mode="tokens")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# --- auth mode "tokens" ------------------------------------------------------------------------


def test_a_token_made_on_another_database_is_told_where_tokens_live(client: FlaskClient, tmp_path: Path) -> None:
    """The common mistake: ``fhir-twin token create`` without the server's ``--database``."""
    engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        migrate(engine)
        secret, _ = tokens.create(Repository(engine), "elsewhere", "system/*.cruds", None, None)
    finally:
        engine.dispose()
    body = assert_outcome(client.get("/fhir/Patient", headers=bearer(secret)), 401, "login")
    diagnostics = body["issue"][0]["diagnostics"]
    assert "not known to this server" in diagnostics
    assert "--database" in diagnostics and "FHIR_TWIN_DATABASE_URL" in diagnostics


def test_no_credential_is_401_with_a_bare_challenge(client: FlaskClient) -> None:
    response = client.get("/fhir/Patient")
    body = assert_outcome(response, 401, "login")
    assert challenge(response) == REALM
    assert "Bearer" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer a b", "bearer a b"])
def test_malformed_authorization_is_invalid_request(client: FlaskClient, header: str) -> None:
    assert_challenge(client.get("/fhir/Patient", headers={"Authorization": header}), "invalid_request")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Token abc", "ftw_abc"])
def test_another_scheme_is_challenged_without_an_error_code(client: FlaskClient, header: str) -> None:
    """RFC 6750 section 3.1: no error code when the request carries no bearer token at all."""
    response = client.get("/fhir/Patient", headers={"Authorization": header})
    body = assert_outcome(response, 401, "login")
    assert challenge(response) == REALM
    assert "bearer tokens" in body["issue"][0]["diagnostics"]


def test_unknown_token_is_invalid_token(client: FlaskClient) -> None:
    for secret in ("ftw_not-a-token-this-server-made", "something-else"):
        response = client.get("/fhir/Patient", headers=bearer(secret))
        assert_challenge(response, "invalid_token")
        assert "not known" in challenge(response)
        assert secret not in response.get_data(as_text=True)
        assert secret not in challenge(response)


def test_valid_token_is_served(app: Flask, client: FlaskClient) -> None:
    secret = make_token(app)
    response = client.get("/fhir/Patient", headers=bearer(secret))
    assert response.status_code == 200
    assert response.get_json()["resourceType"] == "Bundle"
    assert "WWW-Authenticate" not in response.headers
    # The scheme is case-insensitive (RFC 7235 section 2.1).
    assert client.get("/fhir/Patient", headers={"Authorization": f"bearer {secret}"}).status_code == 200


def test_revoked_token_is_refused(app: Flask, client: FlaskClient) -> None:
    secret = make_token(app, name="ehr")
    other = make_token(app, name="lab")
    assert client.get("/fhir/Patient", headers=bearer(secret)).status_code == 200
    assert stored_tokens.revoke(repository(app), "ehr") == 1
    response = client.get("/fhir/Patient", headers=bearer(secret))
    assert_challenge(response, "invalid_token")
    assert "revoked" in challenge(response)
    # Only the token named is revoked.
    assert client.get("/fhir/Patient", headers=bearer(other)).status_code == 200


def test_expired_token_is_refused(app: Flask, client: FlaskClient) -> None:
    secret = make_token(app, expires=datetime(2000, 1, 1))
    response = client.get("/fhir/Patient", headers=bearer(secret))
    assert_challenge(response, "invalid_token")
    assert "expired" in challenge(response)


def test_token_expiring_later_is_served(app: Flask, client: FlaskClient) -> None:
    secret = make_token(app, expires=datetime(2999, 1, 1))
    assert client.get("/fhir/Patient", headers=bearer(secret)).status_code == 200


@pytest.mark.parametrize(
    "path", ["/fhir/metadata", "/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"]
)
def test_discovery_is_open(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert "WWW-Authenticate" not in response.headers


def test_capability_statement_names_smart_on_fhir(client: FlaskClient) -> None:
    body = client.get("/fhir/metadata").get_json()
    assert body["resourceType"] == "CapabilityStatement"
    security = body["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert "fhir-twin token create" in security["description"]
    # The built-in authorization server's endpoints (oauth-uris), on this server.
    uris = {item["url"]: item["valueUri"] for item in security["extension"][0]["extension"]}
    assert uris["token"] == "http://localhost/auth/token"


def test_smart_configuration_in_tokens_mode(client: FlaskClient) -> None:
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        document = client.get(path).get_json()
        assert {"permission-v1", "permission-v2", "permission-patient", "permission-user"} <= set(
            document["capabilities"]
        )
        assert "system/*.cruds" in document["scopes_supported"]
        # The built-in authorization server (tests/security/test_smart_launch.py runs its flow).
        assert document["token_endpoint"] == "http://localhost/auth/token"
        assert document["code_challenge_methods_supported"] == ["S256"]


@pytest.mark.parametrize(
    "path", ["/twin/patients/x", "/twin/models", "/twin/patients/x/series", "/twin/patients/x/series/heart_rate"]
)
def test_twin_api_needs_a_token(app: Flask, client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert_outcome(response, 401, "login")
    assert challenge(response) == REALM
    assert_challenge(client.get(path, headers=bearer("ftw_unknown")), "invalid_token")


def test_twin_models_with_a_token(app: Flask, client: FlaskClient) -> None:
    assert client.get("/twin/models", headers=bearer(make_token(app))).status_code == 200


@pytest.mark.parametrize("path", ["/fhir", "/fhir/", "/fhir/Patient/x", "/fhir/Patient/x/_history", "/fhir/_history"])
def test_every_fhir_path_needs_a_token(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert_outcome(response, 401, "login")


def test_refused_requests_change_nothing(app: Flask, client: FlaskClient) -> None:
    good = make_token(app)
    patient = {"resourceType": "Patient", "name": [{"family": "Refused"}]}
    for headers in ({}, bearer("ftw_unknown"), {"Authorization": "Basic xyz"}):
        assert client.post("/fhir/Patient", json=patient, headers=headers).status_code == 401
        assert client.put("/fhir/Patient/refused", json=patient | {"id": "refused"}, headers=headers).status_code == 401
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": patient, "request": {"method": "POST", "url": "Patient"}}],
    }
    assert client.post("/fhir", json=transaction, headers=bearer("ftw_unknown")).status_code == 401
    found = client.get("/fhir/Patient?_total=accurate", headers=bearer(good)).get_json()
    assert found["total"] == 0
    assert client.get("/fhir/Patient/refused", headers=bearer(good)).status_code == 404


def test_refused_delete_keeps_the_resource(app: Flask, client: FlaskClient) -> None:
    good = make_token(app)
    assert (
        client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=bearer(good)).status_code
        == 201
    )
    expired = make_token(app, expires=datetime(2000, 1, 1))
    assert client.delete("/fhir/Patient/p1", headers=bearer(expired)).status_code == 401
    assert client.get("/fhir/Patient/p1", headers=bearer(good)).status_code == 200


def test_token_scopes_limit_what_it_may_do(app: Flask, client: FlaskClient) -> None:
    reader = make_token(app, "system/Patient.rs")
    response = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=bearer(reader))
    body = assert_outcome(response, 403, "forbidden")
    assert body["issue"][0]["diagnostics"] == "The credential's scopes do not allow create on Patient"
    assert_outcome(client.get("/fhir/Observation", headers=bearer(reader)), 403, "forbidden")
    assert client.get("/fhir/Patient", headers=bearer(reader)).status_code == 200


# --- auth mode "jwt" ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_file(rsa_key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True) | {"kid": "rsa-1", "alg": "RS256", "use": "sig"}
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [key]}))
    return path


@pytest.fixture
def jwt_app(make_app: Any, jwks_file: Path) -> Flask:
    return make_app(auth_mode="jwt", jwks=str(jwks_file), jwt_issuer=ISSUER, jwt_audience=AUDIENCE)


def signed(key: Any, **claims: Any) -> str:
    """An RS256 JWT with valid defaults (scope ``system/*.rs``); a claim given as None is left out."""
    return signed_jwt(key, ISSUER, AUDIENCE, **({"scope": "system/*.rs"} | claims))


def seed_patients(client: FlaskClient, key: Any, *ids: str) -> None:
    writer = bearer(signed(key, scope="system/*.cruds"))
    for patient_id in ids:
        response = client.put(
            f"/fhir/Patient/{patient_id}", json={"resourceType": "Patient", "id": patient_id}, headers=writer
        )
        assert response.status_code == 201, response.get_data(as_text=True)


def test_jwt_with_read_scope_reads_but_cannot_create(jwt_app: Flask, rsa_key: Any) -> None:
    client = jwt_app.test_client()
    seed_patients(client, rsa_key, "p1")
    reader = bearer(signed(rsa_key))
    assert client.get("/fhir/Patient/p1", headers=reader).status_code == 200
    assert client.get("/fhir/Patient", headers=reader).get_json()["total"] == 1
    response = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=reader)
    body = assert_outcome(response, 403, "forbidden")
    assert "create on Patient" in body["issue"][0]["diagnostics"]
    assert client.get("/fhir/Patient", headers=reader).get_json()["total"] == 1


def test_expired_jwt_is_invalid_token(jwt_app: Flask, rsa_key: Any) -> None:
    response = jwt_app.test_client().get("/fhir/Patient", headers=bearer(signed(rsa_key, exp=int(time.time()) - 600)))
    assert_challenge(response, "invalid_token")
    assert "expired" in challenge(response)


@pytest.mark.parametrize(
    "claims",
    [{"iss": "https://evil.example"}, {"aud": "https://other.example"}, {"exp": None}],
    ids=["issuer", "audience", "no-exp"],
)
def test_jwt_failing_its_checks_is_invalid_token(jwt_app: Flask, rsa_key: Any, claims: dict[str, Any]) -> None:
    assert_challenge(
        jwt_app.test_client().get("/fhir/Patient", headers=bearer(signed(rsa_key, **claims))), "invalid_token"
    )


def test_jwt_signed_by_another_key_is_invalid_token(jwt_app: Flask) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    response = jwt_app.test_client().get("/fhir/Patient", headers=bearer(signed(impostor, scope="system/*.cruds")))
    assert_challenge(response, "invalid_token")


def unsigned_with_algorithm(algorithm: str) -> str:
    """A JWT whose unsigned header names ``algorithm``: anyone can send one."""

    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': algorithm, 'kid': 'rsa-1'})}.{part({'iss': ISSUER})}.c2ln"


def test_jwt_with_an_unaccepted_algorithm_is_invalid_token(jwt_app: Flask) -> None:
    response = jwt_app.test_client().get("/fhir/Patient", headers=bearer(unsigned_with_algorithm("none")))
    assert_challenge(response, "invalid_token")
    assert "RS256 and ES256" in challenge(response)


@pytest.mark.parametrize("algorithm", ["x\r\nSet-Cookie: a=b", "\u2603", "x\x00y"], ids=["crlf", "non-ascii", "nul"])
def test_challenge_stays_a_valid_header_whatever_the_token_says(jwt_app: Flask, algorithm: str) -> None:
    response = jwt_app.test_client().get("/fhir/Patient", headers=bearer(unsigned_with_algorithm(algorithm)))
    assert_challenge(response, "invalid_token")
    # RFC 6750 section 3: error_description holds only %x20-21 / %x23-5B / %x5D-7E.
    assert all(0x20 <= ord(char) <= 0x7E for char in challenge(response))
    assert "Set-Cookie" not in response.headers


def test_api_token_is_not_accepted_in_jwt_mode(jwt_app: Flask) -> None:
    secret = make_token(jwt_app)
    assert_challenge(jwt_app.test_client().get("/fhir/Patient", headers=bearer(secret)), "invalid_token")


def test_jwt_with_a_patient_reads_only_that_patient(jwt_app: Flask, rsa_key: Any) -> None:
    client = jwt_app.test_client()
    seed_patients(client, rsa_key, "p1", "p2")
    patient = bearer(signed(rsa_key, scope="patient/*.rs", patient="p1"))
    assert client.get("/fhir/Patient/p1", headers=patient).get_json()["id"] == "p1"
    # Another patient's record answers as if it did not exist.
    other = client.get("/fhir/Patient/p2", headers=patient)
    assert_outcome(other, 404, "not-found")
    missing = client.get("/fhir/Patient/p3", headers=patient)
    assert_outcome(missing, 404, "not-found")
    found = client.get("/fhir/Patient", headers=patient).get_json()
    assert [entry["resource"]["id"] for entry in found.get("entry", [])] == ["p1"]
    # Its twin too.
    assert_outcome(client.get("/twin/patients/p2", headers=patient), 404, "not-found")
    # A patient scope without the patient claim grants nothing.
    nobody = bearer(signed(rsa_key, scope="patient/*.rs"))
    assert_outcome(client.get("/fhir/Patient/p1", headers=nobody), 403, "forbidden")


def test_jwt_with_a_narrowed_scope_reads_what_its_search_matches(jwt_app: Flask, rsa_key: Any) -> None:
    client = jwt_app.test_client()
    writer = bearer(signed(rsa_key, scope="system/*.cruds"))
    for patient_id, gender in (("p1", "female"), ("p2", "male")):
        patient = {"resourceType": "Patient", "id": patient_id, "gender": gender}
        assert client.put(f"/fhir/Patient/{patient_id}", json=patient, headers=writer).status_code == 201
    women = bearer(signed(rsa_key, scope="openid user/Patient.rs?gender=female"))
    found = client.get("/fhir/Patient", headers=women).get_json()
    assert [entry["resource"]["id"] for entry in found.get("entry", [])] == ["p1"]
    assert_outcome(client.get("/fhir/Patient/p2", headers=women), 404, "not-found")
    # One the server cannot honour exactly grants nothing.
    unknown = bearer(signed(rsa_key, scope="user/Patient.rs?nonsense=1"))
    assert_outcome(client.get("/fhir/Patient/p1", headers=unknown), 403, "forbidden")


def test_smart_configuration_in_jwt_mode(make_app: Any, jwks_file: Path) -> None:
    app = make_app(
        auth_mode="jwt",
        jwks=str(jwks_file),
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
        smart_token_endpoint=TOKEN_ENDPOINT,
    )
    client = app.test_client()
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        response = client.get(path)
        assert response.status_code == 200
        document = response.get_json()
        assert document["issuer"] == ISSUER
        assert document["token_endpoint"] == TOKEN_ENDPOINT
        assert "client_credentials" in document["grant_types_supported"]
        # A JWKS file is not published as a jwks_uri.
        assert "jwks_uri" not in document
    security = client.get("/fhir/metadata").get_json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    assert security["extension"] == [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": TOKEN_ENDPOINT}]}]


def test_smart_configuration_in_jwt_mode_without_a_token_endpoint(jwt_app: Flask) -> None:
    document = jwt_app.test_client().get("/.well-known/smart-configuration").get_json()
    assert document["issuer"] == ISSUER
    assert "token_endpoint" not in document
    assert "extension" not in jwt_app.test_client().get("/fhir/metadata").get_json()["rest"][0]["security"]


# --- auth mode "none", and a mode that does not exist ------------------------------------------


def test_auth_mode_none_warns_and_serves_without_a_token(make_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        app = make_app(auth_mode="none")
    warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert any("AUTHENTICATION IS OFF" in record.getMessage() for record in warnings)
    client = app.test_client()
    assert client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"}).status_code == 201
    assert client.get("/fhir/Patient/p1").status_code == 200
    assert client.get("/twin/models").status_code == 200
    assert (
        client.get("/fhir/metadata")
        .get_json()["rest"][0]["security"]["description"]
        .startswith("Authentication is switched off")
    )


def test_auth_mode_tokens_does_not_warn(make_app: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        make_app(auth_mode="tokens")
    assert not any("AUTHENTICATION IS OFF" in record.getMessage() for record in caplog.records)


def test_unknown_auth_mode_is_refused(tmp_path: Path) -> None:
    # The mode is checked before any database is opened, so nothing is left to close.
    with pytest.raises(ValueError, match="auth_mode must be one of tokens, jwt, none, not 'basic'"):
        create_app({"database_url": f"sqlite:///{tmp_path / 'unused.db'}", "auth_mode": "basic"})
