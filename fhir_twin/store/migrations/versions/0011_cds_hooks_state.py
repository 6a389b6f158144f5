"""What the CDS Hooks service shares between server processes: the CDS client JWT ids seen (a
replay is refused by any process), and the cards issued (their feedback names the patient).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

from fhir_twin.store.schema import cds_card, cds_jti

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    bind = op.get_bind()
    cds_jti.create(bind)
    cds_card.create(bind)


def downgrade() -> None:
    op.drop_table("cds_card")
    op.drop_table("cds_jti")
