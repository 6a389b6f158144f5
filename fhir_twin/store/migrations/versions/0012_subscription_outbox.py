"""The Subscription outbox: notifications owed, written in the transaction of the write that
matched, so a committed write is never left unnotified.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from fhir_twin.store.schema import subscription_outbox

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    subscription_outbox.create(op.get_bind())


def downgrade() -> None:
    op.drop_table("subscription_outbox")
