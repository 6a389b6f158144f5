"""The audit trail's own search index: a row per AuditEvent and per entity it names, in place
of its rows in the generic index tables (store.audit_index).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

from fhir_twin.search.extract import extract
from fhir_twin.store import audit_index
from fhir_twin.store.indexing import replace_index
from fhir_twin.store.schema import INDEX_TABLES, audit_entity, audit_record, resource, resource_version

revision = "0008"
down_revision = "0007"
BATCH = 1000


def _stored() -> sa.Select[str]:
    """The bodies of the live AuditEvents."""
    return (
        sa.select(resource_version.c.body)
        .select_from(
            resource_version.join(
                resource,
                sa.and_(
                    resource.c.res_type == resource_version.c.res_type,
                    resource.c.res_id == resource_version.c.res_id,
                    resource.c.version == resource_version.c.version,
                ),
            )
        )
        .where(resource.c.res_type == "AuditEvent", resource.c.deleted.is_(False))
        .order_by(resource.c.res_id)
    )


def upgrade() -> None:
    bind = op.get_bind()
    audit_record.create(bind)
    audit_entity.create(bind)
    # Index the AuditEvents stored so far in the new tables, then drop their generic rows.
    batch: list[dict[str, Any]] = []
    for (body,) in bind.execute(_stored()).all():
        batch.append(json.loads(body))
        if len(batch) >= BATCH:
            audit_index.rewrite(bind, batch)
            batch = []
    if batch:
        audit_index.rewrite(bind, batch)
    for table in INDEX_TABLES:
        bind.execute(sa.delete(table).where(table.c.res_type == "AuditEvent"))


def downgrade() -> None:
    bind = op.get_bind()
    # Back in the generic index tables, as revision 0007 keeps them.
    for (body,) in bind.execute(_stored()).all():
        event = json.loads(body)
        replace_index(bind, "AuditEvent", event["id"], extract(event), fresh=True)
    op.drop_table("audit_entity")
    op.drop_table("audit_record")
