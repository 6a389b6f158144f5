"""The server's one route table (R4 http.html "Service Base URL", operations.html).

Each ``Route`` is one path pattern and the methods it serves, tagged with its R4
``restful-interaction`` code, its audit action and what a token needs; matching a request
against the table gives both the ``Interaction`` the Guard and the audit trail see and the
handler that answers it. Patterns are relative to the base: ``{type}`` is a resource type (the
searched one in a compartment), ``{id}`` an instance, ``{compartment}`` the Patient whose
compartment is searched, ``{vid}`` a version, ``${op}`` an operation; any other segment is
literal.

| path                           | GET            | POST            | PUT            | PATCH          | DELETE         |
|--------------------------------|----------------|-----------------|----------------|----------------|----------------|
| (base)                         | search-system  | batch, transaction |             |                |                |
| metadata                       | capabilities   |                 |                |                |                |
| _history                       | history-system |                 |                |                |                |
| Type                           | search-type    | create          | update (cond.) | patch (cond.)  | delete (cond.) |
| Type/_search                   |                | search-type     |                |                |                |
| Type/_history                  | history-type   |                 |                |                |                |
| Type/id                        | read           |                 | update         | patch          | delete         |
| Type/id/_history               | history-instance |               |                |                |                |
| Type/id/_history/vid           | vread          |                 |                |                |                |
| Patient/id/Type                | search-type    |                 |                |                |                |
| $op, Type/$op, Type/id/$op     | operation (methods as the operation declares)                                  |

HEAD is GET without the body. ``OperationDefinition/{id}`` of an operation the server defines
itself is read only: its definition is built from the operation (``operations.definition``),
not stored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_twin.errors import FhirError, Forbidden, Invalid, MethodNotAllowed, NotFound, NotImplementedInteraction
from fhir_twin.fhir.resource_types import AUDIT_TYPES, is_resource_type, is_valid_id, resource_types
from fhir_twin.interactions.history import history
from fhir_twin.interactions.interaction import Interaction
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Operation
from fhir_twin.interactions.operations.definition import operation_definition, served
from fhir_twin.interactions.search import compartment_condition, search
from fhir_twin.security.context import current

if TYPE_CHECKING:
    from fhir_twin.interactions.router import Interactions

# What a route needs besides a SMART letter (c r u d s) on its type.
OPEN = "open"  # the CapabilityStatement: no credential at all (SMART App Launch v2 conformance.html)
PER_ENTRY = "per entry"  # a Bundle: each entry is routed, and checked, as if sent alone
PER_OPERATION = "per operation"  # what the operation declares (Operation.permission); none: system/* only
ANY_CREDENTIAL = "any credential"  # what reads no one's record (the twin API's models)
LETTERS = frozenset("cruds")

GET = frozenset({"GET", "HEAD"})
POST = frozenset({"POST"})
EVERY_METHOD = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})

Params = Mapping[str, str]
RouteHandler = Callable[["Interactions", Request, Params], Response]


@dataclass(frozen=True)
class Route:
    """One pattern and methods of the table. ``needs`` is a SMART letter on the route's type or
    one of ``OPEN``, ``PER_ENTRY``, ``PER_OPERATION``, ``ANY_CREDENTIAL``, or ``$name``: what
    the operation ``name`` declares. ``handler`` is None for a route answered outside the
    router (the twin API's views)."""

    methods: frozenset[str]
    pattern: str
    interaction: str
    action: str
    needs: str
    handler: RouteHandler | None = None
    # Only a posted Bundle of this type takes the route (R4 http.html#transaction).
    bundle_type: str | None = None
    # The resource type and operation the audit trail names when the path names none.
    resource_type: str | None = None
    operation: str | None = None
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", tuple(part for part in self.pattern.split("/") if part))

    def bind(self, segments: list[str], body: Any) -> dict[str, str] | None:
        """The placeholders' values if ``segments`` fit the pattern, else None."""
        if len(segments) != len(self.segments):
            return None
        if self.bundle_type is not None and not (isinstance(body, dict) and body.get("type") == self.bundle_type):
            return None
        params: dict[str, str] = {}
        for part, segment in zip(self.segments, segments, strict=True):
            if part == "${op}" and segment.startswith("$"):
                params["op"] = segment[1:]
            elif part == "{type}" and is_resource_type(segment):
                params["type"] = segment
            elif part.startswith("{") and part != "{type}" and not segment.startswith("$"):
                params[part[1:-1]] = segment
            elif part != segment:
                return None
        return params

    def interaction_for(self, params: Params) -> Interaction:
        """The interaction this route is, on the values bound from a path."""
        return Interaction(
            self.interaction,
            self.action,
            params.get("type", self.resource_type),
            params.get("id"),
            params.get("vid"),
            permission=self.needs if self.needs in LETTERS else None,
            compartment=params.get("compartment"),
            operation=params.get("op", self.operation),
        )


@dataclass(frozen=True)
class Match:
    """A request matched against a table: the interaction it is, and either the route and
    values that answer it or why it cannot be answered (raised after the Guard has checked the
    interaction, so a refused request never tells what an allowed one would)."""

    interaction: Interaction
    route: Route | None = None
    params: Params = field(default_factory=dict)
    refusal: FhirError | None = None


def match(routes: tuple[Route, ...], method: str, path: str, body: Any = None) -> Match:
    """``method`` on ``path`` (relative to the base) against ``routes``.

    A method the path's routes do not serve is classified as the nearest interaction: the same
    one at system or type level, an id-less read where the path names an instance. Only a
    route served names a resource instance: the Guard checks an instance before the handler
    runs, so an unserved shape naming one (``Type/id/x``, ``POST Type/id``) would otherwise
    answer 404 for another patient's id but 404 "Unknown path" or 405 for an unused one (R4
    security.html: do not reveal what the client may not see).
    """
    method = method.upper()
    segments = [segment for segment in path.strip("/").split("/") if segment]
    fitting: list[tuple[Route, dict[str, str]]] = []
    for route in _indexed(routes).candidates(segments):
        params = route.bind(segments, body)
        # The first pattern that fits is the path's (``Type/_history`` before ``Type/{id}``).
        if params is not None and (not fitting or fitting[0][0].pattern == route.pattern):
            fitting.append((route, params))
    if not fitting:
        return _unmatched(segments, path)
    for route, params in fitting:
        if method in route.methods:
            return Match(route.interaction_for(params), route, params, _invalid(params))
    route, params = fitting[0]
    allowed = sorted({name for other, _ in fitting for name in other.methods})
    refusal = _invalid(params) or MethodNotAllowed(
        f"{method} is not allowed {_where(route, params, allowed)}", headers={"Allow": ", ".join(allowed)}
    )
    if "id" in params:
        nearest = Interaction("read", "R", params.get("type", route.resource_type), permission="r")
    elif route.interaction == "capabilities":
        nearest = _UNKNOWN  # only GET metadata is the (unaudited) capabilities interaction
    else:
        nearest = route.interaction_for(params)
    return Match(nearest, route, params, refusal)


class _Index:
    """A table's routes by segment count, each with the literal its pattern starts with (None for
    a placeholder): a path is tried only against the routes of its length that could take its
    first segment, in the table's order. A read tried all 22 routes before (7.5 % of its time in
    the app); it now tries the 7 of two segments."""

    def __init__(self, routes: tuple[Route, ...]) -> None:
        self.routes = routes
        self.by_count: dict[int, list[tuple[str | None, Route]]] = {}
        for route in routes:
            head = route.segments[0] if route.segments else None
            literal = head if head is not None and not head.startswith(("{", "$")) else None
            self.by_count.setdefault(len(route.segments), []).append((literal, route))

    def candidates(self, segments: list[str]) -> Iterator[Route]:
        for literal, route in self.by_count.get(len(segments), ()):
            if literal is None or literal == segments[0]:
                yield route


# The index of each table matched against, by the table's identity (a table is a module's tuple,
# built once; a few are kept).
_INDEXES: dict[int, _Index] = {}


def _indexed(routes: tuple[Route, ...]) -> _Index:
    index = _INDEXES.get(id(routes))
    if index is None or index.routes is not routes:
        if len(_INDEXES) >= 16:
            _INDEXES.clear()
        index = _INDEXES[id(routes)] = _Index(routes)
    return index


def interactions_at(level: str) -> tuple[str, ...]:
    """The ``restful-interaction`` codes the table serves at ``system`` or ``type`` level, as
    ``CapabilityStatement.rest.interaction`` and ``rest.resource.interaction`` list them."""
    found: dict[str, None] = {}
    for route in ROUTES:
        on_type = "{type}" in route.segments
        if route.interaction not in ("capabilities", "operation") and on_type == (level == "type"):
            found[route.interaction] = None
    return tuple(found)


# A path at system level that nothing serves, or POST metadata: a search of nothing, audited.
_UNKNOWN = Interaction("search-system", "E", permission="s")


def _unmatched(segments: list[str], path: str) -> Match:
    """No route fits: the first segment is no resource type (404), the next no id (400), or the
    path has a shape the table does not have (404)."""
    head = segments[0]
    if not is_resource_type(head):
        return Match(_UNKNOWN, refusal=NotFound(f"Unknown resource type {head!r}"))
    # Every route deeper than a type names an instance (or a compartment) next.
    refusal = _invalid({"id": segments[1]}) if len(segments) > 1 else None
    return Match(Interaction("read", "R", head, permission="r"), refusal=refusal or NotFound(f"Unknown path {path!r}"))


def _invalid(params: Params) -> Invalid | None:
    """R4 datatypes.html#id: an id is 1-64 of A-Z a-z 0-9 - ."""
    for name in ("id", "compartment"):
        value = params.get(name)
        if value is not None and not is_valid_id(value):
            return Invalid(f"{value!r} is not a valid resource id: ids are 1-64 of A-Z a-z 0-9 - .")
    return None


def _where(route: Route, params: Params, allowed: list[str]) -> str:
    """Where a 405 says the method is not allowed."""
    served_methods = [name for name in allowed if name != "HEAD"]
    if len(served_methods) == 1:
        return f"here; use {served_methods[0]}"
    if not route.segments:
        return "on the service base URL"
    return "on " + "/".join(params.get(part[1:-1], part) if part.startswith("{") else part for part in route.segments)


# --- handlers ---------------------------------------------------------------------------------


def _search_system(interactions: Interactions, request: Request, _params: Params) -> Response:
    types = _system_types(request)
    if not request.params("_type"):
        # Every type means every type the principal may search; a named one it may not is
        # refused (403) by the search itself.
        types = interactions.guard.searchable(current(), types)
        if not types:
            raise Forbidden("The credential's scopes do not allow search on any resource type")
    return search(interactions.repository, interactions.config, request, types, request.base)


def _bundle(interactions: Interactions, request: Request, _params: Params) -> Response:
    if interactions.bundles is None:
        message = f"{request.method} is not allowed on the service base URL"
        raise MethodNotAllowed(message, headers={"Allow": "GET, HEAD, POST"})
    return interactions.bundles(request)


def _capabilities(interactions: Interactions, request: Request, _params: Params) -> Response:
    return interactions.capabilities(request)


def _history(interactions: Interactions, request: Request, params: Params) -> Response:
    return history(interactions.repository, interactions.config, request, params.get("type"), params.get("id"))


def _search_type(interactions: Interactions, request: Request, params: Params) -> Response:
    res_type = params["type"]
    patient = params.get("compartment")
    if patient is None:
        url, compartment = f"{request.base}/{res_type}", None
    else:
        # Compartment search, R4 http.html#search: Patient/{id}/{type}?...
        url, compartment = f"{request.base}/Patient/{patient}/{res_type}", compartment_condition(res_type, patient)
    return search(interactions.repository, interactions.config, request, (res_type,), url, compartment)


def _create(interactions: Interactions, request: Request, params: Params) -> Response:
    return interactions.instance.create(request, params["type"])


def _conditional_update(interactions: Interactions, request: Request, params: Params) -> Response:
    return interactions.instance.conditional_update(request, params["type"])


def _conditional_patch(interactions: Interactions, request: Request, params: Params) -> Response:
    return interactions.instance.conditional_patch(request, params["type"])


def _conditional_delete(interactions: Interactions, request: Request, params: Params) -> Response:
    return interactions.instance.conditional_delete(request, params["type"])


def _read(interactions: Interactions, request: Request, params: Params) -> Response:
    own = _own_definition(interactions, params)
    if own is not None:
        return Response(200, {}, operation_definition(own))
    return interactions.instance.read(request, params["type"], params["id"])


def _written(handler: RouteHandler) -> RouteHandler:
    """``handler``, refused with 405 on a definition the server builds rather than stores."""

    def written(interactions: Interactions, request: Request, params: Params) -> Response:
        if _own_definition(interactions, params) is not None:
            message = f"{request.method.upper()} is not allowed on the server's own OperationDefinition/{params['id']}"
            raise MethodNotAllowed(message, headers={"Allow": "GET, HEAD"})
        return handler(interactions, request, params)

    return written


def _update(interactions: Interactions, request: Request, params: Params) -> Response:
    return interactions.instance.update(request, params["type"], params["id"])


def _patch(interactions: Interactions, request: Request, params: Params) -> Response:
    return interactions.instance.patch(request, params["type"], params["id"])


def _delete(interactions: Interactions, request: Request, params: Params) -> Response:
    return interactions.instance.delete(request, params["type"], params["id"])


def _vread(interactions: Interactions, request: Request, params: Params) -> Response:
    return interactions.instance.vread(request, params["type"], params["id"], params["vid"])


def _operation(interactions: Interactions, request: Request, params: Params) -> Response:
    """``[base]/$op``, ``[base]/Type/$op`` or ``[base]/Type/id/$op`` (R4 operations.html)."""
    name, res_type, res_id = params["op"], params.get("type"), params.get("id")
    level = "instance" if res_id is not None else "type" if res_type is not None else "system"
    operation = interactions.operations.get(name)
    if operation is None:
        raise NotImplementedInteraction(f"The operation ${name} is not supported by this server")
    if level not in operation.levels:
        raise NotFound(f"The operation ${name} is not offered at {level} level")
    if res_type is not None and operation.types is not None and res_type not in operation.types:
        raise NotFound(f"The operation ${name} is not supported on {res_type}")
    method = request.method.upper()
    if method not in operation.methods:
        allowed = ", ".join(sorted(operation.methods))
        why = " because it changes what the server stores (affectsState)" if operation.affects_state else ""
        message = f"${name} cannot be invoked with {method}{why}; use {allowed}"
        raise MethodNotAllowed(message, headers={"Allow": allowed})
    return operation.handler(interactions.context, request, res_type, res_id)


def _own_definition(interactions: Interactions, params: Params) -> Operation | None:
    """The operation whose definition ``OperationDefinition/{id}`` is, if the server defines it."""
    if params["type"] != "OperationDefinition":
        return None
    return served(interactions.operations.values()).get(params["id"])


def _system_types(request: Request) -> tuple[str, ...]:
    """``_type`` of a system search (R4 search.html#type), else every type."""
    named = [name.strip() for value in request.params("_type") for name in value.split(",") if name.strip()]
    unknown = [name for name in named if not is_resource_type(name)]
    if unknown:
        message = f"Unknown resource type {unknown[0]!r} in _type"
        raise Invalid.at("_type", message)
    return tuple(sorted(set(named))) if named else tuple(sorted(resource_types() - AUDIT_TYPES))


ROUTES: tuple[Route, ...] = (
    Route(GET, "", "search-system", "E", "s", _search_system),
    Route(POST, "", "batch", "E", PER_ENTRY, _bundle, bundle_type="batch"),
    # Any other Bundle posted to the base is refused as a transaction: what the body claims to
    # be must not choose the record's subtype.
    Route(POST, "", "transaction", "E", PER_ENTRY, _bundle),
    Route(GET, "metadata", "capabilities", "R", OPEN, _capabilities),
    Route(GET, "_history", "history-system", "E", "s", _history),
    Route(EVERY_METHOD, "${op}", "operation", "E", PER_OPERATION, _operation),
    Route(GET, "{type}", "search-type", "E", "s", _search_type),
    Route(POST, "{type}", "create", "C", "c", _create),
    Route(frozenset({"PUT"}), "{type}", "update", "U", "u", _conditional_update),
    Route(frozenset({"PATCH"}), "{type}", "patch", "U", "u", _conditional_patch),
    Route(frozenset({"DELETE"}), "{type}", "delete", "D", "d", _conditional_delete),
    Route(POST, "{type}/_search", "search-type", "E", "s", _search_type),
    Route(GET, "{type}/_history", "history-type", "E", "s", _history),
    Route(EVERY_METHOD, "{type}/${op}", "operation", "E", PER_OPERATION, _operation),
    Route(GET, "{type}/{id}", "read", "R", "r", _read),
    Route(frozenset({"PUT"}), "{type}/{id}", "update", "U", "u", _written(_update)),
    Route(frozenset({"PATCH"}), "{type}/{id}", "patch", "U", "u", _written(_patch)),
    Route(frozenset({"DELETE"}), "{type}/{id}", "delete", "D", "d", _written(_delete)),
    Route(GET, "{type}/{id}/_history", "history-instance", "R", "r", _history),
    Route(GET, "Patient/{compartment}/{type}", "search-type", "E", "s", _search_type),
    Route(EVERY_METHOD, "{type}/{id}/${op}", "operation", "E", PER_OPERATION, _operation),
    Route(GET, "{type}/{id}/_history/{vid}", "vread", "R", "r", _vread),
)
