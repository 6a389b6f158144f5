"""The web app's patient page: time to a rendered page, and the server time of its API calls.

Loads one patient with ``--fields`` Body fields of ``--points`` readings each (default 10 × 10,000,
a reading a minute), then opens ``/app/patients/{id}`` in headless Chromium ``--loads`` times and
prints:

- the time to a rendered page: from navigation start to every chart drawn (the page's
  ``fhir-twin:charts-drawn`` performance mark, set when ``body.dataset.ready`` turns "1"), p50/p95;
- per API call the page makes (the twin document, each field's downsampled series, the NEWS2
  bands, the RiskAssessment searches, ...), from the browser's Resource Timing: the call's
  duration and the server's own time (its ``Server-Timing: app;dur=``), p50/p95.

With ``--spawn`` the patient is written by ``fhir-twin load`` (NDJSON, the fast path) into a fresh
database and a server is started on it; with ``--url`` it is posted to a running server in
transaction Bundles of 5,000 entries, with ``--token`` (a ``system/*.cruds`` token).

    python bench/app_page.py --spawn                       # temporary SQLite
    python bench/app_page.py --spawn --copy-of page.db     # a copy of a database loaded before
    python bench/app_page.py --spawn --database postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    python bench/app_page.py --url http://127.0.0.1:8080 --token "$TOKEN"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ingest import fresh_database

UCUM = "http://unitsofmeasure.org"
# Ten Body fields (mappings/vital-signs.yaml, laboratory.yaml): LOINC, UCUM unit, a plausible range.
FIELDS = (
    ("8867-4", "/min", 55, 120),  # heart rate
    ("9279-1", "/min", 10, 26),  # respiratory rate
    ("8480-6", "mm[Hg]", 95, 170),  # systolic BP
    ("8462-4", "mm[Hg]", 55, 100),  # diastolic BP
    ("8310-5", "Cel", 35.5, 39.0),  # body temperature
    ("2708-6", "%", 90, 100),  # SpO2
    ("29463-7", "kg", 70, 74),  # body weight
    ("2339-0", "mg/dL", 70, 180),  # glucose
    ("2093-3", "mg/dL", 150, 260),  # total cholesterol
    ("2085-9", "mg/dL", 35, 70),  # HDL cholesterol
)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
FHIR_TWIN = shutil.which("fhir-twin") or str(Path(sys.executable).with_name("fhir-twin"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="a running server's root (without /fhir)")
    parser.add_argument("--token", default=os.environ.get("FHIR_TWIN_TOKEN", ""), help="with --url: a system token")
    parser.add_argument("--spawn", action="store_true", help="load into a fresh database and start fhir-twin serve")
    parser.add_argument("--database", default="", help="with --spawn: database URL (default: temporary SQLite)")
    parser.add_argument(
        "--copy-of",
        default="",
        help="with --spawn: a SQLite file loaded before (same --fields and --points), copied instead of loading",
    )
    parser.add_argument("--workers", type=int, default=2, help="with --spawn: server worker processes")
    parser.add_argument("--fields", type=int, default=10, choices=range(1, len(FIELDS) + 1), metavar="1-10")
    parser.add_argument("--points", type=int, default=10_000, help="readings per field")
    parser.add_argument("--loads", type=int, default=20, help="times the page is opened")
    parser.add_argument("--width", type=int, default=1280, help="browser window width in pixels")
    args = parser.parse_args()
    if args.copy_of and (args.database or not args.spawn):
        sys.exit("--copy-of takes a SQLite file, with --spawn and no --database")
    resources = patient_resources(args.fields, args.points)
    print(f"patient: {args.fields} fields x {args.points:,} readings ({len(resources):,} resources)")
    with server(args, resources) as (root, token):
        waited = wait_for_doctor(root, token)
        print(f"Digital Doctor assessed the patient {waited:.1f} s after the load")
        pages, calls = measure(root, token, args.loads, args.width)
    print(f"\n{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores")
    print(f"time to a rendered page over {args.loads} loads: {figures(pages)}")
    print("API calls per page load (browser duration | server's own time):")
    for kind, found in sorted(calls.items()):
        per_load = len(found["duration"]) / args.loads
        print(f"  {kind:<28} x{per_load:<4g} {figures(found['duration'])} | {figures(found['server'])}")


def figures(values: list[float]) -> str:
    if not values:
        return "-"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):7.1f} ms, p95 {p95:7.1f} ms"


def patient_resources(fields: int, points: int) -> list[dict[str, Any]]:
    """The Patient and its readings, a minute apart, ending now; each field a slow wave in its range."""
    now = datetime.now(UTC).replace(microsecond=0)
    found: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": "bench-app",
            "name": [{"family": "Bench", "given": ["Page"]}],
            "gender": "female",
            "birthDate": "1966-05-04",
        }
    ]
    for code, unit, low, high in FIELDS[:fields]:
        for i in range(points):
            value = low + (high - low) * (0.5 + 0.5 * ((i * 37) % 100 - 50) / 50)
            when = (now - timedelta(minutes=points - i)).isoformat().replace("+00:00", "Z")
            found.append(
                {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": "Patient/bench-app"},
                    "effectiveDateTime": when,
                    "valueQuantity": {"value": round(value, 1), "unit": unit, "system": UCUM, "code": unit},
                }
            )
    return found


@contextmanager
def server(args: argparse.Namespace, resources: list[dict[str, Any]]) -> Iterator[tuple[str, str]]:
    """The server's root and a system token: ``--url`` once the patient is posted to it, or a
    server spawned on a fresh database the patient was loaded into."""
    if not args.spawn:
        if not args.token:
            sys.exit("--url needs --token (or FHIR_TWIN_TOKEN): a token with system/*.cruds")
        started = time.perf_counter()
        for i in range(0, len(resources), 5000):
            post_transaction(args.url, args.token, resources[i : i + 5000])
        print(f"posted in {time.perf_counter() - started:.1f} s")
        yield args.url, args.token
        return
    folder = tempfile.mkdtemp(prefix="fhir-twin-app-page-")
    with fresh_database(args.database, folder) as database:
        if args.copy_of:
            # A load of 100,000 resources takes minutes; runs compared with each other can share one.
            shutil.copyfile(args.copy_of, database.removeprefix("sqlite:///"))
        else:
            data = Path(folder) / "patient.ndjson"
            data.write_text("".join(json.dumps(resource) + "\n" for resource in resources))
            started = time.perf_counter()
            subprocess.run([FHIR_TWIN, "load", str(data), "--database", database], check=True, capture_output=True)
            print(f"fhir-twin load: {time.perf_counter() - started:.1f} s")
        token = subprocess.run(
            [FHIR_TWIN, "token", "create", "--name", "bench", "--scope", "system/*.cruds", "--database", database],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = open(Path(folder) / "server.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen(
            [FHIR_TWIN, "serve", "--port", str(port), "--database", database, "--workers", str(args.workers)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "FHIR_TWIN_LOG_LEVEL": "WARNING"},
        )
        root = f"http://127.0.0.1:{port}"
        try:
            for _ in range(600):
                try:
                    urllib.request.urlopen(f"{root}/fhir/metadata", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            yield root, token
        finally:
            process.terminate()
            process.wait(30)
            log.close()
            shutil.rmtree(folder, ignore_errors=True)


def post_transaction(root: str, token: str, resources: list[dict[str, Any]]) -> None:
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"Patient/{r['id']}"}}
        if r["resourceType"] == "Patient"
        else {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
        for r in resources
    ]
    body = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).encode()
    request = urllib.request.Request(
        f"{root}/fhir",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    urllib.request.urlopen(request, timeout=600).close()


def wait_for_doctor(root: str, token: str, seconds: float = 300) -> float:
    """Seconds until the live Doctor has assessed the patient (NEWS2 needs a set; others may not apply)."""
    started = time.monotonic()
    request = urllib.request.Request(
        f"{root}/fhir/RiskAssessment?subject=Patient/bench-app&_summary=count",
        headers={"Authorization": f"Bearer {token}"},
    )
    while time.monotonic() - started < seconds:
        with urllib.request.urlopen(request, timeout=30) as response:
            if json.loads(response.read()).get("total"):
                break
        time.sleep(0.5)
    return time.monotonic() - started


def kind_of(url: str) -> str:
    """An API call's kind: its path with the ids and the field made generic."""
    path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
    parts = path.split("/")
    if parts[:2] == ["twin", "patients"] and len(parts) >= 5:
        return "twin/patients/{id}/series"
    if parts[:2] == ["twin", "patients"] and len(parts) == 3:
        return "twin/patients/{id}"
    if parts[0] == "fhir" and len(parts) >= 3:
        return f"fhir/{parts[1]}/{{id}}"
    return "/".join(parts)


def measure(root: str, token: str, loads: int, width: int) -> tuple[list[float], dict[str, dict[str, list[float]]]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    pages: list[float] = []
    calls: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"duration": [], "server": []})
    try:
        driver.get(f"{root}/app/")
        driver.execute_script("sessionStorage.setItem('fhir-twin.token', arguments[0])", token)
        for _ in range(loads):
            driver.get(f"{root}/app/patients/bench-app")
            WebDriverWait(driver, 300).until(
                lambda d: d.execute_script("return document.body.dataset.ready") in ("1", "error")
            )
            if driver.execute_script("return document.body.dataset.ready") == "error":
                problem = driver.execute_script("return document.getElementById('problem').textContent")
                sys.exit(f"the page failed: {problem}")
            mark = driver.execute_script("return performance.getEntriesByName('fhir-twin:charts-drawn')[0].startTime")
            pages.append(mark)
            entries = driver.execute_script(
                "return performance.getEntriesByType('resource').filter(e => e.initiatorType === 'fetch')"
                ".map(e => [e.name, e.duration, (e.serverTiming.find(t => t.name === 'app') || {}).duration])"
            )
            for name, duration, server_time in entries:
                calls[kind_of(name)]["duration"].append(duration)
                if server_time is not None:
                    calls[kind_of(name)]["server"].append(server_time)
    finally:
        driver.quit()
    return pages, calls


if __name__ == "__main__":
    main()
