"""The Digital Doctor: its work queue, what each model last assessed, and the model registry.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

Sequence64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "doctor_queue",
        sa.Column("seq", Sequence64, primary_key=True, autoincrement=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("enqueued", sa.DateTime(timezone=False), nullable=False),
        sa.Column("claimed_by", sa.String(128)),
        sa.Column("claimed_at", sa.DateTime(timezone=False)),
    )
    op.create_index("ix_doctor_queue_claim", "doctor_queue", ["claimed_by", "seq"])
    op.create_table(
        "doctor_last",
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("assessment_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "model_id", name="pk_doctor_last"),
    )
    op.create_table(
        "model_version",
        sa.Column("model_id", sa.String(64), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("created", sa.DateTime(timezone=False), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("artifact", sa.LargeBinary, nullable=False),
        sa.Column("report", sa.Text, nullable=False),
        sa.Column("card", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("model_id", "version", name="pk_model_version"),
    )


def downgrade() -> None:
    op.drop_table("model_version")
    op.drop_table("doctor_last")
    op.drop_table("doctor_queue")
