"""SMART clients that authenticate with private_key_jwt: the public JWK Set each registered.

Revision ID: 0019
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"


def upgrade() -> None:
    with op.batch_alter_table("oauth_client") as batch:
        batch.add_column(sa.Column("jwks", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("oauth_client") as batch:
        batch.drop_column("jwks")
