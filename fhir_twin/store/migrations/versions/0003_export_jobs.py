"""Bulk Data export jobs and their output files.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.create_table(
        "export_job",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("types", sa.Text),
        sa.Column("since", sa.DateTime(timezone=False)),
        sa.Column("request_url", sa.Text, nullable=False),
        sa.Column("transaction_time", sa.DateTime(timezone=False), nullable=False),
        sa.Column("owner", sa.String(128)),
        sa.Column("heartbeat", sa.DateTime(timezone=False)),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cursor_type", sa.String(64)),
        sa.Column("cursor_id", sa.String(64)),
        sa.Column("file_no", sa.Integer, nullable=False),
        sa.Column("file_count", sa.Integer, nullable=False),
        sa.Column("exported", sa.Integer, nullable=False),
        sa.Column("total", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("finished", sa.DateTime(timezone=False)),
        sa.PrimaryKeyConstraint("id", name="pk_export_job"),
    )
    op.create_index("ix_export_job_status", "export_job", ["status", "heartbeat"])
    op.create_table(
        "export_file",
        sa.Column("job_id", sa.String(64), nullable=False),
        sa.Column("file_no", sa.Integer, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("job_id", "file_no", "position", name="pk_export_file"),
    )


def downgrade() -> None:
    op.drop_table("export_file")
    op.drop_table("export_job")
