"""Bearer JWTs from an external authorization server (SMART Backend Services), checked against its JWKS."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from fhir_twin.errors import ServiceUnavailable, Unauthorized
from fhir_twin.security.bearer import JwtVerifier
from fhir_twin.security.principal import Principal
from tests.factories import signed_jwt

pytestmark = pytest.mark.audited

ISSUER = "https://auth.example.org"
AUDIENCE = "https://fhir.example.org/r4"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jwks(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
    rsa_jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True) | {"kid": "rsa-1", "alg": "RS256", "use": "sig"}
    ec_jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True) | {"kid": "ec-1", "alg": "ES256", "use": "sig"}
    return {"keys": [rsa_jwk, ec_jwk]}


@pytest.fixture(scope="module")
def jwks_file(jwks: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps(jwks))
    return path


@pytest.fixture(scope="module")
def verifier(jwks_file: Path) -> JwtVerifier:
    return JwtVerifier(str(jwks_file), ISSUER, AUDIENCE)


def token(key: Any, algorithm: str = "RS256", kid: str | None = "rsa-1", **claims: Any) -> str:
    """A signed JWT with valid defaults (scope ``system/Observation.rs``); a claim given as None is left out."""
    return signed_jwt(
        key, ISSUER, AUDIENCE, algorithm=algorithm, kid=kid, **({"scope": "system/Observation.rs"} | claims)
    )


def rejection(verifier: JwtVerifier, bearer: str) -> str:
    """The diagnostics of the Unauthorized the token gets, checked not to echo the token."""
    with pytest.raises(Unauthorized) as caught:
        verifier.principal(bearer)
    message = str(caught.value)
    assert not bearer or bearer not in message
    return message


def test_rs256_token_names_the_client_scope_patient_and_user(verifier: JwtVerifier, rsa_key: Any) -> None:
    bearer = token(rsa_key, patient="123", fhirUser="Practitioner/9", sub="backend-app")
    principal = verifier.principal(bearer)
    assert principal == Principal(
        "backend-app", scope="system/Observation.rs", patient="123", user="Practitioner/9", kind="jwt"
    )
    assert [(s.level, s.resource_type, s.permissions) for s in principal.scopes] == [("system", "Observation", "rs")]


def test_es256_token_with_scp_list(verifier: JwtVerifier, ec_key: Any) -> None:
    bearer = token(ec_key, "ES256", "ec-1", scope=None, scp=["patient/Observation.rs", "patient/Patient.r"])
    principal = verifier.principal(bearer)
    assert principal.scope == "patient/Observation.rs patient/Patient.r"
    assert (principal.name, principal.patient, principal.user, principal.kind) == ("backend-app", None, None, "jwt")


@pytest.mark.parametrize(
    ("claims", "name", "user"),
    [
        ({"azp": "app-azp", "sub": "app-azp"}, "app-azp", None),
        ({"azp": "app-azp", "sub": "alice"}, "app-azp", "alice"),
        ({"sub": "app-sub"}, "app-sub", None),
        ({"client_id": "app", "sub": "alice", "fhirUser": "Practitioner/1"}, "app", "Practitioner/1"),
    ],
)
def test_name_falls_back_to_azp_then_sub(
    verifier: JwtVerifier, rsa_key: Any, claims: dict[str, str], name: str, user: str | None
) -> None:
    principal = verifier.principal(token(rsa_key, **({"client_id": None} | claims)))
    assert (principal.name, principal.user) == (name, user)


def test_token_without_a_client_is_refused(verifier: JwtVerifier, rsa_key: Any) -> None:
    assert "names no client" in rejection(verifier, token(rsa_key, client_id=None))


def test_token_without_kid_uses_the_only_key(rsa_key: Any, jwks: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"keys": jwks["keys"][:1]}))
    assert JwtVerifier(str(path), ISSUER, AUDIENCE).principal(token(rsa_key, kid=None)).name == "backend-app"


def test_token_without_kid_is_refused_when_there_are_several_keys(verifier: JwtVerifier, rsa_key: Any) -> None:
    assert "names no key id" in rejection(verifier, token(rsa_key, kid=None))


def test_expired_token(verifier: JwtVerifier, rsa_key: Any) -> None:
    assert rejection(verifier, token(rsa_key, exp=int(time.time()) - 60)) == "The bearer token has expired"


def test_expiry_has_30_seconds_leeway(verifier: JwtVerifier, rsa_key: Any) -> None:
    assert verifier.principal(token(rsa_key, exp=int(time.time()) - 10)).name == "backend-app"


def test_token_not_valid_yet(verifier: JwtVerifier, rsa_key: Any) -> None:
    assert "not valid yet" in rejection(verifier, token(rsa_key, nbf=int(time.time()) + 600))


def test_wrong_issuer(verifier: JwtVerifier, rsa_key: Any) -> None:
    message = rejection(verifier, token(rsa_key, iss="https://evil.example"))
    assert message == f"The bearer token was issued by https://evil.example, not this server's issuer {ISSUER}"


def test_wrong_audience(verifier: JwtVerifier, rsa_key: Any) -> None:
    assert "is not for this audience" in rejection(verifier, token(rsa_key, aud="https://other.example/fhir"))


@pytest.mark.parametrize("claim", ["exp", "iss", "aud"])
def test_missing_required_claim(verifier: JwtVerifier, rsa_key: Any, claim: str) -> None:
    assert rejection(verifier, token(rsa_key, **{claim: None})) == f"The bearer token has no {claim} claim"


def test_signature_by_another_key_with_the_same_kid(verifier: JwtVerifier) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert "signature is not valid" in rejection(verifier, token(impostor))


def test_hs256_token_is_refused(verifier: JwtVerifier) -> None:
    bearer = token("a shared secret that is long enough for HS256", "HS256")
    assert "uses algorithm HS256; this server accepts RS256 and ES256" in rejection(verifier, bearer)


def test_unsigned_token_is_refused(verifier: JwtVerifier) -> None:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300, "client_id": "x"}
    bearer = f"{part({'alg': 'none', 'kid': 'rsa-1'})}.{part(claims)}."
    assert "uses algorithm none" in rejection(verifier, bearer)


def test_algorithm_must_match_the_key(verifier: JwtVerifier, ec_key: Any) -> None:
    assert "does not match its key" in rejection(verifier, token(ec_key, "ES256", kid="rsa-1"))


def test_unknown_kid(verifier: JwtVerifier, rsa_key: Any) -> None:
    assert "names an unknown key id" in rejection(verifier, token(rsa_key, kid="rotated-away"))


@pytest.mark.parametrize("bearer", ["abc", "", "a.b.c", "a.b", "eyJhbGciOiJSUzI1NiJ9.!!!.sig"])
def test_malformed_token(verifier: JwtVerifier, bearer: str) -> None:
    assert rejection(verifier, bearer) == "The bearer token is not a well-formed JWT"


@pytest.mark.parametrize(
    "content",
    [None, "not json", "[]", '{"keys": []}', '{"keys": [{"kty": "nope"}]}'],
    ids=["missing", "not-json", "not-an-object", "no-keys", "no-usable-keys"],
)
def test_bad_jwks_file_fails_at_construction(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        JwtVerifier(str(path), ISSUER, AUDIENCE)


@pytest.mark.parametrize(("issuer", "audience"), [("", AUDIENCE), (ISSUER, "")])
def test_issuer_and_audience_are_required(jwks_file: Path, issuer: str, audience: str) -> None:
    with pytest.raises(ValueError, match="issuer and an audience"):
        JwtVerifier(str(jwks_file), issuer, audience)


@pytest.fixture
def jwks_server(jwks: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """A JWKS endpoint on 127.0.0.1 (``/broken`` answers HTML), and the paths it has been asked for."""
    bodies = {"/jwks": json.dumps(jwks).encode(), "/broken": b"<html>Sign in</html>"}
    requests: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            body = bodies[self.path]
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks", requests
    server.shutdown()
    server.server_close()
    thread.join()


def test_jwks_url_is_fetched_lazily_and_cached(jwks_server: tuple[str, list[str]], rsa_key: Any, ec_key: Any) -> None:
    url, requests = jwks_server
    verifier = JwtVerifier(url, ISSUER, AUDIENCE)
    assert requests == []
    assert verifier.principal(token(rsa_key)).name == "backend-app"
    assert verifier.principal(token(ec_key, "ES256", "ec-1")).name == "backend-app"
    # An unknown kid may mean rotated keys, but refetching waits out PyJWKClient's 30 s cooldown.
    assert "names an unknown key id" in rejection(verifier, token(rsa_key, kid="rotated-in"))
    assert requests == ["/jwks"]


def test_unreachable_jwks_url(rsa_key: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    verifier = JwtVerifier(f"http://127.0.0.1:{port}/jwks", ISSUER, AUDIENCE)
    assert outage(verifier, token(rsa_key)) == "The authorization server's keys could not be fetched"


def test_jwks_url_answering_something_else(jwks_server: tuple[str, list[str]], rsa_key: Any) -> None:
    url, _ = jwks_server
    verifier = JwtVerifier(url.replace("/jwks", "/broken"), ISSUER, AUDIENCE)
    assert outage(verifier, token(rsa_key)) == "The authorization server's keys could not be fetched"


def outage(verifier: JwtVerifier, bearer: str) -> str:
    """The diagnostics of the 503 a token gets when the keys cannot be fetched: the token is not
    at fault, so it is not called invalid (RFC 6750 section 3.1) and the client may retry."""
    with pytest.raises(ServiceUnavailable) as caught:
        verifier.principal(bearer)
    assert caught.value.status == 503 and caught.value.headers == {"Retry-After": "30"}
    return str(caught.value)
