"""Device windows' readings held in the database until the window is written, instead of in
unacknowledged MQTT messages.

Revision ID: 0016
Revises: 0012
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

from fhir_twin.store.schema import device_window_reading

revision = "0016"
down_revision = "0012"


def upgrade() -> None:
    device_window_reading.create(op.get_bind())


def downgrade() -> None:
    op.drop_table("device_window_reading")
