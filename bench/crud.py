"""Measure a FHIR R4 server's create, read and update throughput over HTTP.

What it measures
----------------
Each phase runs ``--clients`` threads. Each thread has its own persistent keep-alive
``http.client.HTTPConnection`` and sends one request after another, so the figures
show what N busy clients get on the FHIR REST API (R4 http.html):

``create``
    ``POST {base}/Patient`` with a varied, realistic Patient (names, birth dates,
    identifiers, telecom, address) and ``Prefer: return=minimal``. Expects 201 with
    ``Location: {base}/Patient/{id}/_history/{vid}``; the ids it gets feed the later phases.
``read``
    ``GET {base}/Patient/{id}`` for random ids created earlier. Expects 200 with that
    Patient (the body is parsed and its ``resourceType`` and ``id`` checked).
``update``
    ``PUT {base}/Patient/{id}`` with the whole resource, ``id`` included, and a changed
    phone number and address line (``Prefer: return=minimal``). Expects 200 or 201.
    Threads update disjoint sets of ids, so the figure is for uncontended updates.
``observation`` (only when asked for with ``--phases``)
    ``POST {base}/Observation``: vital signs (heart rate, blood pressure, temperature...)
    coded in LOINC with UCUM units, each referencing a Patient created earlier.

A phase stops at ``--seconds`` or after ``--requests`` requests, whichever comes first
(there is always both a time limit and a request cap, so a phase always ends). An
untimed ``--warmup`` run of the same operation comes before each measured phase. With
``--spawn``, each phase first waits (up to two minutes) until the server is idle, so the work a
phase leaves behind (the twin and the Doctor processing what was created, audit records still
queued) is not counted in the next phase's figures.

Per phase it prints the number of requests, errors (non-2xx answers, failed connections,
and 2xx answers that break the protocol, e.g. a create without ``Location``), the first
error's status and body excerpt, requests per second (all requests / wall time), and the
p50/p95/p99/max latency in milliseconds of successful requests, measured from sending
the request to having read the whole response. ``client cpu`` is this process's CPU time
over the wall time: near 100 % means the (GIL-bound) Python client, not the server, may
be the limit; then fewer threads or several bench processes give truer server figures.
``server ms/req`` (with ``--spawn``, on Linux) is the CPU time the server's processes used
during the phase per request: steadier than req/s when other work shares the cores.
``db ms/req`` (with ``--spawn --database postgresql...`` on this machine's own PostgreSQL) is the
CPU time of every ``postgres`` process on the machine per request: the backends' share of the
work, which runs on the same cores but is not in ``server ms/req``. Other clients of the same
PostgreSQL server are counted too, so measure on a quiet one.
Last, the create and read figures against issue 18's aims (creates >= 600/s, reads >= 2,000/s,
read p99 under 20 ms, all with auth and audit on), each marked met or missed.

Exit status: 0 when every phase had at most 1 % errors, 1 otherwise, 2 for bad
arguments, 3 when the server cannot be reached or started, 130 when interrupted.

It only ever talks to loopback addresses (127.0.0.0/8, localhost, ::1).

Examples::

    python bench/crud.py --spawn --seconds 5
    python bench/crud.py --url http://127.0.0.1:8080/fhir --clients 8 --json
    python bench/crud.py --requests 2000 --headers "Authorization: Bearer abc123"
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import ipaddress
import itertools
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FHIR_JSON = "application/fhir+json"
DEFAULT_URL = "http://127.0.0.1:8080/fhir"
DEFAULT_SECONDS = 10.0
#: Request cap per phase when only ``--seconds`` is given.
DEFAULT_REQUEST_CAP = 1_000_000
#: Time limit per phase when only ``--requests`` is given.
DEFAULT_TIME_LIMIT_FOR_REQUESTS = 600.0
#: More than this share of errors in any phase makes the run fail.
MAX_ERROR_RATE = 0.01
READY_TIMEOUT = 60.0
# Before each phase a spawned server is given this long to finish what the last one left.
SETTLE_TIMEOUT = 120.0
SETTLE_STEP = 0.5
SETTLE_IDLE = 0.05
#: Pause after a failed connection before the thread tries again.
CONNECTION_ERROR_PAUSE = 0.01
# Clock ticks a second, the unit of the CPU times in /proc/<pid>/stat (proc(5)).
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
EXCERPT_CHARS = 300
ALL_PHASES = ("create", "read", "update", "observation")
#: Issue 18's aims with auth and audit on (2 workers x 4 threads, 2-core machine).
AIM_CREATES_PER_S = 600.0
AIM_READS_PER_S = 2000.0
AIM_READ_P99_MS = 20.0
DEFAULT_PHASES = ("create", "read", "update")

EXIT_OK = 0
EXIT_ERRORS = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class BenchError(Exception):
    """A problem that ends the run with a message instead of a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_UNREACHABLE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------- target URL


@dataclass(frozen=True)
class Target:
    """Where the server is: a loopback ``http://`` base URL, split up."""

    host: str
    port: int
    base_path: str  # "/fhir", or "" when the server is mounted at the root

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.base_path}"

    def path(self, relative: str) -> str:
        return f"{self.base_path}/{relative}"


LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")


def is_loopback_host(host: str) -> bool:
    """True for ``localhost``, any 127.0.0.0/8 address and ``::1``; nothing else."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in LOOPBACK_V4
    return address == ipaddress.IPv6Address("::1")


def parse_target(url: str) -> Target:
    """Split ``--url``, refusing anything but plain HTTP to a loopback address."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        raise BenchError(f"--url must be an http:// URL, not {url!r}", EXIT_USAGE)
    host = parts.hostname or ""
    if not is_loopback_host(host):
        raise BenchError(
            f"refusing --url {url!r}: this benchmark only talks to loopback addresses (127.0.0.0/8, localhost, ::1)",
            EXIT_USAGE,
        )
    if parts.query or parts.fragment:
        raise BenchError(f"--url must be a base URL without query or fragment: {url!r}", EXIT_USAGE)
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise BenchError(f"bad port in --url {url!r}: {exc}", EXIT_USAGE) from None
    return Target(host=host, port=port, base_path=parts.path.rstrip("/"))


def parse_header(text: str) -> tuple[str, str]:
    """``"Name: value"`` -> ``("Name", "value")`` (for ``argparse``)."""
    name, sep, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not sep or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    if "\r" in value or "\n" in value:
        raise argparse.ArgumentTypeError(f"header value must be one line: {text!r}")
    return name, value


# --------------------------------------------------------------------------- HTTP client


@dataclass
class Response:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes
    latency: float  # seconds, request sent to body read


class Client:
    """One keep-alive connection, used by one thread at a time."""

    def __init__(self, target: Target, headers: Sequence[tuple[str, str]], timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.user_headers = list(headers)
        self.connects = 0
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.target.host, self.target.port, timeout=self.timeout)
            self._conn.connect()
            self.connects += 1
        return self._conn

    def headers_for(self, defaults: dict[str, str]) -> dict[str, str]:
        """The request's own headers, overridden by ``--headers`` (case-insensitively)."""
        merged = dict(defaults)
        for name, value in self.user_headers:
            for existing in [k for k in merged if k.lower() == name.lower()]:
                del merged[existing]
            merged[name] = value
        return merged

    def request(self, method: str, relative: str, body: bytes | None = None, prefer_minimal: bool = False) -> Response:
        """Send one request and read the whole answer; connection errors propagate."""
        defaults = {"Accept": FHIR_JSON}
        if body is not None:
            defaults["Content-Type"] = f"{FHIR_JSON}; charset=utf-8"
        if prefer_minimal:
            defaults["Prefer"] = "return=minimal"
        headers = self.headers_for(defaults)
        conn = self._connection()
        started = time.perf_counter()
        conn.request(method, self.target.path(relative), body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        latency = time.perf_counter() - started
        if resp.will_close:
            self.reset()
        return Response(resp.status, resp.reason, resp.msg, data, latency)

    def reset(self) -> None:
        """Drop the connection; the next request opens a new one."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None


def excerpt(body: bytes, limit: int = EXCERPT_CHARS) -> str:
    text = " ".join(body.decode("utf-8", "replace").split())
    return text if len(text) <= limit else text[:limit] + "..."


# --------------------------------------------------------------------------- test data

GIVEN_FEMALE = (
    "Olivia", "Emma", "Amelia", "Sophia", "Maria", "Aisha", "Mei", "Fatima", "Ingrid", "Lucía",
    "Chloé", "Priya", "Yuki", "Zainab", "Hannah", "Sofía", "Noor", "Elena", "Grace", "Ana",
)  # fmt: skip
GIVEN_MALE = (
    "James", "Liam", "Noah", "Mateo", "Mohammed", "Wei", "Arjun", "Lukas", "Kenji", "Oluwaseun",
    "Diego", "Pierre", "Ivan", "Samuel", "Omar", "Hiroshi", "Jonas", "Carlos", "David", "Kwame",
)  # fmt: skip
FAMILY = (
    "Smith", "García", "Müller", "Nguyen", "Kowalski", "O'Brien", "Okafor", "Rossi", "Johansson",
    "Dubois", "Kim", "Patel", "Silva", "Yamamoto", "Cohen", "Novák", "Hernández", "Andersen",
    "Ivanova", "Mensah", "van der Berg", "Al-Sayed", "Thompson", "Schmidt", "Chen",
)  # fmt: skip
STREETS = (
    "High Street", "Main Street", "Station Road", "Church Lane", "Oak Avenue", "Mill Road",
    "Park Terrace", "Rue de la Paix", "Hauptstraße", "Calle Mayor",
)  # fmt: skip
CITIES = (
    ("Springfield", "US", "62704"), ("Leeds", "GB", "LS1 4AP"), ("Lyon", "FR", "69002"),
    ("Bremen", "DE", "28195"), ("Zaragoza", "ES", "50001"), ("Utrecht", "NL", "3511 AB"),
    ("Toronto", "CA", "M5V 2T6"), ("Brisbane", "AU", "4000"),
)  # fmt: skip

MRN_SYSTEM = "urn:oid:2.16.840.1.113883.19.5.99999.1"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


class DataFactory:
    """Deterministic, varied test resources: patient ``n`` always looks the same."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.run_tag = f"{seed & 0xFFFFFF:06x}"

    def patient(self, n: int, update: int | None = None, resource_id: str | None = None) -> dict[str, Any]:
        """Patient number ``n``; ``update`` (a unique serial) changes phone and address."""
        rng = random.Random(self.seed * 1_000_003 + n)
        roll = rng.random()
        gender = "female" if roll < 0.49 else "male" if roll < 0.98 else rng.choice(("other", "unknown"))
        names = GIVEN_FEMALE if gender == "female" else GIVEN_MALE
        given = [rng.choice(names)]
        if rng.random() < 0.4:
            given.append(rng.choice(names))
        family = rng.choice(FAMILY)
        birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(34_000))
        city, country, postcode = rng.choice(CITIES)
        phone = f"+1-555-{rng.randrange(200, 999):03d}-{rng.randrange(10_000):04d}"
        line = f"{rng.randrange(1, 400)} {rng.choice(STREETS)}"
        if update is not None:
            phone = f"+1-555-{update // 10_000 % 1000:03d}-{update % 10_000:04d}"  # unique per update
            line = f"{update % 399 + 1} {STREETS[update % len(STREETS)]}, flat {update % 97 + 1}"
        resource: dict[str, Any] = {"resourceType": "Patient"}
        if resource_id is not None:
            resource["id"] = resource_id
        resource.update(
            {
                "identifier": [
                    {
                        "use": "usual",
                        "type": {"coding": [{"system": V2_0203, "code": "MR"}], "text": "MRN"},
                        "system": MRN_SYSTEM,
                        "value": f"B{self.run_tag}-{n:08d}",
                    }
                ],
                "active": True,
                "name": [{"use": "official", "family": family, "given": given}],
                "telecom": [
                    {"system": "phone", "value": phone, "use": rng.choice(("home", "mobile"))},
                    {
                        "system": "email",
                        "value": f"{given[0].lower()}.{n}@example.org",
                        "use": "home",
                    },
                ],
                "gender": gender,
                "birthDate": birth.isoformat(),
                "address": [
                    {
                        "use": "home",
                        "line": [line],
                        "city": city,
                        "postalCode": postcode,
                        "country": country,
                    }
                ],
            }
        )
        return resource

    def observation(self, n: int, patient_id: str) -> dict[str, Any]:
        """A vital-sign Observation about ``Patient/{patient_id}``."""
        rng = random.Random(self.seed * 7_000_003 + n)
        when = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=rng.randrange(60 * 24 * 365))
        kind = rng.randrange(6)
        resource: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [{"system": OBS_CATEGORY, "code": "vital-signs", "display": "Vital Signs"}],
                    "text": "Vital Signs",
                }
            ],
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": when.isoformat(timespec="seconds"),
        }

        def quantity(value: float, unit: str, code: str) -> dict[str, Any]:
            return {"value": value, "unit": unit, "system": UCUM, "code": code}

        def coded(code: str, display: str) -> dict[str, Any]:
            return {
                "coding": [{"system": LOINC, "code": code, "display": display}],
                "text": display,
            }

        if kind == 0:
            resource["code"] = coded("85354-9", "Blood pressure panel with all children optional")
            resource["component"] = [
                {
                    "code": coded("8480-6", "Systolic blood pressure"),
                    "valueQuantity": quantity(rng.randrange(95, 170), "mmHg", "mm[Hg]"),
                },
                {
                    "code": coded("8462-4", "Diastolic blood pressure"),
                    "valueQuantity": quantity(rng.randrange(55, 105), "mmHg", "mm[Hg]"),
                },
            ]
        elif kind == 1:
            resource["code"] = coded("8867-4", "Heart rate")
            resource["valueQuantity"] = quantity(rng.randrange(48, 120), "beats/minute", "/min")
        elif kind == 2:
            resource["code"] = coded("9279-1", "Respiratory rate")
            resource["valueQuantity"] = quantity(rng.randrange(10, 26), "breaths/minute", "/min")
        elif kind == 3:
            resource["code"] = coded("8310-5", "Body temperature")
            resource["valueQuantity"] = quantity(round(rng.uniform(35.8, 39.4), 1), "C", "Cel")
        elif kind == 4:
            resource["code"] = coded("29463-7", "Body weight")
            resource["valueQuantity"] = quantity(round(rng.uniform(3.0, 140.0), 1), "kg", "kg")
        else:
            resource["code"] = coded("2708-6", "Oxygen saturation in Arterial blood")
            resource["valueQuantity"] = quantity(rng.randrange(88, 101), "%", "%")
        return resource


def encode(resource: dict[str, Any]) -> bytes:
    return json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


ID_PATTERN = r"[A-Za-z0-9\-.]{1,64}"


def id_from_location(location: str, resource_type: str) -> str | None:
    """``.../Patient/{id}/_history/{vid}`` (absolute or relative) -> ``id``."""
    path = urllib.parse.urlsplit(location).path if "://" in location else location
    match = re.search(rf"(?:^|/){resource_type}/({ID_PATTERN})(?:/_history/{ID_PATTERN})?/?$", path)
    return match.group(1) if match else None


# --------------------------------------------------------------------------- phases


@dataclass
class Outcome:
    """What one request came to; ``error`` is a short kind such as ``"404 Not Found"``."""

    latency: float
    error: str | None = None
    detail: str = ""


@dataclass
class ThreadStats:
    latencies: list[float] = field(default_factory=list)
    requests: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    first_error: tuple[float, str, str] | None = None  # (monotonic time, kind, excerpt)

    def record_error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if self.first_error is None:
            self.first_error = (time.monotonic(), kind, detail)


@dataclass
class PhaseResult:
    name: str
    requests: int
    errors: Counter[str]
    first_error: tuple[str, str] | None
    elapsed: float
    latencies: list[float]
    client_cpu: float
    reconnects: int
    note: str = ""
    # CPU seconds the spawned server's processes used during the phase (None: not spawned).
    server_cpu: float | None = None
    # CPU seconds the machine's PostgreSQL processes used during the phase (None: not measured).
    database_cpu: float | None = None
    # Seconds spent waiting for a spawned server to go idle before the phase (None: not spawned).
    settled: float | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def error_rate(self) -> float:
        return self.error_count / self.requests if self.requests else 1.0

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def server_ms_per_request(self) -> float | None:
        return self._per_request(self.server_cpu)

    @property
    def database_ms_per_request(self) -> float | None:
        return self._per_request(self.database_cpu)

    def _per_request(self, cpu: float | None) -> float | None:
        """Milliseconds of ``cpu`` seconds per request."""
        return None if cpu is None or not self.requests else cpu * 1000 / self.requests

    @property
    def failed(self) -> bool:
        return self.requests == 0 or self.error_rate > MAX_ERROR_RATE

    def percentiles_ms(self) -> dict[str, float | None]:
        data = self.latencies
        if not data:
            return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None}
        cuts = statistics.quantiles(data, n=100, method="inclusive") if len(data) > 1 else [data[0]] * 99
        return {
            "p50": cuts[49] * 1000,
            "p95": cuts[94] * 1000,
            "p99": cuts[98] * 1000,
            "max": max(data) * 1000,
            "mean": statistics.fmean(data) * 1000,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "phase": self.name,
            "requests": self.requests,
            "ok": self.requests - self.error_count,
            "errors": self.error_count,
            "error_rate": round(self.error_rate, 6),
            "errors_by_kind": dict(self.errors),
            "first_error": ({"kind": self.first_error[0], "body": self.first_error[1]} if self.first_error else None),
            "elapsed_s": round(self.elapsed, 4),
            "requests_per_s": round(self.rps, 2),
            "latency_ms": {k: (round(v, 3) if v is not None else None) for k, v in self.percentiles_ms().items()},
            "client_cpu": round(self.client_cpu, 3),
            "server_cpu_ms_per_request": (
                round(self.server_ms_per_request, 3) if self.server_ms_per_request is not None else None
            ),
            "database_cpu_ms_per_request": (
                round(self.database_ms_per_request, 3) if self.database_ms_per_request is not None else None
            ),
            "reconnects": self.reconnects,
            "settled_s": round(self.settled, 1) if self.settled is not None else None,
            "failed": self.failed,
            "note": self.note,
        }


#: An operation: given a thread's client and random generator, make one request.
Operation = Callable[[Client, random.Random], Outcome]


class Budget:
    """A shared cap on the number of requests a phase may start."""

    def __init__(self, cap: int) -> None:
        self._left = cap
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0:
                return False
            self._left -= 1
            return True


def run_phase(
    name: str,
    operations: Sequence[Operation],
    clients: Sequence[Client],
    seconds: float,
    cap: int,
    seed: int,
    stop: threading.Event,
    server_cpu: Callable[[], float] | None = None,
    database_cpu: Callable[[], float] | None = None,
) -> PhaseResult:
    """Run ``operations[i]`` on ``clients[i]`` in one thread each until time or cap run out."""
    budget = Budget(cap)
    stats = [ThreadStats() for _ in clients]
    connects_before = sum(c.connects for c in clients)
    start_gate = threading.Event()
    deadline_box: list[float] = []

    def worker(index: int) -> None:
        client, operation, mine = clients[index], operations[index], stats[index]
        rng = random.Random(f"{seed}:{name}:{index}")
        start_gate.wait()
        deadline = deadline_box[0]
        while not stop.is_set() and time.monotonic() < deadline and budget.take():
            mine.requests += 1
            try:
                outcome = operation(client, rng)
            except (OSError, http.client.HTTPException) as exc:
                client.reset()
                mine.record_error(f"connection error {type(exc).__name__}", str(exc) or repr(exc))
                stop.wait(CONNECTION_ERROR_PAUSE)  # do not spin while the server is down
                continue
            if outcome.error is None:
                mine.latencies.append(outcome.latency)
            else:
                mine.record_error(outcome.error, outcome.detail)

    threads = [
        threading.Thread(target=worker, args=(i,), name=f"bench-{name}-{i}", daemon=True) for i in range(len(clients))
    ]
    for thread in threads:
        thread.start()
    cpu_started = time.process_time()
    server_started = server_cpu() if server_cpu is not None else None
    database_started = database_cpu() if database_cpu is not None else None
    started = time.monotonic()
    deadline_box.append(started + seconds)
    start_gate.set()
    try:
        for thread in threads:
            thread.join()
    except KeyboardInterrupt:
        stop.set()
        for thread in threads:
            thread.join()
        raise
    elapsed = time.monotonic() - started
    cpu = time.process_time() - cpu_started
    server_used = server_cpu() - server_started if server_cpu is not None and server_started is not None else None
    database_used = (
        database_cpu() - database_started if database_cpu is not None and database_started is not None else None
    )

    errors: Counter[str] = Counter()
    latencies: list[float] = []
    for s in stats:
        errors.update(s.errors)
        latencies.extend(s.latencies)
    firsts = sorted(s.first_error for s in stats if s.first_error is not None)
    return PhaseResult(
        name=name,
        requests=sum(s.requests for s in stats),
        errors=errors,
        first_error=(firsts[0][1], firsts[0][2]) if firsts else None,
        elapsed=elapsed,
        latencies=latencies,
        client_cpu=cpu / elapsed if elapsed > 0 else 0.0,
        reconnects=max(0, sum(c.connects for c in clients) - connects_before - len(clients)),
        server_cpu=server_used,
        database_cpu=database_used,
    )


def http_error(resp: Response) -> Outcome:
    return Outcome(resp.latency, f"{resp.status} {resp.reason}".strip(), excerpt(resp.body))


class Workload:
    """The operations of each phase, sharing the ids that creates produce."""

    def __init__(self, factory: DataFactory, clients: int) -> None:
        self.factory = factory
        self.clients = clients
        self.patients: list[tuple[str, int]] = []  # (server id, patient number)
        self._numbers = itertools.count(1)
        self._updates = itertools.count(1)
        self._observations = itertools.count(1)
        self._lock = threading.Lock()

    def _next(self, counter: itertools.count[int]) -> int:
        with self._lock:
            return next(counter)

    def create_patient(self, client: Client, rng: random.Random) -> Outcome:
        n = self._next(self._numbers)
        resp = client.request("POST", "Patient", encode(self.factory.patient(n)), prefer_minimal=True)
        if not 200 <= resp.status < 300:
            return http_error(resp)
        location = resp.headers.get("Location") or resp.headers.get("Content-Location") or ""
        new_id = id_from_location(location, "Patient")
        if new_id is None and resp.body:
            try:
                new_id = json.loads(resp.body).get("id")
            except (ValueError, AttributeError):
                new_id = None
        if not new_id:
            return Outcome(
                resp.latency,
                f"{resp.status} without usable Location",
                f"Location: {location!r}; body: {excerpt(resp.body)}",
            )
        self.patients.append((new_id, n))
        if resp.status != 201:
            return Outcome(resp.latency, f"{resp.status} instead of 201", excerpt(resp.body))
        return Outcome(resp.latency)

    def read_patient(self, client: Client, rng: random.Random) -> Outcome:
        patient_id, _ = rng.choice(self.patients)
        resp = client.request("GET", f"Patient/{patient_id}")
        if resp.status != 200:
            return http_error(resp)
        try:
            body = json.loads(resp.body)
            ok = body.get("resourceType") == "Patient" and body.get("id") == patient_id
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            return Outcome(resp.latency, "200 with wrong or unparsable body", excerpt(resp.body))
        return Outcome(resp.latency)

    def update_operation(self, index: int) -> Operation:
        """Thread ``index`` updates its own share of the patients, so updates do not contend."""
        share = self.patients[index :: self.clients] if len(self.patients) >= self.clients else None

        def update_patient(client: Client, rng: random.Random) -> Outcome:
            patient_id, n = rng.choice(share if share else self.patients)
            serial = self._next(self._updates)
            body = encode(self.factory.patient(n, update=serial, resource_id=patient_id))
            resp = client.request("PUT", f"Patient/{patient_id}", body, prefer_minimal=True)
            if resp.status not in (200, 201):
                return http_error(resp)
            return Outcome(resp.latency)

        return update_patient

    def create_observation(self, client: Client, rng: random.Random) -> Outcome:
        patient_id, _ = rng.choice(self.patients)
        n = self._next(self._observations)
        body = encode(self.factory.observation(n, patient_id))
        resp = client.request("POST", "Observation", body, prefer_minimal=True)
        if resp.status != 201:
            return http_error(resp)
        location = resp.headers.get("Location") or ""
        if id_from_location(location, "Observation") is None:
            return Outcome(resp.latency, "201 without usable Location", f"Location: {location!r}")
        return Outcome(resp.latency)

    def operations(self, phase: str) -> list[Operation]:
        if phase == "create":
            return [self.create_patient] * self.clients
        if phase == "read":
            return [self.read_patient] * self.clients
        if phase == "update":
            return [self.update_operation(i) for i in range(self.clients)]
        if phase == "observation":
            return [self.create_observation] * self.clients
        raise ValueError(phase)


# --------------------------------------------------------------------------- server


def get_metadata(target: Target, headers: Sequence[tuple[str, str]], timeout: float) -> Response:
    client = Client(target, headers, timeout)
    try:
        return client.request("GET", "metadata")
    finally:
        client.reset()


def check_server(target: Target, headers: Sequence[tuple[str, str]], timeout: float) -> dict[str, Any]:
    """The CapabilityStatement from ``{base}/metadata``; a clear error if it does not answer."""
    try:
        resp = get_metadata(target, headers, timeout)
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(
            f"no FHIR server answers at {target.url}: GET /metadata failed: {exc}\n"
            "start one (e.g. `fhir-twin serve --port 8080`) or use --spawn"
        ) from None
    if resp.status != 200:
        raise BenchError(
            f"GET {target.url}/metadata answered {resp.status} {resp.reason}, not 200: {excerpt(resp.body)}"
        )
    try:
        capability = json.loads(resp.body)
    except ValueError:
        capability = {}
    return capability if isinstance(capability, dict) else {}


def port_in_use(target: Target) -> bool:
    try:
        with socket.create_connection((target.host, target.port), timeout=1.0):
            return True
    except OSError:
        return False


def server_command(args: argparse.Namespace, port: int, database: str) -> list[str]:
    """``fhir-twin serve --port PORT --database URL [--workers N] [extra...]``."""
    words = shlex.split(args.server_command)
    if not words:
        raise BenchError("--server-command is empty", EXIT_USAGE)
    exe = shutil.which(words[0])
    if exe is None:
        beside_python = Path(sys.executable).parent / words[0]
        if beside_python.exists():
            exe = str(beside_python)
    if exe is None:
        raise BenchError(
            f"cannot find {words[0]!r} on PATH or next to {sys.executable}; install the project "
            "(pip install -e .) or give --server-command",
            EXIT_UNREACHABLE,
        )
    command = [exe, *words[1:], "serve", "--port", str(port), "--database", database]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    for extra in args.server_arg or ():
        command += shlex.split(extra)
    return command


def make_token(executable: str, database: str) -> str:
    """A ``system/*.cruds`` API token on ``database``, made with ``fhir-twin token create``."""
    made = subprocess.run(
        [executable, "token", "create", "--name", "bench", "--scope", "system/*.cruds", "--database", database],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        raise BenchError(f"fhir-twin token create failed: {made.stderr.strip()[:300]}", EXIT_UNREACHABLE)
    return made.stdout.splitlines()[0].strip()


class SpawnedServer:
    """A server process this script started, with its output in a log file."""

    def __init__(self, command: list[str], log_path: Path) -> None:
        self.command = command
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, target: Target, headers: Sequence[tuple[str, str]], timeout: float) -> None:
        """Poll ``GET {base}/metadata`` until it answers 200, the process dies, or time runs out."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise BenchError(
                    f"the server exited with status {code} before answering; its output:\n{self.log_tail()}"
                )
            try:
                resp = get_metadata(target, headers, 2.0)
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status == 200:
                    return
                last = f"{resp.status} {resp.reason}: {excerpt(resp.body, 120)}"
            time.sleep(0.2)
        raise BenchError(
            f"the server did not answer GET {target.url}/metadata with 200 within {timeout:.0f} s "
            f"(last: {last}); its output:\n{self.log_tail()}"
        )

    def cpu_seconds(self) -> float:
        """User and system CPU time of the server and its worker processes so far (Linux /proc).

        A steadier figure than requests per second on a shared machine: what one request costs
        the server, whatever else competes for the cores.
        """
        return sum(process_cpu(Path(f"/proc/{pid}/stat"))[1] for pid in self._tree())

    def settle(self, database_cpu: Callable[[], float] | None = None, timeout: float = SETTLE_TIMEOUT) -> float:
        """Wait until the server (and, given ``database_cpu``, its database) is idle; return the
        seconds waited.

        A phase leaves work behind (the twin and the Doctor process what was created, the audit
        trail flushes its queue, PostgreSQL checkpoints and vacuums what was written, or what a
        database dropped just before held); waiting for it keeps that work out of the next phase's
        figures, so a read phase measures reads. Idle: under ``SETTLE_IDLE`` of one core over a
        ``SETTLE_STEP`` interval.
        """

        def cpu() -> float:
            return self.cpu_seconds() + (database_cpu() if database_cpu is not None else 0.0)

        started = time.monotonic()
        last = cpu()
        while time.monotonic() - started < timeout:
            time.sleep(SETTLE_STEP)
            used = cpu()
            if used - last < SETTLE_IDLE * SETTLE_STEP:
                break
            last = used
        return time.monotonic() - started

    def _tree(self) -> list[int]:
        found, pending = [], [self.process.pid]
        while pending:
            pid = pending.pop()
            found.append(pid)
            try:
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except OSError:
                continue
            pending.extend(int(child) for child in children)
        return found

    def stop(self) -> int | None:
        """Terminate, wait; kill the process group if it will not go."""
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.process.pid, signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        self.process.kill()
                    self.process.wait(timeout=15)
            return self.process.returncode
        finally:
            self._log.close()


# --------------------------------------------------------------------------- output


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def print_header(
    target: Target,
    args: argparse.Namespace,
    seconds: float,
    cap: int,
    capability: dict[str, Any],
    spawned: str | None,
    out: Any,
) -> dict[str, Any]:
    """Print the run's context and return it for ``--json``."""
    software = capability.get("software") if isinstance(capability.get("software"), dict) else {}
    server = " ".join(str(v) for v in (software.get("name"), software.get("version")) if v)
    fhir_version = capability.get("fhirVersion")
    meta = {
        "date": dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds"),
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "url": target.url,
        "clients": args.clients,
        "seconds_per_phase": seconds,
        "request_cap_per_phase": cap,
        "warmup_s": args.warmup,
        "phases": args.phases,
        "server": server or None,
        "fhir_version": fhir_version,
        "spawned": spawned,
        "extra_headers": [name for name, _ in args.headers],
        "seed": args.seed,
    }
    rows = [
        ("date", meta["date"]),
        ("python", f"{meta['python']} on {meta['platform']}"),
        ("cpus", str(meta["cpu_count"])),
        ("url", target.url),
        ("server", f"{server or 'unnamed'}, FHIR {fhir_version or '?'}"),
        ("clients", f"{args.clients} threads, one keep-alive connection each"),
        (
            "bounds",
            (f"each phase {seconds:g} s or {cap:,} requests, whichever first; warmup {args.warmup:g} s"),
        ),
    ]
    if spawned:
        rows.append(("spawned", spawned))
    if args.headers:
        rows.append(("headers", ", ".join(f"{name}: <{len(v)} chars>" for name, v in args.headers)))
    print("FHIR CRUD benchmark (bench/crud.py)", file=out)
    for key, value in rows:
        print(f"  {key:<8} {value}", file=out)
    print(file=out, flush=True)
    return meta


COLUMNS = (
    f"{'phase':<12}{'requests':>9}{'errors':>8}{'err%':>8}{'req/s':>10}"
    f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'client cpu':>12}{'server ms/req':>15}{'db ms/req':>11}"
)


def local_postgresql(database: str) -> bool:
    """Whether ``database`` is a PostgreSQL server on this machine, whose processes can be read."""
    parsed = urllib.parse.urlsplit(database)
    if not parsed.scheme.startswith("postgresql") or not Path("/proc/self/stat").exists():
        return False
    if parsed.hostname in (None, "", "localhost"):
        return True
    try:
        return ipaddress.ip_address(parsed.hostname).is_loopback
    except ValueError:
        return False


def postgresql_cpu_seconds() -> float:
    """User and system CPU time of every ``postgres`` process on the machine so far (Linux
    /proc): the backends that store what the server writes, the WAL writer and the checkpointer."""
    found = (process_cpu(stat) for stat in Path("/proc").glob("[0-9]*/stat"))
    return sum(seconds for name, seconds in found if name == "postgres")


def process_cpu(stat: Path) -> tuple[str, float]:
    """A process's name and user and system CPU seconds so far, from its /proc ``stat`` file
    (``("", 0.0)`` for a process gone since it was listed)."""
    try:
        name, _, rest = stat.read_text().partition("(")[2].rpartition(")")
        fields = rest.split()
        return name, (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return "", 0.0


def phase_line(result: PhaseResult) -> str:
    if result.requests == 0:
        return (
            f"{result.name:<12}{0:>9}{0:>8}{'-':>8}{'-':>10}{'-':>9}{'-':>9}{'-':>9}{'-':>9}{'-':>12}{'-':>15}{'-':>11}"
        )
    p = result.percentiles_ms()
    server, database = result.server_ms_per_request, result.database_ms_per_request
    return (
        f"{result.name:<12}{result.requests:>9}{result.error_count:>8}"
        f"{result.error_rate * 100:>7.2f}%{result.rps:>10.1f}"
        f"{fmt_ms(p['p50']):>9}{fmt_ms(p['p95']):>9}{fmt_ms(p['p99']):>9}{fmt_ms(p['max']):>9}"
        f"{result.client_cpu * 100:>11.0f}%"
        f"{'-' if server is None else f'{server:.3f}':>15}"
        f"{'-' if database is None else f'{database:.3f}':>11}"
    )


def print_problems(result: PhaseResult, out: Any) -> None:
    if result.note:
        print(f"  {result.name}: {result.note}", file=out)
    if result.errors:
        kinds = ", ".join(f"{kind} x{count}" for kind, count in result.errors.most_common())
        print(f"  {result.name} errors: {kinds}", file=out)
    if result.first_error:
        kind, body = result.first_error
        print(f"  {result.name} first error: {kind}: {body or '(empty body)'}", file=out)
    if result.reconnects:
        print(f"  {result.name}: {result.reconnects} reconnect(s)", file=out)


def skipped(name: str, note: str) -> PhaseResult:
    return PhaseResult(name, 0, Counter(), None, 0.0, [], 0.0, 0, note=note)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crud.py",
        description="Measure a FHIR R4 server's create, read and update throughput over HTTP (loopback only).",
        epilog="Exit status: 0 ok, 1 a phase had more than 1% errors, 2 bad arguments, "
        "3 server unreachable or failed to start, 130 interrupted.",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help="FHIR base URL (default %(default)s)")
    parser.add_argument("--clients", type=positive_int, default=4, help="concurrent client threads (default 4)")
    bound = parser.add_argument_group("phase length (a phase ends at whichever comes first)")
    bound.add_argument(
        "--seconds",
        type=positive_float,
        help=f"seconds per phase (default {DEFAULT_SECONDS:g}; "
        f"{DEFAULT_TIME_LIMIT_FOR_REQUESTS:g} with --requests alone)",
    )
    bound.add_argument(
        "--requests",
        type=positive_int,
        help=f"requests per phase (default cap {DEFAULT_REQUEST_CAP:,})",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_float,
        default=2.0,
        help="unmeasured seconds before each phase (default 2)",
    )
    parser.add_argument(
        "--phases",
        type=phase_list,
        default=list(DEFAULT_PHASES),
        help=f"comma-separated, from {','.join(ALL_PHASES)} (default {','.join(DEFAULT_PHASES)})",
    )
    parser.add_argument(
        "--headers",
        type=parse_header,
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header, repeatable (e.g. 'Authorization: Bearer ...')",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="also write results as JSON: to FILE, or as the last stdout line if no FILE",
    )
    parser.add_argument(
        "--timeout",
        type=positive_float,
        default=30.0,
        help="per-request socket timeout s (default 30)",
    )
    parser.add_argument("--seed", type=int, help="random seed for test data and id choice")
    spawn = parser.add_argument_group("starting the server (--spawn)")
    spawn.add_argument(
        "--spawn",
        action="store_true",
        help="start `fhir-twin serve` on the --url port, wait for /metadata, stop it afterwards",
    )
    spawn.add_argument("--database", help="database URL for --spawn (default: SQLite in a temp dir)")
    spawn.add_argument(
        "--security",
        choices=("on", "off"),
        default="on",
        help="on: bearer token (a system/*.cruds API token made for the run) and audit trail, as served "
        "by default; off: auth_mode none and no audit trail (default on)",
    )
    spawn.add_argument("--workers", type=positive_int, help="passed to the server as --workers N")
    spawn.add_argument(
        "--server-command",
        default="fhir-twin",
        help="server executable for --spawn (default fhir-twin)",
    )
    spawn.add_argument("--server-arg", action="append", metavar="ARG", help="extra server argument(s), repeatable")
    return parser


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def phase_list(text: str) -> list[str]:
    phases = [p.strip() for p in text.split(",") if p.strip()]
    unknown = [p for p in phases if p not in ALL_PHASES]
    if unknown or not phases:
        raise argparse.ArgumentTypeError(f"phases are {', '.join(ALL_PHASES)}; got {text!r}")
    return phases


def aim_lines(results: Sequence[PhaseResult]) -> list[str]:
    """The create and read phases' figures against the issue's aims, each with met or missed."""

    def verdict(met: bool) -> str:
        return "met" if met else "missed"

    lines = []
    for result in results:
        if result.failed:
            continue
        if result.name == "create":
            lines.append(
                f"creates {result.rps:,.0f}/s >= {AIM_CREATES_PER_S:,.0f} {verdict(result.rps >= AIM_CREATES_PER_S)}"
            )
        elif result.name == "read":
            p99 = result.percentiles_ms()["p99"]
            lines.append(
                f"reads {result.rps:,.0f}/s >= {AIM_READS_PER_S:,.0f} {verdict(result.rps >= AIM_READS_PER_S)}"
            )
            if p99 is not None:
                lines.append(f"read p99 {p99:.1f} ms < {AIM_READ_P99_MS:.0f} {verdict(p99 < AIM_READ_P99_MS)}")
    return lines


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    target = parse_target(args.url)
    seconds = args.seconds or (DEFAULT_TIME_LIMIT_FOR_REQUESTS if args.requests else DEFAULT_SECONDS)
    cap = args.requests or DEFAULT_REQUEST_CAP
    if args.seed is None:
        args.seed = random.randrange(1 << 31)
    out = sys.stdout

    server: SpawnedServer | None = None
    temp_dir: str | None = None
    spawned: str | None = None
    database_cpu: Callable[[], float] | None = None
    try:
        if args.spawn:
            if port_in_use(target):
                raise BenchError(
                    f"something already listens on {target.host}:{target.port}; stop it, pick another "
                    "port in --url, or run without --spawn to benchmark it"
                )
            temp_dir = tempfile.mkdtemp(prefix="fhir-twin-bench-")
            database = args.database or f"sqlite:///{Path(temp_dir) / 'fhir.db'}"
            command = server_command(args, target.port, database)
            if args.security == "on":
                secret = make_token(command[0], database)
                args.headers = [*args.headers, ("Authorization", f"Bearer {secret}")]
            else:
                os.environ.update({"FHIR_TWIN_AUTH_MODE": "none", "FHIR_TWIN_AUDIT": "false"})
            server = SpawnedServer(command, Path(temp_dir) / "server.log")
            spawned = " ".join(shlex.quote(word) for word in command)
            server.wait_ready(target, args.headers, READY_TIMEOUT)
            if local_postgresql(database):
                database_cpu = postgresql_cpu_seconds
        capability = check_server(target, args.headers, args.timeout)
        meta = print_header(target, args, seconds, cap, capability, spawned, out)

        clients = [Client(target, args.headers, args.timeout) for _ in range(args.clients)]
        workload = Workload(DataFactory(args.seed), args.clients)
        results: list[PhaseResult] = []
        warmups: list[PhaseResult] = []  # not in the table, but their errors are reported
        print(COLUMNS, file=out, flush=True)
        for phase in args.phases:
            if phase != "create" and not workload.patients:
                if "create" in args.phases:
                    results.append(skipped(phase, "skipped: the create phase produced no patients"))
                    print(phase_line(results[-1]), file=out, flush=True)
                    continue
                # Read/update without a create phase: make some patients first (shown as "seed").
                seed_count = max(100, args.clients * 25)
                seeded = run_phase(
                    "seed",
                    workload.operations("create"),
                    clients,
                    max(seconds, 60.0),
                    seed_count,
                    args.seed,
                    stop,
                )
                results.append(seeded)
                print(phase_line(seeded), file=out, flush=True)
                if not workload.patients:
                    results.append(skipped(phase, "skipped: could not create any patients to use"))
                    print(phase_line(results[-1]), file=out, flush=True)
                    continue
            settled = server.settle(database_cpu) if server is not None and Path("/proc/self/stat").exists() else None
            if args.warmup > 0:
                warmup = run_phase(
                    f"{phase}-warmup",
                    workload.operations(phase),
                    clients,
                    args.warmup,
                    cap,
                    args.seed,
                    stop,
                )
                warmup.latencies.clear()
                warmups.append(warmup)
            result = run_phase(
                phase,
                workload.operations(phase),
                clients,
                seconds,
                cap,
                args.seed,
                stop,
                server.cpu_seconds if server is not None and Path("/proc/self/stat").exists() else None,
                database_cpu,
            )
            result.settled = settled
            results.append(result)
            print(phase_line(result), file=out, flush=True)
        for client in clients:
            client.reset()

        print(file=out)
        waits = [f"{r.name} {r.settled:.1f} s" for r in results if r.settled is not None]
        if waits:
            print(f"idle wait before each phase (the last phase's background work): {', '.join(waits)}", file=out)
        for result in results:
            print_problems(result, out)
        for warmup in warmups:
            if warmup.errors:
                print(
                    f"  {warmup.name} (not measured): {warmup.error_count} of {warmup.requests} requests failed",
                    file=out,
                )
                print_problems(warmup, out)
        failed = [r.name for r in results if r.failed]
        failed += [w.name for w in warmups if w.requests and w.error_rate > MAX_ERROR_RATE]
        if failed:
            print(
                f"FAILED: more than {MAX_ERROR_RATE:.0%} errors (or no requests) in: {', '.join(failed)}",
                file=out,
            )
        else:
            print(f"ok: every phase under {MAX_ERROR_RATE:.0%} errors", file=out)
        aims = aim_lines(results)
        if aims:
            print("aims (with auth and audit on, the server's defaults): " + "; ".join(aims), file=out)

        if args.json:
            document = {
                "meta": meta,
                "phases": [r.as_json() for r in results],
                "warmups": [w.as_json() for w in warmups],
                "failed": bool(failed),
            }
            text = json.dumps(document, ensure_ascii=False)
            if args.json == "-":
                print(text, file=out)
            else:
                Path(args.json).write_text(text + "\n", "utf-8")
        out.flush()
        return EXIT_ERRORS if failed else EXIT_OK
    finally:
        if server is not None:
            code = server.stop()
            if code not in (0, -signal.SIGTERM, None):
                print(f"note: the spawned server exited with status {code}", file=sys.stderr)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    stop = threading.Event()
    try:
        return run(args, stop)
    except BenchError as exc:
        print(f"crud.py: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        stop.set()
        print("crud.py: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
