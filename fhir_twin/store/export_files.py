"""A finished Bulk Data export job's files (Bulk Data IG v2 export.html#response---complete-status
and #file-request): what its manifest lists, and each file read back as it is sent.

A file is the ``export_file`` rows of one ``file_no``, one row per batch the worker wrote
(``export_jobs``), so it is served a row at a time: memory holds one batch, however large the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import func, select

from fhir_twin.store.export_jobs import COMPLETED
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import export_file, export_job


@dataclass(frozen=True)
class ExportFile:
    """One output file of a manifest (Bulk Data IG v2 export.html#response---complete-status)."""

    number: int
    res_type: str
    count: int


def output_files(repository: Repository, job_id: str) -> list[ExportFile]:
    f = export_file.c
    with repository.transaction() as tx:
        rows = tx.connection.execute(
            select(f.file_no, f.res_type, func.sum(f.count))
            .where(f.job_id == job_id)
            .group_by(f.file_no, f.res_type)
            .order_by(f.file_no)
        ).all()
    return [ExportFile(number, res_type, int(count)) for number, res_type, count in rows]


def has_file(repository: Repository, job_id: str, number: int) -> bool:
    """Whether a completed job has a file ``number``."""
    f = export_file.c
    with repository.transaction() as tx:
        status = tx.connection.execute(select(export_job.c.status).where(export_job.c.id == job_id)).scalar()
        found = tx.connection.execute(
            select(f.position).where(f.job_id == job_id, f.file_no == number).limit(1)
        ).first()
    return status == COMPLETED and found is not None


def file_parts(repository: Repository, job_id: str, number: int) -> Iterator[str]:
    """The NDJSON of file ``number``, one stored part (a batch, at most ``BATCH_SIZE`` lines) at a
    time, each read in a transaction of its own: serving a file holds one part in memory, however
    large the file, and no transaction stays open while a slow client reads. A job cancelled
    meanwhile ends the file there."""
    f = export_file.c
    after = -1
    while True:
        with repository.transaction() as tx:
            row = tx.connection.execute(
                select(f.position, f.body)
                .where(f.job_id == job_id, f.file_no == number, f.position > after)
                .order_by(f.position)
                .limit(1)
            ).first()
        if row is None:
            return
        after = row[0]
        yield row[1]
