"""Soak a FHIR server: N seconds of mixed reads, searches, writes and small transactions at saturation.

Every client (``--clients`` threads in all, shared out over ``--processes`` processes) keeps one
keep-alive connection and sends requests back to back, each drawn at random from this mix:

``read``         ``GET Patient/{id}`` of a Patient this client made (200)
``search``       ``GET Observation?subject=Patient/{id}&_count=10`` or ``Patient?family=...`` (200)
``create``       ``POST Patient`` (201)
``update``       ``PUT Patient/{id}``: half of this client's own Patients (a changed phone number),
                 half of three Patients every client writes (update as create; 200 or 201)
``transaction``  ``POST /`` a Bundle of a Patient and three Observations referring to it (200)

It prints the requests, requests per second, errors counted by status (``conn`` for a failed
connection) and the p50/p99 latency overall and per kind, with each kind's share of the
requests slower than the overall p99 (where the tail is). The aim is 0 errors: exit status 1
when there is any, 0 otherwise.

With ``--databases sqlite,postgresql`` the soak runs once on each (alternated ``--repeat`` times),
each on a spawned server with a fresh database (PostgreSQL's made on ``--postgres-url`` and dropped
after), and prints each run's figures, then req/s and p50/p99 per database and the
PostgreSQL/SQLite throughput ratio (medians).

    python bench/soak.py 60 --spawn                      # a temporary SQLite server
    python bench/soak.py 60 --spawn --database postgresql+psycopg://postgres@127.0.0.1:5432/soak
    python bench/soak.py 30 --url http://127.0.0.1:8080/fhir --token ftw_...
    python bench/soak.py 60 --clients 8 --databases sqlite,postgresql \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# A new database per run, as bench/ingest.py makes them (this folder is on sys.path when a script here runs).
from ingest import fresh_database

# Share of each kind of request in the mix.
MIX = {"read": 35, "search": 30, "create": 15, "update": 10, "transaction": 10}
# Patients each client makes before the clock starts, so reads and updates have targets.
SEED_PATIENTS = 5
# Patients every client updates, half of all updates: concurrent writers of one resource.
SHARED = 3
FAMILIES = ["Smith", "Jones", "Garcia", "Nguyen", "Okafor", "Kowalski", "Rossi", "Tanaka"]
# Result of one client: per kind the latencies of 2xx answers, and the statuses of the others.
Result = tuple[dict[str, list[float]], Counter[str]]


class Client:
    """One keep-alive connection to the server, reopened after a failure."""

    def __init__(self, base: str, token: str) -> None:
        parts = urlsplit(base)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/")
        self.headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        try:
            self.connection.request(method, f"{self.path}/{path}", data, self.headers)
            response = self.connection.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
            return 0, None
        return response.status, json.loads(raw) if raw else None


def patient(rng: random.Random) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:fhir-twin-soak", "value": uuid.uuid4().hex}],
        "name": [{"family": rng.choice(FAMILIES), "given": [rng.choice(["Ann", "Bo", "Cy", "Di"])]}],
        "gender": rng.choice(["female", "male", "other", "unknown"]),
        "birthDate": f"{rng.randint(1930, 2020)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "telecom": [{"system": "phone", "value": f"+1-555-{rng.randint(0, 9999):04d}"}],
    }


def observation(rng: random.Random, subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T10:00:00Z",
        "valueQuantity": {
            "value": rng.randint(45, 140),
            "unit": "/min",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }


def transaction(rng: random.Random) -> dict[str, Any]:
    subject = f"urn:uuid:{uuid.uuid4()}"
    entries = [{"fullUrl": subject, "resource": patient(rng), "request": {"method": "POST", "url": "Patient"}}]
    entries += [
        {"resource": observation(rng, subject), "request": {"method": "POST", "url": "Observation"}} for _ in range(3)
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def run_client(base: str, token: str, seconds: float, seed: int) -> Result:
    """Send the mix back to back until ``seconds`` have passed."""
    rng = random.Random(seed)
    client = Client(base, token)
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    mine: list[dict[str, Any]] = []
    for _ in range(SEED_PATIENTS):
        status, body = client.call("POST", "Patient", patient(rng))
        if status == 201:
            mine.append(body)
    kinds, weights = list(MIX), list(MIX.values())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        kind = rng.choices(kinds, weights)[0]
        if kind in ("read", "update", "search") and not mine:
            kind = "create"
        target = rng.choice(mine) if mine else None
        started = time.perf_counter()
        if kind == "read":
            status, body = client.call("GET", f"Patient/{target['id']}")  # type: ignore[index]
        elif kind == "search":
            if rng.random() < 0.5:
                status, body = client.call("GET", f"Observation?subject=Patient/{target['id']}&_count=10")  # type: ignore[index]
            else:
                status, body = client.call("GET", f"Patient?family={rng.choice(FAMILIES)}&_count=10")
        elif kind == "create":
            status, body = client.call("POST", "Patient", patient(rng))
        elif kind == "update" and rng.random() < 0.5:
            # Every client writes the same few Patients (update as create): writers contend.
            shared = {**patient(rng), "id": f"soak-shared-{rng.randrange(SHARED)}"}
            status, body = client.call("PUT", f"Patient/{shared['id']}", shared)
            target = None
        elif kind == "update":
            assert target is not None
            target["telecom"] = [{"system": "phone", "value": f"+1-555-{rng.randint(0, 9999):04d}"}]
            status, body = client.call("PUT", f"Patient/{target['id']}", target)
        else:
            status, body = client.call("POST", "", transaction(rng))
        elapsed = time.perf_counter() - started
        if 200 <= status < 300:
            latencies[kind].append(elapsed)
            if kind == "create" and len(mine) < 200:
                mine.append(body)
            elif kind == "update" and target is not None:
                mine[mine.index(target)] = body
        else:
            errors[f"{kind} {status or 'conn'}"] += 1
            if errors[f"{kind} {status or 'conn'}"] == 1:
                print(f"first {kind} error: {status} {json.dumps(body)[:300]}", file=sys.stderr)
    return dict(latencies), errors


def run_process(base: str, token: str, seconds: float, clients: int, seed: int) -> Result:
    """``clients`` threads in this process; their results merged."""
    results: list[Result] = []
    threads = [
        threading.Thread(target=lambda n=n: results.append(run_client(base, token, seconds, seed * 1000 + n)))
        for n in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return merge(results)


def merge(results: list[Result]) -> Result:
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    for each_latencies, each_errors in results:
        for kind, values in each_latencies.items():
            latencies[kind].extend(values)
        errors.update(each_errors)
    return dict(latencies), errors


def percentile(values: list[float], share: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def report(latencies: dict[str, list[float]], errors: Counter[str], seconds: float) -> tuple[float, float, float]:
    """Print the run's figures; return its req/s, p50 and p99 (seconds)."""
    every = [value for values in latencies.values() for value in values]
    requests = len(every) + sum(errors.values())
    p50, p99 = percentile(every, 0.5), percentile(every, 0.99)
    print(f"requests   {requests} in {seconds:.1f} s: {requests / seconds:.1f} req/s")
    by_status = Counter(key.split()[1] for key in errors.elements())
    print(f"errors     {sum(errors.values())}" + (f" by status {dict(by_status)}: {dict(errors)}" if errors else ""))
    print(f"latency    p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
    # Where the tail is: each kind's share of the requests slower than the overall p99.
    slow = Counter(kind for kind, values in latencies.items() for value in values if value > p99)
    for kind in MIX:
        values = latencies.get(kind, [])
        print(
            f"  {kind:<12} {len(values):>7} ok  p50 {percentile(values, 0.5) * 1000:7.1f} ms"
            f"  p99 {percentile(values, 0.99) * 1000:7.1f} ms"
            f"  {100 * slow[kind] / max(1, sum(slow.values())):5.1f} % of those over the p99"
        )
    return requests / seconds, p50, p99


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def spawned(database: str, workers: int) -> Iterator[tuple[str, str]]:
    """``fhir-twin serve`` on ``database`` (a temporary SQLite file when empty): its URL and a token."""
    executable = shutil.which("fhir-twin") or str(Path(sys.executable).with_name("fhir-twin"))
    with tempfile.TemporaryDirectory() as folder:
        database = database or f"sqlite:///{folder}/soak.db"
        made = subprocess.run(
            [executable, "token", "create", "--name", "soak", "--scope", "system/*.cruds", "--database", database],
            capture_output=True,
            text=True,
            check=True,
        )
        token = made.stdout.splitlines()[0].strip()
        port = free_port()
        command = [executable, "serve", "--port", str(port), "--database", database, "--workers", str(workers)]
        env = {**os.environ, "FHIR_TWIN_LOG_LEVEL": "WARNING", "FHIR_TWIN_AUTH_MODE": "tokens"}
        with open(Path(folder) / "server.log", "wb") as log:
            server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                base = f"http://127.0.0.1:{port}/fhir"
                wait_ready(base, server)
                yield base, token
            finally:
                server.terminate()
                server.wait(timeout=30)
        tail = (Path(folder) / "server.log").read_text(errors="replace").strip().splitlines()[-20:]
        if tail:
            print("server log (last lines):\n  " + "\n  ".join(tail))


def wait_ready(base: str, server: subprocess.Popen[bytes], seconds: float = 120) -> None:
    client = Client(base, "")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        if client.call("GET", "metadata")[0] == 200:
            return
        time.sleep(0.2)
    raise SystemExit(f"no answer from {base}/metadata in {seconds:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", type=float, help="how long to soak")
    parser.add_argument("--url", default="http://127.0.0.1:8080/fhir", help="the server's FHIR base")
    parser.add_argument("--token", default=os.environ.get("FHIR_TWIN_TOKEN", ""), help="bearer token")
    parser.add_argument("--spawn", action="store_true", help="start fhir-twin serve for the run")
    parser.add_argument("--database", default="", help="with --spawn: database URL (default: temporary SQLite)")
    parser.add_argument("--workers", type=int, default=2, help="with --spawn: server worker processes")
    parser.add_argument("--clients", type=int, default=16, help="client threads in all")
    parser.add_argument("--processes", type=int, default=2, help="client processes the clients are shared out over")
    parser.add_argument(
        "--databases", default="", help="comma-separated, of sqlite and postgresql: one spawned run each"
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="with --databases: the PostgreSQL server (each run creates and drops its own database)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="with --databases: runs per database, alternated")
    args = parser.parse_args()
    if not args.databases:
        with spawned(args.database, args.workers) if args.spawn else nullserver(args.url, args.token) as (base, token):
            where = args.database or ("temporary SQLite" if args.spawn else base)
            _figures, errors = soak(args, base, token, where)
        return 1 if errors else 0

    names = [name.strip() for name in args.databases.split(",") if name.strip()]
    figures: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    failed = False
    for _ in range(args.repeat):
        for name in names:
            url = args.postgres_url if name == "postgresql" else ""
            with (
                tempfile.TemporaryDirectory() as folder,
                fresh_database(url, folder) as database,
                spawned(database, args.workers) as (base, token),
            ):
                run, errors = soak(args, base, token, name)
            figures[name].append(run)
            failed = failed or bool(errors)
            print()
    throughput = {name: statistics.median(run[0] for run in runs) for name, runs in figures.items()}
    for name, runs in figures.items():
        p50 = statistics.median(run[1] for run in runs) * 1000
        p99 = statistics.median(run[2] for run in runs) * 1000
        print(
            f"median     {name:<11} {throughput[name]:.1f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms ({len(runs)} runs)"
        )
    if "sqlite" in throughput and "postgresql" in throughput:
        print(f"postgresql/sqlite throughput  {throughput['postgresql'] / throughput['sqlite']:.2f}")
    return 1 if failed else 0


def soak(
    args: argparse.Namespace, base: str, token: str, where: str
) -> tuple[tuple[float, float, float], Counter[str]]:
    """One soak of ``base``: its figures printed; its req/s, p50, p99 and its errors returned."""
    shares = [args.clients // args.processes + (n < args.clients % args.processes) for n in range(args.processes)]
    shares = [share for share in shares if share]
    print(f"fhir-twin soak (bench/soak.py): {args.seconds:.0f} s, {args.clients} clients in {len(shares)} processes")
    print(f"  server     {base} on {where.split('@')[-1]}, {os.cpu_count()} cpus")
    with multiprocessing.get_context("spawn").Pool(len(shares)) as pool:
        results = pool.starmap(
            run_process, [(base, token, args.seconds, share, seed) for seed, share in enumerate(shares)]
        )
    latencies, errors = merge(results)
    return report(latencies, errors, args.seconds), errors


@contextmanager
def nullserver(url: str, token: str) -> Iterator[tuple[str, str]]:
    yield url, token


if __name__ == "__main__":
    sys.exit(main())
