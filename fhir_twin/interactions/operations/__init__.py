"""Extended operations (R4 operations.html): ``$name`` at system, type or instance level.

Each operation module declares an ``Operation``; the router finds it by name and level, checks
the method and resource type, and hands it the request. The CapabilityStatement lists them, and
``definition`` builds the OperationDefinition of those the server defines itself from the same
declaration, so what a client reads is what the router does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fhir_twin.config import Config
from fhir_twin.errors import Invalid
from fhir_twin.interactions.message import Request, Response
from fhir_twin.store.repository import Repository


@dataclass(frozen=True)
class Context:
    """What an operation may use: storage, settings, and the router for nested requests."""

    repository: Repository
    config: Config
    route: Callable[[Request], Response]


Handler = Callable[[Context, Request, str | None, str | None], Response]


@dataclass(frozen=True)
class Parameter:
    """One ``OperationDefinition.parameter`` (R4 operationdefinition.html): an input or an output,
    its cardinality (``max`` "1" or "*") and its FHIR type."""

    name: str
    use: Literal["in", "out"]
    type: str
    documentation: str
    min: int = 0
    max: str = "1"


@dataclass(frozen=True)
class Permission:
    """The SMART v2 permissions a token needs to invoke an operation, declared beside it so the
    Guard has no list of its own to keep (R4 gives operations no scope; SMART App Launch v2
    scopes name types and the letters ``c r u d s``).

    ``reads``, ``searches`` and ``creates`` name resource types; ``"*"`` is the resource the
    operation is invoked on (instance level). ``patient``: the operation works on one Patient's record, which a
    patient-context token may reach only for its own patient and never at type level.
    ``every_type``: it hands out whole types (bulk export), so it needs a user or system scope
    that reads every type it may export.
    """

    reads: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    creates: tuple[str, ...] = ()
    patient: bool = False
    every_type: bool = False
    # Whether a call looks up the instance it is invoked on (given the request and the id): a
    # patient-context token then meets another patient's resource as one that does not exist.
    looks_up: Callable[[Request, str], bool] | None = None


@dataclass(frozen=True)
class Operation:
    """``levels`` ⊆ {system, type, instance}; ``types`` None means every resource type.

    ``affects_state``, ``description`` and ``parameters`` are what its OperationDefinition says.
    ``definition_for``: another definition for one of its types, where the specification defines
    the operation once per type (``ValueSet/$validate-code`` and ``CodeSystem/$validate-code``).
    ``permission`` is what a token must hold to invoke it; an operation declared without one is
    refused to every token but a ``system/*`` one that holds every permission (default deny).
    An operation that affects state is invoked with POST only (R4 operations.html: "If the
    operation affects state, it must be invoked with a POST"), so such an operation cannot be
    declared with GET: the router then refuses GET with 405.
    """

    name: str
    levels: frozenset[str]
    methods: frozenset[str]
    handler: Handler
    definition: str
    types: frozenset[str] | None = None
    affects_state: bool = False
    description: str = ""
    parameters: tuple[Parameter, ...] = ()
    permission: Permission | None = None
    definition_for: tuple[tuple[str, str], ...] = ()

    def definition_of(self, res_type: str) -> str:
        """The definition the CapabilityStatement names for the operation on ``res_type``."""
        return dict(self.definition_for).get(res_type, self.definition)

    def __post_init__(self) -> None:
        if self.affects_state and self.methods & {"GET", "HEAD"}:
            raise ValueError(f"${self.name} affects state: it may be invoked with POST only")


def parameters(request: Request) -> list[tuple[str, Any]]:
    """The operation's input parameters: the query string, then a ``Parameters`` body
    (R4 operations.html#request). Values are strings, or resources for ``resource`` parts."""
    found: list[tuple[str, Any]] = [
        (name, value) for name, value in request.query if name not in ("_format", "_pretty")
    ]
    body = request.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for part in body.get("parameter", []):
            if not isinstance(part, dict) or "name" not in part:
                raise Invalid("Each Parameters.parameter needs a name")
            if "resource" in part:
                found.append((part["name"], part["resource"]))
                continue
            values = [value for key, value in part.items() if key.startswith("value")]
            if len(values) != 1:
                message = f"Parameter {part['name']!r} needs exactly one value[x]"
                raise Invalid.at(part["name"], message)
            found.append((part["name"], str(values[0]).lower() if isinstance(values[0], bool) else str(values[0])))
    return found
