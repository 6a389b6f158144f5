"""Who may call the CDS Hooks service: the server's own credentials with the scopes to read the
patient, and registered CDS clients signing each call as CDS Hooks 2.0 describes ("Trusting CDS
Clients": iss, aud = the service's URL, exp, iat, jti, kid; keys by jku from the allow list)."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask
from jwt.algorithms import RSAAlgorithm

from fhir_twin.app import services_of
from tests.api.test_cds_hooks_fhir_server import FakeFhir, observations
from tests.factories import Server
from tests.live_server import LiveServer
from tests.ml.doctor_data import NEWS2_VECTORS, ago, news2_set, patient

SERVICE = "/cds-services/fhir-twin-patient-view"
SERVICE_URL = "http://localhost" + SERVICE
EHR = "https://ehr.example.org"
HIGH = NEWS2_VECTORS[3][0]


def hook_request(patient_id: str = "p1") -> dict[str, Any]:
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()), "context": {"patientId": patient_id}}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url(key: rsa.RSAPrivateKey) -> Iterator[str]:
    """The CDS client's JWK Set, served over HTTP by a local server."""
    document = json.dumps(
        {"keys": [RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "ehr-1", "alg": "RS256", "use": "sig"}]}
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/jwks.json" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(make_app: Callable[..., Flask], jwks_url: str) -> Server:
    app = make_app(auth_mode="tokens", doctor=False, cds_clients=json.dumps({EHR: jwks_url}))
    found = Server(app)
    found.put(patient("p1"))
    found.put(patient("p2"))
    for resource in news2_set("p1", HIGH, ago(minutes=10), ids="p1"):
        found.put(resource)
    return found


def signed(key: Any, headers: dict[str, Any] | None = None, **claims: Any) -> dict[str, str]:
    """The Authorization header of a CDS client's JWT for this service; a claim given as None is left out."""
    issued = int(time.time())
    payload = {"iss": EHR, "aud": SERVICE_URL, "iat": issued, "exp": issued + 300, "jti": str(uuid.uuid4())} | claims
    token = jwt.encode(
        {k: v for k, v in payload.items() if v is not None},
        key,
        algorithm="RS256",
        headers={"kid": "ehr-1"} | (headers or {}),
    )
    return {"Authorization": f"Bearer {token}"}


def test_discovery_needs_no_credential(server: Server) -> None:
    assert server.client.get("/cds-services").status_code == 200


def test_a_call_without_a_credential_is_401(server: Server) -> None:
    response = server.client.post(SERVICE, json=hook_request())
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_api_token_that_reads_the_patient_is_answered(server: Server) -> None:
    response = server.client.post(SERVICE, json=hook_request(), headers=server.token("user/*.rs"))
    assert response.status_code == 200
    assert response.get_json()["cards"][0]["indicator"] == "critical"


def test_a_token_without_the_scopes_to_read_the_twin_is_403(server: Server) -> None:
    response = server.client.post(SERVICE, json=hook_request(), headers=server.token("system/Observation.rs"))
    assert response.status_code == 403


def test_a_patient_token_reads_its_patient_only(server: Server) -> None:
    own = server.token("patient/*.rs", "p1")
    assert server.client.post(SERVICE, json=hook_request("p1"), headers=own).status_code == 200
    # Another patient is refused as the Guard refuses it everywhere: as a patient it cannot see (404).
    other = server.client.post(SERVICE, json=hook_request("p2"), headers=own)
    assert other.status_code == 404
    assert "cards" not in other.get_json()


def test_a_registered_cds_clients_jwt_is_accepted(server: Server, key: Any) -> None:
    response = server.client.post(SERVICE, json=hook_request(), headers=signed(key))
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["cards"][0]["summary"].startswith("NEWS2 10")


def test_a_jku_on_the_allow_list_is_accepted(server: Server, key: Any, jwks_url: str) -> None:
    response = server.client.post(SERVICE, json=hook_request(), headers=signed(key, {"jku": jwks_url}))
    assert response.status_code == 200, response.get_json()


@pytest.mark.parametrize(
    ("headers", "claims", "says"),
    [
        (None, {"aud": "https://elsewhere.example/cds-services/fhir-twin-patient-view"}, "audience"),
        ({"jku": "https://attacker.example/jwks.json"}, {}, "jku"),
        (None, {"iat": int(time.time()) - 900, "exp": int(time.time()) - 600}, "expired"),
        (None, {"jti": None}, "jti"),
        (None, {"exp": int(time.time()) + 3600}, "5 minutes"),
    ],
)
def test_a_cds_clients_jwt_that_fails_a_check_is_401(
    server: Server, key: Any, headers: dict[str, Any] | None, claims: dict[str, Any], says: str
) -> None:
    response = server.client.post(SERVICE, json=hook_request(), headers=signed(key, headers, **claims))
    assert response.status_code == 401
    assert says in response.get_json()["issue"][0]["diagnostics"]


def test_a_replayed_jti_is_401(server: Server, key: Any) -> None:
    once = signed(key)
    assert server.client.post(SERVICE, json=hook_request(), headers=once).status_code == 200
    replay = server.client.post(SERVICE, json=hook_request(), headers=once)
    assert replay.status_code == 401
    assert "used before" in replay.get_json()["issue"][0]["diagnostics"]


def test_a_jwt_signed_by_another_key_is_401(server: Server) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert server.client.post(SERVICE, json=hook_request(), headers=signed(stranger)).status_code == 401


@pytest.mark.audited
def test_a_cds_client_refused_is_audited(server: Server, key: Any) -> None:
    server.client.post(SERVICE, json=hook_request(), headers=signed(key, aud="https://elsewhere.example"))
    services_of(server.app).recorder.flush()
    events = server.read("AuditEvent?outcome=4&_count=100").get_json().get("entry", [])
    assert any(coding.get("code") == "cds-hooks" for entry in events for coding in entry["resource"].get("subtype", []))


def test_a_jti_replayed_to_another_server_process_is_401(
    server: Server, database_url: str, key: Any, jwks_url: str
) -> None:
    """Two server processes on one database (which ``server`` filled): a JWT used at one is refused at the other."""
    first, second = (LiveServer(database_url, cds_clients=json.dumps({EHR: jwks_url})).launch() for _ in range(2))
    try:
        first.wait_ready()
        second.wait_ready()
        services = [server.base.removesuffix("/fhir") + SERVICE for server in (first, second)]
        body = json.dumps(hook_request()).encode()
        headers = signed(key, aud=services)
        answers = []
        for url in services:
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, body, headers | {"Content-Type": "application/json"}), timeout=30
                ) as answer:
                    answers.append(answer.status)
            except urllib.error.HTTPError as error:
                answers.append(error.code)
                assert "used before" in json.loads(error.read())["issue"][0]["diagnostics"]
        assert answers == [200, 401]
    finally:
        first.stop()
        second.stop()


def test_a_registered_clients_own_fhir_server_is_read_for_it_alone(
    make_app: Callable[..., Flask], jwks_url: str, key: Any
) -> None:
    fake = FakeFhir(observations())
    try:
        clients = {EHR: {"jwks": jwks_url, "fhirServers": [fake.base]}}
        app = make_app(auth_mode="tokens", doctor=False, cds_clients=json.dumps(clients))
        client = Server(app).client
        response = client.post(SERVICE, json=hook_request() | {"fhirServer": fake.base}, headers=signed(key))
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["cards"][0]["summary"].startswith("NEWS2 10")
        # An API token of this server may not have that server read.
        token = Server(app).token("system/*.rs")
        other = client.post(SERVICE, json=hook_request() | {"fhirServer": fake.base}, headers=token)
        assert other.status_code == 400
        assert other.get_json()["issue"][0]["expression"] == ["fhirServer"]
    finally:
        fake.close()
