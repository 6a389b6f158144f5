"""EHR launch contexts (SMART app-launch.html, "Launch App: EHR Launch"): what an EHR hands an
app under an opaque ``launch`` id, kept as the id's SHA-256, for one client, until it expires."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select

from fhir_twin.fhir.instant import now
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import oauth_launch, resource, resource_version
from fhir_twin.store.version import CURRENT


@dataclass(frozen=True)
class StoredLaunch:
    launch_hash: str
    client_id: str
    patient_id: str
    encounter_id: str | None
    created: datetime
    expires: datetime


def add(repository: Repository, launch: StoredLaunch) -> None:
    """Keep a launch context, dropping the expired ones."""
    with repository.transaction(write=True) as tx:
        tx.connection.execute(delete(oauth_launch).where(oauth_launch.c.expires <= now()))
        tx.connection.execute(insert(oauth_launch).values(**launch.__dict__))


def live(repository: Repository, launch_hash: str, client_id: str) -> StoredLaunch | None:
    """The unexpired launch context with this hash made for ``client_id``."""
    with repository.transaction() as tx:
        row = tx.connection.execute(
            select(oauth_launch).where(
                oauth_launch.c.launch_hash == launch_hash,
                oauth_launch.c.client_id == client_id,
                oauth_launch.c.expires > now(),
            )
        ).first()
    return StoredLaunch(*row) if row is not None else None


def encounter_of(repository: Repository, encounter_id: str, patient_id: str) -> bool:
    """Whether a live Encounter has this id and names ``patient_id`` as its subject."""
    with repository.transaction() as tx:
        row = tx.connection.execute(
            select(resource_version.c.body)
            .select_from(CURRENT)
            .where(resource.c.res_type == "Encounter", resource.c.res_id == encounter_id, resource.c.deleted.is_(False))
        ).first()
    if row is None:
        return False
    subject = json.loads(row[0]).get("subject", {}).get("reference", "")
    return bool(subject == f"Patient/{patient_id}" or subject.endswith(f"/Patient/{patient_id}"))
