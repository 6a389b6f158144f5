"""Loading files of FHIR data: Bundles (transaction, batch, collection) and NDJSON.

Each file goes through the same request path as the API: transaction and batch Bundles as they
are; collection Bundles and NDJSON lines as transactions of up to ``CHUNK`` resources, each kept
under its own id (``PUT``) or given one (``POST``). A file that fails is reported and the others
go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_twin.errors import FhirError
from fhir_twin.fhir import json
from fhir_twin.interactions import Request, Response

CHUNK = 500
SUFFIXES = (".json", ".ndjson")
Route = Callable[[Request], Response]


@dataclass
class FileResult:
    path: Path
    resources: int = 0
    failures: list[str] = field(default_factory=list)


def files_in(paths: list[Path]) -> list[Path]:
    """The data files named, folders searched recursively, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES))
        else:
            found.append(path)
    return found


def load_file(route: Route, base: str, path: Path, progress: Callable[[int], None]) -> FileResult:
    """Load one file; failures are collected, not raised."""
    result = FileResult(path)
    try:
        for bundle, size in _bundles(path):
            try:
                answer = route(Request("POST", "", base, body=bundle))
            except FhirError as error:
                result.failures.append(error.diagnostics)
                continue
            entries = answer.body.get("entry", []) if isinstance(answer.body, dict) else []
            for index, entry in enumerate(entries):
                status = entry.get("response", {}).get("status", "")
                if status.startswith(("2", "3")):
                    result.resources += 1
                else:
                    outcome = entry.get("response", {}).get("outcome", {})
                    reason = "; ".join(issue.get("diagnostics", "") for issue in outcome.get("issue", []))
                    result.failures.append(f"entry {index}: {status} {reason}".strip())
            progress(size)
    except (OSError, UnicodeDecodeError, FhirError) as error:
        result.failures.append(str(error) or type(error).__name__)
    return result


def _bundles(path: Path) -> Iterator[tuple[dict[str, Any], int]]:
    """The Bundles to post for a file, with the number of resources in each."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ndjson":
        lines = [line for line in text.splitlines() if line.strip()]
        for start in range(0, len(lines), CHUNK):
            chunk = [
                json.require_object(json.loads(line), f"Line {start + n + 1}")
                for n, line in enumerate(lines[start : start + CHUNK])
            ]
            yield _transaction(chunk), len(chunk)
        return
    value = json.require_object(json.loads(text), f"{path.name}")
    if value["resourceType"] != "Bundle":
        yield _transaction([value]), 1
        return
    kind = value.get("type")
    entries = value.get("entry", [])
    if kind in ("transaction", "batch"):
        yield value, len(entries)
        return
    resources = [
        entry["resource"] for entry in entries if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
    ]
    for start in range(0, len(resources), CHUNK):
        chunk = resources[start : start + CHUNK]
        yield _transaction(chunk), len(chunk)


def _transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for resource in resources:
        res_id = resource.get("id")
        if isinstance(res_id, str):
            request = {"method": "PUT", "url": f"{resource['resourceType']}/{res_id}"}
        else:
            request = {"method": "POST", "url": resource["resourceType"]}
        entries.append({"resource": resource, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
