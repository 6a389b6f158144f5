"""A stored version of a resource, and the join that finds each resource's current one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_

from fhir_twin.store.schema import resource, resource_version


@dataclass(frozen=True)
class Version:
    """One stored version of a resource; ``body`` is None for a delete.

    ``method`` and ``status`` are the HTTP method that wrote it and the status it was answered
    with, which history entries report (R4 bundle.html#BundleEntryResponse).
    """

    res_type: str
    res_id: str
    version: int
    last_updated: datetime
    method: str
    status: int
    body: str | None
    seq: int = 0

    @property
    def deleted(self) -> bool:
        return self.body is None


def columns(table: Any) -> list[Any]:
    """The columns a ``Version`` is built from, in its field order."""
    c = table.c
    return [c.res_type, c.res_id, c.version, c.last_updated, c.method, c.status, c.body, c.seq]


# Each resource joined to its current version.
CURRENT = resource.join(
    resource_version,
    and_(
        resource_version.c.res_type == resource.c.res_type,
        resource_version.c.res_id == resource.c.res_id,
        resource_version.c.version == resource.c.version,
    ),
)
