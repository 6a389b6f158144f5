"""The request pipeline: every RESTful interaction passes ``Interactions.route``, which matches
it against the route table (``routes``), has the Guard check it, opens the write transaction a write
needs, runs the route's handler and reports the outcome to the audit trail.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

from fhir_twin.config import Config
from fhir_twin.errors import FhirError, StillReferenced
from fhir_twin.fhir.capability import capability_statement, search_handling_documentation, websocket_extension
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.fhir.resource_types import resource_types
from fhir_twin.interactions.authorization import Guard
from fhir_twin.interactions.instance import InstanceInteractions
from fhir_twin.interactions.interaction import Completion
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation
from fhir_twin.interactions.operations.offered import OPERATIONS
from fhir_twin.interactions.routes import ROUTES, Match, interactions_at, match
from fhir_twin.search.parameters import parameters_for
from fhir_twin.security.context import current
from fhir_twin.signals import interaction_completed
from fhir_twin.store.repository import Repository

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
        security: Callable[[str], dict[str, Any]] | None = None,
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
        # CapabilityStatement.rest.security for a base URL, from the authentication settings.
        self.security = security

    def route(self, request: Request) -> Response:
        """Answer ``request`` as the current principal may; raises a ``FhirError`` for anything
        that is not a success. Either way ``interaction_completed`` reports it (the audit trail);
        a write reports inside its transaction, so its record commits or rolls back with it."""
        principal = current()
        found = match(ROUTES, request.method, request.path, request.body)
        interaction = found.interaction
        try:
            if principal is not None:
                self.guard.before(principal, interaction, request)
            if interaction.name in _WRITES:
                request = self.instance.prepared(request, interaction)
                with self.repository.transaction(write=True) as tx:
                    mark = len(tx.written)
                    response = self._dispatch(request, found)
                    written = tx.written[mark:]
                    if principal is not None:
                        self.guard.written(principal, written, request.base)
                    self.report(Completion(principal, interaction, request, response, None, tx, written))
                return response
            response = self._dispatch(request, found)
            if principal is not None:
                self.guard.answered(principal, interaction)
                response = self.guard.visible(principal, response)
        except FhirError as error:
            if isinstance(error, StillReferenced) and principal is not None and principal.patient is not None:
                # The referrer may be another patient's resource, not the token's to learn of.
                unnamed = StillReferenced(f"{error.target} cannot be deleted: another resource refers to it")
                self.report(Completion(principal, interaction, request, None, unnamed))
                raise unnamed from None
            self.report(Completion(principal, interaction, request, None, error))
            raise
        except Exception:
            # The API answers 500 (and logs the traceback); the trail records the failure.
            failure = FhirError("The server failed unexpectedly")
            self.report(Completion(principal, interaction, request, None, failure))
            raise
        # A read inside a transaction Bundle is recorded in it: if the transaction fails, the
        # read's answer was never given.
        enclosing = self.repository.active_transaction()
        transaction = enclosing if enclosing is not None and enclosing.writable else None
        self.report(Completion(principal, interaction, request, response, None, transaction))
        return response

    def report(self, completion: Completion) -> None:
        """Send ``interaction_completed`` for an interaction answered or refused; the twin API,
        which does not pass ``route``, reports its requests here too."""
        if completion.interaction.name != "capabilities" and interaction_completed.receivers and not _part_of_one.get():
            interaction_completed.send(self, completion=completion)

    def _dispatch(self, request: Request, found: Match) -> Response:
        if found.refusal is not None:
            raise found.refusal
        assert found.route is not None and found.route.handler is not None
        return found.route.handler(self, request, found.params)

    def capabilities(self, request: Request) -> Response:
        """The CapabilityStatement, with the security and search handling of this server."""
        body: dict[str, Any] = dict(_capabilities(request.base, tuple(self.operations.values())))
        rest = body["rest"][0]
        handling = search_handling_documentation(self.config.search_handling)
        body["rest"] = [{**rest, "documentation": f"{rest['documentation']} {handling}"}]
        if self.security is not None:
            body["rest"] = [{**body["rest"][0], "security": self.security(request.base)}]
        if self.config.websocket_port:
            extension = websocket_extension(request.base, self.config.websocket_port)
            body["rest"] = [{**body["rest"][0], "extension": [extension]}]
        body["id"] = str(uuid.uuid4())
        body["date"] = format_instant(now())
        return Response(200, {}, body)


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
                operations.setdefault(name, []).append((operation.name, operation.definition_of(name)))
    return capability_statement(
        base, "", search_parameters, operations, interactions_at("system"), interactions_at("type")
    )
