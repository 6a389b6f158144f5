"""Tables: the current state of each resource and every version of it (HAPI's shape, kept small).

``resource_version.body`` holds the JSON exactly as served, so reads send stored bytes without
re-serialising; a delete is a version with no body (R4 http.html#delete: deletes are versioned).
Migrations in ``migrations/`` create these; this module is their single description.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY.
Sequence64 = BigInteger().with_variant(Integer(), "sqlite")

resource = Table(
    "resource",
    metadata,
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=False), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("res_type", "res_id", name="pk_resource"),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
)

resource_version = Table(
    "resource_version",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=False), nullable=False),
    Column("method", String(8), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("body", Text, nullable=True),
    UniqueConstraint("res_type", "res_id", "version", name="uq_resource_version"),
    Index("ix_resource_version_updated", "last_updated", "seq"),
    Index("ix_resource_version_type_updated", "res_type", "last_updated", "seq"),
)
