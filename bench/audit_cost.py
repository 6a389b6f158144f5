"""Measure what authentication and the audit trail cost a read, in alternated pairs of runs.

What it measures
----------------
Each pair runs ``bench/crud.py --spawn`` twice, with the same arguments: once with
``--security off`` (``auth_mode=none``, no audit trail) and once with ``--security on`` (a
``system/*.cruds`` API token and the audit trail, as served by default), each on a new database.
The order within a pair alternates, so drift in the machine's speed falls on both sides alike.

Per run it prints the ``create`` phase's requests per second and server CPU per create, and the
``read`` phase's requests per second, p50/p95/p99 latency and server CPU per read (``server
ms/req``). Then, per database, over the pairs:

``cost``
    ``1 - on/off`` of the read requests per second, per pair; the median and range. The issue's
    aim is a cost under 15 %.
``audit ms/read``
    ``on - off`` of the server's CPU milliseconds per read: what authenticating a request and
    recording its AuditEvent take. This is steadier than ``cost`` when the machine's speed
    drifts: the same work is a larger share of a read on a faster machine. It counts the
    server's own processes only; on a PostgreSQL server on this machine, the next line gives
    the same difference for the CPU of its processes (crud.py's ``db ms/req``), which store the
    records and their index rows on the same cores.
``aims``
    the medians of the "on" runs against issue 18's other aims: creates >= 600/s, reads
    >= 2,000/s, read p99 under 20 ms (the recorder's flushes must not stall reads).

Runs are alternated rather than repeated in blocks because the spread between two runs of the
same server on a shared two-core machine (10-15 %) is as large as the effect measured.

SQLite is a temporary file per run (crud.py's default). With ``--postgres-url`` every run gets
a freshly created database on that server, dropped afterwards, so no run reads another's data.
``--databases sqlite,postgresql`` runs the pairs on both, one database after the other.

Exit status: 0 when every run succeeded, 1 when a run failed, 2 for bad arguments.

Examples::

    python bench/audit_cost.py --pairs 4
    python bench/audit_cost.py --pairs 3 --postgres-url postgresql://postgres@127.0.0.1:5432/test
    python bench/audit_cost.py --databases sqlite,postgresql --postgres-url postgresql://postgres@127.0.0.1:5432/test
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
AIM_CREATES_PER_S = 600.0
AIM_READS_PER_S = 2000.0
AIM_READ_P99_MS = 20.0
DATABASES = ("sqlite", "postgresql")


@dataclass(frozen=True)
class Run:
    """The create and read phases of one crud.py run."""

    security: str
    rps: float
    p50: float
    p95: float
    p99: float
    server_ms: float | None
    create_rps: float
    create_server_ms: float | None
    # The machine's PostgreSQL processes' CPU per read (None on SQLite).
    database_ms: float | None = None


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
    parser.add_argument(
        "--databases",
        type=_databases,
        help="comma-separated, run in this order: sqlite, postgresql (needs --postgres-url); default "
        "postgresql with --postgres-url, else sqlite",
    )
    return parser


def _databases(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in DATABASES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"databases are {', '.join(DATABASES)}; got {text!r}")
    return names


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.pairs < 1:
        print("--pairs must be at least 1", file=sys.stderr)
        return 2
    databases = args.databases or (("postgresql",) if args.postgres_url else ("sqlite",))
    if "postgresql" in databases and not args.postgres_url:
        print("--databases postgresql needs --postgres-url", file=sys.stderr)
        return 2
    results: dict[str, list[tuple[Run, Run]]] = {}
    for database in databases:
        print(f"{database}:")
        runs = pairs(args, args.postgres_url if database == "postgresql" else None)
        if runs is None:
            return 1
        results[database] = runs
    for database, runs in results.items():
        print()
        print(f"{database}, {len(runs)} pairs:")
        summarise(runs)
    return 0


def pairs(args: argparse.Namespace, postgres_url: str | None) -> list[tuple[Run, Run]] | None:
    """``--pairs`` alternated off/on runs on SQLite, or on ``postgres_url``; None when one failed."""
    runs: list[tuple[Run, Run]] = []
    print(
        f"{'pair':>4}  {'security':8}  {'create/s':>8}  {'ms/create':>9}  {'read/s':>8}  {'p50 ms':>7}  {'p95 ms':>7}"
        f"  {'p99 ms':>7}  server ms/read  db ms/read"
    )
    for pair in range(args.pairs):
        order = ("off", "on") if pair % 2 == 0 else ("on", "off")
        measured = {}
        for security in order:
            found = measure(args, security, postgres_url)
            if found is None:
                return None
            measured[security] = found
            print(
                f"{pair + 1:>4}  {security:8}  {found.create_rps:8.1f}  {_ms(found.create_server_ms):>9}"
                f"  {found.rps:8.1f}  {found.p50:7.2f}  {found.p95:7.2f}  {found.p99:7.2f}  {_ms(found.server_ms):>14}"
                f"  {_ms(found.database_ms):>10}",
                flush=True,
            )
        runs.append((measured["off"], measured["on"]))
    return runs


def measure(args: argparse.Namespace, security: str, postgres_url: str | None) -> Run | None:
    """One crud.py run (create, then read) on a new database; None when it failed."""
    with _database(postgres_url) as database:
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
    create = next(phase for phase in document["phases"] if phase["phase"] == "create")
    latency = read["latency_ms"]
    return Run(
        security,
        read["requests_per_s"],
        latency["p50"],
        latency["p95"],
        latency["p99"],
        read["server_cpu_ms_per_request"],
        create["requests_per_s"],
        create["server_cpu_ms_per_request"],
        read.get("database_cpu_ms_per_request"),
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
    print(
        f"read/s      off median {statistics.median(off.rps for off, _ in runs):.1f}, "
        f"on median {statistics.median(on.rps for _, on in runs):.1f}"
    )
    print(
        f"read p99    off median {statistics.median(off.p99 for off, _ in runs):.2f} ms, "
        f"on median {statistics.median(on.p99 for _, on in runs):.2f} ms"
    )
    print(
        f"create/s    off median {statistics.median(off.create_rps for off, _ in runs):.1f}, "
        f"on median {statistics.median(on.create_rps for _, on in runs):.1f}"
    )
    print(
        f"cost        median {statistics.median(costs):.1%} (pairs: {', '.join(f'{cost:.1%}' for cost in costs)}); "
        f"aim under {AIM:.0%}: {_verdict(statistics.median(costs) < AIM)}"
    )
    extra = [on.server_ms - off.server_ms for off, on in runs if on.server_ms is not None and off.server_ms is not None]
    if extra:
        print(
            f"audit ms/read  median {statistics.median(extra):.3f} server CPU ms "
            f"(pairs: {', '.join(f'{ms:.3f}' for ms in extra)})"
        )
    stored = [
        on.database_ms - off.database_ms
        for off, on in runs
        if on.database_ms is not None and off.database_ms is not None
    ]
    if stored:
        print(
            f"  and        median {statistics.median(stored):.3f} database CPU ms "
            f"(pairs: {', '.join(f'{ms:.3f}' for ms in stored)})"
        )
    creates = [on.create_server_ms for _, on in runs if on.create_server_ms is not None]
    if creates:
        print(f"ms/create   on median {statistics.median(creates):.3f} server CPU ms")
    on_creates = statistics.median(on.create_rps for _, on in runs)
    on_reads = statistics.median(on.rps for _, on in runs)
    on_p99 = statistics.median(on.p99 for _, on in runs)
    print(
        f"aims (on)   creates {on_creates:,.0f}/s >= {AIM_CREATES_PER_S:,.0f} "
        f"{_verdict(on_creates >= AIM_CREATES_PER_S)}; "
        f"reads {on_reads:,.0f}/s >= {AIM_READS_PER_S:,.0f} {_verdict(on_reads >= AIM_READS_PER_S)}; "
        f"read p99 {on_p99:.1f} ms < {AIM_READ_P99_MS:.0f} {_verdict(on_p99 < AIM_READ_P99_MS)}"
    )


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
