"""The ``cds_clients`` setting: the CDS clients registered to sign their calls (CDS Hooks 2.0
"Trusting CDS Clients"), each by its issuer, with the JWK Set its JWTs' ``jku`` may name and the
FHIR servers it may send as ``fhirServer``. Read without PyJWT, which only a check of a JWT loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Registration:
    """A registered CDS client: its JWK Set's URL and the FHIR servers it may send as ``fhirServer``."""

    jwks: str
    fhir_servers: frozenset[str] = frozenset()


_SHAPE = (
    "cds_clients must be a JSON object of issuer to JWKS URL (http or https), or to "
    '{"jwks": URL, "fhirServers": [base URL, ...]}'
)


def parse_clients(setting: str) -> dict[str, Registration]:
    """The ``cds_clients`` setting, a JSON object of issuer → JWKS URL or → ``{"jwks", "fhirServers"}``;
    a ValueError naming what is wrong."""
    if not setting.strip():
        return {}
    try:
        clients = json.loads(setting)
    except ValueError as error:
        raise ValueError(f"cds_clients must be a JSON object of issuer to JWKS URL: {error}") from None
    if not isinstance(clients, dict):
        raise ValueError(_SHAPE)
    return {str(issuer): _registration(str(issuer), value) for issuer, value in clients.items()}


def _registration(issuer: str, value: Any) -> Registration:
    if isinstance(value, str):
        value = {"jwks": value}
    if not isinstance(value, dict) or set(value) - {"jwks", "fhirServers"} or not _is_url(value.get("jwks")):
        raise ValueError(f"{_SHAPE}; {issuer!r} is not")
    servers = value.get("fhirServers", [])
    if not isinstance(servers, list) or not all(_is_url(server) for server in servers):
        raise ValueError(f"cds_clients: {issuer!r}'s fhirServers must be a list of http or https base URLs")
    return Registration(value["jwks"], frozenset(server.rstrip("/") for server in servers))


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))
