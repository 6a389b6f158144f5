"""Loading files of FHIR data: Bundles (transaction, batch, collection) and NDJSON.

Each file goes through the same request path as the API: transaction and batch Bundles as they
are; collection Bundles and NDJSON lines as transactions of up to ``CHUNK`` resources, each kept
under its own id (``PUT``) or given one (``POST``). A file that fails is reported and the others
go on.

The files named in one load are one load, not one transaction. Each Bundle (or chunk) commits
on its own: memory holds one file at a time whatever the size of the load, and a bad file does
not undo hours of good ones. What the files refer to is checked for the load as a whole
(R4 references.html; the ``referential_integrity`` setting): real exports refer across files
(Synthea's patients to its practitioner and hospital files, the official examples to each
other, an NDJSON export's Observations to the Patients of another file), so checking each file
as it is written would refuse them in any order. During a load each transaction still refuses
an unresolved ``urn:uuid:`` reference and the delete of a referenced resource, and records the
local resources it refers to; once every file is written, a target that exists nowhere is a
failure of the file that refers to it, naming the resource and element. That resource stays
stored: load the missing data, or fix the file, and load again.

A file none of which was written because a Bundle failed as a whole is tried again after the
others, for as long as a round loads something: a conditional reference
(``Organization?identifier=…``, as Synthea writes them) must find a resource another file creates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fhir_twin.errors import FhirError
from fhir_twin.fhir import json
from fhir_twin.fhir.references import references
from fhir_twin.interactions import Request, Response
from fhir_twin.search.fhirpath import reference_target
from fhir_twin.store.repository import Repository

CHUNK = 500
SUFFIXES = (".json", ".ndjson")
Route = Callable[[Request], Response]
Key = tuple[str, str]


@dataclass
class FileResult:
    path: Path
    resources: int = 0
    failures: list[str] = field(default_factory=list)
    # Nothing of the file was written because a Bundle failed as a whole: worth another try.
    retry: bool = False
    # 1 on the first pass over the files, 2 when tried again after them, and so on.
    attempt: int = 1


def files_in(paths: list[Path]) -> list[Path]:
    """The data files named, folders searched recursively, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES))
        else:
            found.append(path)
    return found


class Load:
    """One load of many files; see the module docstring for why references are checked at its end."""

    def __init__(
        self,
        route: Route,
        repository: Repository,
        base: str,
        progress: Callable[[int], None] = lambda _count: None,
        file_done: Callable[[FileResult], None] = lambda _result: None,
    ) -> None:
        self.route = route
        self.repository = repository
        self.base = base
        self.progress = progress
        self.file_done = file_done

    def run(self, files: list[Path]) -> list[FileResult]:
        """Load ``files``; the results, in the order of ``files``, carry every failure."""
        checking = self.repository.referential_integrity
        # Each target the load refers to, with its first referrer and the file (its position) it is in.
        deferred: dict[Key, Key] = {}
        owners: dict[Key, int] = {}
        results = [FileResult(path) for path in files]
        try:
            pending, attempt = list(range(len(files))), 1
            while pending:
                loaded = 0
                for number in pending:
                    in_file: dict[Key, Key] = {}
                    if checking:
                        self.repository.deferred_targets = in_file
                    result = results[number] = load_file(self.route, self.base, files[number], self.progress)
                    result.attempt = attempt
                    for target, source in in_file.items():
                        if target not in deferred:
                            deferred[target], owners[target] = source, number
                    loaded += result.resources
                    self.file_done(result)
                pending = [number for number in pending if results[number].retry] if loaded else []
                attempt += 1
        finally:
            self.repository.deferred_targets = None
        if checking and deferred:
            for message, number in self._dangling(deferred, owners):
                results[number].failures.append(message)
        return results

    def _dangling(self, deferred: dict[Key, Key], owners: dict[Key, int]) -> Iterator[tuple[str, int]]:
        """What each missing target's referrer says about it, and the file the referrer came from."""
        with self.repository.transaction() as tx:
            for target in tx.missing(list(deferred)):
                source = deferred[target]
                current = tx.current(*source)
                body = json.loads(current.body) if current is not None and current.body else {}
                elements = [element for element, ref in references(body) if reference_target(ref) == target]
                where = f"{source[0]}/{source[1]} {elements[0] if elements else source[0]}"
                yield f"{where} refers to {target[0]}/{target[1]}, which does not exist", owners[target]


def load_file(route: Route, base: str, path: Path, progress: Callable[[int], None]) -> FileResult:
    """Load one file; failures are collected, not raised. ``progress`` hears of each batch of
    resources written."""
    result = FileResult(path)
    whole_failures = 0
    try:
        for bundle, labels in _bundles(path):
            try:
                answer = route(Request("POST", "", base, body=bundle))
            except FhirError as error:
                result.failures.append(error.diagnostics)
                whole_failures += 1
                continue
            entries = answer.body.get("entry", []) if isinstance(answer.body, dict) else []
            written = 0
            for label, entry in zip(labels, entries, strict=False):
                status = entry.get("response", {}).get("status", "")
                if status.startswith(("2", "3")):
                    written += 1
                else:
                    outcome = entry.get("response", {}).get("outcome", {})
                    reason = "; ".join(issue.get("diagnostics", "") for issue in outcome.get("issue", []))
                    result.failures.append(f"{label}: {status} {reason}".strip())
            result.resources += written
            progress(written)
    except (OSError, UnicodeDecodeError, FhirError) as error:
        result.failures.append(str(error) or type(error).__name__)
        return result
    result.retry = result.resources == 0 and whole_failures == len(result.failures) > 0
    return result


def _bundles(path: Path) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """The Bundles to post for a file, with what to call each of their entries in a failure."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".ndjson":
        lines = [(number, line) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
        for start in range(0, len(lines), CHUNK):
            chunk = lines[start : start + CHUNK]
            resources = [json.require_object(json.loads(line), f"Line {number}") for number, line in chunk]
            yield _transaction(resources), [f"line {number}" for number, _ in chunk]
        return
    value = json.require_object(json.loads(text), f"{path.name}")
    if value["resourceType"] != "Bundle":
        yield _transaction([value]), [value["resourceType"]]
        return
    kind = value.get("type")
    entries = value.get("entry", [])
    if kind in ("transaction", "batch"):
        yield value, [f"entry {index}" for index in range(len(entries))]
        return
    numbered = [
        (index, entry["resource"])
        for index, entry in enumerate(entries)
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
    ]
    for start in range(0, len(numbered), CHUNK):
        entry_chunk = numbered[start : start + CHUNK]
        yield _transaction([resource for _, resource in entry_chunk]), [f"entry {index}" for index, _ in entry_chunk]


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
