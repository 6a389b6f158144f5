"""Bulk Data export (Bulk Data IG v2, hl7.org/fhir/uv/bulkdata/STU2/export.html): the async
request pattern, and the worker thread that runs the jobs.

| request                                         | answer                                      |
|-------------------------------------------------|---------------------------------------------|
| GET/POST [base]/$export, Patient/$export,       | 202, Content-Location: the status URL       |
| Patient/{id}/$export, Group/{id}/$export        |                                             |
| (Prefer: respond-async)                         |                                             |
| GET [base]/$export-poll-status?_jobId=          | 202 + X-Progress while running; 200 manifest|
| DELETE [base]/$export-poll-status?_jobId=       | 202; the job and its files are gone         |
| GET [base]/$export-file?_jobId=&file=           | 200 application/fhir+ndjson, streamed       |

Jobs and files live in the database (``fhir_twin.store.export_jobs``); each server process runs an
``ExportWorker`` thread that claims jobs, so any process may kick off, poll or finish a job.
A job belongs to the client that kicked it off: to any other its status URL and files answer
404, as for a job that never was (IG v2 export.html: "the server SHALL limit the data returned
to only those resources that the requestor is authorized to access").

A Group export is the Patient-level export of the Group's members at kick-off: each
``Group.member.entity`` that is a Patient and a current member: not flagged ``inactive`` (R4
group.html: "no longer in the group") and within its ``member.period``. ``_typeFilter`` narrows
its type (repeats OR-ed), ``_elements`` subsets every line; ``includeAssociatedData`` adds the
Provenance resources whose ``target`` is an exported resource (``RelevantProvenanceResources``:
all; ``LatestProvenanceResources``: per target the latest by ``recorded``) in Provenance files
after the rest; other values are refused, or ignored with a warning when lenient (IG v2
export.html#query-parameters). A file is sent as it is read, a stored part at a time.

A requester whose read of a type is granted by SMART v2 scopes narrowed by a query
(``user/Observation.rs?category=...``) gets only what they match in that type's files, and in
the associated Provenance: the narrowing is kept with the job, ANDed with its ``_typeFilter``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fhir_twin.errors import FhirError, Invalid, Issue, NotFound
from fhir_twin.fhir.instant import format_http_date, format_instant, now, parse_range
from fhir_twin.fhir.outcome import information, operation_outcome
from fhir_twin.fhir.resource_types import is_resource_type
from fhir_twin.interactions.message import Request, Response, Streamed
from fhir_twin.interactions.operations import Context, Operation, Permission, parameters
from fhir_twin.search.parameters import patient_compartment
from fhir_twin.security import context as security
from fhir_twin.security.access import narrowed_ways, patients_of
from fhir_twin.store import export_files as files
from fhir_twin.store import export_jobs as store
from fhir_twin.store.export_snapshot import LATEST, RELEVANT, Selection, check_elements, type_filter
from fhir_twin.store.repository import Repository
from fhir_twin.store.worker import Worker, wake, worker_repository

log = logging.getLogger("fhir_twin.export")

OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
NDJSON = "application/fhir+ndjson"
POLL_INTERVAL = 2.0
_KICK_OFF_PARAMETERS = ("_outputFormat", "_type", "_since", "_typeFilter", "_elements", "includeAssociatedData")
_LEVELS = "[base]/$export, [base]/Patient/$export, [base]/Patient/{id}/$export and [base]/Group/{id}/$export"
# IG v2 export.html#query-parameters: _since is a FHIR instant (seconds and a time zone required).
_INSTANT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def kick_off(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    """Queue an export and answer 202 with the status URL (IG v2 export.html#bulk-data-kick-off-request).

    What a lenient request asked for and the server leaves out is named in the 202's
    OperationOutcome, as warnings."""
    if res_type not in (None, "Patient", "Group") or (res_type == "Group" and res_id is None):
        raise NotFound(f"$export is offered at {_LEVELS}")
    if request.prefer("respond-async") is None:
        raise Invalid("$export is asynchronous: send the header 'Prefer: respond-async'")
    lenient = request.prefer("handling") == "lenient"
    given = parameters(request)
    ignored: list[Issue] = []
    unsupported = sorted({name for name, _ in given if name not in _KICK_OFF_PARAMETERS})
    if unsupported and not lenient:
        raise Invalid.at(unsupported[0], f"$export does not support the parameter {unsupported[0]!r}")
    ignored += [
        _ignored(name, f"$export does not support the parameter {name!r}; it was ignored") for name in unsupported
    ]
    for value in _values(given, "_outputFormat"):
        if value.replace(" ", "+") not in OUTPUT_FORMATS:
            raise Invalid.at("_outputFormat", f"_outputFormat {value!r} is not supported; use {NDJSON}")
    types = _types(given, patient_level=res_type is not None, lenient=lenient)
    since = _since(given)
    associated, unsupported_data = _associated_data(given, lenient)
    ignored += unsupported_data
    type_filters = _type_filters(given)
    elements = tuple(name.strip() for value in _values(given, "_elements") for name in value.split(",") if name.strip())
    check_elements(elements)
    members = None
    transaction_time = now()
    if res_type == "Group":
        members = _members(context.repository, str(res_id), request.base, transaction_time)
    elif res_id is not None:
        with context.repository.transaction() as tx:
            current = tx.current("Patient", res_id)
        if current is None or current.deleted:
            raise NotFound(f"Patient/{res_id} is not known")
    job_id = store.create_job(
        context.repository,
        request_url=_url(request.base, request.path, request.query),
        transaction_time=transaction_time,
        types=types,
        since=since,
        scope="system" if res_type is None else "group" if res_type == "Group" else "patient",
        patient_id=res_id,
        requester=_requester(),
        selection=Selection(members, type_filters, elements, request.base, associated, _narrowed()),
    )
    wake(context.repository, ExportWorker)
    status_url = _url(request.base, "$export-poll-status", [("_jobId", job_id)])
    queued = Issue("informational", f"Export job {job_id} is queued; poll {status_url}", "information")
    return Response(202, {"Content-Location": status_url}, operation_outcome([queued, *ignored]))


def _ignored(name: str, message: str) -> Issue:
    return Issue("not-supported", message, "warning", (name,))


def _associated_data(given: list[tuple[str, object]], lenient: bool) -> tuple[str | None, list[Issue]]:
    """``includeAssociatedData`` (IG v2 export.html#query-parameters): ``RelevantProvenanceResources``
    or ``LatestProvenanceResources`` (both named: the relevant, which hold the latest), the
    Provenance resources clients stored about what is exported. Other values (``_custom``...) are
    refused naming the value, or with ``Prefer: handling=lenient`` ignored and named in a warning.
    Reading Provenance is in what an export needs already: a scope reading every type exported."""
    named = [
        code.strip() for value in _values(given, "includeAssociatedData") for code in value.split(",") if code.strip()
    ]
    unsupported = [code for code in named if code not in (RELEVANT, LATEST)]
    if unsupported and not lenient:
        message = f"includeAssociatedData {unsupported[0]!r} is not supported by this server"
        raise Invalid.at("includeAssociatedData", message, "not-supported")
    chosen = RELEVANT if RELEVANT in named else LATEST if LATEST in named else None
    return chosen, [
        _ignored(
            "includeAssociatedData", f"includeAssociatedData {code!r} is not supported by this server; it was ignored"
        )
        for code in unsupported
    ]


def _type_filters(given: list[tuple[str, object]]) -> dict[str, tuple[str, ...]]:
    """``_typeFilter`` queries by the type each searches; repeats for one type are OR-ed
    (IG v2 export.html#_typefilter-experimental-query-parameter). A bad one is a 400 naming it."""
    filters: dict[str, list[str]] = {}
    for value in _values(given, "_typeFilter"):
        res_type, _ = type_filter(value)
        filters.setdefault(res_type, []).append(value)
    return {name: tuple(queries) for name, queries in filters.items()}


def _members(repository: Repository, group_id: str, base: str, at: datetime) -> tuple[str, ...]:
    """The ids of the Patients a Group lists as current members at ``at`` (R4 group.html:
    ``member.entity``, ``member.inactive``, ``member.period``); 404 for a Group that is not known.
    Members of other types (a nested Group, a Device) have no Patient compartment and export nothing."""
    with repository.transaction() as tx:
        current = tx.current("Group", group_id)
    if current is None or current.deleted or current.body is None:
        raise NotFound(f"Group/{group_id} is not known")
    group = json.loads(current.body)
    found: list[str] = []
    for member in group.get("member", []):
        reference = str((member.get("entity") or {}).get("reference", "")).removeprefix(f"{base}/")
        kind, _, patient_id = reference.partition("/")
        if kind == "Patient" and patient_id and "/" not in patient_id and _current(member, at):
            found.append(patient_id)
    return tuple(dict.fromkeys(found))


def _current(member: dict[str, Any], at: datetime) -> bool:
    """A member at ``at``: not flagged ``inactive`` ("no longer in the group"), and within its
    ``period`` ("period member belonged to the group"): one that has not begun or has ended is
    not, one whose end is still to come (or not given) is. A date covers its whole day, month or
    year (``end: 2024-05`` ends with May). Stored Groups were validated: their dates parse."""
    if member.get("inactive") is True:
        return False
    period = member.get("period") or {}
    start, end = period.get("start"), period.get("end")
    return (start is None or parse_range(start)[0] <= at) and (end is None or at < parse_range(end)[1])


def poll_status(context: Context, request: Request, _res_type: str | None, _res_id: str | None) -> Response:
    """Progress, the manifest or the error of a job; DELETE cancels it (IG v2
    export.html#bulk-data-status-request and #bulk-data-delete-request)."""
    job_id = _required(request, "_jobId")
    job = _own_job(context.repository, job_id)
    if request.method == "DELETE":
        if not store.delete_job(context.repository, job_id):
            raise NotFound(f"No export job {job_id!r}")
        return Response(202, {}, information(f"Export job {job_id} is cancelled and its files deleted"))
    if job.status == store.FAILED:
        raise FhirError(f"Export job {job_id} failed: {job.error}")
    if job.status != store.COMPLETED:
        progress = "waiting to start" if job.total is None else f"exported {job.exported} of {job.total} resources"
        return Response(202, {"X-Progress": progress, "Retry-After": str(round(POLL_INTERVAL))})
    outputs = files.output_files(context.repository, job_id)
    manifest = {
        "transactionTime": format_instant(job.transaction_time),
        "request": job.request_url,
        # Files are served behind the same authentication as every other request: a token is
        # needed unless authentication is off (IG v2 export.html#response---complete-status).
        "requiresAccessToken": context.config.auth_mode != "none",
        "output": [
            {
                "type": file.res_type,
                "url": _url(request.base, "$export-file", [("_jobId", job_id), ("file", str(file.number))]),
                "count": file.count,
            }
            for file in outputs
        ],
        "error": [],
    }
    headers = {"Expires": format_http_date((job.finished or now()) + store.RETENTION)}
    return Response(200, headers, json.dumps(manifest), content_type="application/json")


def output_file(context: Context, request: Request, _res_type: str | None, _res_id: str | None) -> Response:
    """One NDJSON file of a completed job (IG v2 export.html#file-request)."""
    job_id = _required(request, "_jobId")
    number = _required(request, "file")
    if not number.isdigit():
        raise Invalid.at("file", f"file must be a file number from the manifest, not {number!r}")
    _own_job(context.repository, job_id)
    if not files.has_file(context.repository, job_id, int(number)):
        raise NotFound(f"Export job {job_id!r} has no file {number}")
    file_number = int(number)
    parts = files.file_parts(context.repository, job_id, file_number)

    def patients_of_sent(repository: Repository, count: int) -> set[str]:
        found: set[str] = set()
        for part, _ in zip(files.file_parts(repository, job_id, file_number), range(count), strict=False):
            found |= _patients(part)
        return found

    # With the audit trail kept, its record of the download names the patients of what was sent.
    streamed = Streamed(parts, patients_of_sent if context.config.audit else None)
    return Response(200, {}, content_type=NDJSON, streamed=streamed)


def _patients(part: str) -> set[str]:
    """The patients whose records NDJSON lines hold."""
    found: set[str] = set()
    for line in part.splitlines():
        found |= patients_of(json.loads(line))
    return found


def _narrowed() -> dict[str, tuple[tuple[str | None, str | None], ...]]:
    """Per type, what the requester's scopes narrowed by a query hold its read to (SMART v2
    finer-grained scopes): kept with the job, whose worker runs without the credential, so each
    type's files hold only what the credential may read (IG v2 export.html: "only those
    resources that the requestor is authorized to access")."""
    principal = security.current()
    scopes = () if principal is None else principal.scopes
    narrowed_types = sorted({scope.resource_type for scope in scopes if scope.query is not None})
    return {
        name: tuple((patient, scope.query) for patient, scope in ways)
        for name in narrowed_types
        if principal is not None and (ways := narrowed_ways(principal, name, "r")) is not None
    }


def _requester() -> str | None:
    """Who the request acts for, as a job records it: the kind of credential and its name."""
    principal = security.current()
    return None if principal is None else f"{principal.kind}:{principal.name}"


def _own_job(repository: Repository, job_id: str) -> store.ExportJob:
    """The job, when the requester started it (or the server acts for itself); else 404."""
    job = store.get_job(repository, job_id)
    principal = security.current()
    if job is None or not (job.requester == _requester() or (principal is not None and principal.trusted)):
        raise NotFound(f"No export job {job_id!r}")
    return job


def _values(given: list[tuple[str, object]], name: str) -> list[str]:
    return [str(value) for key, value in given if key == name]


def _types(given: list[tuple[str, object]], patient_level: bool, lenient: bool) -> tuple[str, ...] | None:
    """``_type`` (comma lists, repeatable); at Patient level only compartment types, others
    refused, or dropped with ``Prefer: handling=lenient`` (IG v2 export.html#query-parameters)."""
    named = [name.strip() for value in _values(given, "_type") for name in value.split(",") if name.strip()]
    if not named:
        return None
    unknown = [name for name in named if not is_resource_type(name)]
    if unknown:
        raise Invalid.at("_type", f"Unknown resource type {unknown[0]!r} in _type")
    if patient_level:
        outside = [name for name in named if name not in patient_compartment()]
        if outside and not lenient:
            raise Invalid.at("_type", f"_type {outside[0]!r} is not in the Patient compartment")
        named = [name for name in named if name not in outside]
    return tuple(sorted(set(named)))


def _since(given: list[tuple[str, object]]) -> datetime | None:
    values = _values(given, "_since")
    if not values:
        return None
    value = values[-1].strip().replace(" ", "+")
    message = f"_since must be one FHIR instant such as 2024-01-31T12:00:00Z, not {values[-1]!r}"
    if len(values) > 1 or not _INSTANT.fullmatch(value):
        raise Invalid.at("_since", message)
    try:
        return parse_range(value)[0]
    except ValueError:
        raise Invalid.at("_since", message) from None


def _required(request: Request, name: str) -> str:
    values = request.params(name)
    if len(values) != 1 or not values[0]:
        raise Invalid.at(name, f"The parameter {name} is required once")
    return values[0]


def _url(base: str, path: str, query: list[tuple[str, str]]) -> str:
    return f"{base}/{path}" + (f"?{urlencode(query)}" if query else "")


class ExportWorker(Worker):
    """Runs queued export jobs (``store.run_pending_exports``) every ``poll_interval`` seconds,
    or at once when a kick-off in this process wakes it; a paused worker hands its job back."""

    name = "fhir-twin-export"

    def __init__(
        self,
        repository: Repository,
        *,
        poll_interval: float = POLL_INTERVAL,
        batch_size: int = store.BATCH_SIZE,
        file_size: int = store.FILE_SIZE,
    ) -> None:
        self._work = worker_repository(repository)
        super().__init__(repository, poll_interval, own=self._work)
        self.batch_size = batch_size
        self.file_size = file_size
        self._next_purge = 0.0

    def run_pass(self, owner: str, should_stop: Callable[[], bool]) -> None:
        if time.monotonic() >= self._next_purge:
            store.purge_expired(self._work)
            self._next_purge = time.monotonic() + 60
        store.run_pending_exports(
            self._work, owner, batch_size=self.batch_size, file_size=self.file_size, should_stop=should_stop
        )


# A bulk export hands out whole types: a user or system scope reading every type it may export.
EXPORTS = Permission(every_type=True)
EXPORT = Operation(
    name="export",
    levels=frozenset({"system", "type", "instance"}),
    methods=frozenset({"GET", "POST"}),
    handler=kick_off,
    definition="http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    types=frozenset({"Patient", "Group"}),
    permission=EXPORTS,
)
EXPORT_POLL_STATUS = Operation(
    name="export-poll-status",
    levels=frozenset({"system"}),
    methods=frozenset({"GET", "DELETE"}),
    handler=poll_status,
    definition="http://hl7.org/fhir/uv/bulkdata/STU2/export.html#bulk-data-status-request",
    permission=EXPORTS,
)
EXPORT_FILE = Operation(
    name="export-file",
    levels=frozenset({"system"}),
    methods=frozenset({"GET"}),
    handler=output_file,
    definition="http://hl7.org/fhir/uv/bulkdata/STU2/export.html#file-request",
    permission=EXPORTS,
)
