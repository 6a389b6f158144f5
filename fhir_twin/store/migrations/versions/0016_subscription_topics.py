"""Topic-based Subscriptions (Subscriptions Backport IG): the outbox row's notification type and
event number, and each Subscription's event count and last notification.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    with op.batch_alter_table("subscription_outbox") as batch:
        batch.add_column(sa.Column("kind", sa.String(20)))
        batch.add_column(sa.Column("event_number", sa.BigInteger))
    # The table as it is at this revision.
    op.create_table(
        "subscription_event",
        sa.Column("subscription_id", sa.String(64), primary_key=True),
        sa.Column("events", sa.BigInteger, nullable=False, default=0),
        sa.Column("last_sent", sa.DateTime(timezone=False), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("subscription_event")
    with op.batch_alter_table("subscription_outbox") as batch:
        batch.drop_column("event_number")
        batch.drop_column("kind")
