"""Measure FHIR search latency at 1x and 10x data, on SQLite and on PostgreSQL.

What it measures
----------------
The p50 and p95 latency in milliseconds of a fixed mix of searches (the issue's mix)::

    patient-code-sorted  Observation?patient=X&code=Y&_sort=-date&_count=10
    patient-identifier   Patient?identifier=s|v
    patient-name-prefix  Patient?name=prefix
    code-value-gt100     Observation?code=Y&value-quantity=gt100
    report-include       DiagnosticReport?patient=X&_include=DiagnosticReport:result

once with ``--patients`` patients loaded (1x) and again after ``--factor - 1`` times as many more
patients were added to the same database (10x, which includes the 1x data), and the 10x/1x ratio of
the p50s. It reports against two aims: a p50 under 10 ms per query at 10x, and 10x costing under
1.3 times the 1x p50.

How
---
*Population.* About 104 resources per patient, generated from ``random.Random`` seeded with
``--seed`` and the patient's number, so the 1x patients are the same whatever ``--factor`` is:
one Patient (official name from lists of a few hundred family and given names, gender, birth
date, a unique identifier in ``urn:oid:1.2.36.146.595.217.0.1``); 9-13 vital-sign visits of six
Observations each (heart rate 8867-4, respiratory rate 9279-1, body temperature 8310-5, SpO2
59408-5, blood-pressure panel 85354-9 with systolic 8480-6 and diastolic 8462-4 components,
body weight 29463-7); 6-10 lab draws of four Observations each (glucose 2339-0, HbA1c 4548-4,
cholesterol 2093-3, creatinine 2160-0); and 4-6 DiagnosticReports whose ``result`` references the
Observations of one lab draw. Every Observation is ``final``, has its ``vital-signs`` or
``laboratory`` category, a ``subject``, an ``effectiveDateTime`` spread over 2015-2024 and a
UCUM ``valueQuantity`` (or components). One generated resource of each kind is checked with the
server's own validator before loading. 10,000 patients give just over a million resources.

*Loading.* In-process, through the server's write path (``store_version``, which extracts and
writes the index rows exactly as a create does), about ``--batch`` resources per transaction, with
client-chosen ids (``p-000123``, ``o-000123-0042``, ``r-000123-03``). SQLite is a temporary
file (WAL, from the server's own ``make_engine``); PostgreSQL is a fresh database created
through ``--postgres-url`` and dropped at the end unless ``--keep``. After each load the bench
runs ``ANALYZE`` on the database, as an operator would after a bulk load, and prints the load
rate and the row counts.

*Measuring.* In-process, through the server's whole request path without HTTP: the Flask app from
``create_app`` and its test client (``GET /fhir/...``), a fresh app per measurement. Each query is
warmed up (``--warmup`` runs), then timed ``--runs`` times with ``time.perf_counter()`` around
the request; X, Y, v and the prefix are drawn afresh for every run from the loaded patients,
with a random generator seeded by ``--seed``, the query and the scale. Every answer must be a
200 searchset Bundle; the entries are counted (mean, and runs with none) so a broken query cannot
look fast, and the identifier search must find exactly one Patient. For a query that misses an aim
at 10x (every query with ``--explain``), the SQL it ran is printed with the database's plan
(SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN (ANALYZE, BUFFERS)``).

Examples::

    python bench/search.py --patients 30 --factor 3 --runs 20
    python bench/search.py --databases sqlite --patients 1000 --factor 10 --json /tmp/search.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import math
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from tqdm import tqdm

from fhir_twin.app import create_app, services_of
from fhir_twin.fhir.validation import validate_resource
from fhir_twin.interactions.writes import store_version
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import INDEX_TABLES

P50_AIM_MS = 10.0
RATIO_AIM = 1.3
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_PG_DATABASE = "fhir_twin_bench"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
IDENTIFIER_SYSTEM = "urn:oid:1.2.36.146.595.217.0.1"
FIRST_DAY = dt.datetime(2015, 1, 1, tzinfo=dt.UTC)
SPAN_SECONDS = int((dt.datetime(2025, 1, 1, tzinfo=dt.UTC) - FIRST_DAY).total_seconds())

# ------------------------------------------------------------------------------------- population


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FAMILY_NAMES = _words("""
Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez Wilson Anderson
Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark Ramirez Lewis Robinson Walker Young
Allen King Wright Scott Torres Nguyen Hill Flores Green Adams Nelson Baker Hall Rivera Campbell Mitchell Carter
Roberts Gomez Phillips Evans Turner Diaz Parker Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers
Gutierrez Ortiz Morgan Cooper Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez
Wood James Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster Jimenez
Powell Jenkins Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Gonzales Fisher Vasquez Simmons Romero
Jordan Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera Gibson Ellis
Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernandez McDonald Woods Washington Kennedy
Wells Vargas Henry Chen Freeman Webb Tucker Guzman Burns Crawford Olson Simpson Porter Hunter Gordon Mendez Silva
Shaw Snyder Mason Dixon Munoz Hunt Hicks Holmes Palmer Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills
Meyer Rice Schmidt Garza Daniels Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant Dunn Kelley Spencer
Hawkins Arnold Pierce Vazquez Hansen Peters Santos Hart Bradley Knight Elliott Cunningham Duncan Armstrong Hudson
Carroll Lane Riley Andrews Alvarado Ray Delgado Berry Perkins Hoffman Johnston Matthews Pena Richards Contreras Willis
Carpenter Lawrence Sandoval Guerrero George Chapman Rios Estrada Ortega Watkins Greene Nunez Wheeler Valdez Harper
Burke Larson Santiago Maldonado Morrison Franklin Carlson Austin Dominguez Carr Lawson Jacobs Obrien Lynch Singh
Vega Bishop Montgomery Oliver Jensen Harvey Williamson Gilbert Dean Sims Espinoza Howell Li Wong Reid Hanson Le
""")
MALE_NAMES = _words("""
James Robert John Michael David William Richard Joseph Thomas Charles Christopher Daniel Matthew Anthony Mark Donald
Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan Jacob Gary Nicholas Eric
Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander Frank Patrick Raymond Jack Dennis Jerry
Tyler Aaron Jose Adam Nathan Henry Douglas Zachary Peter Kyle Ethan Walter Noah Jeremy Christian Keith Roger Terry
Gerald Harold Sean Austin Carl Arthur Lawrence Dylan Jesse Jordan Bryan Billy Joe Bruce Gabriel Logan Albert Willie
Alan Juan Wayne Elijah Randy Roy Vincent Ralph Eugene Russell Bobby Mason Philip Louis Omar Ahmed Hiroshi Luca Mateo
""")
FEMALE_NAMES = _words("""
Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Margaret Sandra Ashley
Kimberly Emily Donna Michelle Carol Amanda Dorothy Melissa Deborah Stephanie Rebecca Sharon Laura Cynthia Kathleen Amy
Angela Shirley Anna Brenda Pamela Emma Nicole Helen Samantha Katherine Christine Debra Rachel Carolyn Janet Catherine
Maria Heather Diane Ruth Julie Olivia Joyce Virginia Victoria Kelly Lauren Christina Joan Evelyn Judith Megan Andrea
Cheryl Hannah Jacqueline Martha Gloria Teresa Ann Sara Madison Frances Kathryn Janice Jean Abigail Alice Julia Judy
Sophia Grace Denise Amber Doris Marilyn Danielle Beverly Isabella Theresa Diana Natalie Brittany Charlotte Marie Kayla
""")


@dataclass(frozen=True)
class Measure:
    """A LOINC-coded measurement with a UCUM unit and the range its values are drawn from."""

    code: str
    display: str
    unit: str
    low: float
    high: float
    decimals: int


HEART_RATE = Measure("8867-4", "Heart rate", "/min", 50, 130, 0)
RESPIRATORY_RATE = Measure("9279-1", "Respiratory rate", "/min", 10, 28, 0)
TEMPERATURE = Measure("8310-5", "Body temperature", "Cel", 35.5, 39.5, 1)
SPO2 = Measure("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 88, 100, 0)
WEIGHT = Measure("29463-7", "Body weight", "kg", 45, 130, 1)
SYSTOLIC = Measure("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 180, 0)
DIASTOLIC = Measure("8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 110, 0)
BP_PANEL = ("85354-9", "Blood pressure panel with all children optional")
GLUCOSE = Measure("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 65, 260, 0)
HBA1C = Measure("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.5, 11, 1)
CHOLESTEROL = Measure("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 120, 300, 0)
CREATININE = Measure("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 2.5, 2)
VITALS = (HEART_RATE, RESPIRATORY_RATE, TEMPERATURE, SPO2, WEIGHT)
LABS = (GLUCOSE, HBA1C, CHOLESTEROL, CREATININE)
REPORT_CODE = ("11502-2", "Laboratory report")
# Every patient has Observations with each of these codes.
OBSERVATION_CODES = (*(m.code for m in VITALS), BP_PANEL[0], *(m.code for m in LABS))
# Codes whose values reach above 100 in their own unit, for ``value-quantity=gt100``.
ABOVE_100_CODES = (HEART_RATE.code, WEIGHT.code, GLUCOSE.code, CHOLESTEROL.code)


@dataclass(frozen=True)
class PatientInfo:
    """What the query draws need to know of a loaded patient."""

    res_id: str
    identifier: str
    family: str
    given: str


def patient_id(index: int) -> str:
    return f"p-{index:06d}"


def identifier_value(index: int) -> str:
    """Unique for every index below the prime modulus, and not in index order."""
    return f"{(index * 48_271 + 1_234_567) % 2_147_483_647:010d}"


def generate_patient(seed: int, index: int) -> tuple[PatientInfo, list[dict[str, Any]]]:
    """Patient number ``index`` and all its resources, each with its client-chosen ``id``.

    Depends only on ``seed`` and ``index``, so a larger load contains the smaller one.
    """
    rng = random.Random(f"{seed}:patient:{index}")
    pid = patient_id(index)
    subject = {"reference": f"Patient/{pid}"}
    female = rng.random() < 0.5
    family = rng.choice(FAMILY_NAMES)
    given = rng.choice(FEMALE_NAMES if female else MALE_NAMES)
    born = dt.date(1935, 1, 1) + dt.timedelta(days=rng.randrange(365 * 70))
    info = PatientInfo(pid, identifier_value(index), family, given)
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"use": "usual", "system": IDENTIFIER_SYSTEM, "value": info.identifier}],
            "active": True,
            "name": [{"use": "official", "family": family, "given": [given]}],
            "gender": "female" if female else "male",
            "birthDate": born.isoformat(),
        }
    ]
    baseline = {m.code: rng.uniform(m.low, m.high) for m in (*VITALS, SYSTOLIC, DIASTOLIC, *LABS)}
    serial = 0

    def observation(category: str, code: tuple[str, str], when: dt.datetime, **value: Any) -> dict[str, Any]:
        nonlocal serial
        serial += 1
        display = "Vital Signs" if category == "vital-signs" else "Laboratory"
        resource = {
            "resourceType": "Observation",
            "id": f"o-{index:06d}-{serial:04d}",
            "status": "final",
            "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category, "display": display}]}],
            "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}], "text": code[1]},
            "subject": subject,
            "effectiveDateTime": _instant(when),
        }
        resource.update(value)
        resources.append(resource)
        return resource

    def quantity(measure: Measure) -> dict[str, Any]:
        spread = (measure.high - measure.low) / 10
        raw = min(max(rng.gauss(baseline[measure.code], spread), measure.low), measure.high)
        number: float | int = round(raw, measure.decimals) if measure.decimals else round(raw)
        return {"value": number, "unit": measure.unit, "system": UCUM, "code": measure.unit}

    for _ in range(rng.randint(9, 13)):
        when = _moment(rng)
        for measure in VITALS:
            observation("vital-signs", (measure.code, measure.display), when, valueQuantity=quantity(measure))
        components = [
            {
                "code": {"coding": [{"system": LOINC, "code": m.code, "display": m.display}]},
                "valueQuantity": quantity(m),
            }
            for m in (SYSTOLIC, DIASTOLIC)
        ]
        observation("vital-signs", BP_PANEL, when, component=components)
    draws: list[tuple[dt.datetime, list[dict[str, Any]]]] = []
    for _ in range(rng.randint(6, 10)):
        when = _moment(rng)
        panel = [observation("laboratory", (m.code, m.display), when, valueQuantity=quantity(m)) for m in LABS]
        draws.append((when, panel))
    for number, (when, panel) in enumerate(rng.sample(draws, rng.randint(4, 6)), start=1):
        resources.append(
            {
                "resourceType": "DiagnosticReport",
                "id": f"r-{index:06d}-{number:02d}",
                "status": "final",
                "category": [{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "LAB", "display": "Laboratory"}]}],
                "code": {"coding": [{"system": LOINC, "code": REPORT_CODE[0], "display": REPORT_CODE[1]}]},
                "subject": subject,
                "effectiveDateTime": _instant(when),
                "issued": _instant(when + dt.timedelta(hours=rng.randint(2, 48))),
                "result": [{"reference": f"Observation/{obs['id']}"} for obs in panel],
            }
        )
    return info, resources


def _moment(rng: random.Random) -> dt.datetime:
    return FIRST_DAY + dt.timedelta(seconds=rng.randrange(SPAN_SECONDS))


def _instant(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def check_generated(seed: int) -> None:
    """Validate one generated resource of each kind with the server's validator (400 on POST otherwise)."""
    _, resources = generate_patient(seed, 0)
    seen: set[tuple[str, str]] = set()
    for resource in resources:
        kind = (resource["resourceType"], resource.get("code", {}).get("coding", [{}])[0].get("code", ""))
        if kind not in seen:
            seen.add(kind)
            validate_resource(resource)


# ---------------------------------------------------------------------------------------- loading


@dataclass
class LoadStats:
    scale: str
    patients: int
    resources: int
    seconds: float
    counts: dict[str, int] = field(default_factory=dict)
    analyze_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.resources / self.seconds if self.seconds else 0.0


def load(
    engine: Engine, seed: int, first: int, stop: int, batch: int, scale: str, population: list[PatientInfo]
) -> LoadStats:
    """Write patients ``first`` to ``stop - 1`` and their resources through ``store_version``."""
    repository = Repository(engine)
    written = 0
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal written
        with repository.transaction(write=True) as tx:
            for resource in pending:
                store_version(tx, resource, resource["id"], None, "POST")
        written += len(pending)
        pending.clear()

    interactive = sys.stderr.isatty()
    started = time.perf_counter()
    with tqdm(
        total=stop - first,
        unit="patient",
        desc=f"load {scale}",
        mininterval=0.5 if interactive else 30.0,
        dynamic_ncols=interactive,
        file=sys.stderr,
    ) as bar:
        for index in range(first, stop):
            info, resources = generate_patient(seed, index)
            population.append(info)
            pending.extend(resources)
            if len(pending) >= batch:
                flush()
                bar.set_postfix(
                    resources=written, rate=f"{written / (time.perf_counter() - started):.0f}/s", refresh=False
                )
            bar.update(1)
        if pending:
            flush()
    return LoadStats(scale, stop - first, written, time.perf_counter() - started)


def analyze(engine: Engine) -> float:
    """``ANALYZE`` the whole database, as an operator would after a bulk load."""
    started = time.perf_counter()
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        else:
            connection.exec_driver_sql("ANALYZE")
            connection.commit()
    return time.perf_counter() - started


def row_counts(engine: Engine) -> dict[str, int]:
    tables = ["resource", "resource_version", *(table.name for table in INDEX_TABLES)]
    with engine.connect() as connection:
        counts = {name: connection.execute(text(f"SELECT count(*) FROM {name}")).scalar_one() for name in tables}
        for res_type in ("Patient", "Observation", "DiagnosticReport"):
            counts[f"resource:{res_type}"] = connection.execute(
                text("SELECT count(*) FROM resource WHERE res_type = :t"), {"t": res_type}
            ).scalar_one()
    return counts


# ------------------------------------------------------------------------------------- query mix


@dataclass(frozen=True)
class Query:
    name: str
    shape: str
    path: Callable[[random.Random, list[PatientInfo]], str]
    exactly_one: bool = False


def _get(resource_type: str, params: list[tuple[str, str]]) -> str:
    return f"/fhir/{resource_type}?{urllib.parse.urlencode(params, safe=':|/')}"


QUERIES = (
    Query(
        "patient-code-sorted",
        "Observation?patient=X&code=Y&_sort=-date&_count=10",
        lambda rng, pop: _get(
            "Observation",
            [
                ("patient", rng.choice(pop).res_id),
                ("code", rng.choice(OBSERVATION_CODES)),
                ("_sort", "-date"),
                ("_count", "10"),
            ],
        ),
    ),
    Query(
        "patient-identifier",
        "Patient?identifier=s|v",
        lambda rng, pop: _get("Patient", [("identifier", f"{IDENTIFIER_SYSTEM}|{rng.choice(pop).identifier}")]),
        exactly_one=True,
    ),
    Query(
        "patient-name-prefix",
        "Patient?name=prefix",
        lambda rng, pop: _get("Patient", [("name", _name_prefix(rng, rng.choice(pop)))]),
    ),
    Query(
        "code-value-gt100",
        "Observation?code=Y&value-quantity=gt100",
        lambda rng, pop: _get("Observation", [("code", rng.choice(ABOVE_100_CODES)), ("value-quantity", "gt100")]),
    ),
    Query(
        "report-include",
        "DiagnosticReport?patient=X&_include=DiagnosticReport:result",
        lambda rng, pop: _get(
            "DiagnosticReport", [("patient", rng.choice(pop).res_id), ("_include", "DiagnosticReport:result")]
        ),
    ),
)


def _name_prefix(rng: random.Random, info: PatientInfo) -> str:
    return (info.family if rng.random() < 0.5 else info.given)[:3]


# ------------------------------------------------------------------------------------- measuring


@dataclass
class Timing:
    runs: int
    p50_ms: float
    p95_ms: float
    mean_ms: float
    max_ms: float
    mean_entries: float
    mean_matches: float
    empty_runs: int
    example: str
    autovacuum: bool = False


@dataclass
class Statement:
    sql: str
    parameters: Any
    plan: list[str]


class BenchError(Exception):
    """A problem that ends the run with a message instead of a traceback."""


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    return sorted_values[max(0, math.ceil(share * len(sorted_values)) - 1)]


def measure_query(
    client: Any, query: Query, rng: random.Random, population: list[PatientInfo], warmup: int, runs: int
) -> Timing:
    for _ in range(warmup):
        _check(query, client.get(path := query.path(rng, population)), path)
    gc.collect()
    latencies: list[float] = []
    entries = matches = empty = 0
    example = ""
    for run in range(runs):
        path = query.path(rng, population)
        started = time.perf_counter()
        response = client.get(path)
        latencies.append((time.perf_counter() - started) * 1000)
        found, matched = _check(query, response, path)
        entries += found
        matches += matched
        empty += found == 0
        if run == 0:
            example = path
    latencies.sort()
    return Timing(
        runs,
        percentile(latencies, 0.50),
        percentile(latencies, 0.95),
        statistics.fmean(latencies),
        latencies[-1],
        entries / runs,
        matches / runs,
        empty,
        example,
    )


def _check(query: Query, response: Any, path: str) -> tuple[int, int]:
    """The number of entries and of matches of a 200 searchset Bundle; anything else stops the bench."""
    if response.status_code != 200:
        raise BenchError(f"GET {path} answered {response.status_code}: {response.get_data(as_text=True)[:500]}")
    body = json.loads(response.get_data())
    if body.get("resourceType") != "Bundle" or body.get("type") != "searchset":
        raise BenchError(f"GET {path} did not answer a searchset Bundle: {response.get_data(as_text=True)[:300]}")
    entries = body.get("entry", [])
    matched = sum(1 for entry in entries if entry.get("search", {}).get("mode") == "match")
    if query.exactly_one and matched != 1:
        raise BenchError(f"GET {path} found {matched} matches, expected exactly one")
    return len(entries), matched


def capture_sql(app: Any, engine: Engine, path: str) -> list[tuple[str, Any]]:
    """The statements one request runs."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        app.test_client().get(path)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def explain(engine: Engine, statements: list[tuple[str, Any]]) -> list[Statement]:
    """The plan of every SELECT (other than the pool's ping) a request ran."""
    explained = []
    postgres = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
    with engine.connect() as connection:
        for sql, parameters in statements:
            if not sql.lstrip().upper().startswith("SELECT") or sql.strip().upper() == "SELECT 1":
                continue
            rows = connection.exec_driver_sql(prefix + sql, parameters).all()
            plan = [row[0] for row in rows] if postgres else _sqlite_tree(rows)
            explained.append(Statement(sql, parameters, plan))
        connection.rollback()
    return explained


def _sqlite_tree(rows: list[Any]) -> list[str]:
    """``EXPLAIN QUERY PLAN`` rows (id, parent, notused, detail), indented as the tree they form."""
    depth: dict[int, int] = {0: -1}
    lines = []
    for node, parent, _unused, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        lines.append("  " * depth[node] + detail)
    return lines


def autovacuum_running(engine: Engine) -> bool:
    """Whether an autovacuum worker is busy in the bench database (it would compete for the CPU)."""
    if engine.dialect.name != "postgresql":
        return False
    with engine.connect() as connection:
        return bool(
            connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE backend_type = 'autovacuum worker' AND datname = current_database()"
                )
            ).scalar_one()
        )


def measure(
    url: str, population: list[PatientInfo], seed: int, scale: str, warmup: int, runs: int, explain_all: bool
) -> tuple[dict[str, Timing], dict[str, list[Statement]]]:
    """Time every query of the mix on a fresh app; the plans of slow ones (or all with ``explain_all``)."""
    app = create_app({"database_url": url, "log_level": "WARNING", "auth_mode": "none"})
    engine: Engine = services_of(app).repository.engine
    client = app.test_client()
    results: dict[str, Timing] = {}
    plans: dict[str, list[Statement]] = {}
    try:
        for query in QUERIES:
            rng = random.Random(f"{seed}:{query.name}:{scale}")
            busy = autovacuum_running(engine)
            timing = measure_query(client, query, rng, population, warmup, runs)
            timing.autovacuum = busy or autovacuum_running(engine)
            results[query.name] = timing
            print(
                f"  {scale:>4} {query.name:<22} p50 {timing.p50_ms:8.2f} ms  p95 {timing.p95_ms:8.2f} ms  "
                f"entries {timing.mean_entries:6.1f}" + ("  (autovacuum was running)" if timing.autovacuum else ""),
                flush=True,
            )
            if explain_all or timing.p50_ms >= P50_AIM_MS:
                plans[query.name] = explain(engine, capture_sql(app, engine, timing.example))
    finally:
        engine.dispose()
    return results, plans


# ------------------------------------------------------------------------------------- databases


class Database(ABC):
    """A scratch database the bench owns: made in ``create``, removed in ``drop`` unless kept."""

    kind = ""
    label = ""

    @abstractmethod
    def create(self) -> str:
        """Make the database; its URL."""

    @abstractmethod
    def drop(self, keep: bool) -> None:
        """Remove the database unless ``keep``."""


class SqliteDatabase(Database):
    kind = "sqlite"
    label = "SQLite"

    def __init__(self) -> None:
        self.folder: Path | None = None

    def create(self) -> str:
        self.folder = Path(tempfile.mkdtemp(prefix="fhir-twin-bench-search-"))
        return f"sqlite:///{self.folder / 'bench.db'}"

    def drop(self, keep: bool) -> None:
        if self.folder is None:
            return
        if keep:
            print(f"kept SQLite database {self.folder / 'bench.db'}")
        else:
            shutil.rmtree(self.folder, ignore_errors=True)


class PostgresDatabase(Database):
    kind = "postgresql"
    label = "PostgreSQL"

    def __init__(self, admin_url: str, name: str) -> None:
        self.admin_url = make_url(admin_url)
        self.name = name
        self.created = False

    def _admin(self) -> Engine:
        return create_engine(self.admin_url, isolation_level="AUTOCOMMIT")

    def create(self) -> str:
        admin = self._admin()
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}"')
                connection.exec_driver_sql(f'CREATE DATABASE "{self.name}"')
        finally:
            admin.dispose()
        self.created = True
        return self.admin_url.set(database=self.name).render_as_string(hide_password=False)

    def drop(self, keep: bool) -> None:
        if not self.created:
            return
        if keep:
            print(f"kept PostgreSQL database {self.name}")
            return
        admin = self._admin()
        try:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{self.name}"')
        finally:
            admin.dispose()


@dataclass
class DatabaseResult:
    kind: str
    label: str
    url: str
    loads: list[LoadStats] = field(default_factory=list)
    timings: dict[str, dict[str, Timing]] = field(default_factory=dict)
    plans: dict[str, dict[str, list[Statement]]] = field(default_factory=dict)


def run_database(database: Database, args: argparse.Namespace) -> DatabaseResult:
    url = database.create()
    result = DatabaseResult(database.kind, database.label, make_url(url).render_as_string(hide_password=True))
    print(f"\n=== {database.label}: {result.url}", flush=True)
    engine = make_engine(url)
    migrate(engine)
    population: list[PatientInfo] = []
    try:
        bounds = (("1x", 0, args.patients), (f"{args.factor}x", args.patients, args.patients * args.factor))
        for scale, first, stop in bounds:
            stats = load(engine, args.seed, first, stop, args.batch, scale, population)
            stats.analyze_seconds = analyze(engine)
            stats.counts = row_counts(engine)
            result.loads.append(stats)
            _print_load(stats)
            timings, plans = measure(url, population, args.seed, scale, args.warmup, args.runs, args.explain)
            result.timings[scale] = timings
            result.plans[scale] = plans
    finally:
        engine.dispose()
    return result


# ------------------------------------------------------------------------------------- reporting


def _print_load(stats: LoadStats) -> None:
    counts = stats.counts
    index_rows = sum(counts[table.name] for table in INDEX_TABLES)
    print(
        f"  loaded {stats.resources:,} resources for {stats.patients:,} patients in {stats.seconds:.1f} s "
        f"= {stats.rate:,.0f} resources/s (server write path, index included); "
        f"ANALYZE took {stats.analyze_seconds:.1f} s",
        flush=True,
    )
    print(
        f"  now: {counts['resource']:,} resources (Patient {counts['resource:Patient']:,}, "
        f"Observation {counts['resource:Observation']:,}, DiagnosticReport {counts['resource:DiagnosticReport']:,}), "
        f"{counts['resource_version']:,} versions, {index_rows:,} index rows ("
        + ", ".join(f"{table.name} {counts[table.name]:,}" for table in INDEX_TABLES)
        + ")",
        flush=True,
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report(result: DatabaseResult, factor: int) -> dict[str, Any]:
    """Print the table of one database; answer its figures for ``--json``."""
    big = f"{factor}x"
    small_t, big_t = result.timings.get("1x", {}), result.timings.get(big, {})
    loads = ", ".join(f"{s.scale}: {s.resources:,} resources at {s.rate:,.0f}/s" for s in result.loads)
    print(f"\n{result.label} — in-process Flask test client, ANALYZE run after each load; load {loads}")
    header = (
        f"{'query':<60} {'1x p50':>8} {'1x p95':>8} {big + ' p50':>8} {big + ' p95':>8} {'ratio':>6} "
        f"{'p50<' + str(int(P50_AIM_MS)) + 'ms':>9} {'ratio<' + str(RATIO_AIM):>9} {'entries 1x/' + big:>16}"
    )
    print(header)
    print("-" * len(header))
    rows: dict[str, Any] = {}
    for query in QUERIES:
        small, large = small_t.get(query.name), big_t.get(query.name)
        if small is None or large is None:
            continue
        ratio = large.p50_ms / small.p50_ms if small.p50_ms else float("inf")
        p50_ok, ratio_ok = large.p50_ms < P50_AIM_MS, ratio < RATIO_AIM
        print(
            f"{query.shape:<60} {small.p50_ms:8.2f} {small.p95_ms:8.2f} {large.p50_ms:8.2f} {large.p95_ms:8.2f} "
            f"{ratio:6.2f} {_verdict(p50_ok):>9} {_verdict(ratio_ok):>9} "
            f"{f'{small.mean_entries:.1f}/{large.mean_entries:.1f}':>16}"
        )
        rows[query.name] = {
            "shape": query.shape,
            "1x": asdict(small),
            big: asdict(large),
            "ratio_p50": ratio,
            "p50_aim": _verdict(p50_ok),
            "ratio_aim": _verdict(ratio_ok),
        }
    empties = [
        f"{name} at {scale}: {timing.empty_runs}/{timing.runs} runs"
        for scale, timings in result.timings.items()
        for name, timing in timings.items()
        if timing.empty_runs
    ]
    if empties:
        print("runs with no entries: " + "; ".join(empties))
    if any(t.autovacuum for timings in result.timings.values() for t in timings.values()):
        print("note: autovacuum was running during some measurements (marked in the lines above)")
    _print_plans(result)
    return {
        "label": result.label,
        "url": result.url,
        "loads": [{**asdict(stats), "rate": stats.rate} for stats in result.loads],
        "queries": rows,
        "plans": {
            scale: {name: [asdict(statement) for statement in statements] for name, statements in plans.items()}
            for scale, plans in result.plans.items()
        },
    }


def _print_plans(result: DatabaseResult) -> None:
    for scale, plans in result.plans.items():
        for name, statements in plans.items():
            print(f"\n{result.label} {scale} {name}: the SQL one request ran, with the plan")
            for statement in statements:
                print("  SQL: " + " ".join(statement.sql.split()))
                print(f"  parameters: {_short(statement.parameters)}")
                for line in statement.plan:
                    print("    " + line)


def _short(parameters: Any) -> str:
    shown = repr(parameters)
    return shown if len(shown) <= 400 else shown[:400] + "..."


# ------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring.")
    parser.add_argument("--databases", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--patients", type=int, default=1000, help="patients at 1x (about 104 resources each)")
    parser.add_argument("--factor", type=int, default=10, help="the larger scale, as a multiple of 1x")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per query and scale")
    parser.add_argument("--warmup", type=int, default=20, help="untimed runs per query before timing")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch", type=int, default=1000, help="resources per write transaction while loading")
    parser.add_argument("--keep", action="store_true", help="keep the databases (SQLite file, PostgreSQL database)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="admin URL to create the bench database")
    parser.add_argument("--postgres-database", default=DEFAULT_PG_DATABASE, help="name of the bench database")
    parser.add_argument("--explain", action="store_true", help="print SQL and plans of every query, not only misses")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE")
    args = parser.parse_args(argv)
    args.database_list = [name.strip() for name in args.databases.split(",") if name.strip()]
    unknown = set(args.database_list) - {"sqlite", "postgresql"}
    if unknown or not args.database_list:
        parser.error(f"--databases takes sqlite and/or postgresql, not {args.databases!r}")
    if args.patients < 1 or args.factor < 2 or args.runs < 1 or args.warmup < 0 or args.batch < 1:
        parser.error("--patients and --runs must be at least 1, --factor at least 2, --batch at least 1")
    return args


def _databases(args: argparse.Namespace) -> Iterator[Database]:
    for name in args.database_list:
        yield SqliteDatabase() if name == "sqlite" else PostgresDatabase(args.postgres_url, args.postgres_database)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_generated(args.seed)
    print(
        f"search bench: {args.patients:,} patients at 1x, {args.patients * args.factor:,} at {args.factor}x "
        f"(about {args.patients * 104:,} and {args.patients * args.factor * 104:,} resources), "
        f"{args.runs} timed runs after {args.warmup} warm-up runs per query, seed {args.seed}; "
        f"measured in-process through the Flask test client (no HTTP); "
        f"ANALYZE after each load; python {platform.python_version()}, {os.cpu_count()} CPUs",
        flush=True,
    )
    figures: dict[str, Any] = {
        "config": {key: value for key, value in vars(args).items() if key != "database_list"},
        "aims": {"p50_ms_at_large_scale": P50_AIM_MS, "ratio_p50": RATIO_AIM},
        "databases": {},
    }
    status = 0
    for database in _databases(args):
        try:
            result = run_database(database, args)
        except BenchError as exc:
            print(f"error on {database.label}: {exc}", file=sys.stderr)
            status = 1
            continue
        finally:
            database.drop(args.keep)
        figures["databases"][database.kind] = report(result, args.factor)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))
        print(f"\nwrote {args.json}")
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
