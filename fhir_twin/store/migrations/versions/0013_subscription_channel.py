"""The channel type of each notification owed, so websocket notifications are claimed only by
the process holding a socket bound to their Subscription, and rest-hook ones by any.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    with op.batch_alter_table("subscription_outbox") as batch:
        batch.add_column(sa.Column("channel", sa.String(16), nullable=False, server_default="rest-hook"))


def downgrade() -> None:
    with op.batch_alter_table("subscription_outbox") as batch:
        batch.drop_column("channel")
