"""Dispatch of a FHIR request to its interaction (R4 http.html, "Service Base URL").

| path                         | GET           | POST   | PUT              | PATCH           | DELETE             |
|------------------------------|---------------|--------|------------------|-----------------|--------------------|
| metadata                     | capabilities  |        |                  |                 |                    |
| _history                     | history       |        |                  |                 |                    |
| Type                         | search        | create | conditional upd. | conditional p.  | conditional delete |
| Type/_search                 |               | search |                  |                 |                    |
| Type/_history                | history       |        |                  |                 |                    |
| Type/id                      | read          |        | update           | patch           | delete             |
| Type/id/_history             | history       |        |                  |                 |                    |
| Type/id/_history/vid         | vread         |        |                  |                 |                    |

``OperationDefinition/{id}`` of an operation the server defines itself is read only: its
definition is built from the operation (``operations.definition``), not stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import replace
from functools import lru_cache
from typing import Any

from fhir_twin.config import Config
from fhir_twin.errors import (
    FhirError,
    Forbidden,
    Invalid,
    MethodNotAllowed,
    NotFound,
    NotImplementedInteraction,
    StillReferenced,
)
from fhir_twin.fhir.capability import capability_statement, search_handling_documentation
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.fhir.model import AUDIT_TYPES, is_resource_type, is_valid_id, resource_types
from fhir_twin.interactions.authorization import Guard
from fhir_twin.interactions.history import history
from fhir_twin.interactions.instance import InstanceInteractions
from fhir_twin.interactions.interaction import Interaction, classify
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation
from fhir_twin.interactions.operations.catalog import OPERATIONS
from fhir_twin.interactions.operations.definition import operation_definition, served
from fhir_twin.interactions.search import compartment_condition, search
from fhir_twin.search.parameters import parameters_for
from fhir_twin.security.context import current
from fhir_twin.security.principal import Principal
from fhir_twin.signals import interaction_completed
from fhir_twin.store.repository import Repository, Unit

Handler = Callable[[Request], Response]
_WRITES = ("create", "update", "patch", "delete")
# Set while the server looks something up as one step of an interaction (a transaction's
# conditional reference, the twin's assessments): that interaction's own record covers it.
_part_of_one: ContextVar[bool] = ContextVar("part_of_one", default=False)


@contextmanager
def unrecorded() -> Iterator[None]:
    """Route requests that are steps of the interaction under way, without records of their own."""
    token = _part_of_one.set(True)
    try:
        yield
    finally:
        _part_of_one.reset(token)


class Interactions:
    """Every RESTful interaction of the server, reachable through ``route``."""

    def __init__(
        self,
        repository: Repository,
        config: Config,
        *,
        operations: Iterable[Operation] = (),
        bundles: Callable[[Handler], Handler] | None = None,
        security: dict[str, Any] | None = None,
    ) -> None:
        self.repository = repository
        self.config = config
        self.instance = InstanceInteractions(repository, config)
        self.context = Context(repository, config, self.route)
        # The server's own operations, then those the layers above declare (the twin's, the Doctor's).
        self.operations = {**OPERATIONS, **{operation.name: operation for operation in operations}}
        # Batch and transaction processing sits a layer above; it is built on this router's route.
        self.bundles: Handler | None = bundles(self.route) if bundles is not None else None
        self.guard = Guard(repository, self.operations)
        # CapabilityStatement.rest.security, from the authentication settings.
        self.security = security

    def route(self, request: Request) -> Response:
        """Answer ``request`` as the current principal may; raises a ``FhirError`` for anything
        that is not a success. Either way ``interaction_completed`` reports it (the audit trail);
        a write reports inside its transaction, so its record commits or rolls back with it."""
        principal = current()
        interaction = classify(request.method, request.path)
        if interaction.name == "transaction" and isinstance(request.body, dict) and request.body.get("type") == "batch":
            # Any other Bundle posted to the base is refused as a transaction: what the body
            # claims to be must not choose the record's subtype.
            interaction = replace(interaction, name="batch")
        try:
            if principal is not None:
                self.guard.before(principal, interaction, request)
            if interaction.name in _WRITES:
                with self.repository.unit(write=True) as unit:
                    mark = len(unit.written)
                    response = self._route(request)
                    written = unit.written[mark:]
                    if principal is not None:
                        self.guard.written(principal, written)
                    self.report(principal, interaction, request, response, None, unit, written)
                return response
            response = self._route(request)
            if principal is not None:
                self.guard.answered(principal, interaction)
                response = self.guard.visible(principal, response)
        except FhirError as error:
            if isinstance(error, StillReferenced) and principal is not None and principal.patient is not None:
                # The referrer may be another patient's resource, not the token's to learn of.
                unnamed = StillReferenced(f"{error.target} cannot be deleted: another resource refers to it")
                self.report(principal, interaction, request, None, unnamed, None, [])
                raise unnamed from None
            self.report(principal, interaction, request, None, error, None, [])
            raise
        except Exception:
            # The API answers 500 (and logs the traceback); the trail records the failure.
            self.report(principal, interaction, request, None, FhirError("The server failed unexpectedly"), None, [])
            raise
        # A read inside a transaction Bundle is recorded in it: if the transaction fails, the
        # read's answer was never given.
        enclosing = self.repository.active_unit()
        transaction = enclosing if enclosing is not None and enclosing.writable else None
        self.report(principal, interaction, request, response, None, transaction, [])
        return response

    def report(
        self,
        principal: Principal | None,
        interaction: Interaction,
        request: Request,
        response: Response | None,
        error: FhirError | None,
        unit: Unit | None,
        written: list[Any],
    ) -> None:
        """Send ``interaction_completed`` for an interaction answered or refused; the twin API,
        which does not pass ``route``, reports its requests here too."""
        if interaction.name != "capabilities" and interaction_completed.receivers and not _part_of_one.get():
            interaction_completed.send(
                self,
                principal=principal,
                interaction=interaction,
                request=request,
                response=response,
                error=error,
                unit=unit,
                written=written,
            )

    def _route(self, request: Request) -> Response:
        segments = [segment for segment in request.path.strip("/").split("/") if segment]
        method = request.method.upper()
        if not segments:
            return self._system(request, method)
        head = segments[0]
        if head == "metadata" and len(segments) == 1:
            return self._only(method, "GET", request, self._capabilities)
        if head == "_history" and len(segments) == 1:
            return self._only(method, "GET", request, lambda r: history(self.repository, self.config, r, None, None))
        if segments[-1].startswith("$"):
            return self._operation(request, method, segments)
        if not is_resource_type(head):
            raise NotFound(f"Unknown resource type {head!r}")
        return self._type(request, method, head, segments[1:])

    def _system(self, request: Request, method: str) -> Response:
        if method in ("GET", "HEAD"):
            types = _system_types(request)
            if not request.params("_type"):
                # Every type means every type the principal may search; a named one it may
                # not is refused (403) by the search itself.
                types = self.guard.searchable(current(), types)
                if not types:
                    raise Forbidden("The credential's scopes do not allow search on any resource type")
            return search(self.repository, self.config, request, types, request.base)
        if method == "POST" and self.bundles is not None:
            return self.bundles(request)
        raise MethodNotAllowed(f"{method} is not allowed on the service base URL", headers={"Allow": "GET, HEAD, POST"})

    def _type(self, request: Request, method: str, resource_type: str, rest: list[str]) -> Response:
        instance = self.instance
        type_url = f"{request.base}/{resource_type}"
        if not rest:
            handlers: dict[str, Handler] = {
                "GET": lambda r: search(self.repository, self.config, r, (resource_type,), type_url),
                "HEAD": lambda r: search(self.repository, self.config, r, (resource_type,), type_url),
                "POST": lambda r: instance.create(r, resource_type),
                "PUT": lambda r: instance.conditional_update(r, resource_type),
                "PATCH": lambda r: instance.conditional_patch(r, resource_type),
                "DELETE": lambda r: instance.conditional_delete(r, resource_type),
            }
            return self._dispatch(method, request, handlers, resource_type)
        if rest == ["_search"]:
            return self._only(
                method, "POST", request, lambda r: search(self.repository, self.config, r, (resource_type,), type_url)
            )
        if rest == ["_history"]:
            return self._only(
                method, "GET", request, lambda r: history(self.repository, self.config, r, resource_type, None)
            )
        res_id = rest[0]
        if not is_valid_id(res_id):
            raise Invalid(f"{res_id!r} is not a valid resource id: ids are 1-64 of A-Z a-z 0-9 - .")
        own = served(self.operations.values()).get(res_id) if resource_type == "OperationDefinition" else None
        if len(rest) == 1 and own is not None:
            definition = operation_definition(own)
            handlers = {"GET": lambda r: Response(200, {}, definition), "HEAD": lambda r: Response(200, {}, definition)}
            return self._dispatch(method, request, handlers, f"the server's own OperationDefinition/{res_id}")
        if len(rest) == 1:
            handlers = {
                "GET": lambda r: instance.read(r, resource_type, res_id),
                "HEAD": lambda r: instance.read(r, resource_type, res_id),
                "PUT": lambda r: instance.update(r, resource_type, res_id),
                "PATCH": lambda r: instance.patch(r, resource_type, res_id),
                "DELETE": lambda r: instance.delete(r, resource_type, res_id),
            }
            return self._dispatch(method, request, handlers, f"{resource_type}/{res_id}")
        if rest[1] == "_history" and len(rest) == 2:
            return self._only(
                method, "GET", request, lambda r: history(self.repository, self.config, r, resource_type, res_id)
            )
        if len(rest) == 2 and resource_type == "Patient" and is_resource_type(rest[1]):
            # Compartment search, R4 http.html#search: Patient/{id}/{type}?...
            compartment = compartment_condition(rest[1], res_id)
            url = f"{request.base}/Patient/{res_id}/{rest[1]}"
            return self._only(
                method, "GET", request, lambda r: search(self.repository, self.config, r, (rest[1],), url, compartment)
            )
        if rest[1] == "_history" and len(rest) == 3:
            return self._only(method, "GET", request, lambda r: instance.vread(r, resource_type, res_id, rest[2]))
        raise NotFound(f"Unknown path {request.path!r}")

    def _operation(self, request: Request, method: str, segments: list[str]) -> Response:
        """``[base]/$op``, ``[base]/Type/$op`` or ``[base]/Type/id/$op`` (R4 operations.html)."""
        name = segments[-1][1:]
        level = {1: "system", 2: "type", 3: "instance"}.get(len(segments))
        res_type = segments[0] if len(segments) > 1 else None
        res_id = segments[1] if len(segments) == 3 else None
        if res_type is not None and not is_resource_type(res_type):
            raise NotFound(f"Unknown resource type {res_type!r}")
        if res_id is not None and not is_valid_id(res_id):
            raise Invalid(f"{res_id!r} is not a valid resource id")
        operation = self.operations.get(name)
        if operation is None:
            raise NotImplementedInteraction(f"The operation ${name} is not supported by this server")
        if level not in operation.levels:
            raise NotFound(f"The operation ${name} is not offered at {level} level")
        if operation.types is not None and res_type not in operation.types:
            raise NotFound(f"The operation ${name} is not supported on {res_type}")
        if method not in operation.methods:
            allowed = ", ".join(sorted(operation.methods))
            why = " because it changes what the server stores (affectsState)" if operation.affects_state else ""
            message = f"${name} cannot be invoked with {method}{why}; use {allowed}"
            raise MethodNotAllowed(message, headers={"Allow": allowed})
        return operation.handler(self.context, request, res_type, res_id)

    @staticmethod
    def _dispatch(method: str, request: Request, handlers: dict[str, Handler], where: str) -> Response:
        handler = handlers.get(method)
        if handler is None:
            raise MethodNotAllowed(
                f"{method} is not allowed on {where}", headers={"Allow": ", ".join(sorted(handlers))}
            )
        return handler(request)

    @staticmethod
    def _only(method: str, allowed: str, request: Request, handler: Handler) -> Response:
        if method == allowed or (allowed == "GET" and method == "HEAD"):
            return handler(request)
        allow = "GET, HEAD" if allowed == "GET" else allowed
        raise MethodNotAllowed(f"{method} is not allowed here; use {allowed}", headers={"Allow": allow})

    def _capabilities(self, request: Request) -> Response:
        body: dict[str, Any] = dict(_capabilities(request.base, tuple(self.operations.values())))
        rest = body["rest"][0]
        handling = search_handling_documentation(self.config.search_handling)
        body["rest"] = [{**rest, "documentation": f"{rest['documentation']} {handling}"}]
        if self.security is not None:
            body["rest"] = [{**body["rest"][0], "security": self.security}]
        body["id"] = str(uuid.uuid4())
        body["date"] = format_instant(now())
        return Response(200, {}, body)


def _system_types(request: Request) -> tuple[str, ...]:
    """``_type`` of a system search (R4 search.html#type), else every type."""
    named = [name.strip() for value in request.params("_type") for name in value.split(",") if name.strip()]
    unknown = [name for name in named if not is_resource_type(name)]
    if unknown:
        message = f"Unknown resource type {unknown[0]!r} in _type"
        raise Invalid.at("_type", message)
    return tuple(sorted(set(named))) if named else tuple(sorted(resource_types() - AUDIT_TYPES))


@lru_cache(maxsize=8)
def _capabilities(base: str, offered: tuple[Operation, ...]) -> dict[str, Any]:
    """Built once per base URL: it only changes when the server's code does."""
    search_parameters = {
        name: [(p.code, p.type, p.url) for p in parameters_for(name).values()] for name in resource_types()
    }
    operations: dict[str, list[tuple[str, str]]] = {}
    for operation in offered:
        if "system" in operation.levels:
            operations.setdefault("", []).append((operation.name, operation.definition))
        if operation.levels & {"type", "instance"}:
            for name in operation.types or resource_types():
                operations.setdefault(name, []).append((operation.name, operation.definition))
    return capability_statement(base, "", search_parameters, operations)
