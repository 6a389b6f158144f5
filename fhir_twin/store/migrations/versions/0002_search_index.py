"""Search index tables, one per search parameter type.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

Number = sa.Float().with_variant(sa.Numeric(), "postgresql")


def _create(name: str, columns: list[sa.Column], indexes: list[list[str]]) -> None:
    op.create_table(
        name,
        sa.Column("res_type", sa.String(64), nullable=False),
        sa.Column("res_id", sa.String(64), nullable=False),
        sa.Column("param", sa.String(128), nullable=False),
        sa.Column("grp", sa.Integer, nullable=False),
        *columns,
    )
    op.create_index(f"ix_{name}_resource", name, ["res_type", "res_id", *indexes[0][1:]])
    for number, index_columns in enumerate(indexes):
        op.create_index(f"ix_{name}_{number}", name, [*index_columns, "res_id"])


def upgrade() -> None:
    _create(
        "idx_string",
        [sa.Column("normalized", sa.Text, nullable=False), sa.Column("exact", sa.Text, nullable=False)],
        [["res_type", "param", "normalized"]],
    )
    _create(
        "idx_token",
        [
            sa.Column("system", sa.Text),
            sa.Column("code", sa.Text),
            sa.Column("text", sa.Text),
            sa.Column("type_system", sa.Text),
            sa.Column("type_code", sa.Text),
        ],
        [["res_type", "param", "code", "system"]],
    )
    _create(
        "idx_reference",
        [
            sa.Column("target_type", sa.String(64)),
            sa.Column("target_id", sa.String(64)),
            sa.Column("url", sa.Text),
            sa.Column("identifier_system", sa.Text),
            sa.Column("identifier_value", sa.Text),
        ],
        [["res_type", "param", "target_type", "target_id"], ["target_type", "target_id"]],
    )
    _create(
        "idx_date",
        [sa.Column("low", sa.DateTime(), nullable=False), sa.Column("high", sa.DateTime(), nullable=False)],
        [["res_type", "param", "low", "high"]],
    )
    _create("idx_number", [sa.Column("value", Number, nullable=False)], [["res_type", "param", "value"]])
    _create(
        "idx_quantity",
        [
            sa.Column("value", Number, nullable=False),
            sa.Column("system", sa.Text),
            sa.Column("code", sa.Text),
            sa.Column("unit", sa.Text),
            sa.Column("canonical_value", Number),
            sa.Column("canonical_code", sa.Text),
        ],
        [
            ["res_type", "param", "value"],
            ["res_type", "param", "code", "value"],
            ["res_type", "param", "canonical_code", "canonical_value"],
        ],
    )
    _create("idx_uri", [sa.Column("uri", sa.Text, nullable=False)], [["res_type", "param", "uri"]])


def downgrade() -> None:
    for name in ("idx_uri", "idx_quantity", "idx_number", "idx_date", "idx_reference", "idx_token", "idx_string"):
        op.drop_table(name)
