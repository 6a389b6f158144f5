"""Device windows' readings held in the database until the window is written, instead of in
unacknowledged MQTT messages.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from fhir_twin.store.schema import Sequence64

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    # The table as it was at this revision, not the live schema's, so a later column is a later migration.
    op.create_table(
        "device_window_reading",
        sa.Column("seq", Sequence64, primary_key=True, autoincrement=True),
        sa.Column("window", sa.String(36), nullable=False),
        sa.Column("device_id", sa.String(200), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("code", sa.String(300), nullable=False),
        sa.Column("unit", sa.String(64), nullable=False),
        sa.Column("grouping", sa.String(16), nullable=False),
        sa.Column("period", sa.Integer),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("end", sa.BigInteger, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("number", sa.Float, nullable=False),
        sa.Column("patient", sa.String(200), nullable=False),
        sa.Column("device", sa.String(200), nullable=False),
        sa.Column("due", sa.DateTime(timezone=False), nullable=False),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_at", sa.DateTime(timezone=False)),
        sa.UniqueConstraint("window", "at", name="uq_device_window_reading"),
    )
    op.create_index("ix_device_window_reading_due", "device_window_reading", ["due"])


def downgrade() -> None:
    op.drop_table("device_window_reading")
