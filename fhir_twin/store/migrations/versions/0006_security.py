"""Security and audit: API tokens (hashed) and the audit trail's hash chain.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"

Sequence64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_token",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("created", sa.DateTime(timezone=False), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=False)),
        sa.Column("revoked", sa.DateTime(timezone=False)),
    )
    op.create_table(
        "audit_chain",
        sa.Column("seq", Sequence64, primary_key=True, autoincrement=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("link", sa.String(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_chain")
    op.drop_table("api_token")
