"""Digital Doctor scoring: latency per patient (p50/p95) and batch scoring of many twins.

Loads ``--patients`` synthetic twins (default 10,000), each a Patient with a NEWS2 vital set,
cholesterol, HDL and smoking status (12 resources), into a fresh database through the server's
own transaction path, then measures in this process:

- compute: reading one twin and running every model on it, nothing stored (``Doctor.runs``);
- assess: the same plus recording the RiskAssessments, Provenances and Devices in one
  transaction (``Doctor.assess``), as the live queue and ``$predict`` do;
- batch: assessing every loaded patient once, ``--batch`` patients per transaction (as
  ``fhir-twin assess`` does), in patients and RiskAssessments per second;
- live: with the live queue on, the time from a transaction's 2xx to a search finding its
  RiskAssessments.

    python bench/doctor.py                                   # temporary SQLite
    python bench/doctor.py --database postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from ingest import fresh_database

from fhir_twin.app import create_app, services_of
from fhir_twin.interactions.message import Request
from fhir_twin.ml.doctor import Doctor

UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
VITALS = (  # LOINC, UCUM unit, low, high
    ("9279-1", "/min", 10, 26),
    ("2708-6", "%", 90, 100),
    ("3150-0", "%", 21, 21),
    ("8480-6", "mm[Hg]", 95, 170),
    ("8867-4", "/min", 50, 120),
    ("8310-5", "Cel", 35.5, 39.0),
)
LABS = (("2093-3", "mg/dL", 140, 300), ("2085-9", "mg/dL", 30, 90))


def _observation(pid: str, code: str, when: str, category: str, value: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        **value,
    }


def patient_resources(n: int, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    pid = f"bench-{n}"
    when = (now - timedelta(minutes=rng.randint(5, 600))).isoformat(timespec="seconds")
    race = rng.choice((("2106-3", "White"), ("2054-5", "Black or African American")))
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "gender": rng.choice(("female", "male")),
            "birthDate": f"{now.year - rng.randint(40, 79)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            "extension": [
                {
                    "url": RACE,
                    "extension": [
                        {
                            "url": "ombCategory",
                            "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": race[0]},
                        },
                        {"url": "text", "valueString": race[1]},
                    ],
                }
            ],
        }
    ]
    for code, unit, low, high in VITALS:
        value = round(rng.uniform(low, high), 1)
        quantity = {"valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}}
        resources.append(_observation(pid, code, when, "vital-signs", quantity))
    alert = {"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "248234008"}]}}
    resources.append(_observation(pid, "67775-7", when, "vital-signs", alert))
    for code, unit, low, high in LABS:
        quantity = {"valueQuantity": {"value": rng.randint(low, high), "unit": unit, "system": UCUM, "code": unit}}
        resources.append(_observation(pid, code, when, "laboratory", quantity))
    smoking = rng.choice(("449868002", "266919005", "8517006"))
    coded = {"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": smoking}]}}
    resources.append(_observation(pid, "72166-2", when, "social-history", coded))
    resources.append(
        _observation(
            pid,
            "29463-7",
            when,
            "vital-signs",
            {"valueQuantity": {"value": rng.randint(50, 110), "unit": "kg", "system": UCUM, "code": "kg"}},
        )
    )
    resources.append(
        _observation(
            pid,
            "8302-2",
            when,
            "vital-signs",
            {"valueQuantity": {"value": rng.randint(150, 195), "unit": "cm", "system": UCUM, "code": "cm"}},
        )
    )
    return resources


def _load(route: Any, patients: int, seed: int) -> tuple[int, float]:
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    started, count, batch = time.perf_counter(), 0, 50
    for first in range(0, patients, batch):
        entries = []
        for n in range(first, min(first + batch, patients)):
            for resource in patient_resources(n, rng, now):
                if resource["resourceType"] == "Patient":
                    request = {"method": "PUT", "url": f"Patient/{resource['id']}"}
                else:
                    request = {"method": "POST", "url": "Observation"}
                entries.append({"resource": resource, "request": request})
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        response = route(Request("POST", "", "http://bench/fhir", body=bundle))
        if response.status != 200:
            raise SystemExit(f"loading failed: {response.status} {response.body}")
        count += len(entries)
        print(f"\r  loaded {count} resources", end="", file=sys.stderr)
    print(file=sys.stderr)
    return count, time.perf_counter() - started


def _percentiles(seconds: list[float]) -> str:
    cuts = statistics.quantiles(seconds, n=100)
    return f"p50 {1000 * statistics.median(seconds):.2f} ms, p95 {1000 * cuts[94]:.2f} ms (n={len(seconds)})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=500, help="patients timed one by one for the latencies")
    parser.add_argument("--database", default="", help="database URL (default: temporary SQLite)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=50, help="patients per transaction in the batch run")
    parser.add_argument("--live", type=int, default=50, help="patients written with live assessment on, timed")
    args = parser.parse_args()
    print("fhir-twin Digital Doctor benchmark (bench/doctor.py)")
    print(f"  date      {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"  python    {platform.python_version()} on {platform.platform()}, {os.cpu_count()} cpus")
    with (
        tempfile.TemporaryDirectory(prefix="fhir-twin-doctor-") as folder,
        fresh_database(args.database, folder) as database,
    ):
        print(f"  database  {database.split('@')[-1]}")
        # Live assessment off: the benchmark assesses explicitly, so every figure is its own.
        app = create_app({"database_url": database, "doctor": False, "log_level": "WARNING", "auth_mode": "none"})
        try:
            route = services_of(app).interactions.route
            doctor: Doctor = services_of(app).doctor
            count, seconds = _load(route, args.patients, args.seed)
            print(f"  loaded    {args.patients} twins, {count} resources in {seconds:.1f} s ({count / seconds:.0f}/s)")
            ids = [f"bench-{n}" for n in range(args.patients)]
            sample = random.Random(args.seed).sample(ids, min(args.sample, len(ids)))
            models = [runner.model.id for runner in doctor.runners()]
            print(f"  models    {', '.join(models)}")

            compute = []
            for pid in sample:
                started = time.perf_counter()
                doctor.runs(pid)
                compute.append(time.perf_counter() - started)
            print(f"compute (read twin + {len(models)} models, nothing stored): {_percentiles(compute)}")

            record = []
            for pid in sample:
                started = time.perf_counter()
                doctor.assess(pid, only_changed=False)
                record.append(time.perf_counter() - started)
            print(f"assess (compute + RiskAssessment, Provenance, Device written): {_percentiles(record)}")

            started = time.perf_counter()
            written = 0
            for first in range(0, len(ids), args.batch):
                outcomes = doctor.assess_many(ids[first : first + args.batch], only_changed=False)
                written += sum(1 for found in outcomes.values() for outcome in found if outcome.resource is not None)
                print(f"\r  assessed {first + args.batch}", end="", file=sys.stderr)
            print(file=sys.stderr)
            seconds = time.perf_counter() - started
            print(
                f"batch: {len(ids)} twins assessed in {seconds:.1f} s, {args.batch} per transaction "
                f"({len(ids) / seconds:.0f} patients/s, {written} RiskAssessments, {written / seconds:.0f}/s)"
            )
            print(f"live: {_live(database, args.live, args.seed)}")
        finally:
            services_of(app).repository.engine.dispose()
    return 0


def _live(database: str, patients: int, seed: int) -> str:
    """Seconds from a transaction's 2xx to its RiskAssessments being found by a search, with the
    live queue on (one app process: its worker thread polls every 0.2 s)."""
    app = create_app({"database_url": database, "log_level": "WARNING", "auth_mode": "none"})
    try:
        route = services_of(app).interactions.route
        rng = random.Random(seed + 1)
        now = datetime.now(UTC).replace(microsecond=0)
        delays = []
        for n in range(patients):
            resources = patient_resources(10_000_000 + n, rng, now)
            pid = resources[0]["id"]
            entries = [{"resource": resources[0], "request": {"method": "PUT", "url": f"Patient/{pid}"}}]
            entries += [{"resource": r, "request": {"method": "POST", "url": "Observation"}} for r in resources[1:]]
            route(
                Request(
                    "POST",
                    "",
                    "http://bench/fhir",
                    body={"resourceType": "Bundle", "type": "transaction", "entry": entries},
                )
            )
            written = time.perf_counter()
            query = [("subject", f"Patient/{pid}"), ("_summary", "count")]
            while route(Request("GET", "RiskAssessment", "http://bench/fhir", query=query)).body["total"] == 0:
                time.sleep(0.005)
            delays.append(time.perf_counter() - written)
        return _percentiles(delays) + ", from the 2xx to the search that finds the RiskAssessments"
    finally:
        services_of(app).repository.engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
