"""The CDS client JWT ids seen: the second use of one is refused, and expired ones are forgotten."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from fhir_twin.store import cds_jti
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import cds_jti as table

NOW = datetime(2026, 12, 7, 12, 0)


def rows(repository: Repository) -> int:
    with repository.transaction() as tx:
        return int(tx.connection.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_jti_is_taken_once_per_issuer(repository: Repository) -> None:
    until = NOW + timedelta(minutes=5)
    assert cds_jti.first_use(repository, "https://ehr.example", "a", until, NOW)
    assert not cds_jti.first_use(repository, "https://ehr.example", "a", until, NOW)
    assert cds_jti.first_use(repository, "https://other.example", "a", until, NOW)


def test_expired_jtis_are_pruned(repository: Repository) -> None:
    cds_jti.first_use(repository, "https://ehr.example", "old", NOW, NOW - timedelta(minutes=1))
    assert rows(repository) == 1
    cds_jti.first_use(repository, "https://ehr.example", "new", NOW + timedelta(minutes=5), NOW + timedelta(seconds=1))
    assert rows(repository) == 1
