"""The record of each verification of the audit trail's hash chain (``audit_verification``), by
``fhir-twin audit verify`` or through the twin API: a broken chain stays on record as found."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select

from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import audit_verification

_BY_LENGTH = 200


@dataclass(frozen=True)
class Verification:
    at: datetime
    ok: bool
    checked: int
    problem: str | None
    by: str


def record(repository: Repository, found: Verification) -> None:
    with repository.transaction(write=True) as tx:
        tx.connection.execute(
            insert(audit_verification).values(
                at=found.at, ok=found.ok, checked=found.checked, problem=found.problem, by=found.by[:_BY_LENGTH]
            )
        )


def last(repository: Repository) -> Verification | None:
    """The newest verification, None before the first."""
    v = audit_verification.c
    query = select(v.at, v.ok, v.checked, v.problem, v.by).order_by(v.seq.desc()).limit(1)
    with repository.transaction() as tx:
        row = tx.connection.execute(query).first()
    return Verification(*row) if row else None
