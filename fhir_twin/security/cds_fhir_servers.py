"""Which FHIR servers the CDS Hooks service may read a call's data from (``fhirServer``, CDS Hooks
2.0 "Providing FHIR Resources to a CDS Service"), with the call's ``fhirAuthorization`` token.

Reading a server the caller names is a request this server sends, with a token, where the caller
chooses: left open, any credential would make this server probe hosts it can reach and others
cannot (server-side request forgery). So only the base URLs of the ``cds_fhir_servers`` setting
are read, and those a registered CDS client lists as its own (``cds_clients``' ``fhirServers``),
for that client's calls; with neither, only this server's own store (``fhirServer`` absent or this
server). That the token travels only over https is checked with the request's shape.
"""

from __future__ import annotations

from fhir_twin.errors import Invalid
from fhir_twin.security.cds_registration import Registration
from fhir_twin.security.principal import Principal


def parse_servers(setting: str) -> frozenset[str]:
    """The ``cds_fhir_servers`` setting: comma-separated base URLs; a ValueError naming what is wrong."""
    servers = frozenset(server.strip().rstrip("/") for server in setting.split(",") if server.strip())
    for server in servers:
        if not server.startswith(("https://", "http://")):
            raise ValueError(f"cds_fhir_servers must list http or https base URLs, not {server!r}")
    return servers


class CdsFhirServers:
    """The FHIR servers the service may read: the setting's, and each registered client's own."""

    def __init__(self, servers: frozenset[str], clients: dict[str, Registration]) -> None:
        self.servers = servers
        self.clients = clients

    def check(self, server: str, principal: Principal) -> None:
        """A 400 naming ``fhirServer`` unless the call's caller may have ``server`` read."""
        base = server.rstrip("/")
        own = self.clients.get(principal.name) if principal.kind == "cds-client" else None
        if base in self.servers or (own is not None and base in own.fhir_servers):
            return
        raise Invalid.at(
            "fhirServer",
            f"This service does not read the FHIR server {server[:200]}: only this server's own store and the "
            "servers of the cds_fhir_servers setting (or a registered CDS client's fhirServers in cds_clients)",
        )
