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
class Operation:
    """``levels`` ⊆ {system, type, instance}; ``types`` None means every resource type.

    ``affects_state``, ``description`` and ``parameters`` are what its OperationDefinition says.
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
