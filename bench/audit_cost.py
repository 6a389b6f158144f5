"""Measure what authentication and the audit trail cost a read, in alternated pairs of runs.

What it measures
----------------
Each pair runs ``bench/crud.py --spawn`` twice, with the same arguments: once with
``--security off`` (``auth_mode=none``, no audit trail) and once with ``--security on`` (a
``system/*.cruds`` API token and the audit trail, as served by default), each on a new database.
The order within a pair alternates, so drift in the machine's speed falls on both sides alike.

Per run it prints the ``read`` phase's requests per second, p50/p95/p99 latency, and the server's
CPU time per read (``server ms/req``). Then, over the pairs:

``cost``
    ``1 - on/off`` of the read requests per second, per pair; the median and range. The issue's
    aim is a cost under 15 %.
``audit ms/read``
    ``on - off`` of the server's CPU milliseconds per read: what authenticating a request and
    recording its AuditEvent take. This is steadier than ``cost`` when the machine's speed
    drifts: the same work is a larger share of a read on a faster machine. It counts the
    server's own processes only: on PostgreSQL, the database's backends (which store the
    records and their index rows) run on the same cores but are not in it.

Runs are alternated rather than repeated in blocks because the spread between two runs of the
same server on a shared two-core machine (10-15 %) is as large as the effect measured.

SQLite is a temporary file per run (crud.py's default). With ``--postgres-url`` every run gets
a freshly created database on that server, dropped afterwards, so no run reads another's data.

Exit status: 0 when every run succeeded, 1 when a run failed, 2 for bad arguments.

Examples::

    python bench/audit_cost.py --pairs 4
    python bench/audit_cost.py --pairs 3 --postgres-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

CRUD = Path(__file__).with_name("crud.py")
AIM = 0.15


@dataclass(frozen=True)
class Run:
    """The read phase of one crud.py run."""

    security: str
    rps: float
    p50: float
    p95: float
    p99: float
    server_ms: float | None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4, help="off/on pairs of runs (default 4)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per phase (default 10)")
    parser.add_argument("--clients", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    parser.add_argument("--url", default="http://127.0.0.1:8080/fhir", help="where the spawned server listens")
    parser.add_argument(
        "--postgres-url",
        help="a PostgreSQL server to run on (postgresql://user@host:port/db): each run creates and drops "
        "its own database there; default SQLite in a temporary file",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.pairs < 1:
        print("--pairs must be at least 1", file=sys.stderr)
        return 2
    runs: list[tuple[Run, Run]] = []
    print(f"{'pair':>4}  {'security':8}  {'read/s':>8}  {'p50 ms':>7}  {'p95 ms':>7}  {'p99 ms':>7}  server ms/read")
    for pair in range(args.pairs):
        order = ("off", "on") if pair % 2 == 0 else ("on", "off")
        measured = {}
        for security in order:
            found = measure(args, security)
            if found is None:
                return 1
            measured[security] = found
            print(
                f"{pair + 1:>4}  {security:8}  {found.rps:8.1f}  {found.p50:7.2f}  {found.p95:7.2f}  {found.p99:7.2f}"
                f"  {_ms(found.server_ms):>14}",
                flush=True,
            )
        runs.append((measured["off"], measured["on"]))
    summarise(runs)
    return 0


def measure(args: argparse.Namespace, security: str) -> Run | None:
    """One crud.py run (create, then read) on a new database; None when it failed."""
    with _database(args.postgres_url) as database:
        command = [
            sys.executable,
            str(CRUD),
            "--spawn",
            "--security",
            security,
            "--phases",
            "create,read",
            "--seconds",
            str(args.seconds),
            "--clients",
            str(args.clients),
            "--workers",
            str(args.workers),
            "--url",
            args.url,
            "--json",
            "-",
        ]
        if database is not None:
            command += ["--database", database]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"crud.py --security {security} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        return None
    document = json.loads(done.stdout.strip().splitlines()[-1])
    read = next(phase for phase in document["phases"] if phase["phase"] == "read")
    latency = read["latency_ms"]
    return Run(
        security,
        read["requests_per_s"],
        latency["p50"],
        latency["p95"],
        latency["p99"],
        read["server_cpu_ms_per_request"],
    )


@contextmanager
def _database(postgres_url: str | None) -> Iterator[str | None]:
    """A fresh PostgreSQL database for one run (dropped after it), or None for SQLite."""
    if postgres_url is None:
        yield None
        return
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"fhir_twin_audit_cost_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(plain, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        base = plain.rsplit("/", 1)[0]
        yield f"postgresql+psycopg://{base.removeprefix('postgresql://')}/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def summarise(runs: list[tuple[Run, Run]]) -> None:
    costs = [1 - on.rps / off.rps for off, on in runs]
    print()
    print(
        f"read/s      off median {statistics.median(off.rps for off, _ in runs):.1f}, "
        f"on median {statistics.median(on.rps for _, on in runs):.1f}"
    )
    print(
        f"cost        median {statistics.median(costs):.1%} (pairs: {', '.join(f'{cost:.1%}' for cost in costs)}); "
        f"aim under {AIM:.0%}: {'met' if statistics.median(costs) < AIM else 'missed'}"
    )
    extra = [on.server_ms - off.server_ms for off, on in runs if on.server_ms is not None and off.server_ms is not None]
    if extra:
        print(
            f"audit ms/read  median {statistics.median(extra):.3f} server CPU ms "
            f"(pairs: {', '.join(f'{ms:.3f}' for ms in extra)})"
        )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
