"""Measure a Bulk Data export's rate and peak memory at two sizes, to show memory stays flat.

What it measures
----------------
For each size in ``--sizes`` (resources in the database, default 20,000 and 100,000): a system
``$export`` of everything, run to completion by the export worker's own loop
(``export_jobs.run_pending_exports``) and then every output file read back as the file request
serves it (``export_files.file_parts``), checking that each file's lines are NDJSON and that the
lines add up to the resources stored. It prints resources exported per second and the export
process's peak resident set size (``ru_maxrss``), with its resident size before the export began
(after imports and the engine were set up), so the growth the export itself caused is plain.

Then the download: the same export written as one file (no split), fetched through the server's
WSGI app (``create_app``, audit on) by a client that reads the answer as it comes
(``GET $export-file``, unbuffered), as waitress iterates it. It prints the file's size, the
download rate and the serving process's resident size before and at its peak: the file is sent
as it is read, so the peak does not grow with the file.

How
---
The data (one Patient and nine heart-rate Observations per patient, ids chosen by the bench) is
written in-process through the server's write path (``store_version``, index rows included), 1,000
resources per transaction, into a temporary SQLite file (the server's ``make_engine``) or a fresh
PostgreSQL database created through ``--postgres-url`` and dropped at the end. The sizes grow one
database: the second size adds to the first. Each export runs in a fresh child process
(``--child``), and so does each download (``--download``), so the peak each reports is its own
and not the loader's.

Examples::

    python bench/export.py
    python bench/export.py --sizes 20000,100000 --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from fhir_twin.fhir.instant import now
from fhir_twin.interactions.writes import store_version
from fhir_twin.store import export_files, export_jobs
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.repository import Repository

PER_PATIENT = 10
BATCH = 1000


def resources(first: int, stop: int) -> list[dict[str, Any]]:
    """Patients ``first`` to ``stop - 1``, each with nine Observations."""
    out: list[dict[str, Any]] = []
    for number in range(first, stop):
        patient = f"p-{number:07d}"
        out.append({"resourceType": "Patient", "id": patient, "gender": "female", "birthDate": "1970-01-01"})
        for reading in range(PER_PATIENT - 1):
            out.append(
                {
                    "resourceType": "Observation",
                    "id": f"o-{number:07d}-{reading}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "heart rate"},
                    "subject": {"reference": f"Patient/{patient}"},
                    "effectiveDateTime": f"2024-01-{reading + 1:02d}T08:00:00Z",
                    "valueQuantity": {"value": 60 + reading, "unit": "/min", "system": "http://unitsofmeasure.org"},
                }
            )
    return out


def load(url: str, first: int, stop: int) -> float:
    """Write patients ``first`` to ``stop - 1``; the resources per second."""
    repository = Repository(make_engine(url))
    started = time.perf_counter()
    written = 0
    for start in range(first, stop, BATCH // PER_PATIENT):
        batch = resources(start, min(stop, start + BATCH // PER_PATIENT))
        with repository.transaction(write=True) as tx:
            for body in batch:
                store_version(tx, body, body["id"], None, "POST")
        written += len(batch)
    repository.engine.dispose()
    return written / (time.perf_counter() - started)


def rss_mb() -> float:
    """This process's resident set size now, from /proc (Linux)."""
    fields = Path("/proc/self/status").read_text().split("VmRSS:")[1].split()
    return int(fields[0]) / 1024


def child(url: str, expected: int) -> dict[str, Any]:
    """Run one export to completion and read every file; what it cost."""
    repository = Repository(make_engine(url))
    job_id = export_jobs.create_job(
        repository, request_url="bench", transaction_time=now(), types=None, since=None, scope="system"
    )
    before = rss_mb()
    started = time.perf_counter()
    export_jobs.run_pending_exports(repository, f"bench-{uuid.uuid4().hex}")
    written = time.perf_counter() - started
    lines = 0
    for file in export_files.output_files(repository, job_id):
        for part in export_files.file_parts(repository, job_id, file.number):
            assert part.endswith("\n")
            for line in part.splitlines():
                json.loads(line)
                lines += 1
    total = time.perf_counter() - started
    assert lines == expected, f"exported {lines} resources, {expected} stored"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "resources": lines,
        "files": len(export_files.output_files(repository, job_id)),
        "write_rate": lines / written,
        "rate": lines / total,
        "rss_before_mb": before,
        "peak_mb": peak,
    }


def one_file(url: str) -> str:
    """A system export of everything written as a single file; its job id."""
    repository = Repository(make_engine(url))
    job_id = export_jobs.create_job(
        repository,
        request_url="bench",
        transaction_time=now(),
        types=("Observation",),
        since=None,
        scope="system",
        # The requester the download's credential (auth_mode none) acts as: the job is its own.
        requester="none:anonymous",
    )
    export_jobs.run_pending_exports(repository, f"bench-{uuid.uuid4().hex}", file_size=2**31 - 1)
    repository.engine.dispose()
    return job_id


def download(url: str, job_id: str, expected: int) -> dict[str, Any]:
    """GET the job's one file through the app, reading it as it comes; what serving it cost."""
    from fhir_twin.app import create_app, services_of

    app = create_app({"database_url": url, "auth_mode": "none", "twin": False, "doctor": False})
    client = app.test_client()
    before = rss_mb()
    started = time.perf_counter()
    response = client.get(f"/fhir/$export-file?_jobId={job_id}&file=1", buffered=False)
    assert response.status_code == 200 and response.content_type == "application/fhir+ndjson"
    size = lines = 0
    for chunk in response.response:
        size += len(chunk)
        lines += chunk.count(b"\n")
    response.close()
    elapsed = time.perf_counter() - started
    assert lines == expected, f"downloaded {lines} lines, {expected} exported"
    services_of(app).repository.engine.dispose()
    return {
        "file_mb": size / 2**20,
        "rate": size / 2**20 / elapsed,
        "rss_before_mb": before,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20000,100000", help="resources stored at each measurement")
    parser.add_argument("--postgres-url", help="a PostgreSQL server URL; a fresh database is made on it")
    parser.add_argument("--child", nargs=2, metavar=("URL", "EXPECTED"), help=argparse.SUPPRESS)
    parser.add_argument("--download", nargs=3, metavar=("URL", "JOB", "EXPECTED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]))))
        return
    if args.download:
        print(json.dumps(download(args.download[0], args.download[1], int(args.download[2]))))
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    temporary = tempfile.TemporaryDirectory()
    admin = None
    if args.postgres_url:
        name = f"bench_export_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{temporary.name}/export.db"
    try:
        migrate(make_engine(url))
        print(f"database: {make_url(url).render_as_string(hide_password=True)}")
        print(
            f"{'resources':>10} {'load/s':>8} {'files':>6} {'export/s':>9} "
            f"{'with read/s':>12} {'RSS before':>11} {'peak RSS':>9}"
        )
        patients = 0
        downloads: list[tuple[int, str]] = []
        for size in sizes:
            target = size // PER_PATIENT
            load_rate = load(url, patients, target)
            patients = target
            result = _in_child("--child", url, str(patients * PER_PATIENT))
            print(
                f"{result['resources']:>10} {load_rate:>8.0f} {result['files']:>6} {result['write_rate']:>9.0f} "
                f"{result['rate']:>12.0f} {result['rss_before_mb']:>9.1f}MB {result['peak_mb']:>7.1f}MB",
                flush=True,
            )
            downloads.append((patients * (PER_PATIENT - 1), one_file(url)))
        print(f"\n{'download of one file':>20} {'MB':>7} {'MB/s':>6} {'RSS before':>11} {'peak RSS':>9}")
        for observations, job_id in downloads:
            result = _in_child("--download", url, job_id, str(observations))
            print(
                f"{observations:>13} lines {result['file_mb']:>7.1f} {result['rate']:>6.1f} "
                f"{result['rss_before_mb']:>9.1f}MB {result['peak_mb']:>7.1f}MB",
                flush=True,
            )
    finally:
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        temporary.cleanup()


def _in_child(*arguments: str) -> dict[str, Any]:
    """Run this script with ``arguments`` in a fresh process (its memory is the figure) and read
    the JSON its last line prints."""
    answer = subprocess.run([sys.executable, __file__, *arguments], check=True, capture_output=True, text=True)
    return dict(json.loads(answer.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    main()
