"""Measure the cost of validating a resource, in process (no HTTP, no database).

Validates every official R4 example in ``fixtures/official-r4-examples`` (the valid path every
write takes) ``--rounds`` times, then a set of invalid resources (the path that reports every
issue), and prints per resource the mean, p50, p95 and p99 time in microseconds. Run it before
and after a change to ``fhir_twin.fhir.validation`` (``PYTHONPATH=<other checkout>`` runs
another checkout's code with this venv)::

    python bench/validation.py --rounds 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import simplejson

import fhir_twin
from fhir_twin.fhir.validation import resource_issues

EXAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "official-r4-examples"

INVALID: list[dict[str, Any]] = [
    {"resourceType": "Observation", "subject": {"reference": "Patient/p"}},
    {"resourceType": "Patient", "birthDate": "1970-13-45", "gender": "mal"},
    {
        "resourceType": "Observation",
        "status": "final",
        "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": 5}]}, "valueString": ""}],
    },
    {"resourceType": "MedicationRequest", "subject": {"reference": "Patient/p"}, "note": [{}]},
]


def timings(resources: list[dict[str, Any]], rounds: int) -> list[float]:
    """Microseconds per validation, every resource ``rounds`` times."""
    out: list[float] = []
    for _ in range(rounds):
        for resource in resources:
            start = time.perf_counter()
            resource_issues(resource)
            out.append((time.perf_counter() - start) * 1e6)
    return out


def report(name: str, values: list[float]) -> None:
    cuts = statistics.quantiles(values, n=100)
    print(
        f"{name:<22} n={len(values):>6}  mean {statistics.fmean(values):8.0f} us  "
        f"p50 {cuts[49]:8.0f}  p95 {cuts[94]:8.0f}  p99 {cuts[98]:8.0f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    examples = [simplejson.loads(p.read_bytes(), use_decimal=True) for p in sorted(EXAMPLES.glob("[!_]*.json"))]
    failing = sum(1 for resource in examples if resource_issues(resource))
    print(f"code: {Path(fhir_twin.__file__).parent}; {len(examples)} official examples, {failing} with issues")
    timings(examples, 1)  # warm the caches
    report("official examples", timings(examples, args.rounds))
    report("invalid resources", timings(INVALID, args.rounds * 25))


if __name__ == "__main__":
    main()
