"""The audit trail's own search index: a row per AuditEvent and per entity it names, in place
of its rows in the generic index tables (store.audit_index).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

from fhir_twin.store import audit_index
from fhir_twin.store.schema import INDEX_TABLES, audit_entity, audit_record, resource, resource_version

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None
BATCH = 1000


def upgrade() -> None:
    bind = op.get_bind()
    audit_record.create(bind)
    audit_entity.create(bind)
    # Index the AuditEvents stored so far in the new tables, then drop their generic rows.
    stored = (
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
    batch: list[dict[str, object]] = []
    for (body,) in bind.execute(stored):
        batch.append(json.loads(body))
        if len(batch) >= BATCH:
            audit_index.rewrite(bind, batch)
            batch = []
    if batch:
        audit_index.rewrite(bind, batch)
    for table in INDEX_TABLES:
        bind.execute(sa.delete(table).where(table.c.res_type == "AuditEvent"))


def downgrade() -> None:
    op.drop_table("audit_entity")
    op.drop_table("audit_record")
