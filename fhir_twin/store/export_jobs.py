"""Bulk Data export jobs in the database (Bulk Data IG v2, hl7.org/fhir/uv/bulkdata/STU2/export.html).

Job state and the NDJSON output live in ``export_job`` and ``export_file``, so any server process
can answer a poll and finish a job another one started.

Claiming: a worker takes a queued job, or a running one whose heartbeat is older than
``STALE_AFTER`` (its worker died), in one atomic statement — ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, a compare-and-set ``UPDATE ... WHERE status ...`` on SQLite, whose writers are
serialised. Each batch then commits in its own transaction together with the job's cursor and a
fresh heartbeat, guarded by owner and progress: a worker that lost its job (cancelled, or
re-claimed after it stalled) writes nothing, and a re-claimed job resumes at its cursor, so no
resource is written twice.

What a job reads of each type, the snapshot at its kick-off, is ``export_snapshot``'s.

Memory stays flat however large the export: a batch is read, written as one ``export_file`` row
and dropped; a file is split every ``FILE_SIZE`` resources, and served a row at a time
(``export_files``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, insert, or_, select
from sqlalchemy import update as sql_update

from fhir_twin.fhir.instant import now
from fhir_twin.fhir.resource_types import AUDIT_TYPES
from fhir_twin.search.parameters import patient_compartment
from fhir_twin.store import export_snapshot as snapshot
from fhir_twin.store.export_snapshot import Selection, Snapshot
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import export_file, export_job, resource

log = logging.getLogger("fhir_twin.export")

QUEUED, RUNNING, COMPLETED, FAILED = "queued", "running", "completed", "failed"
STALE_AFTER = timedelta(seconds=60)
BATCH_SIZE = 1000
FILE_SIZE = 10_000
MAX_ATTEMPTS = 3
RETENTION = timedelta(hours=24)

Clock = Callable[[], datetime]
# A job handed back to the queue, for any worker to resume at its cursor.
_RELEASED = {"status": QUEUED, "owner": None, "heartbeat": None}


@dataclass(frozen=True)
class ExportJob:
    """What a poll reports about a job."""

    id: str
    status: str
    request_url: str
    transaction_time: datetime
    exported: int
    total: int | None
    error: str | None
    finished: datetime | None
    requester: str | None


@dataclass(frozen=True)
class _Claimed:
    """A claimed job's full row: its selection and where its export stands."""

    id: str
    scope: str
    patient_id: str | None
    types: str | None
    since: datetime | None
    transaction_time: datetime
    attempts: int
    cursor_type: str | None
    cursor_id: str | None
    file_no: int
    file_count: int
    exported: int
    total: int | None
    options: str | None

    @property
    def type_list(self) -> list[str]:
        return [name for name in (self.types or "").split(",") if name]

    @property
    def snapshot(self) -> Snapshot:
        return Snapshot(
            self.scope, self.patient_id, self.since, self.transaction_time, Selection.from_json(self.options)
        )


_CLAIMED_COLUMNS = [export_job.c[field.name] for field in fields(_Claimed)]


def create_job(
    repository: Repository,
    *,
    request_url: str,
    transaction_time: datetime,
    types: tuple[str, ...] | None,
    since: datetime | None,
    scope: str,
    patient_id: str | None = None,
    requester: str | None = None,
    selection: Selection | None = None,
) -> str:
    """Queue an export; ``types`` None means every stored type (of the compartment, for ``scope``
    ``patient`` or ``group``); ``patient_id`` narrows a Patient-level export to one patient (for a
    Group export it names the Group, whose members ``selection`` holds); ``requester`` is who may
    see and cancel it."""
    job_id = uuid.uuid4().hex
    with repository.transaction(write=True) as tx:
        tx.connection.execute(
            insert(export_job).values(
                id=job_id,
                status=QUEUED,
                scope=scope,
                patient_id=patient_id,
                types=None if types is None else ",".join(types),
                since=since,
                request_url=request_url,
                transaction_time=transaction_time,
                attempts=0,
                file_no=1,
                file_count=0,
                exported=0,
                requester=requester,
                options=None if selection is None else selection.to_json(),
            )
        )
    return job_id


def get_job(repository: Repository, job_id: str) -> ExportJob | None:
    j = export_job.c
    with repository.transaction() as tx:
        row = tx.connection.execute(
            select(
                j.id, j.status, j.request_url, j.transaction_time, j.exported, j.total, j.error, j.finished, j.requester
            ).where(j.id == job_id)
        ).first()
    return ExportJob(*row) if row else None


def delete_job(repository: Repository, job_id: str) -> bool:
    """Cancel or discard a job and its files; False when it is not known (IG v2 export.html#bulk-data-delete-request).

    The job row goes first: on PostgreSQL that waits for a batch in flight, whose file rows are
    then committed and deleted here; the worker's next guarded write finds no job and stops.
    """
    with repository.transaction(write=True) as tx:
        found = tx.connection.execute(delete(export_job).where(export_job.c.id == job_id)).rowcount == 1
        tx.connection.execute(delete(export_file).where(export_file.c.job_id == job_id))
    return found


def purge_expired(repository: Repository, clock: Clock = now) -> int:
    """Delete jobs finished more than ``RETENTION`` ago, with their files; how many went."""
    j = export_job.c
    old = and_(j.status.in_((COMPLETED, FAILED)), j.finished < clock() - RETENTION)
    with repository.transaction() as tx:
        ids = tx.connection.execute(select(j.id).where(old)).scalars().all()
    if not ids:
        return 0
    with repository.transaction(write=True) as tx:
        tx.connection.execute(delete(export_job).where(j.id.in_(ids), old))
        tx.connection.execute(delete(export_file).where(export_file.c.job_id.in_(ids)))
    return len(ids)


def run_pending_exports(
    repository: Repository,
    owner: str,
    *,
    batch_size: int = BATCH_SIZE,
    file_size: int = FILE_SIZE,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Clock = now,
) -> int:
    """Claim and run jobs until none is left or ``should_stop``; the number completed.

    ``owner`` names this worker in ``export_job.owner``; it must differ between workers.
    """
    completed = 0
    while not should_stop():
        job = _claim(repository, owner, clock())
        if job is None:
            break
        completed += _run(repository, job, owner, batch_size, file_size, should_stop, clock)
    return completed


def _claimable(at: datetime) -> ColumnElement[bool]:
    j = export_job.c
    return or_(j.status == QUEUED, and_(j.status == RUNNING, j.heartbeat < at - STALE_AFTER))


def _claim(repository: Repository, owner: str, at: datetime) -> _Claimed | None:
    j = export_job.c
    values = {"status": RUNNING, "owner": owner, "heartbeat": at, "attempts": j.attempts + 1}
    oldest = select(j.id).where(_claimable(at)).order_by(j.transaction_time).limit(1)
    if repository.engine.dialect.name == "postgresql":
        target = oldest.with_for_update(skip_locked=True).scalar_subquery()
        with repository.transaction(write=True) as tx:
            row = tx.connection.execute(
                sql_update(export_job).where(j.id == target).values(values).returning(*_CLAIMED_COLUMNS)
            ).first()
        return _Claimed(*row) if row else None
    # SQLite: find a candidate without taking the write lock, then compare-and-set it; a job
    # another worker took in between is no longer a candidate on the next round.
    while True:
        with repository.transaction() as tx:
            job_id = tx.connection.execute(oldest).scalar()
        if job_id is None:
            return None
        with repository.transaction(write=True) as tx:
            row = tx.connection.execute(
                sql_update(export_job).where(j.id == job_id, _claimable(at)).values(values).returning(*_CLAIMED_COLUMNS)
            ).first()
        if row:
            return _Claimed(*row)


def _run(
    repository: Repository,
    claimed: _Claimed,
    owner: str,
    batch_size: int,
    file_size: int,
    should_stop: Callable[[], bool],
    clock: Clock,
) -> bool:
    """Export a claimed job batch by batch; True when this call completed it."""
    try:
        if claimed.attempts > MAX_ATTEMPTS:
            return _finish(repository, claimed, owner, clock, FAILED, f"Gave up after {MAX_ATTEMPTS} attempts")
        job = _plan(repository, claimed, owner, clock) if claimed.total is None else claimed
        while job is not None and job.cursor_type is not None:
            if should_stop():
                # Hand the job back at its cursor so another worker resumes it at once.
                _guarded(repository, job, owner, {**_RELEASED, "attempts": job.attempts - 1})
                return False
            job = _batch(repository, job, owner, batch_size, file_size, clock)
        return job is not None and _finish(repository, job, owner, clock, COMPLETED, None)
    except Exception as exc:
        log.exception("Export job %s failed", claimed.id)
        if claimed.attempts >= MAX_ATTEMPTS:
            _finish(repository, claimed, owner, clock, FAILED, f"{type(exc).__name__}: {exc}", guard_progress=False)
        else:
            _guarded(repository, claimed, owner, _RELEASED, guard_progress=False)
        return False


def _plan(repository: Repository, job: _Claimed, owner: str, clock: Clock) -> _Claimed | None:
    """Fix the job's types and the total it will export, and put its cursor on the first type."""
    with repository.transaction() as tx:
        types = _types(tx.connection, job)
        if job.snapshot.selection.associated:
            types.append(snapshot.ASSOCIATED)
        total = sum(
            tx.connection.execute(snapshot.count(job.snapshot, name, tuple(types))).scalar_one() for name in types
        )
    changes: dict[str, Any] = {
        "types": ",".join(types),
        "total": total,
        "cursor_type": types[0] if types else None,
        "cursor_id": "",
    }
    return replace(job, **changes) if _guarded(repository, job, owner, {**changes, "heartbeat": clock()}) else None


def _types(connection: Connection, job: _Claimed) -> list[str]:
    """The requested types, else every stored type (in the Patient compartment, for Patient level);
    the associated Provenance pass comes after them (``_plan``)."""
    if job.types is not None:
        return sorted(job.type_list)
    stored = set(connection.execute(select(resource.c.res_type).group_by(resource.c.res_type)).scalars())
    stored -= AUDIT_TYPES
    if job.scope in ("patient", "group"):
        stored &= set(patient_compartment())
    return sorted(stored)


def _batch(
    repository: Repository, job: _Claimed, owner: str, batch_size: int, file_size: int, clock: Clock
) -> _Claimed | None:
    """Export the next batch of the current type and move the cursor, in one transaction."""
    res_type, after = str(job.cursor_type), job.cursor_id or ""
    limit = min(batch_size, file_size - job.file_count)
    with repository.transaction() as tx:
        scanned = tx.connection.execute(snapshot.page(job.snapshot, res_type, after, limit, tuple(job.type_list))).all()
    selection = job.snapshot
    bodies = [
        snapshot.shaped(selection, snapshot.file_type(res_type), body)
        for _, body, stamp in scanned
        if body is not None and snapshot.wanted(selection, body, stamp)
    ]
    file_count = job.file_count + len(bodies)
    changes: dict[str, Any] = {
        "cursor_id": scanned[-1][0] if scanned else after,
        "file_no": job.file_no,
        "file_count": file_count,
        "exported": job.exported + len(bodies),
    }
    if len(scanned) < limit:  # this type is done: the next one starts a new file
        types = job.type_list
        following = types.index(res_type) + 1
        changes["cursor_type"] = types[following] if following < len(types) else None
        changes["cursor_id"] = ""
    if file_count and (len(scanned) < limit or file_count == file_size):
        changes["file_no"], changes["file_count"] = job.file_no + 1, 0
    with repository.transaction(write=True) as tx:
        if not _advance(tx.connection, job, owner, True, {**changes, "heartbeat": clock()}):
            return None
        if bodies:
            tx.connection.execute(
                insert(export_file).values(
                    job_id=job.id,
                    file_no=job.file_no,
                    position=job.file_count,
                    res_type=snapshot.file_type(res_type),
                    count=len(bodies),
                    body="".join(f"{body}\n" for body in bodies),
                )
            )
    return replace(job, **changes)


def _guarded(
    repository: Repository, job: _Claimed, owner: str, values: dict[str, Any], guard_progress: bool = True
) -> bool:
    with repository.transaction(write=True) as tx:
        return _advance(tx.connection, job, owner, guard_progress, values)


def _advance(connection: Connection, job: _Claimed, owner: str, guard_progress: bool, values: dict[str, Any]) -> bool:
    """Update the job if this worker still runs it (and, with ``guard_progress``, it has not moved
    since ``job`` was read); False when the job was cancelled or taken over."""
    j = export_job.c
    conditions = [j.id == job.id, j.owner == owner, j.status == RUNNING]
    if guard_progress:
        conditions.append(j.exported == job.exported)
    return connection.execute(sql_update(export_job).where(*conditions).values(values)).rowcount == 1


def _finish(
    repository: Repository,
    job: _Claimed,
    owner: str,
    clock: Clock,
    status: str,
    error: str | None,
    guard_progress: bool = True,
) -> bool:
    return _guarded(repository, job, owner, {"status": status, "error": error, "finished": clock()}, guard_progress)
