"""Send N seeded, generated requests to fhir-twin and list every answer that breaks a property.

The requests are those of the robustness suite (tests/robustness/cases.py): official examples
mutated, random searches, headers, Bundles and JSON Patch documents. Each answer must be below
500, an error must be an OperationOutcome, and a failed write must store nothing. The same seed
gives the same requests, so a run can be repeated after a fix.

By default the app runs in this process on a fresh SQLite database (``--database-url`` names
another, e.g. PostgreSQL; it is emptied first, so give it a throw-away one), preloaded with the
official examples. ``--base-url`` sends the requests to a live server over HTTP instead (the
stored-nothing check then counts versions with ``GET _history?_summary=count``).

Prints each case with ``--verbose``, then the counts by status class, and every 5xx and other
broken property with its request.

    .venv/bin/python bench/fuzz.py --cases 1000 --seed 16
    .venv/bin/python bench/fuzz.py --cases 1000 --database-url postgresql+psycopg://postgres@127.0.0.1:5432/fuzz
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy
from hypothesis import HealthCheck, Phase, given, seed, settings

from fhir_twin.app import services_of


def _cases_module() -> Any:
    """tests/robustness/cases.py, loaded by path: ``tests`` is no package (and a dependency
    installs a ``tests`` package of its own into site-packages)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "robustness" / "cases.py"
    spec = importlib.util.spec_from_file_location("fuzz_cases", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_cases"] = module  # dataclasses look their module up while building Case
    spec.loader.exec_module(module)
    return module


cases = _cases_module()
EXAMPLES, Case, problems, requests, send = cases.EXAMPLES, cases.Case, cases.problems, cases.requests, cases.send


class InProcess:
    """The app in this process, on a database emptied and loaded with the official examples."""

    def __init__(self, database_url: str) -> None:
        from fhir_twin.app import create_app

        _empty(database_url)
        common: dict[str, Any] = {"database_url": database_url, "auth_mode": "none", "audit": False, "doctor": False}
        loader = create_app({**common, "referential_integrity": False})
        _load(lambda case: send(loader.test_client(), case))
        services_of(loader).repository.engine.dispose()
        self.app = create_app(common)
        self.client = self.app.test_client()

    def send(self, case: Case) -> tuple[int, bytes]:
        return send(self.client, case)

    def stored(self) -> int:
        with services_of(self.app).repository.engine.connect() as connection:
            return connection.execute(sqlalchemy.text("SELECT count(*) FROM resource_version")).scalar_one()


class Live:
    """A running server at ``base_url`` (its ``/fhir`` prefix included or not)."""

    def __init__(self, base_url: str, token: str | None) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.prefix = parts.path.rstrip("/").removesuffix("/fhir")
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        _load(self.send)

    def send(self, case: Case) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            headers = {**self.auth, **{k: v.encode("utf-8").decode("latin-1") for k, v in case.headers.items()}}
            connection.request(case.method, self.prefix + case.path, body=case.body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def stored(self) -> int:
        _, body = self.send(Case("GET", "/fhir/_history?_summary=count"))
        return int(json.loads(body).get("total", -1))


def _empty(database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        return
    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as connection:
        tables = (
            connection.exec_driver_sql(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
            .scalars()
            .all()
        )
        if tables:
            connection.exec_driver_sql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
    engine.dispose()


def _load(send_case: Any) -> None:
    """PUT the official examples, in passes, so one that refers to another loads after it; on a
    live server with referential integrity, those referring to what no example is stay out."""
    waiting = list(EXAMPLES)
    while waiting:
        refused = []
        for resource in waiting:
            path = f"/fhir/{resource['resourceType']}/{resource['id']}"
            body = json.dumps(resource).encode()
            status, _ = send_case(Case("PUT", path, {"Content-Type": "application/fhir+json"}, body))
            if status >= 300:
                refused.append(resource)
        if len(refused) == len(waiting):
            print(f"{len(refused)} of {len(EXAMPLES)} official examples could not be loaded (missing references)")
            return
        waiting = refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="requests to generate and send (default 1000)")
    parser.add_argument("--seed", type=int, default=16, help="the seed: the same seed sends the same requests")
    parser.add_argument("--database-url", help="in-process app on this database (default: a temporary SQLite file)")
    parser.add_argument("--base-url", help="send to a live server instead, e.g. http://127.0.0.1:8080/fhir")
    parser.add_argument("--token", help="bearer token for a live server that wants one")
    parser.add_argument("--max-depth", type=int, default=300, help="deepest nesting in generated bodies")
    parser.add_argument("--verbose", action="store_true", help="print every case and its status")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the app logs every 4xx; the summary is what matters here

    if args.base_url:
        target: InProcess | Live = Live(args.base_url, args.token)
    else:
        target = InProcess(args.database_url or f"sqlite:///{tempfile.mkdtemp()}/fuzz.db")
    statuses: Counter[str] = Counter()
    distinct: set[str] = set()
    broken: list[str] = []
    started = time.perf_counter()

    @seed(args.seed)
    @settings(
        max_examples=args.cases,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=requests(args.max_depth))
    def run(case: Case) -> None:
        distinct.add(case.describe(limit=10**9))
        before = target.stored()
        try:
            status, body = target.send(case)
        except (OSError, http.client.HTTPException) as exc:
            broken.append(f"no answer ({exc}): {case.describe()}")
            statuses["none"] += 1
            return
        statuses[f"{status // 100}xx"] += 1
        if args.verbose:
            print(status, case.describe(120))
        broken.extend(f"{found}: {case.describe()}" for found in problems(case, status, body, before, target.stored()))

    run()
    elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    print(f"cases: {total} ({len(distinct)} distinct) in {elapsed:.1f} s (seed {args.seed})")
    print("by status class: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
    print(f"5xx: {statuses['5xx']}, broken properties: {len(broken)}")
    for line in broken:
        print("  " + line)


if __name__ == "__main__":
    main()
