"""Topic-based Subscriptions (Subscriptions Backport IG): the outbox row's notification type and
event number, and each Subscription's event count and last notification.

Revision ID: 0014
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fhir_twin.store.schema import subscription_event

revision = "0014"
down_revision = "0012"


def upgrade() -> None:
    # 0012 creates the outbox from the live schema, so a new database already has the columns.
    bind = op.get_bind()
    present = {column["name"] for column in sa.inspect(bind).get_columns("subscription_outbox")}
    missing = [column for column in ("kind", "event_number") if column not in present]
    if missing:
        with op.batch_alter_table("subscription_outbox") as batch:
            if "kind" in missing:
                batch.add_column(sa.Column("kind", sa.String(20)))
            if "event_number" in missing:
                batch.add_column(sa.Column("event_number", sa.BigInteger))
    subscription_event.create(bind)


def downgrade() -> None:
    op.drop_table("subscription_event")
    with op.batch_alter_table("subscription_outbox") as batch:
        batch.drop_column("event_number")
        batch.drop_column("kind")
