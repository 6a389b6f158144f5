"""read, vread, create, update, patch and delete, plain and conditional (R4 http.html).

Every write runs in one database transaction that first locks what it depends on — the
resource identity, or the conditional query — so conditional creates cannot both create and
concurrent updates cannot lose each other. A failed request leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jsonpatch

from fhir_twin.config import Config
from fhir_twin.errors import Gone, Invalid, NotFound, PreconditionFailed, Unprocessable
from fhir_twin.fhir import json
from fhir_twin.fhir.outcome import information
from fhir_twin.fhir.validation import validate_resource
from fhir_twin.interactions import fhirpath_patch
from fhir_twin.interactions.interaction import Interaction
from fhir_twin.interactions.json_patch import check_patch
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.search import parse_request
from fhir_twin.interactions.versioning import check_if_match, not_modified, version_headers
from fhir_twin.interactions.writes import same_content, store_delete, store_version
from fhir_twin.search.extract import extract
from fhir_twin.search.index import IndexRow
from fhir_twin.store.repository import DatabaseTransaction, Repository, Version

JSON_PATCH = "application/json-patch+json"
# A patch document ready to apply: the current resource and its ``Type/id`` in, the patched one out.
Patcher = Callable[[dict[str, Any], str], Any]


class InstanceInteractions:
    def __init__(self, repository: Repository, config: Config) -> None:
        self.repository = repository
        self.config = config

    # --- reads ---------------------------------------------------------------------------

    def read(self, request: Request, res_type: str, res_id: str) -> Response:
        """R4 http.html#read: 410 for a deleted resource, 304 when the client's copy is current."""
        current = self.repository.current(res_type, res_id)
        if current is None:
            raise NotFound(f"{res_type}/{res_id} is not known")
        if current.deleted:
            raise Gone(f"{res_type}/{res_id} was deleted", headers=version_headers(request.base, current))
        headers = version_headers(request.base, current)
        if not_modified(request, current):
            return Response(304, headers)
        return Response(200, headers, current.body)

    def vread(self, request: Request, res_type: str, res_id: str, version_id: str) -> Response:
        """R4 http.html#vread: 404 for an unknown version, 410 for a delete version."""
        if not (version_id.isascii() and version_id.isdigit()):
            raise NotFound(f"{res_type}/{res_id} has no version {version_id!r}")
        found = self.repository.version(res_type, res_id, int(version_id))
        if found is None:
            raise NotFound(f"{res_type}/{res_id} has no version {version_id}")
        headers = version_headers(request.base, found)
        if found.deleted:
            raise Gone(f"Version {version_id} of {res_type}/{res_id} is a deletion", headers=headers)
        return Response(200, headers, found.body)

    def prepared(self, request: Request, interaction: Interaction) -> Request:
        """A create's or an update's request with its body validated and its index rows extracted,
        before the router opens the write transaction: SQLite's writers queue at one gate, so
        the costliest part of a write runs beside other writes instead of in the queue. A body
        this cannot judge yet (another type, an update whose ids differ) is left for the
        interaction to refuse, in its own order, as before."""
        resource = request.body
        if (
            request.validated
            or interaction.name not in ("create", "update")
            or not isinstance(resource, dict)
            or resource.get("resourceType") != interaction.resource_type
        ):
            return request
        if interaction.name == "create":
            # R4 http.html#create: "If an id is provided, the server SHALL ignore it."
            resource.pop("id", None)
        elif interaction.resource_id is not None and resource.get("id") != interaction.resource_id:
            return request
        validate_resource(resource)
        return replace(request, validated=True, index=extract(resource, request.base))

    # --- create --------------------------------------------------------------------------

    def create(self, request: Request, res_type: str) -> Response:
        """R4 http.html#create; with ``If-None-Exist`` a conditional create (#ccreate)."""
        resource = self._resource_body(request, res_type)
        # R4 http.html#create: "If an id is provided, the server SHALL ignore it."
        resource.pop("id", None)
        index = _prepare(request, resource)
        condition = request.header("if-none-exist")
        with self.repository.transaction(write=True) as tx:
            if condition is not None:
                query = _condition_query(condition)
                matches = self._matches(tx, request, res_type, query, "If-None-Exist")
                if len(matches) > 1:
                    raise PreconditionFailed(
                        f"If-None-Exist matched {len(matches)} {res_type} resources; "
                        "the criteria are not selective enough"
                    )
                if matches:
                    return self._answer(request, matches[0], 200, f"{res_type} matching {condition} already exists")
            version = store_version(tx, resource, request.assigned_id or str(uuid.uuid4()), None, "POST", index)
        return self._answer(request, version, 201, f"Created {res_type}/{version.res_id}")

    # --- update --------------------------------------------------------------------------

    def update(self, request: Request, res_type: str, res_id: str) -> Response:
        """R4 http.html#update, including update-as-create with a client-chosen id."""
        resource = self._resource_body(request, res_type)
        body_id = resource.get("id")
        if body_id is None:
            raise Invalid.at(f"{res_type}.id", "The resource must carry its id for an update (R4 http.html#update)")
        if body_id != res_id:
            raise Invalid.at(
                f"{res_type}.id", f"The id in the body ({body_id!r}) differs from the id in the URL ({res_id!r})"
            )
        index = _prepare(request, resource)
        with self.repository.transaction(write=True) as tx:
            tx.lock(f"{res_type}/{res_id}")
            return self._update_locked(tx, request, resource, res_type, res_id, "PUT", index)

    def conditional_update(self, request: Request, res_type: str) -> Response:
        """R4 http.html#cond-update: no match creates, one match updates, several are 412."""
        resource = self._resource_body(request, res_type)
        index = _prepare(request, resource)
        query_text = _query_text(request)
        with self.repository.transaction(write=True) as tx:
            matches = self._matches(tx, request, res_type, query_text, "conditional update")
            body_id = resource.get("id")
            if len(matches) > 1:
                raise PreconditionFailed(f"The conditional update matched {len(matches)} {res_type} resources")
            if not matches:
                res_id = body_id if isinstance(body_id, str) else str(uuid.uuid4())
                tx.lock(f"{res_type}/{res_id}")
                return self._update_locked(tx, request, resource, res_type, res_id, "PUT", index)
            match = matches[0]
            if body_id is not None and body_id != match.res_id:
                raise Invalid.at(
                    f"{res_type}.id",
                    f"The id in the body ({body_id!r}) differs from the matching resource {res_type}/{match.res_id}",
                )
            tx.lock(f"{res_type}/{match.res_id}")
            return self._update_locked(tx, request, resource, res_type, match.res_id, "PUT", index)

    def _update_locked(
        self,
        tx: DatabaseTransaction,
        request: Request,
        resource: dict[str, Any],
        res_type: str,
        res_id: str,
        method: str,
        index: list[IndexRow] | None = None,
    ) -> Response:
        current = tx.current(res_type, res_id)
        check_if_match(request, current)
        if current is not None and not current.deleted and same_content(resource, current):
            return self._answer(request, current, 200, f"{res_type}/{res_id} is unchanged")
        version = store_version(tx, resource, res_id, current, method, index)
        created = current is None or current.deleted
        return self._answer(
            request, version, 201 if created else 200, f"{'Created' if created else 'Updated'} {res_type}/{res_id}"
        )

    # --- patch ---------------------------------------------------------------------------

    def patch(self, request: Request, res_type: str, res_id: str) -> Response:
        """R4 http.html#patch with JSON Patch (RFC 6902) or FHIRPath Patch (R4 fhirpatch.html),
        applied atomically to the current version."""
        operations = patch_document(request)
        with self.repository.transaction(write=True) as tx:
            tx.lock(f"{res_type}/{res_id}")
            return self._patch_locked(tx, request, operations, res_type, res_id)

    def conditional_patch(self, request: Request, res_type: str) -> Response:
        operations = patch_document(request)
        with self.repository.transaction(write=True) as tx:
            matches = self._matches(tx, request, res_type, _query_text(request), "conditional patch")
            if not matches:
                raise NotFound(f"No {res_type} matches {_query_text(request)}")
            if len(matches) > 1:
                raise PreconditionFailed(f"The conditional patch matched {len(matches)} {res_type} resources")
            tx.lock(f"{res_type}/{matches[0].res_id}")
            return self._patch_locked(tx, request, operations, res_type, matches[0].res_id)

    def _patch_locked(
        self, tx: DatabaseTransaction, request: Request, operations: Patcher, res_type: str, res_id: str
    ) -> Response:
        current = tx.current(res_type, res_id)
        if current is None:
            raise NotFound(f"{res_type}/{res_id} is not known")
        if current.deleted:
            raise Gone(f"{res_type}/{res_id} was deleted")
        check_if_match(request, current)
        patched = operations(json.loads(current.body or "{}"), f"{res_type}/{res_id}")
        if not isinstance(patched, dict) or patched.get("resourceType") != res_type or patched.get("id") != res_id:
            raise Unprocessable("A patch may not change the resource's type or id")
        try:
            validate_resource(patched)
        except Invalid as exc:
            # RFC 5789 section 2.2: a patch that would leave an invalid resource is 422.
            raise Unprocessable(f"The patched resource is not valid: {exc.diagnostics}", issues=exc.issues) from None
        if same_content(patched, current):
            return self._answer(request, current, 200, f"{res_type}/{res_id} is unchanged")
        version = store_version(tx, patched, res_id, current, "PATCH", extract(patched, request.base))
        return self._answer(request, version, 200, f"Patched {res_type}/{res_id}")

    # --- delete --------------------------------------------------------------------------

    def delete(self, request: Request, res_type: str, res_id: str) -> Response:
        """R4 http.html#delete: a versioned, logical delete; deleting nothing is still 200."""
        with self.repository.transaction(write=True) as tx:
            tx.lock(f"{res_type}/{res_id}")
            current = tx.current(res_type, res_id)
            check_if_match(request, current)
            if current is None:
                return Response(200, {}, information(f"{res_type}/{res_id} does not exist; nothing was deleted"))
            if current.deleted:
                return Response(
                    200, version_headers(request.base, current), information(f"{res_type}/{res_id} was already deleted")
                )
            version = store_delete(tx, current)
        return Response(200, version_headers(request.base, version), information(f"Deleted {res_type}/{res_id}"))

    def conditional_delete(self, request: Request, res_type: str) -> Response:
        """R4 http.html#cdelete: one match is deleted, none deletes nothing, several are 412."""
        query_text = _query_text(request)
        with self.repository.transaction(write=True) as tx:
            matches = self._matches(tx, request, res_type, query_text, "conditional delete")
            if len(matches) > 1:
                raise PreconditionFailed(
                    f"The conditional delete matched {len(matches)} {res_type} resources; "
                    "this server deletes one at a time"
                )
            if not matches:
                return Response(200, {}, information(f"No {res_type} matches {query_text}; nothing was deleted"))
            tx.lock(f"{res_type}/{matches[0].res_id}")
            current = tx.current(res_type, matches[0].res_id)
            check_if_match(request, current)
            assert current is not None
            version = store_delete(tx, current)
        return Response(
            200, version_headers(request.base, version), information(f"Deleted {res_type}/{version.res_id}")
        )

    # --- shared --------------------------------------------------------------------------

    def _matches(
        self, tx: DatabaseTransaction, request: Request, res_type: str, query_text: str, what: str
    ) -> list[Version]:
        """Resources matching a conditional query, found under a lock on that query."""
        pairs = _parse_query_text(query_text)
        if not pairs:
            raise Invalid(f"The {what} needs search criteria")
        query = parse_request(
            self.config, Request("GET", res_type, request.base, query=pairs), (res_type,), strict=True
        )
        tx.lock(f"{res_type}?{sorted(query.applied)}")
        # Two matches are enough to know there are several.
        return tx.search(replace(query, count=2, total=None), request.base).matches

    def _answer(self, request: Request, version: Version, status: int, message: str) -> Response:
        """Headers and the body ``Prefer: return=`` asks for (R4 http.html#ops)."""
        headers = version_headers(request.base, version, location=True)
        preference = request.prefer("return")
        if preference == "minimal":
            return Response(status, headers)
        if preference == "operationoutcome":
            return Response(status, headers, information(message))
        return Response(status, headers, version.body)

    @staticmethod
    def _resource_body(request: Request, res_type: str) -> dict[str, Any]:
        resource = request.body
        if not isinstance(resource, dict):
            raise Invalid("The body must be a FHIR resource")
        if resource.get("resourceType") != res_type:
            raise Invalid.at(
                "resourceType",
                f"The body is a {resource.get('resourceType')!r} but the URL is for {res_type}",
            )
        return resource


def patch_document(request: Request) -> Patcher:
    """The patch a PATCH request carries, checked before anything is locked: a JSON Patch
    (RFC 6902) when sent as one, else a FHIRPath Patch (a Parameters resource in FHIR JSON or
    XML, R4 fhirpatch.html); 400 when it is neither."""
    if request.patch_format != JSON_PATCH:
        fhirpath_operations = fhirpath_patch.operations(request.body)
        return lambda document, where: fhirpath_patch.apply(fhirpath_operations, document)
    check_patch(request.body)
    try:
        operations = jsonpatch.JsonPatch(request.body)
    except (jsonpatch.InvalidJsonPatch, TypeError, AttributeError) as exc:
        raise Invalid(f"The JSON Patch document is malformed: {exc}") from None
    return lambda document, where: _apply(operations, document, where)


def _apply(operations: jsonpatch.JsonPatch, document: Any, where: str) -> Any:
    """``document`` patched (RFC 6902), one operation at a time so a failure names its operation.

    The failure's text names the operation and its path, never a value: jsonpatch's own messages
    quote the stored resource, and the text reaches the audit trail, which keeps it for good.
    """
    for number, operation in enumerate(operations.patch):
        described = f"operation {number} ({operation.get('op')} {operation.get('path')})"
        try:
            document = jsonpatch.JsonPatch([operation]).apply(document)
        except jsonpatch.JsonPatchTestFailed:
            raise Unprocessable(f"The patch's {described}: the test failed") from None
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPointerException):
            raise Unprocessable(f"The patch's {described} cannot be applied to {where}: no such path") from None
    return document


def _prepare(request: Request, resource: dict[str, Any]) -> list[IndexRow]:
    """Validate the body and extract its index rows, unless that was done before routing."""
    if not request.validated:
        validate_resource(resource)
    return request.index if request.index is not None else extract(resource, request.base)


def _query_text(request: Request) -> str:
    return urlencode([(k, v) for k, v in request.query if k not in ("_format", "_pretty")])


def _condition_query(value: str) -> str:
    """``If-None-Exist`` holds a query string, optionally with the type and ``?`` in front."""
    return value.split("?", 1)[1] if "?" in value else value


def _parse_query_text(text: str) -> list[tuple[str, str]]:
    return parse_qsl(text, keep_blank_values=True)
