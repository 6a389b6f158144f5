"""Model versions are activated deliberately: who activated one, when and why; and the identity keys of
the patients a version was trained on, so an evaluation can refuse to call that data external.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("model_version") as batch:
        batch.add_column(sa.Column("activated", sa.DateTime(timezone=False)))
        batch.add_column(sa.Column("activated_by", sa.String(200)))
        batch.add_column(sa.Column("activation_reason", sa.Text))
        batch.add_column(sa.Column("training_keys", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("model_version") as batch:
        for name in ("training_keys", "activation_reason", "activated_by", "activated"):
            batch.drop_column(name)
