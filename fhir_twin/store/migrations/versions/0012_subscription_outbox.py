"""The Subscription outbox: notifications owed, written in the transaction of the write that
matched, so a committed write is never left unnotified.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fhir_twin.store.schema import Sequence64

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    # The table as it was at this revision (later ones change it: 0013 adds ``channel``).
    op.create_table(
        "subscription_outbox",
        sa.Column("seq", Sequence64, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.String(64), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("enqueued", sa.DateTime(timezone=False), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, default=0),
        sa.Column("due", sa.DateTime(timezone=False), nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_at", sa.DateTime(timezone=False)),
        sa.Index("ix_subscription_outbox_subscription", "subscription_id", "seq"),
    )


def downgrade() -> None:
    op.drop_table("subscription_outbox")
