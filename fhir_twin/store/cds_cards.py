"""The cards the CDS Hooks service issued (``cds_card``): whom each was about and whom it went to,
so feedback on it (CDS Hooks 2.0 "Feedback": about "cards previously returned by the CDS Service")
is audited naming its patient, in whichever server process it arrives. Kept for a retention period.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select

from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import cds_card

_TO_LENGTH = 200


@dataclass(frozen=True)
class IssuedCard:
    uuid: str
    service: str
    patient_id: str
    issued: datetime
    issued_to: str


def record(repository: Repository, cards: list[IssuedCard], forget_before: datetime) -> None:
    """Record ``cards``; those issued before ``forget_before`` are deleted (the retention)."""
    with repository.transaction(write=True) as tx:
        tx.connection.execute(delete(cds_card).where(cds_card.c.issued < forget_before))
        if cards:
            tx.connection.execute(
                insert(cds_card),
                [
                    {
                        "uuid": card.uuid,
                        "service": card.service,
                        "patient_id": card.patient_id,
                        "issued": card.issued,
                        "issued_to": card.issued_to[:_TO_LENGTH],
                    }
                    for card in cards
                ],
            )


def issued(repository: Repository, service: str, uuids: Iterable[str]) -> dict[str, IssuedCard]:
    """The cards of ``uuids`` that ``service`` issued (and still remembers), by uuid."""
    c = cds_card.c
    query = select(c.uuid, c.service, c.patient_id, c.issued, c.issued_to).where(
        c.service == service, c.uuid.in_(set(uuids))
    )
    with repository.transaction() as tx:
        return {row.uuid: IssuedCard(*row) for row in tx.connection.execute(query)}
