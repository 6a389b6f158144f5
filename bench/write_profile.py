"""Profile the write path in process: where a transaction Bundle's, a create's or a read's time goes.

Builds the app as ``fhir-twin serve`` does (twin, Doctor and audit trail on; the garbage
collector settled as ``serve`` settles it) on a new database, warms it with one round of the
work, then runs ``--rounds`` more under ``cProfile`` and prints the rate without the profiler
(resources per CPU-second, steadier than wall time on a shared machine; for ``ingest``, whose
large Bundles a helper process shares, also per second of wall time, with the helper's CPU time),
the share of that CPU time spent holding the write gate (the part two workers cannot overlap on SQLite), and the
``--top`` functions of fhir-twin by cumulative time (``--sort tottime``: by their own time);
with ``--gate-only``, the ``--top`` functions of every module (the database driver's included)
by what ran while the write gate was held, and nothing else. ``docs/performance.md`` keeps what
these showed.

    python bench/write_profile.py ingest                      # the Synthea transaction Bundles, SQLite
    python bench/write_profile.py ingest --bundle-helper off  # ... validated and indexed in one process
    python bench/write_profile.py ingest --gate-only --top 40  # ... only what holds SQLite's write gate
    python bench/write_profile.py ingest --database postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/write_profile.py create --count 500          # creates of crud.py's Patients with a token
    python bench/write_profile.py read --count 2000           # reads of one Patient with a token, audited

For a sampling profile of a running server, with less overhead than ``cProfile``:
``py-spy record --gil -r 200 -f raw -o out.txt -p <worker pid> -d 10`` while a ``bench/``
script loads it.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The Patients bench/crud.py creates and the Bundles bench/ingest.py posts (this folder is on
# sys.path when a script here runs).
from crud import DataFactory
from ingest import DEFAULT_FILES

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", choices=("ingest", "create", "read"))
    parser.add_argument("--database", default="", help="database URL (default: a temporary SQLite file)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds profiled after the warm-up round")
    parser.add_argument("--count", type=int, default=300, help="creates or reads per round (create, read)")
    parser.add_argument("--top", type=int, default=40, help="functions to print (0: the rates only, no profile)")
    parser.add_argument("--sort", default="cumulative", choices=("cumulative", "tottime"), help="functions' order")
    parser.add_argument(
        "--gate-only", action="store_true", help="profile only what runs while the write gate is held, in any module"
    )
    parser.add_argument(
        "--bundle-helper", default="on", choices=("on", "off"), help="the setting bundle_helper (ingest's Bundles)"
    )
    args = parser.parse_args()

    from fhir_twin.app import create_app, services_of
    from fhir_twin.cli import collector
    from fhir_twin.config import Config

    folder = tempfile.mkdtemp()
    database = args.database or f"sqlite:///{folder}/profile.db"
    security = "none" if args.work == "ingest" else "tokens"
    settings = Config(
        database_url=database,
        data_dir=folder,
        auth_mode=security,
        log_level="WARNING",
        bundle_helper=args.bundle_helper == "on",
    )
    app = create_app(settings)
    collector.settle()
    gate = _TimedGate(services_of(app).repository)
    client = app.test_client()
    if args.work == "ingest":
        bundles = [path.read_bytes() for path in DEFAULT_FILES]
        units = sum(len(json.loads(body)["entry"]) for body in bundles)

        def one_round() -> None:
            for body in bundles:
                response = client.post("/fhir", data=body, headers=FHIR_JSON)
                assert response.status_code == 200, response.data[:300]

    else:
        from fhir_twin.security import tokens

        secret, _ = tokens.create(services_of(app).repository, "profile", "system/*.cruds", None, None)
        headers = {**FHIR_JSON, "Authorization": f"Bearer {secret}"}
        patients = DataFactory(18)
        body = json.dumps(patients.patient(0))
        units = args.count

        if args.work == "create":
            bodies = [json.dumps(patients.patient(n)) for n in range(args.count)]

            def one_round() -> None:
                for created in bodies:
                    response = client.post("/fhir/Patient", data=created, headers=headers)
                    assert response.status_code == 201, response.data[:300]

        else:
            created = client.post("/fhir/Patient", data=body, headers=headers)
            path = "/" + created.headers["Location"].split("/", 3)[3].rsplit("/_history/", 1)[0]
            read_headers = {"Authorization": headers["Authorization"], "Accept": "application/fhir+json"}

            def one_round() -> None:
                for _ in range(args.count):
                    response = client.get(path, headers=read_headers)
                    assert response.status_code == 200, response.data[:300]

    one_round()
    if settings.bundle_helper and args.work == "ingest":
        _helper_ready()
    print(f"{args.work}: {units * args.rounds} resources, {args.rounds} round(s) after a warm-up, on {database}")
    gate.reset()
    started, wall, helper = time.process_time(), time.perf_counter(), _children_cpu()
    rate = _rate(one_round, units, args.rounds)
    spent = time.process_time() - started
    wall, helper = time.perf_counter() - wall, _children_cpu() - helper
    print(f"without the profiler: {rate:,.0f} resources per CPU-second ({1000 / rate:.3f} ms each)")
    print(
        f"wall time: {units * args.rounds / wall:,.0f} resources per second; the Bundle helper's CPU "
        f"{helper:.2f} s beside this process's {spent:.2f} s"
    )
    print(
        f"write gate held: {gate.cpu / spent:.0%} of that CPU time ({1000 * gate.cpu / (units * args.rounds):.3f} ms "
        f"a resource), {gate.entered} times"
    )
    if args.top == 0:
        return 0
    profile = cProfile.Profile()
    if args.gate_only:
        gate.profile = profile
    else:
        profile.enable()
    for _ in range(args.rounds):
        one_round()
    profile.disable()
    gate.profile = None
    stats = pstats.Stats(profile)
    if args.gate_only:
        stats.sort_stats(args.sort).print_stats(args.top)
    else:
        stats.sort_stats(args.sort).print_stats("fhir_twin", args.top)
    return 0


class _TimedGate:
    """Wraps a repository's write gate to count the CPU time of the thread holding it. PostgreSQL has
    no gate: there it counts write transactions, approximately when the Doctor's thread writes at
    the same time as the request's."""

    def __init__(self, repository: Any) -> None:
        self._gate = repository._write_gate
        repository._write_gate = self
        # Set (``--gate-only``): on in the holder's thread for as long as it holds the gate.
        self.profile: cProfile.Profile | None = None
        self.reset()

    def reset(self) -> None:
        self.cpu, self.entered, self._started = 0.0, 0, 0.0

    def __enter__(self) -> None:
        self._gate.__enter__()
        self._started = time.thread_time()
        if self.profile is not None:
            self.profile.enable()

    def __exit__(self, *exc: object) -> None:
        if self.profile is not None:
            self.profile.disable()
        # On SQLite only the holder runs here: the fields need no lock of their own.
        self.cpu += time.thread_time() - self._started
        self.entered += 1
        self._gate.__exit__(*exc)


def _helper_ready(seconds: float = 120) -> None:
    """Wait until this process's Bundle helper is ready, so the rounds measured all use it."""
    from fhir_twin.bundles.helper import HELPER

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with HELPER.session() as session:
            if session is not None:
                return
        time.sleep(0.05)
    raise SystemExit("the Bundle helper did not start")


def _children_cpu() -> float:
    """CPU seconds (user and system) of this process's live children: the Bundle helper."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _rate(work: Callable[[], None], units: int, rounds: int) -> float:
    started = time.process_time()
    for _ in range(rounds):
        work()
    return units * rounds / (time.process_time() - started)


if __name__ == "__main__":
    sys.exit(main())
