"""Property-based fuzzing of the FHIR API: bodies, query strings, headers, Bundles and
JSON Patch documents, mutated from the official examples and mixed with garbage. Whatever comes
in, no answer is a 5xx, every error is an OperationOutcome, and a failed write stores nothing.

The examples are derandomized (the same ones on every run, so CI is repeatable) and few, to keep
the suite within seconds; ``FHIR_TWIN_FUZZ_EXAMPLES`` asks for more, and ``bench/fuzz.py`` runs
thousands of seeded requests and lists what it finds.
"""

from __future__ import annotations

import os

from flask import Flask
from hypothesis import HealthCheck, given, settings

from tests.robustness.cases import Case, bundles, patches, problems, resource_writes, searches, send
from tests.robustness.conftest import stored_versions

FUZZ = settings(
    max_examples=int(os.environ.get("FHIR_TWIN_FUZZ_EXAMPLES", "30")),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def check(app: Flask, case: Case) -> None:
    before = stored_versions(app)
    status, body = send(app.test_client(), case)
    found = problems(case, status, body, before, stored_versions(app))
    assert not found, f"{case.describe()}: {'; '.join(found)}"


@FUZZ
@given(case=resource_writes())
def test_resource_writes(fuzz_app: Flask, case: Case) -> None:
    check(fuzz_app, case)


@FUZZ
@given(case=searches())
def test_searches_and_reads(fuzz_app: Flask, case: Case) -> None:
    check(fuzz_app, case)


@FUZZ
@given(case=patches())
def test_json_patches(fuzz_app: Flask, case: Case) -> None:
    check(fuzz_app, case)


@FUZZ
@given(case=bundles())
def test_bundles(fuzz_app: Flask, case: Case) -> None:
    check(fuzz_app, case)
