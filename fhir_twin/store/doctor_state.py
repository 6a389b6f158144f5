"""The Digital Doctor's tables: its durable work queue, what each model last assessed, its model registry.

A write that changes a twin queues the patient in the write's own transaction, so a committed
change is never forgotten, even if the process dies before the models run. Worker threads claim
queued patients (compare-and-set, so two processes never claim the same row) and remove them
once assessed; a claim older than ``STALE_CLAIM`` is taken over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, bindparam, delete, func, insert, select, update

from fhir_twin.fhir.instant import now, parse_range
from fhir_twin.store import claims
from fhir_twin.store.repository import DatabaseTransaction, Repository
from fhir_twin.store.schema import doctor_last, doctor_queue, model_version, resource

STALE_CLAIM = claims.STALE_CLAIM
# The extension holding a score's value (``fhir_twin.ml.assessment.SCORE_EXTENSION``).
SCORE_URL = "urn:fhir-twin:StructureDefinition/prediction-score"
CLAIM_BATCH = 50


def enqueue(tx: DatabaseTransaction, patient_ids: set[str]) -> None:
    """Queue ``patient_ids`` for assessment, with the write now in ``tx``."""
    at = now()
    tx.stage(doctor_queue, [{"patient_id": pid, "enqueued": at} for pid in sorted(patient_ids)])


def pending(repository: Repository) -> int:
    """How many patients wait to be assessed."""
    with repository.transaction() as tx:
        query = select(func.count(func.distinct(doctor_queue.c.patient_id)))
        return int(tx.connection.execute(query).scalar_one())


def claim(repository: Repository, owner: str, limit: int = CLAIM_BATCH) -> list[str]:
    """Claim up to ``limit`` queued patients for ``owner``; their rows stay until ``done``.

    A patient another worker is assessing (a claim younger than ``STALE_CLAIM``) is not claimed,
    even when a new write queued it again: its new row waits until that worker is done, so no
    patient is assessed twice at once and no change is missed.
    """
    at = now()
    bounds = claims.claim_bounds(owner, at)
    with repository.transaction() as tx:
        rows = tx.connection.execute(_CLAIMABLE, {**bounds, "limit": limit}).all()
    if not rows:
        return []
    claimed: list[str] = []
    with repository.transaction(write=True) as tx:
        for patient_id, last in rows:
            # Compare-and-set: rows another worker claimed meanwhile no longer match.
            if tx.connection.execute(_CLAIM, {**bounds, "key_value": patient_id, "last": last}).rowcount:
                claimed.append(patient_id)
    return claimed


# Built once (``claims.claimable``): the Doctor claims on every pass.
_q = doctor_queue.c
_CLAIMABLE = (
    select(_q.patient_id, func.max(_q.seq))
    .where(claims.claimable(doctor_queue, "patient_id"))
    .group_by(_q.patient_id)
    .order_by(func.min(_q.seq))
    .limit(bindparam("limit", type_=Integer))
)
_FINISH = delete(doctor_queue).where(
    _q.patient_id.in_(bindparam("patients", expanding=True)), _q.claimed_by == bindparam("owner")
)
# The rows queued up to the last one seen: one queued since waits for the next pass.
_CLAIM = claims.take_one(doctor_queue, "patient_id").where(_q.seq <= bindparam("last"))


def done(repository: Repository, owner: str, patient_id: str) -> None:
    """Remove what ``owner`` claimed for the patient; rows queued since stay for the next pass."""
    with repository.transaction(write=True) as tx:
        finish(tx, owner, [patient_id])


def finish(tx: DatabaseTransaction, owner: str, patient_ids: list[str]) -> None:
    """``done`` for several patients, in ``tx`` (the transaction that recorded their assessments)."""
    if patient_ids:
        tx.connection.execute(_FINISH, {"patients": patient_ids, "owner": owner})


def release(repository: Repository, owner: str, patient_id: str) -> None:
    """Hand a claimed patient back (its assessment failed) so a later pass retries it."""
    q = doctor_queue.c
    with repository.transaction(write=True) as tx:
        tx.connection.execute(
            update(doctor_queue)
            .where(q.patient_id == patient_id, q.claimed_by == owner)
            .values(claimed_by=None, claimed_at=None)
        )


def patient_ids(repository: Repository) -> list[str]:
    """Every live Patient's id, in id order."""
    r = resource.c
    with repository.transaction() as tx:
        query = select(r.res_id).where(r.res_type == "Patient", r.deleted.is_(False)).order_by(r.res_id)
        return list(tx.connection.execute(query).scalars())


def last_fingerprints(tx: DatabaseTransaction, patient_id: str) -> dict[str, str]:
    """model id → fingerprint of the inputs it last assessed for the patient."""
    rows = tx.connection.execute(_LAST_FINGERPRINTS, {"patient": patient_id})
    return {model_id: fingerprint for model_id, fingerprint in rows}


def remember(
    tx: DatabaseTransaction, patient_id: str, model_id: str, fingerprint: str, assessment: dict[str, Any]
) -> None:
    """Record what ``model_id`` assessed last for the patient: the RiskAssessment ``assessment``
    (its id, and what it said, which the patients list sorts by)."""
    connection = tx.connection
    values = {"fingerprint": fingerprint, **standing(assessment)}
    if not connection.execute(_REMEMBER, {**values, "patient": patient_id, "model": model_id}).rowcount:
        connection.execute(insert(doctor_last), {**values, "patient_id": patient_id, "model_id": model_id})


# Built once: the Doctor reads and writes these for every patient it assesses.
_d = doctor_last.c
_LAST_FINGERPRINTS = select(_d.model_id, _d.fingerprint).where(_d.patient_id == bindparam("patient"))
_REMEMBER = update(doctor_last).where(_d.patient_id == bindparam("patient"), _d.model_id == bindparam("model"))


def standing(assessment: dict[str, Any]) -> dict[str, Any]:
    """The ``doctor_last`` columns of a RiskAssessment as ``ml.assessment.risk_assessment`` writes
    it: its id, the score extension, ``probabilityDecimal``, the risk-probability code, the band
    and whether the score is a lower bound from ``qualitativeRisk.text``
    ("[at least ]{band} ({model})"), status and occurrence. Used by
    the Doctor as it records and by migration 0010's backfill, so both fill the row alike."""
    prediction = (assessment.get("prediction") or [{}])[0]
    qualitative = prediction.get("qualitativeRisk") or {}
    coding = (qualitative.get("coding") or [{}])[0]
    score = next((e.get("valueDecimal") for e in prediction.get("extension", []) if e.get("url") == SCORE_URL), None)
    band, bound = None, None
    if "text" in qualitative:
        bound = qualitative["text"].startswith("at least ")
        band = qualitative["text"].removeprefix("at least ").rsplit(" (", 1)[0] or None
    occurrence = assessment.get("occurrenceDateTime")
    probability = prediction.get("probabilityDecimal")
    return {
        "assessment_id": assessment["id"],
        "score": float(score) if score is not None else None,
        "probability": float(probability) if probability is not None else None,
        "band": band,
        "bound": bound,
        "risk": coding.get("code"),
        "status": assessment.get("status"),
        "occurrence": parse_range(occurrence)[0] if occurrence else None,
    }


@dataclass(frozen=True)
class ModelVersion:
    model_id: str
    version: str
    created: datetime
    active: bool
    report: str
    card: str
    # The last activation of this version (None: never activated): when, by whom, why.
    activated: datetime | None = None
    activated_by: str | None = None
    activation_reason: str | None = None


_SUMMARY = (
    model_version.c.model_id,
    model_version.c.version,
    model_version.c.created,
    model_version.c.active,
    model_version.c.report,
    model_version.c.card,
    model_version.c.activated,
    model_version.c.activated_by,
    model_version.c.activation_reason,
)


def register(
    repository: Repository,
    model_id: str,
    major: int,
    build: Callable[[str], tuple[bytes, str, str]],
    training_keys: Iterable[str] = (),
) -> str:
    """Store a newly trained version, inactive, in one transaction: its version (``major.N.0``) is
    chosen here and ``build(version)`` gives its artifact, report and card. It serves no patient
    until ``activate``; the version in use stays as it was."""
    m = model_version.c
    with repository.transaction(write=True) as tx:
        tx.lock(f"model:{model_id}")
        count = tx.connection.execute(select(func.count()).where(m.model_id == model_id)).scalar_one()
        version = f"{major}.{count}.0"
        artifact, report, card = build(version)
        tx.connection.execute(
            insert(model_version).values(
                model_id=model_id,
                version=version,
                created=now(),
                active=False,
                artifact=artifact,
                report=report,
                card=card,
                training_keys="\n".join(sorted(training_keys)) or None,
            )
        )
    return version


def update_report(repository: Repository, model_id: str, version: str, report: str, card: str) -> bool:
    """Replace a version's report and card (an evaluation added to it); False when it does not exist."""
    m = model_version.c
    with repository.transaction(write=True) as tx:
        changed = tx.connection.execute(
            update(model_version).where(m.model_id == model_id, m.version == version).values(report=report, card=card)
        ).rowcount
    return bool(changed)


def active_version(repository: Repository, model_id: str) -> str | None:
    m = model_version.c
    with repository.transaction() as tx:
        return tx.connection.execute(select(m.version).where(m.model_id == model_id, m.active.is_(True))).scalar()


def stored_version(repository: Repository, model_id: str, version: str) -> ModelVersion | None:
    """One version's summary (report and card included), or None."""
    m = model_version.c
    with repository.transaction() as tx:
        row = tx.connection.execute(select(*_SUMMARY).where(m.model_id == model_id, m.version == version)).first()
    return ModelVersion(*row) if row else None


def activate(
    repository: Repository,
    model_id: str,
    version: str,
    by: str | None,
    reason: str,
    record: Callable[[DatabaseTransaction], None],
) -> bool:
    """Make ``version`` the one the server uses, noting when, ``by`` whom and why, and ``record`` it (the
    audit trail's event) in the same transaction; False when no such version exists (nothing changes)."""
    m = model_version.c
    with repository.transaction(write=True) as tx:
        tx.lock(f"model:{model_id}")
        found = tx.connection.execute(select(m.version).where(m.model_id == model_id, m.version == version)).first()
        if found is None:
            return False
        tx.connection.execute(update(model_version).where(m.model_id == model_id).values(active=m.version == version))
        tx.connection.execute(
            update(model_version)
            .where(m.model_id == model_id, m.version == version)
            .values(activated=now(), activated_by=by, activation_reason=reason)
        )
        record(tx)
    return True


def training_keys(repository: Repository, model_id: str, version: str) -> frozenset[str]:
    """The identity keys of the patients ``version`` was trained on (empty: none were stored)."""
    m = model_version.c
    with repository.transaction() as tx:
        text = tx.connection.execute(
            select(m.training_keys).where(m.model_id == model_id, m.version == version)
        ).scalar()
    return frozenset(text.split("\n")) if text else frozenset()


def versions(repository: Repository, model_id: str | None = None) -> list[ModelVersion]:
    """Registered versions (of one model), oldest first."""
    m = model_version.c
    query = select(*_SUMMARY).order_by(m.model_id, m.created, m.version)
    if model_id is not None:
        query = query.where(m.model_id == model_id)
    with repository.transaction() as tx:
        return [ModelVersion(*row) for row in tx.connection.execute(query)]


def artifact(repository: Repository, model_id: str, version: str | None = None) -> tuple[str, bytes] | None:
    """The artifact of ``version``, or of the active version when None: (version, bytes)."""
    m = model_version.c
    which = m.version == version if version is not None else m.active.is_(True)
    with repository.transaction() as tx:
        row = tx.connection.execute(select(m.version, m.artifact).where(and_(m.model_id == model_id, which))).first()
    return (row[0], bytes(row[1])) if row else None
