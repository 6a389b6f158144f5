"""``fhir-twin client create --jwks FILE [--backend]``: private_key_jwt clients and backend services
are registered with a public JWK Set, checked before anything is stored; every fault is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from joserfc.jwk import ECKey, RSAKey

from fhir_twin import cli
from fhir_twin.store import oauth
from fhir_twin.store.database import make_engine
from fhir_twin.store.repository import Repository

RSA = RSAKey.generate_key(2048, private=True, parameters={"kid": "r1"})
EC = ECKey.generate_key("P-384", private=True, parameters={"kid": "e1"})


def _create(database_url: str, tmp_path: Path, jwks: Any, *args: str) -> Result:
    path = tmp_path / "jwks.json"
    path.write_text(jwks if isinstance(jwks, str) else json.dumps(jwks))
    return CliRunner().invoke(
        cli.main, ["client", "create", "--name", "Svc", "--jwks", str(path), *args, "--database", database_url]
    )


def _stored(database_url: str) -> list[oauth.StoredClient]:
    engine = make_engine(database_url)
    try:
        return oauth.clients(Repository(engine))
    finally:
        engine.dispose()


def test_backend_service_is_stored_with_its_public_keys(database_url: str, tmp_path: Path) -> None:
    keys = {"keys": [RSA.as_dict(private=False), EC.as_dict(private=False)]}
    result = _create(database_url, tmp_path, keys, "--backend", "--scopes", "system/*.rs")
    assert result.exit_code == 0, result.output
    assert "client_secret" not in result.output
    client_id = result.output.split("client_id: ")[1].split()[0]
    stored = next(item for item in _stored(database_url) if item.client_id == client_id)
    assert json.loads(stored.jwks or "") == keys and stored.secret_hash is None and stored.redirect_uris == ""


def _public(key: RSAKey | ECKey, **changes: Any) -> dict[str, Any]:
    return {**key.as_dict(private=False), "kid": key.kid, **changes}


@pytest.mark.parametrize(
    ("jwks", "text"),
    [
        ("{not json", "not JSON"),
        ({"keys": []}, "non-empty"),
        ([1], "non-empty"),
        ({"keys": ["x"]}, "each key of the JWK Set is a JSON object"),
        ({"keys": [_public(RSA, kid=None)]}, "each key needs a kid"),
        ({"keys": [_public(RSA), _public(RSA)]}, "two keys have the kid 'r1'"),
        ({"keys": [RSA.as_dict(private=True)]}, "holds a private key"),
        ({"keys": [_public(RSA, kty="oct")]}, "kty 'oct'"),
        ({"keys": [ECKey.generate_key("P-256", parameters={"kid": "e"}).as_dict(private=False)]}, "P-384"),
        ({"keys": [_public(RSA, n="AQAB")]}, "fewer than 2048 bits"),
        ({"keys": [_public(EC, x="AQAB")]}, "not a valid EC key"),
    ],
)
def test_faulty_key_sets_are_refused(database_url: str, tmp_path: Path, jwks: Any, text: str) -> None:
    before = len(_stored(database_url))
    result = _create(database_url, tmp_path, jwks, "--backend", "--scopes", "system/*.rs")
    assert result.exit_code == 2 and text in result.output, result.output
    assert "--jwks" in result.output
    assert len(_stored(database_url)) == before


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--backend", "--scopes", "patient/*.rs"], "system/ scopes only"),
        (["--backend", "--scopes", "system/*.rs", "--redirect-uri", "https://a.example/cb"], "no redirect URI"),
        (["--scopes", "patient/*.rs"], "give --redirect-uri"),
        (["--scopes", "patient/*.rs", "--redirect-uri", "https://a.example/cb", "--confidential"], "leave out"),
    ],
)
def test_backend_rules_are_enforced(database_url: str, tmp_path: Path, args: list[str], text: str) -> None:
    before = len(_stored(database_url))
    result = _create(database_url, tmp_path, {"keys": [_public(RSA)]}, *args)
    assert result.exit_code == 2 and text in result.output, result.output
    assert len(_stored(database_url)) == before


def test_backend_needs_a_key_set(database_url: str) -> None:
    args = ["client", "create", "--name", "S", "--backend", "--scopes", "system/*.rs", "--database", database_url]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 2 and "needs --jwks" in result.output
