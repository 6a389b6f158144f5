"""The SMART App Launch authorization server: clients, users, authorization codes, grants.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    # The tables as they are at this revision, not the live schema's.
    op.create_table(
        "oauth_client",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_hash", sa.String(64)),
        sa.Column("redirect_uris", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("created", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_table(
        "oauth_user",
        sa.Column("username", sa.String(128), primary_key=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("fhir_user", sa.String(200)),
        sa.Column("created", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_table(
        "oauth_code",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("nonce", sa.String(256)),
        sa.Column("code_challenge", sa.String(128), nullable=False),
        sa.Column("code_challenge_method", sa.String(8), nullable=False),
        sa.Column("auth_time", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_table(
        "oauth_grant",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("patient_id", sa.String(64)),
        sa.Column("refresh_hash", sa.String(64), unique=True),
        sa.Column("issued", sa.DateTime(timezone=False), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=False), nullable=False),
        sa.Column("refresh_expires", sa.DateTime(timezone=False)),
        sa.Column("revoked", sa.DateTime(timezone=False)),
    )


def downgrade() -> None:
    for table in ("oauth_grant", "oauth_code", "oauth_user", "oauth_client"):
        op.drop_table(table)
