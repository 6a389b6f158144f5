"""Bulk Data export jobs belong to the client that started them.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    with op.batch_alter_table("export_job") as batch:
        batch.add_column(sa.Column("requester", sa.String(200)))


def downgrade() -> None:
    with op.batch_alter_table("export_job") as batch:
        batch.drop_column("requester")
