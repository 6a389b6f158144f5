"""Measure how long a normal client waits while many slow clients hold connections open.

What it measures
----------------
First ``--requests`` searches (``GET {base}/Patient?_count=1``, each on a new connection, one
after another) with no other client: the baseline. Then it opens ``--idle`` connections that send
nothing, and ``--half`` that send a request line and part of the headers, or the headers and part
of an announced body, and then wait (as a stalled or malicious client, or a keep-alive client
gone quiet, does). With all of those open it sends the same searches again. Per phase it prints
the requests, errors (non-200 answers and time-outs after ``--timeout`` seconds) and the p50/p99/max
latency in milliseconds. A server that gives each connection a thread as it is accepted stalls in
the second phase; one that reads requests in full before they take a thread does not.

With ``--spawn`` it starts ``fhir-twin serve`` (authentication off, a temporary SQLite database)
on the ``--url`` port and stops it afterwards. It only talks to loopback addresses.

Exit status: 0 when the second phase had no errors, 1 otherwise, 3 when the server cannot be reached.

Examples::

    python bench/slow_clients.py --spawn
    python bench/slow_clients.py --url http://127.0.0.1:8080/fhir --idle 500 --half 500
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

SEARCH = "/Patient?_count=1"


def _search(host: str, port: int, path: str, timeout: float) -> float | None:
    """Seconds one search took on a new connection, or None when it failed or timed out."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"Accept": "application/fhir+json"})
        response = connection.getresponse()
        response.read()
        return time.perf_counter() - started if response.status == 200 else None
    except OSError:
        return None
    finally:
        connection.close()


def _phase(name: str, host: str, port: int, path: str, requests: int, timeout: float) -> int:
    """Run and print one phase; returns its error count."""
    results = [_search(host, port, path, timeout) for _ in range(requests)]
    times = sorted(1000 * result for result in results if result is not None)
    errors = len(results) - len(times)
    if times:
        p50 = statistics.median(times)
        p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
        figures = f"{p50:9.1f} {p99:9.1f} {times[-1]:9.1f}"
    else:
        figures = f"{'-':>9} {'-':>9} {'-':>9}"
    print(f"{name:34} {requests:8} {errors:7} {figures}", flush=True)
    return errors


def _slow_connections(host: str, port: int, idle: int, half: int) -> list[socket.socket]:
    """``idle`` connections that send nothing and ``half`` that send half a request."""
    held = [socket.create_connection((host, port), timeout=10) for _ in range(idle)]
    for number in range(half):
        connection = socket.create_connection((host, port), timeout=10)
        if number % 2:
            connection.sendall(f"GET /fhir/Patient HTTP/1.1\r\nHost: {host}:{port}\r\n".encode())
        else:
            connection.sendall(
                f"POST /fhir/Patient HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/fhir+json\r\n"
                'Content-Length: 1000\r\n\r\n{"resourceType": "Patient", '.encode()
            )
        held.append(connection)
    return held


def _spawn(server: str, port: int, workers: int | None, folder: str) -> subprocess.Popen[bytes]:
    command = [server, "serve", "--port", str(port), "--database", f"sqlite:///{Path(folder) / 'fhir.db'}"]
    if workers:
        command += ["--workers", str(workers)]
    env = {**os.environ, "FHIR_TWIN_AUTH_MODE": "none", "FHIR_TWIN_LOG_LEVEL": "WARNING"}
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _ready(host: str, port: int, base_path: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _search(host, port, base_path + "/metadata", 2) is not None:
            return True
        time.sleep(0.3)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080/fhir", help="FHIR base URL (default %(default)s)")
    parser.add_argument("--idle", type=int, default=200, help="connections that send nothing (default 200)")
    parser.add_argument("--half", type=int, default=200, help="connections that send half a request (default 200)")
    parser.add_argument("--requests", type=int, default=100, help="searches per phase (default 100)")
    parser.add_argument("--timeout", type=float, default=15, help="seconds a search may take (default 15)")
    parser.add_argument("--spawn", action="store_true", help="start `fhir-twin serve` on the --url port")
    parser.add_argument("--workers", type=int, help="with --spawn: the server's --workers")
    parser.add_argument(
        "--server",
        default=shutil.which("fhir-twin") or str(Path(sys.executable).with_name("fhir-twin")),
        help="with --spawn: the server executable (default: on PATH, else beside this Python)",
    )
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("only loopback addresses are benchmarked")
    path = url.path.rstrip("/") + SEARCH
    with tempfile.TemporaryDirectory(prefix="fhir-twin-slow-clients-") as folder:
        process = _spawn(args.server, port, args.workers, folder) if args.spawn else None
        held: list[socket.socket] = []
        try:
            if not _ready(host, port, url.path.rstrip("/"), 120 if process else 5):
                print(f"no answer from {args.url}/metadata", file=sys.stderr)
                return 3
            print("bench/slow_clients.py: a search on a new connection, one after another")
            print(f"{'phase':34} {'requests':>8} {'errors':>7} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
            _phase("alone", host, port, path, args.requests, args.timeout)
            held = _slow_connections(host, port, args.idle, args.half)
            name = f"with {args.idle} idle, {args.half} half-sent"
            errors = _phase(name, host, port, path, args.requests, args.timeout)
        finally:
            for connection in held:
                connection.close()
            if process is not None:
                process.terminate()
                process.wait(timeout=60)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
