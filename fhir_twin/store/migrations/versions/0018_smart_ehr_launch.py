"""SMART EHR launch contexts, used OpenID nonces, failed sign-ins, and who a SMART token acts for.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"


def upgrade() -> None:
    # The tables as they are at this revision, not the live schema's.
    op.create_table(
        "oauth_launch",
        sa.Column("launch_hash", sa.String(64), primary_key=True),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("encounter_id", sa.String(64)),
        sa.Column("created", sa.DateTime(timezone=False), nullable=False),
        sa.Column("expires", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_table(
        "oauth_nonce",
        sa.Column("client_id", sa.String(64), primary_key=True),
        sa.Column("nonce", sa.String(256), primary_key=True),
        sa.Column("expires", sa.DateTime(timezone=False), nullable=False),
    )
    op.create_table(
        "oauth_sign_in_failure",
        sa.Column("subject", sa.String(200), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("last", sa.DateTime(timezone=False), nullable=False),
    )
    op.add_column("oauth_client", sa.Column("launch_uri", sa.Text))
    op.add_column("oauth_code", sa.Column("launch_context", sa.Text))
    op.add_column("oauth_grant", sa.Column("launch_context", sa.Text))
    op.add_column("api_token", sa.Column("acting_user", sa.String(200)))


def downgrade() -> None:
    op.drop_column("api_token", "acting_user")
    op.drop_column("oauth_grant", "launch_context")
    op.drop_column("oauth_code", "launch_context")
    op.drop_column("oauth_client", "launch_uri")
    for table in ("oauth_sign_in_failure", "oauth_nonce", "oauth_launch"):
        op.drop_table(table)
