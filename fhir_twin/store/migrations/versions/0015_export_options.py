"""Bulk Data export jobs keep what narrows them: Group members, ``_typeFilter``, ``_elements``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-14
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    with op.batch_alter_table("export_job") as batch:
        batch.add_column(sa.Column("options", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("export_job") as batch:
        batch.drop_column("options")
