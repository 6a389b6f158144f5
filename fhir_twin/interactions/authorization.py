"""Authorization of each routed request against the principal it acts for (SMART scopes and the
launch patient's compartment; see ``fhir_twin.security.access``).

Checked at the router, so a Bundle entry or a nested request is held to exactly what the same
request sent alone would be. A patient-context credential meets what lies outside its patient's
compartment as if it did not exist: the same 404, never a 403 that would tell it exists.

A scope narrowed by a query (SMART v2, ``patient/Observation.rs?category=vital-signs``) is held
the same way: a resource its search does not match, as it now stands, answers 404 to a read; a
write must leave what it writes matching (else 403), and may change only what matches.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from fhir_twin.errors import Forbidden, MethodNotAllowed, NotFound, Unprocessable
from fhir_twin.fhir.resource_types import is_resource_type, resource_types
from fhir_twin.interactions.instance import patch_document
from fhir_twin.interactions.interaction import Interaction
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Operation
from fhir_twin.search.index import IndexRow, ReferenceRow
from fhir_twin.search.parameters import parameters_for
from fhir_twin.search.query import Criterion, Narrowed, Search, TokenValue
from fhir_twin.security.access import (
    ALL,
    holds_everything,
    in_compartment,
    narrowed_scopes,
    narrowing,
    patients_in,
    patients_of,
    reach,
    require,
)
from fhir_twin.security.principal import Principal
from fhir_twin.security.version_match import unjudged, version_matches
from fhir_twin.store.repository import Repository
from fhir_twin.store.version import Version

# The server writes its audit trail itself; through the API it is read-only.
AUDIT_TYPE = "AuditEvent"
_WRITES = ("create", "update", "patch", "delete")


class Guard:
    """Checks a request before it runs and what it wrote before its transaction commits."""

    def __init__(self, repository: Repository, operations: dict[str, Operation]) -> None:
        self.repository = repository
        # The router's own table, shared: an operation added to it is guarded by what it declares.
        self.operations = operations

    def before(self, principal: Principal, interaction: Interaction, request: Request) -> None:
        """403 for what the scopes do not grant, 404 for what lies outside the compartment, 405
        for a write to the audit trail."""
        if interaction.resource_type == AUDIT_TYPE and interaction.name in _WRITES:
            message = "AuditEvents are recorded by the server and cannot be created or changed"
            raise MethodNotAllowed(message, headers={"Allow": "GET, HEAD"})
        if principal.trusted:
            return
        if interaction.name == "operation":
            self._operation(principal, interaction, request)
            return
        if interaction.name in _HISTORIES:
            _judgeable(principal, interaction.resource_type)
        if interaction.permission is None or interaction.resource_type is None:
            return
        held_to = require(principal, interaction.resource_type, interaction.permission)
        for needed in _also_needed(interaction, request):
            require(principal, interaction.resource_type, needed)
        self._narrowed(principal, interaction, request)
        if held_to == ALL:
            return
        if interaction.name in _WRITES and interaction.resource_id is None and interaction.name != "create":
            raise Forbidden("Conditional updates, patches and deletes need a user or system scope")
        if interaction.name == "create" and request.header("if-none-exist"):
            raise Forbidden("Conditional creates need a user or system scope")
        # An update's new content first: refused alike whether or not the id is taken.
        if interaction.name == "update" and isinstance(request.body, dict):
            content = {**request.body, "id": interaction.resource_id}
            _alone(
                held_to, f"{interaction.resource_type}/{interaction.resource_id}", patients_of(content, request.base)
            )
        if interaction.name == "patch":
            # Its document is judged before the resource is looked up, as for an unused id.
            patch_document(request)
        if interaction.resource_id is not None and interaction.name not in ("search-type", "history-instance"):
            self._instance(held_to, interaction, request.base)

    def _narrowed(self, principal: Principal, interaction: Interaction, request: Request) -> None:
        """Hold an interaction to the scopes narrowed by a query that grant it: a conditional
        write's search is refused (its matches could not be told apart from what the scope
        leaves out); a resource addressed by id must match as it now stands (what does not, or
        is deleted, answers 404, but 403 to a write the credential may read; an update at an
        id that does not match, unused ones included, is 403)."""
        res_type = interaction.resource_type
        assert res_type is not None and interaction.permission is not None
        needed = (interaction.permission, *_also_needed(interaction, request))
        narrowed = [scope for letter in needed for scope in narrowed_scopes(principal, res_type, letter)]
        if interaction.name in _WRITES and (interaction.resource_id is None and interaction.name != "create"):
            if narrowed:
                raise _insufficient(f"Conditional {interaction.name}s need scopes not narrowed by a query", narrowed)
            return
        if interaction.name == "create" and request.header("if-none-exist") and narrowed:
            raise _insufficient("Conditional creates need scopes not narrowed by a query", narrowed)
        res_id = interaction.resource_id
        if res_id is None or interaction.name in ("search-type", "history-instance", "create"):
            return
        if all(narrowing(principal, res_type, letter) is None for letter in (*needed, "r")):
            return
        if interaction.name == "vread" and interaction.version_id is not None:
            self._vread(principal, res_type, res_id, interaction.version_id)
            return
        with self.repository.transaction() as tx:
            current = tx.current(res_type, res_id)
        live = current is not None and not current.deleted
        if live and all(self.matches(principal, res_type, res_id, letter, request.base) for letter in needed):
            return
        if interaction.name in _WRITES:
            if not narrowed:
                return  # its own letter is not narrowed: the interaction answers, or an update creates
            if interaction.name == "update":
                # Refused alike whether the id is unused, deleted or not matched: creating at an
                # unused id while refusing a taken one would tell which ids the scopes leave out.
                message = f"{res_type}/{res_id} is not a resource the credential may update; create new ones with POST"
                raise _insufficient(message, narrowed)
            if live and self.matches(principal, res_type, res_id, "r", request.base):
                verb = _VERB[interaction.permission]
                raise _insufficient(f"{res_type}/{res_id} is not among what the credential may {verb}", narrowed)
        elif current is None:
            return  # the read answers 404 itself
        if interaction.version_id is not None:
            raise NotFound(f"{res_type}/{res_id} has no version {interaction.version_id}")
        raise NotFound(f"{res_type}/{res_id} is not known")

    def _vread(self, principal: Principal, res_type: str, res_id: str, version_id: str) -> None:
        """A vread shows one version: judged on its own content, as a history shows it, so the
        two agree however the resource stands now (404 as a missing version when it does not
        match; a deletion matches nothing)."""
        scopes = unjudged(principal, res_type, "r")
        if scopes:
            message = (
                f"A version of {res_type} is shown only if it matches the scopes' search, which can be judged "
                "for token, string, uri, reference and date parameters only, not for the query of"
            )
            raise _insufficient(message, scopes)
        found = None
        if version_id.isdigit():
            with self.repository.transaction() as tx:
                found = tx.version(res_type, res_id, int(version_id))
        body = None if found is None or found.deleted else _as_dict(found.body)
        if not version_matches(principal, res_type, body, "r"):
            raise NotFound(f"{res_type}/{res_id} has no version {version_id}")

    def matches(self, principal: Principal, res_type: str, res_id: str, permission: str, base: str | None) -> bool:
        """Whether ``principal``'s grant of ``permission`` reaches ``res_type/res_id`` as it now
        stands (live, and matching its narrowed scopes' search, run by the database as any
        search is). The grant itself (``require``) and the compartment are checked apart."""
        if reach(principal, res_type, permission) is None:
            return False
        narrowed = narrowing(principal, res_type, permission)
        if narrowed is None:
            return True
        return _found(self.repository, narrowed, res_id, base)

    def answered(self, principal: Principal, interaction: Interaction) -> None:
        """404 for the history of a resource outside the compartment, checked once the history
        has run rather than before: its parameters are judged first (400 for ``_count=0``), then
        whether the resource exists, and an id outside the compartment must meet the same order
        as an id no resource has."""
        if interaction.name != "history-instance" or principal.trusted or interaction.resource_type is None:
            return
        permission = interaction.permission or "r"
        held_to = reach(principal, interaction.resource_type, permission)
        if held_to is not None and held_to != ALL:
            self._instance(held_to, interaction)
        res_id = interaction.resource_id
        if res_id is not None and not self._some_version_matches(principal, interaction.resource_type, res_id):
            # Each version is judged on its own content (``visible``); a resource none of whose
            # versions the scopes match answers as one that does not exist.
            raise NotFound(f"{interaction.resource_type}/{res_id} is not known")

    def _some_version_matches(self, principal: Principal, res_type: str, res_id: str) -> bool:
        """Whether a history by ``principal`` shows some version of ``res_type/res_id``."""
        if all(narrowing(principal, res_type, letter) is None for letter in _HISTORY_LETTERS):
            return True
        with self.repository.transaction() as tx:
            current = tx.current(res_type, res_id)
            last = 0 if current is None else current.version
            for number in range(last, 0, -1):
                found = tx.version(res_type, res_id, number)
                if found is not None and _version_shown(principal, res_type, found.body):
                    return True
        return False

    def searchable(self, principal: Principal | None, types: tuple[str, ...]) -> tuple[str, ...]:
        """Of ``types``, those ``principal`` may search (a system search without ``_type``)."""
        if principal is None or principal.trusted:
            return types
        return tuple(name for name in types if reach(principal, name, "s") is not None)

    def written(
        self, principal: Principal, versions: list[tuple[Version, list[IndexRow]]], base: str | None = None
    ) -> None:
        """A patient-context write must leave each resource it wrote in its patient's compartment
        alone, and may only replace or delete what was in it alone: a resource in another
        patient's compartment too is part of their record (R4 compartmentdefinition-patient.html).
        ``before`` checked the resource as it was; this checks again inside the write's
        transaction, against what it actually replaced."""
        if principal.trusted:
            return
        for version, index in versions:
            permission = "d" if version.deleted else "u" if version.version > 1 else "c"
            # An update that creates (R4 http.html#upsert) is a create, and needs ``c``.
            held_to = require(principal, version.res_type, permission)
            narrowed = narrowing(principal, version.res_type, permission)
            if (
                narrowed is not None
                and not version.deleted
                and not _found(self.repository, narrowed, version.res_id, base)
            ):
                # Matched by the search in this transaction, which already holds the new version.
                verb = _VERB[permission]
                where = f"{version.res_type}/{version.res_id}"
                scopes = narrowed_scopes(principal, version.res_type, permission)
                raise _insufficient(f"{where} as written is not among what the credential may {verb}", scopes)
            if held_to == ALL:
                continue
            if version.version > 1:
                with self.repository.transaction() as tx:
                    previous = tx.version(version.res_type, version.res_id, version.version - 1)
                if previous is not None and previous.body is not None:
                    _owned(held_to, f"{version.res_type}/{version.res_id}", patients_of(json.loads(previous.body)))
            if not version.deleted:
                _alone(
                    held_to,
                    f"{version.res_type}/{version.res_id}",
                    patients_in(version.res_type, version.res_id, index),
                )
                self._refers_within(held_to, version, index)

    def _refers_within(self, patient_id: str, version: Version, index: list[IndexRow]) -> None:
        """422 for a reference to another patient's resource, worded as the store words one to a
        resource that does not exist: accepting it would tell the token that it exists."""
        targets = {
            (row.target_type, row.target_id)
            for row in index
            if isinstance(row, ReferenceRow) and row.target_type and row.target_id
        }
        targets.discard((version.res_type, version.res_id))
        if not targets:
            return
        with self.repository.transaction() as tx:
            for target_type, target_id in sorted(targets):
                found = tx.current(target_type, target_id)
                if found is None or found.deleted or found.body is None:
                    continue  # the store refuses it (or the server keeps no integrity)
                patients = patients_of(json.loads(found.body))
                if patients and patient_id not in patients:
                    raise Unprocessable(
                        f"{version.res_type}/{version.res_id} refers to {target_type}/{target_id}, which does not exist"
                    )

    def visible(self, principal: Principal | None, response: Response) -> Response:
        """Drop from a Bundle answer the entries ``principal`` may not read: ``_include``d
        resources of other types or patients, other patients' history."""
        body = response.body
        if principal is None or principal.trusted or not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            return response
        entries = body.get("entry")
        if not entries:
            return response
        kept: list[dict[str, Any]] = []
        withheld: list[dict[str, Any]] = []
        for entry in entries:
            readable = self._version_readable if body.get("type") == "history" else self._readable
            (kept if readable(principal, entry) else withheld).append(entry)
        if withheld:
            body = {**body, "entry": kept}
            if not kept:
                del body["entry"]
            if any(_counted(body, entry) and not _countable(principal, entry) for entry in withheld):
                # A total that counted what was withheld would tell of it, unless the scopes
                # let the client count that anyway (search without read).
                body.pop("total", None)
        return Response(response.status, response.headers, body, response.content_type)

    def _version_readable(self, principal: Principal, entry: dict[str, Any]) -> bool:
        """A history entry: readable as any entry is, the scopes' narrowing judged on the
        version it holds rather than on the resource as it now stands."""
        res_type = _type_of(entry)
        if res_type is None or not _version_shown(principal, res_type, entry.get("resource")):
            return False
        return self._readable(principal, entry, narrowed_now=False)

    def _readable(self, principal: Principal, entry: dict[str, Any], narrowed_now: bool = True) -> bool:
        resource = entry.get("resource")
        res_type = _type_of(entry)
        if res_type is None:
            return True
        held_to = reach(principal, res_type, "r")
        if held_to is None:
            return False
        narrowed = narrowing(principal, res_type, "r") if narrowed_now else None
        if narrowed is not None:
            parts = str(entry.get("fullUrl", "")).rstrip("/").split("/")
            if not _found(self.repository, narrowed, parts[-1], "/".join(parts[:-2])):
                return False
        if held_to == ALL:
            return True
        if resource is None:
            # A deletion in a history: shown when the resource was the patient's before.
            request = entry.get("request", {})
            parts = str(request.get("url", "")).split("/")
            if len(parts) >= 2:
                return self._was_in(held_to, parts[0], parts[1])
            return False
        return in_compartment(_as_dict(resource), held_to)

    def _instance(self, patient_id: str, interaction: Interaction, base: str | None = None) -> None:
        """404 for what is not in the compartment; 403 for a write to what is in another
        patient's too, which the token may read but not change."""
        res_type, res_id = interaction.resource_type, interaction.resource_id
        assert res_type is not None and res_id is not None
        with self.repository.transaction() as tx:
            if interaction.version_id is not None and interaction.version_id.isdigit():
                found = tx.version(res_type, res_id, int(interaction.version_id))
            else:
                found = tx.current(res_type, res_id)
            if found is None:
                if interaction.name == "delete":
                    # A delete of an unused id would answer 200; held to a compartment, it answers
                    # as for another patient's resource.
                    raise NotFound(f"{res_type}/{res_id} is not known")
                if interaction.name == "update":
                    raise _not_updatable(res_type, res_id)
                return  # the interaction answers 404 itself
            deleted = found.deleted
            if deleted:
                found = tx.version(res_type, res_id, found.version - 1) if found.version > 1 else None
        if found is None or found.body is None or not in_compartment(json.loads(found.body), patient_id):
            if interaction.name == "update":
                raise _not_updatable(res_type, res_id)
            if interaction.version_id is not None:
                shown = interaction.version_id if interaction.version_id.isdigit() else repr(interaction.version_id)
                raise NotFound(f"{res_type}/{res_id} has no version {shown}")
            raise NotFound(f"{res_type}/{res_id} is not known")
        if interaction.name in _WRITES and not deleted:
            _owned(patient_id, f"{res_type}/{res_id}", patients_of(json.loads(found.body), base))

    def _was_in(self, patient_id: str, res_type: str, res_id: str) -> bool:
        if not is_resource_type(res_type):
            return False
        with self.repository.transaction() as tx:
            current = tx.current(res_type, res_id)
            while current is not None and current.deleted and current.version > 1:
                current = tx.version(res_type, res_id, current.version - 1)
        return current is not None and current.body is not None and in_compartment(json.loads(current.body), patient_id)

    def _operation(self, principal: Principal, interaction: Interaction, request: Request) -> None:
        """What the operation declares it needs (``Operation.permission``); one that declares
        nothing, or that the server does not offer, only a ``system/*`` token with every
        permission may invoke: an operation nobody thought to guard is closed, not open."""
        name, res_type = interaction.operation, interaction.resource_type
        operation = self.operations.get(name or "")
        needs = operation.permission if operation is not None else None
        if needs is None:
            if not holds_everything(principal):
                raise Forbidden(f"${name} declares no permission, so only a system/* token may invoke it")
            return
        # "*" is the resource the operation is invoked on, so only an instance-level call reads it.
        invoked_on = (res_type,) if res_type is not None and interaction.resource_id is not None else ()
        held: list[str] = []
        for letter, types in (("r", needs.reads), ("s", needs.searches), ("c", needs.creates)):
            for needed in types:
                for checked in invoked_on if needed == "*" else (needed,):
                    held.append(require(principal, checked, letter))
                    if letter != "s" and needed != "*":
                        _whole(principal, f"${name} {_VERBS_OF[letter]}", checked, letter)
        if needs.every_type:
            whole = res_type is None or res_type in ("Group", "Patient")
            exported = tuple(sorted(resource_types())) if whole else (str(res_type),)
            for exported_type in exported:
                # A narrowed read is held to what it matches by the job itself (``Selection.narrowed``).
                if reach(principal, exported_type, "r") != ALL:
                    raise Forbidden(f"${name} needs a user or system scope that reads every type exported")
        held_to = next((reach_ for reach_ in held if reach_ != ALL), ALL)
        if held_to == ALL:
            return
        if needs.patient:
            if interaction.resource_id is None:
                raise Forbidden(f"${name} over every patient needs a user or system scope")
            if interaction.resource_id != held_to:
                raise NotFound(f"Patient/{interaction.resource_id} is not known")
        elif (
            needs.looks_up is not None
            and res_type is not None
            and interaction.resource_id is not None
            and needs.looks_up(request, interaction.resource_id)
        ):
            # The operation looks the resource up: another patient's must answer as one no
            # resource has, not 403.
            self._instance(held_to, replace(interaction, name="read"))


def _also_needed(interaction: Interaction, request: Request) -> tuple[str, ...]:
    """Permissions an interaction needs beyond its own (SMART v2 keeps ``r`` and ``s`` apart
    from ``c u d``): a conditional write searches; a conditional create's match is answered with
    the stored resource; a patch reads what it changes (its ``test`` operations compare values)."""
    if interaction.name == "create":
        return ("s", "r") if request.header("if-none-exist") else ()
    if interaction.name in ("update", "patch", "delete") and interaction.resource_id is None:
        return ("s", "r") if interaction.name == "patch" else ("s",)
    return ("r",) if interaction.name == "patch" else ()


_HISTORIES = ("history-instance", "history-type", "history-system")
# A history needs ``s``; what it shows is read, so the version must match both letters' narrowing.
_HISTORY_LETTERS = ("s", "r")


def _judgeable(principal: Principal, res_type: str | None) -> None:
    """403 naming the narrowed scopes whose query a history cannot judge a version against
    (``security.version_match``), on ``res_type`` or, for the system history, on any type:
    refused rather than showing versions that may not match."""
    narrowed_types = {scope.resource_type for scope in principal.scopes if scope.query is not None}
    types = sorted(narrowed_types) if res_type is None else [res_type]
    for name in types:
        scopes = [scope for letter in _HISTORY_LETTERS for scope in unjudged(principal, name, letter)]
        if scopes:
            message = (
                f"The history of {name} shows a version only if it matches the scopes' search, which can be "
                "judged for token, string, uri, reference and date parameters only, not for the query of"
            )
            raise _insufficient(message, scopes)


def _version_shown(principal: Principal, res_type: str, resource: Any) -> bool:
    """Whether the version ``resource`` (a body, parsed or stored text; None: a deletion) meets
    the narrowing of every letter a history needs."""
    body = None if resource is None else _as_dict(resource)
    return all(version_matches(principal, res_type, body, letter) for letter in _HISTORY_LETTERS)


_VERB = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_VERBS_OF = {"r": "reads", "c": "creates"}


def _insufficient(message: str, scopes: list[str]) -> Forbidden:
    """403 ``insufficient_scope`` (RFC 6750 section 3.1) naming the narrowed scopes at fault."""
    challenge = {"WWW-Authenticate": 'Bearer realm="fhir-twin", error="insufficient_scope"'}
    return Forbidden(f"{message}: {', '.join(dict.fromkeys(scopes))}", headers=challenge)


def _whole(principal: Principal, doing: str, res_type: str, permission: str) -> None:
    """403 when the grant an operation needs on ``res_type`` is narrowed by a query: what it reads
    (a twin) or makes stands for the whole record of the type, and built from part of
    it would pass for the whole. Searches (``$lastn``) are confined instead."""
    if narrowed := narrowed_scopes(principal, res_type, permission):
        raise _insufficient(
            f"{doing} every {res_type}, and the credential's scopes on it are narrowed by a query", narrowed
        )


def _found(repository: Repository, narrowed: Narrowed, res_id: str, base: str | None) -> bool:
    """Whether the live resource ``res_id`` of the narrowed type matches ``narrowed``: the same
    search a client runs, restricted to that id, so every parameter means what it does there."""
    res_type = narrowed.resource_type
    same = Criterion(parameters_for(res_type)["_id"], values=(TokenValue(None, res_id),))
    with repository.transaction() as tx:
        return bool(tx.search(Search((res_type,), (same, narrowed), count=1), base or "").matches)


def _not_updatable(res_type: str, res_id: str) -> Forbidden:
    """An update by a patient-context token of what is not its patient's: refused alike whether
    the id is another patient's or unused, since creating at an unused id (R4 http.html#upsert)
    while answering 404 for a taken one would tell the token which ids another record holds."""
    return Forbidden(
        f"A patient-context token updates only its patient's existing resources, and {res_type}/{res_id} "
        "is not one; create new resources with POST"
    )


def _alone(patient_id: str, where: str, patients: set[str]) -> None:
    """403 unless a write leaves ``where`` in Patient ``patient_id``'s compartment alone; the
    other patients are not named (their ids are not the token's to learn)."""
    if patients == {patient_id}:
        return
    if patient_id not in patients:
        raise Forbidden(f"{where} would not be in the compartment of Patient/{patient_id}")
    raise Forbidden(f"{where} would also be in another patient's compartment, not only Patient/{patient_id}'s")


def _owned(patient_id: str, where: str, patients: set[str]) -> None:
    """403 for changing ``where`` while it is in another patient's compartment too: the token
    may read it (it is in its patient's), so saying it is shared tells nothing new."""
    if patient_id not in patients:
        raise NotFound(f"{where} is not known")  # as a read of it answers
    if patients != {patient_id}:
        raise Forbidden(
            f"{where} is also in another patient's compartment; only a user or system scope may change or delete it"
        )


def _counted(body: dict[str, Any], entry: dict[str, Any]) -> bool:
    """Whether ``body``'s total may count ``entry``. A search's counts its matches only (R4
    search.html#total: search.mode = match, never include); a history's entries have no mode
    and all count; an operation's total is its own ($everything counts what it includes)."""
    search = entry.get("search")
    mode = search.get("mode") if isinstance(search, dict) else None
    return mode in (None, "match") or _from_operation(body)


def _countable(principal: Principal, entry: dict[str, Any]) -> bool:
    """Whether the client may learn that ``entry`` exists: it may search all of its type."""
    res_type = _type_of(entry)
    return (
        res_type is not None and reach(principal, res_type, "s") == ALL and narrowing(principal, res_type, "s") is None
    )


def _from_operation(body: dict[str, Any]) -> bool:
    """Whether ``body`` answers an operation, by its self link (``.../$name``); unknown counts
    as one."""
    links = body.get("link")
    urls = [item.get("url") for item in links or [] if isinstance(item, dict) and item.get("relation") == "self"]
    if not urls or not isinstance(urls[0], str):
        return True
    return any(segment.startswith("$") for segment in urlsplit(urls[0]).path.split("/"))


def _type_of(entry: dict[str, Any]) -> str | None:
    full_url = str(entry.get("fullUrl", ""))
    parts = full_url.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and is_resource_type(parts[-2]) else None


def _as_dict(resource: Any) -> dict[str, Any]:
    if isinstance(resource, dict):
        return resource
    return json.loads(getattr(resource, "encoded_json", resource))
