"""Ingest throughput: Synthea transaction Bundles posted over HTTP, in resources per second.

Posts every given Bundle (all their resource types) ``--rounds`` times from ``--clients``
concurrent connections to a running server (or one started with ``--spawn``), and prints the
rate next to the raw rate at which fhir.resources alone validates the same resources in this
process — the floor of what any server built on it can do per core.

With ``--spawn`` the run is made twice, on fresh databases: with the digital twin kept live
(the default) and with it switched off (``FHIR_TWIN_TWIN=false``), and the twin's cost is
printed as the share of throughput it takes.

With ``--spawn --bundle-helper alternate`` the alternated runs compare the setting
``bundle_helper`` off and on instead (the twin on in both): each server is first warmed with
the smallest Bundle from ``--workers`` connections and given 5 s, so each worker's helper is ready
when the timed posts start. ``--bundle-helper on|off`` sets it for every other run (default on).

With ``--versus-load`` the same Bundles are ingested both ways, each on a fresh database,
alternated ``--repeat`` times: posted one after another over one connection to a spawned server
(``--clients 1`` is implied), and loaded by ``fhir-twin load`` (every file ``--rounds`` times, in
one load). Both rates count resources written per second of ingesting, without the start-up of
the server or of the command; the command's wall time, start-up included, is printed beside it.
``load`` should be at least as fast as HTTP ingest.

With ``--entries N`` one transaction Bundle of N entries is built from the Bundles' resources
(each Bundle copied with fresh ``urn:uuid`` fullUrls, so the entries refer to each other as
Synthea's do) and posted once per run to a spawned server on a fresh database, for each of
``--databases`` in turn, alternated ``--repeat`` times; it prints each post's time and
resources/s, the medians, and the PostgreSQL/SQLite time ratio.

    python bench/ingest.py --spawn                      # temporary SQLite servers
    python bench/ingest.py --spawn --database postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/ingest.py --spawn --clients 1 --rounds 2 --bundle-helper alternate
    python bench/ingest.py --versus-load --rounds 1     # HTTP vs fhir-twin load, SQLite
    python bench/ingest.py --entries 3000 --databases sqlite,postgresql \
        --postgres-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILES = sorted((ROOT / "fixtures" / "synthea").glob("*.json")) + sorted(
    (ROOT.parent / "shared" / "fhir-test-data" / "synthea").glob("tietai-*.json")
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, default=DEFAULT_FILES, help="transaction Bundles to post")
    parser.add_argument("--url", default="http://127.0.0.1:8080/fhir")
    parser.add_argument("--spawn", action="store_true", help="start fhir-twin serve for the run")
    parser.add_argument("--database", default="", help="with --spawn: database URL (default: temporary SQLite)")
    parser.add_argument("--workers", type=int, default=2, help="with --spawn: server worker processes")
    parser.add_argument("--clients", type=int, default=2, help="concurrent connections posting Bundles")
    parser.add_argument("--rounds", type=int, default=3, help="times each Bundle is posted")
    parser.add_argument("--repeat", type=int, default=2, help="with --spawn: runs per twin setting, alternated")
    parser.add_argument("--versus-load", action="store_true", help="compare sequential HTTP with fhir-twin load")
    parser.add_argument(
        "--bundle-helper",
        default="on",
        choices=("on", "off", "alternate"),
        help="the setting bundle_helper of spawned servers; alternate: compare it off and on (with --spawn)",
    )
    parser.add_argument("--entries", type=int, default=0, help="post one transaction Bundle of this many entries")
    parser.add_argument(
        "--databases", default="sqlite", help="with --entries: comma-separated, of sqlite and postgresql"
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        help="with --entries: the PostgreSQL server (each run creates and drops its own database)",
    )
    args = parser.parse_args()
    if args.versus_load:
        return versus_load(args)
    if args.entries:
        return one_transaction(args)

    bundles = [path.read_bytes() for path in args.files]
    resources = [entry["resource"] for body in bundles for entry in json.loads(body)["entry"]]
    print("fhir-twin ingest benchmark (bench/ingest.py)")
    print(f"  date      {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"  python    {platform.python_version()} on {platform.platform()}, {os.cpu_count()} cpus")
    print(
        f"  bundles   {len(bundles)} files, {len(resources)} resources, x{args.rounds} rounds, {args.clients} clients"
    )
    raw = raw_validation_rate(resources)
    print(f"  fhir.resources model_validate alone: {raw:,.0f} resources/s (one process)")

    # Settings alternate (off, on, off, on, ...) so drift on a shared machine hits both alike.
    modes = ["off", "on"] * args.repeat if args.spawn else ["as running"]
    compared = "helper" if args.spawn and args.bundle_helper == "alternate" else "twin"
    runs: dict[str, list[float]] = {}
    failed = False
    for mode in modes:
        if compared == "helper":
            settings = {"twin": True, "helper": mode == "on"}
        else:
            settings = {"twin": mode != "off", "helper": args.bundle_helper != "off"}
        with server(args, **settings) as url:
            if compared == "helper":
                smallest = min(bundles, key=len)
                post_all(url, [smallest], args.workers, 2 * args.workers)
                time.sleep(5)
            rate, latencies, errors = post_all(url, bundles, args.clients, args.rounds)
        runs.setdefault(mode, []).append(rate)
        print()
        label = f"{compared} {mode}" if args.spawn else "ingest"
        print(f"{label:<10} {rate:,.0f} resources/s over HTTP ({rate / raw:.0%} of the raw validation rate)")
        if latencies:
            print(f"bundle     p50 {statistics.median(latencies) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms")
        for error in errors[:3]:
            print(f"error      {error}")
        failed = failed or bool(errors)
    if len(runs) == 2:
        on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
        print(f"\nmedians    {compared} on {on:,.0f}, off {off:,.0f} resources/s over {args.repeat} runs each")
        if compared == "helper":
            print(f"helper     {on / off:.2f}x ingest throughput")
        else:
            print(f"twin cost  {1 - on / off:.1%} of ingest throughput")
    return 1 if failed else 0


def versus_load(args: argparse.Namespace) -> int:
    """Sequential HTTP ingest against ``fhir-twin load`` of the same files, alternated."""
    args.spawn, args.clients = True, 1
    total = sum(len(json.loads(path.read_bytes())["entry"]) for path in args.files) * args.rounds
    print("fhir-twin ingest: HTTP (sequential) vs fhir-twin load (bench/ingest.py --versus-load)")
    print(f"  date      {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"  python    {platform.python_version()} on {platform.platform()}, {os.cpu_count()} cpus")
    print(f"  bundles   {len(args.files)} files x{args.rounds} rounds = {total} resources")
    print(f"  database  {args.database or 'temporary SQLite'}")
    rates: dict[str, list[float]] = {"http": [], "load": []}
    failed = False
    for way in ["http", "load"] * args.repeat:
        if way == "http":
            with server(args) as url:
                rate, _latencies, errors = post_all(url, [path.read_bytes() for path in args.files], 1, args.rounds)
            print(f"http       {rate:,.0f} resources/s")
            for error in errors[:3]:
                print(f"error      {error}")
            failed = failed or bool(errors)
        else:
            rate, wall, error = run_load(args)
            print(f"load       {rate:,.0f} resources/s ({wall:.1f} s wall time with start-up)")
            if error:
                print(f"error      {error}")
            failed = failed or bool(error)
        rates[way].append(rate)
    http, load = statistics.median(rates["http"]), statistics.median(rates["load"])
    print(f"\nmedians    http {http:,.0f}, load {load:,.0f} resources/s over {args.repeat} runs each")
    print(f"load/http  {load / http:.2f}")
    return 1 if failed else 0


def one_transaction(args: argparse.Namespace) -> int:
    """One transaction Bundle of ``--entries`` entries per run, on each of ``--databases``, alternated."""
    args.spawn = True
    databases = [name.strip() for name in args.databases.split(",") if name.strip()]
    body = json.dumps(large_transaction([path.read_bytes() for path in args.files], args.entries)).encode()
    print("fhir-twin one large transaction (bench/ingest.py --entries)")
    print(f"  date      {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"  python    {platform.python_version()} on {platform.platform()}, {os.cpu_count()} cpus")
    print(f"  bundle    {args.entries} entries ({len(body) / 1e6:.1f} MB) from {len(args.files)} files")
    times: dict[str, list[float]] = {name: [] for name in databases}
    failed = False
    for _ in range(args.repeat):
        for name in databases:
            args.database = args.postgres_url if name == "postgresql" else ""
            with server(args) as url:
                _rate, latencies, errors = post_all(url, [body], 1, 1)
            if errors:
                print(f"{name:<11} error {errors[0]}")
                failed = True
                continue
            times[name].append(latencies[0])
            print(f"{name:<11} {latencies[0]:.2f} s, {args.entries / latencies[0]:,.0f} resources/s")
    print()
    medians = {name: statistics.median(values) for name, values in times.items() if values}
    for name, median in medians.items():
        print(f"median     {name} {median:.2f} s over {len(times[name])} runs")
    if "sqlite" in medians and "postgresql" in medians:
        print(f"postgresql/sqlite time  {medians['postgresql'] / medians['sqlite']:.2f}")
    return 1 if failed else 0


def large_transaction(bundles: list[bytes], entries: int) -> dict[str, Any]:
    """A transaction Bundle of ``entries`` entries: the Bundles' entries in order, each Bundle copied
    as often as needed with fresh ``urn:uuid`` fullUrls and references. An entry is taken only when
    every entry it refers to was taken before it, so the Bundle never refers outside itself."""
    taken: list[dict[str, Any]] = []
    while len(taken) < entries:
        for body in bundles:
            text = body.decode()
            fresh = {urn: f"urn:uuid:{uuid.uuid4()}" for urn in set(_URN.findall(text))}
            copied = _URN.sub(lambda match, fresh=fresh: fresh[match[0]], text)
            seen: set[str] = set()
            for entry in json.loads(copied)["entry"]:
                if set(_URN.findall(json.dumps(entry["resource"]))) <= seen:
                    taken.append(entry)
                    seen.add(entry["fullUrl"])
                    if len(taken) == entries:
                        return {"resourceType": "Bundle", "type": "transaction", "entry": taken}
    return {"resourceType": "Bundle", "type": "transaction", "entry": taken}


_URN = re.compile(r"urn:uuid:[0-9a-fA-F-]{36}")


def run_load(args: argparse.Namespace) -> tuple[float, float, str]:
    """``fhir-twin load`` of every file ``--rounds`` times on a fresh database: its own rate (the
    summary line's), its wall time, and the error it ended with, if any."""
    command = shutil.which("fhir-twin") or str(Path(sys.executable).with_name("fhir-twin"))
    folder = tempfile.mkdtemp(prefix="fhir-twin-load-")
    try:
        with fresh_database(args.database, folder) as database:
            files = [str(path) for _ in range(args.rounds) for path in args.files]
            started = time.perf_counter()
            done = subprocess.run(
                [command, "load", *files, "--database", database],
                capture_output=True,
                text=True,
                env={**os.environ, "FHIR_TWIN_LOG_LEVEL": "WARNING", "FHIR_TWIN_AUTH_MODE": "none"},
                check=False,
            )
            wall = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    summary = [line for line in done.stdout.splitlines() if "resources loaded in" in line]
    if not summary:
        return 0.0, wall, (done.stderr or done.stdout)[-300:]
    rate = float(summary[-1].rpartition("(")[2].split()[0])
    return rate, wall, "" if done.returncode == 0 else done.stderr[-300:]


def raw_validation_rate(resources: list[dict[str, Any]]) -> float:
    """Resources per second that ``get_fhir_model_class(type).model_validate`` manages here."""
    from fhir.resources.R4B import get_fhir_model_class

    for resource in resources[:50]:  # import the models first
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    started = time.perf_counter()
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return len(resources) / (time.perf_counter() - started)


def post_all(url: str, bundles: list[bytes], clients: int, rounds: int) -> tuple[float, list[float], list[str]]:
    """Post every Bundle ``rounds`` times over ``clients`` keep-alive connections."""
    parts = urlsplit(url)
    work = [body for _ in range(rounds) for body in bundles]
    sizes = {id(body): len(json.loads(body)["entry"]) for body in bundles}
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    done = [0]

    def worker() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        while True:
            with lock:
                if not work:
                    break
                body = work.pop()
            started = time.perf_counter()
            connection.request(
                "POST", parts.path, body, {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
            )
            response = connection.getresponse()
            answer = response.read()
            elapsed = time.perf_counter() - started
            with lock:
                if response.status == 200:
                    latencies.append(elapsed)
                    done[0] += sizes[id(body)]
                else:
                    errors.append(f"{response.status}: {answer[:300]!r}")
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return done[0] / (time.perf_counter() - started), latencies, errors


@contextmanager
def fresh_database(url: str, folder: str) -> Iterator[str]:
    """An empty database for one run: a SQLite file in ``folder``, or a new PostgreSQL database
    beside the one ``url`` names, dropped afterwards."""
    if not url:
        yield f"sqlite:///{folder}/bench.db"
        return
    import sqlalchemy

    admin_url = sqlalchemy.engine.make_url(url)
    name = f"fhir_twin_ingest_{os.getpid()}_{int(time.time() * 1000)}"
    admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def server(args: argparse.Namespace, twin: bool = True, helper: bool = True) -> Iterator[str]:
    """The base URL to post to: ``--url``, or a server started for the run on a fresh database."""
    if not args.spawn:
        yield args.url
        return
    folder = tempfile.mkdtemp(prefix="fhir-twin-ingest-")
    with fresh_database(args.database, folder) as database:
        yield from _spawned(args, folder, database, twin, helper)


def _spawned(args: argparse.Namespace, folder: str, database: str, twin: bool, helper: bool) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = shutil.which("fhir-twin") or str(Path(sys.executable).with_name("fhir-twin"))
    log = open(Path(folder) / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [command, "serve", "--port", str(port), "--database", database, "--workers", str(args.workers)],
        stdout=log,
        stderr=subprocess.STDOUT,
        # What is measured is the twin's cost: requests go without credentials (auditing stays on).
        env={
            **os.environ,
            "FHIR_TWIN_LOG_LEVEL": "WARNING",
            "FHIR_TWIN_TWIN": "true" if twin else "false",
            "FHIR_TWIN_BUNDLE_HELPER": "true" if helper else "false",
            "FHIR_TWIN_AUTH_MODE": "none",
        },
    )
    url = f"http://127.0.0.1:{port}/fhir"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/fhir/metadata")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            raise SystemExit(f"the server did not start; see {folder}/server.log")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
