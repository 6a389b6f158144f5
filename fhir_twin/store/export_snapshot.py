"""What a Bulk Data export job reads of each type: the snapshot at its kick-off
(Bulk Data IG v2 export.html, "transactionTime").

A resource is exported as the version that was current at the transaction time, read from
``resource_version``: resources created after it are skipped, resources updated or deleted after
it are exported as they were then. Patient compartment membership is decided by the current
index rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, Subquery, and_, case, func, or_, select, true

from fhir_twin.search.parameters import patient_compartment
from fhir_twin.store import audit_index
from fhir_twin.store.schema import idx_reference, resource, resource_version


@dataclass(frozen=True)
class Snapshot:
    """A job's selection: its level (``system`` or ``patient``), patient, ``_since`` and instant."""

    scope: str
    patient_id: str | None
    since: datetime | None
    transaction_time: datetime


def _candidates(job: Snapshot, res_type: str, after: str = "") -> Select[Any]:
    """Keys of the resources of ``res_type`` the job may export, each with its version current at
    the job's transaction time (None when created later); in the Patient compartment when asked;
    ids after ``after`` only.

    Filters on the resource row only leave out what the version at that time could not bring
    back: deleted before it, or last changed before ``_since``.
    """
    r = resource.c
    at = job.transaction_time
    older = resource_version.alias("older")
    # Most resources were not touched since the kick-off: their current version is the one.
    version_at = case(
        (r.last_updated <= at, r.version),
        else_=select(func.max(older.c.version))
        .where(older.c.res_type == r.res_type, older.c.res_id == r.res_id, older.c.last_updated <= at)
        .scalar_subquery(),
    )
    conditions = [r.res_type == res_type, r.res_id > after, or_(r.deleted.is_(False), r.last_updated > at)]
    if job.since is not None:
        conditions.append(r.last_updated >= job.since)
    if job.scope == "patient":
        conditions.append(_in_compartment(res_type, job.patient_id, after))
    return select(r.res_type, r.res_id, version_at.label("version")).where(*conditions)


def _versions(candidates: Subquery, outer: bool) -> Select[Any]:
    """Each candidate's id with the body and ``last_updated`` of its version at the transaction time."""
    v = resource_version.c
    on = and_(v.res_type == candidates.c.res_type, v.res_id == candidates.c.res_id, v.version == candidates.c.version)
    joined = candidates.join(resource_version, on, isouter=outer)
    return select(candidates.c.res_id, v.body, v.last_updated).select_from(joined)


def page(job: Snapshot, res_type: str, after: str, limit: int) -> Select[Any]:
    """The next ``limit`` candidates after ``after`` by id (keyset paging), each found by index,
    with versions that ``wanted`` may still turn down."""
    page = _candidates(job, res_type, after).order_by(resource.c.res_id).limit(limit)
    candidates = page.subquery()
    return _versions(candidates, outer=True).order_by(candidates.c.res_id)


def count(job: Snapshot, res_type: str) -> Select[Any]:
    """How many resources of ``res_type`` the job exports: the candidates ``wanted`` keeps."""
    v = resource_version.c
    wanted = [v.body.is_not(None)] + ([v.last_updated >= job.since] if job.since is not None else [])
    return select(func.count()).select_from(
        _versions(_candidates(job, res_type).subquery(), outer=False).where(*wanted).subquery()
    )


def wanted(job: Snapshot, body: str | None, last_updated: datetime | None) -> bool:
    """Alive at the transaction time and, with ``_since``, changed at or after it."""
    return body is not None and (job.since is None or (last_updated is not None and last_updated >= job.since))


def _in_compartment(res_type: str, patient_id: str | None, after: str) -> ColumnElement[bool]:
    """In the compartment of ``patient_id``, or of any patient when None (R4
    compartmentdefinition-patient.html), by the reference index of the compartment parameters."""
    ref = (audit_index.view("reference") if res_type == audit_index.AUDIT_TYPE else idx_reference).c
    linked: Select[Any] = select(ref.res_id).where(
        ref.res_type == res_type,
        ref.param.in_(patient_compartment().get(res_type, ())),
        ref.target_type == "Patient",
        ref.res_id > after,
    )
    if patient_id is not None:
        linked = linked.where(ref.target_id == patient_id)
    if res_type != "Patient":
        return resource.c.res_id.in_(linked)
    if patient_id is None:
        return true()
    return or_(resource.c.res_id == patient_id, resource.c.res_id.in_(linked))
