"""The CodeSystems and ValueSets clients stored, found by ``url`` for ``fhir_twin.terminology``,
which prefers them to the packaged R4 definitions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from fhir_twin.fhir.json import loads
from fhir_twin.store.schema import idx_uri, resource, resource_version
from fhir_twin.store.version import CURRENT
from fhir_twin.terminology.definitions import Definitions


def definitions(connection: Connection) -> Definitions:
    """Definitions that read the stored resources through ``connection``, newest first."""

    def stored(kind: str, url: str) -> list[dict[str, Any]]:
        by_url = idx_uri.alias()
        statement = (
            select(resource_version.c.body)
            .select_from(CURRENT)
            .where(
                resource.c.res_type == kind,
                resource.c.deleted.is_(False),
                resource.c.res_id.in_(
                    select(by_url.c.res_id).where(
                        by_url.c.res_type == kind, by_url.c.param == "url", by_url.c.uri == url
                    )
                ),
            )
            .order_by(resource_version.c.last_updated.desc())
        )
        return [loads(body) for body in connection.execute(statement).scalars()]

    return Definitions(stored)
