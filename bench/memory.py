"""Measure an idle FHIR server's memory and the CLI's start-up time.

What it measures
----------------
It starts ``fhir-twin serve --workers N`` (default 2) on a new SQLite database in a temporary
folder, waits until ``GET {base}/metadata`` answers 200, optionally sends ``--warm N`` creates and
N reads of a Patient (so what the first requests import is counted), waits for the server to go
idle, then reads ``/proc/<pid>/smaps_rollup`` (Linux) of the master and of each worker (its
children) and prints per process, in MB:

``RSS``  resident pages, shared ones counted in full in every process;
``PSS``  resident pages, each shared page divided among the processes sharing it: the sum over
         the processes is what the server really holds;
``USS``  pages only this process holds (private clean + private dirty).

Then the wall time of ``fhir-twin --help`` (median of ``--help-runs``), the start-up every CLI
command pays. It prints figures and asserts nothing; exit status 3 when the server cannot start.

Examples::

    python bench/memory.py
    python bench/memory.py --warm 20 --json
    PYTHONPATH=/path/to/other/tree python bench/memory.py   # the same figures for other code
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

# The spawned server as bench/crud.py runs it (this folder is on sys.path when a script here runs).
from crud import EXIT_UNREACHABLE, BenchError, SpawnedServer, make_token, parse_target

READY_TIMEOUT = 90.0
FHIR_JSON = "application/fhir+json"


@dataclass
class Memory:
    """One process's memory, in kB as ``smaps_rollup`` gives it."""

    role: str
    pid: int
    rss: int
    pss: int
    uss: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def request(port: int, method: str, path: str, token: str, body: bytes | None = None) -> tuple[int, bytes, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}
        if body is not None:
            headers["Content-Type"] = FHIR_JSON
        conn.request(method, f"/fhir{path}", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read(), resp.getheader("Location") or ""
    finally:
        conn.close()


def warm(port: int, token: str, n: int) -> None:
    """``n`` creates and ``n`` reads of a Patient: what the first requests import gets counted."""
    for i in range(n):
        body = json.dumps({"resourceType": "Patient", "name": [{"family": f"Warm{i}", "given": ["Idle"]}]})
        status, _, location = request(port, "POST", "/Patient", token, body.encode())
        if status != 201:
            print(f"warning: create answered {status}", file=sys.stderr)
            continue
        patient_id = location.split("/Patient/", 1)[1].split("/", 1)[0]
        request(port, "GET", f"/Patient/{patient_id}", token)


def executable() -> str:
    """``fhir-twin`` beside this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "fhir-twin"
    found = str(beside) if beside.exists() else shutil.which("fhir-twin")
    if found is None:
        raise BenchError(
            "cannot find fhir-twin next to this Python or on PATH; pip install -e . first", EXIT_UNREACHABLE
        )
    return found


def children(pid: int) -> list[int]:
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def memory_of(role: str, pid: int) -> Memory:
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    return Memory(role, pid, fields["Rss"], fields["Pss"], fields["Private_Clean"] + fields["Private_Dirty"])


def help_seconds(exe: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([exe, "--help"], capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(args: argparse.Namespace) -> tuple[list[Memory], float]:
    exe = executable()
    with tempfile.TemporaryDirectory(prefix="fhir-twin-memory-") as temp:
        database = f"sqlite:///{Path(temp) / 'fhir.db'}"
        token = make_token(exe, database)
        port = free_port()
        command = [exe, "serve", "--port", str(port), "--database", database, "--workers", str(args.workers)]
        server = SpawnedServer(command, Path(temp) / "server.log")
        try:
            server.wait_ready(parse_target(f"http://127.0.0.1:{port}/fhir"), [], READY_TIMEOUT)
            warm(port, token, args.warm)
            server.settle()
            rows = [memory_of("master", server.process.pid)]
            rows += [memory_of("worker", child) for child in children(server.process.pid)]
        finally:
            server.stop()
    return rows, help_seconds(exe, args.help_runs)


def mb(kb: int) -> str:
    return f"{kb / 1024:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="server workers (default %(default)s)")
    parser.add_argument("--warm", type=int, default=0, metavar="N", help="N creates and N reads before measuring")
    parser.add_argument("--help-runs", type=int, default=5, help="runs of fhir-twin --help (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if not Path("/proc/self/smaps_rollup").exists():
        sys.exit("needs Linux /proc/<pid>/smaps_rollup")
    try:
        rows, help_time = measure(args)
    except BenchError as error:
        print(f"memory.py: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    total = Memory("total", 0, sum(r.rss for r in rows), sum(r.pss for r in rows), sum(r.uss for r in rows))
    if args.json:
        print(
            json.dumps(
                {
                    "processes": [asdict(r) for r in rows],
                    "total": asdict(total),
                    "help_seconds": round(help_time, 3),
                    "warm": args.warm,
                }
            )
        )
        return
    print(f"{'process':<8} {'pid':>7} {'RSS MB':>8} {'PSS MB':>8} {'USS MB':>8}")
    for row in [*rows, total]:
        pid = str(row.pid) if row.pid else ""
        print(f"{row.role:<8} {pid:>7} {mb(row.rss):>8} {mb(row.pss):>8} {mb(row.uss):>8}")
    print(f"fhir-twin --help: {help_time:.3f} s (median of {args.help_runs})")


if __name__ == "__main__":
    main()
