"""The digital twin's fact tables: measurements (Digital Body) and case entries (Digital Case).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

Sequence64 = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _create(name: str, *columns: sa.Column) -> None:
    op.create_table(
        name,
        sa.Column("seq", Sequence64, primary_key=True, autoincrement=True),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("res_version", sa.Integer, nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=False), nullable=False),
        sa.Column("valid_to", sa.DateTime(timezone=False)),
        *columns,
    )
    op.create_index(f"ix_{name}_source", name, ["res_type", "res_id", "valid_to"])


def upgrade() -> None:
    _create(
        "twin_measurement",
        sa.Column("field", sa.String(64), nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("effective", sa.DateTime(timezone=False)),
        sa.Column("value", sa.Float),
        sa.Column("category", sa.String(64)),
        sa.Column("original_value", sa.Text),
        sa.Column("original_unit", sa.Text),
        sa.Column("converted", sa.Boolean, nullable=False),
        sa.Column("flag", sa.String(32)),
    )
    op.create_index("ix_twin_measurement_patient", "twin_measurement", ["patient_id", "field", "effective"])
    _create(
        "twin_case",
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("code", sa.Text),
        sa.Column("display", sa.Text),
        sa.Column("status", sa.String(64)),
        sa.Column("start", sa.DateTime(timezone=False)),
        sa.Column("end", sa.DateTime(timezone=False)),
        sa.Column("details", sa.Text),
    )
    op.create_index("ix_twin_case_patient", "twin_case", ["patient_id", "kind", "start"])


def downgrade() -> None:
    op.drop_table("twin_case")
    op.drop_table("twin_measurement")
