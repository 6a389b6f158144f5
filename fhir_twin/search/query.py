"""Query string → ``SearchQuery`` (R4 search.html).

The parameters understood so far are ``_id`` (R4 search.html#id) and the result parameters
``_count`` and ``_cursor`` (the keyset position of the next page). Unknown parameters are
ignored and left out of the ``self`` link, or refused under ``Prefer: handling=strict``
(R4 search.html#errors). Conditional interactions always refuse them: ignoring a criterion
there would match resources the client never meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from fhir_twin.errors import Invalid, Issue
from fhir_twin.fhir.model import is_valid_id
from fhir_twin.search.parameters import SearchParameter

# Parameters that format or shape the answer, handled by the transport or ignored harmlessly.
TRANSPORT_PARAMETERS = frozenset({"_format", "_pretty"})


@dataclass(frozen=True)
class SearchQuery:
    """What to find: the ids asked for (None = any), page size and cursor."""

    resource_type: str
    ids: tuple[str, ...] | None = None
    count: int = 20
    cursor: str | None = None
    applied: list[tuple[str, str]] = field(default_factory=list)

    @property
    def criteria(self) -> list[tuple[str, str]]:
        """The parameters that select resources (for ``self`` and ``next`` links)."""
        return [(name, value) for name, value in self.applied if name not in ("_count", "_cursor")]


def parse(
    resource_type: str,
    query: list[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
) -> SearchQuery:
    """Parse ``query``; 400 naming the parameter on a bad value (or an unknown one when strict)."""
    ids: list[str] | None = None
    count = page_size(None, default_count, max_count)
    cursor = None
    applied: list[tuple[str, str]] = []
    for name, value in query:
        if name in TRANSPORT_PARAMETERS:
            continue
        if name == "_id":
            values = [v.strip() for v in value.split(",") if v.strip()]
            bad = [v for v in values if not is_valid_id(v)]
            if not values or bad:
                raise _bad(name, f"_id must be one or more resource ids separated by commas, not {value!r}")
            # Repeating _id ANDs the sets (R4 search.html#combining).
            ids = values if ids is None else [v for v in ids if v in values]
        elif name == "_count":
            count = page_size(value, default_count, max_count)
        elif name == "_cursor":
            if not is_valid_id(value):
                raise _bad(name, f"_cursor {value!r} is not a page position this server made")
            cursor = value
        elif strict:
            raise _bad(
                name, f"Unknown or unsupported search parameter {name!r} for {resource_type}", code="not-supported"
            )
        else:
            continue
        applied.append((name, value))
    return SearchQuery(resource_type, tuple(ids) if ids is not None else None, count, cursor, applied)


def page_size(value: str | None, default: int, maximum: int) -> int:
    """The page size ``_count`` asks for, capped at ``maximum`` (R4 search.html#count)."""
    if value is None:
        return min(default, maximum)
    digits = value.lstrip("0")
    if not (value.isascii() and value.isdigit()) or not digits:
        raise _bad("_count", f"_count must be a positive whole number, not {value[:40]!r}")
    # Compare lengths first: int() refuses numbers of thousands of digits.
    return maximum if len(digits) > len(str(maximum)) else min(int(digits), maximum)


def _bad(name: str, message: str, code: str = "invalid") -> Invalid:
    return Invalid(message, issues=[Issue(code, message, expression=(name,))])


# --- The query model the parser builds and the store compiles (R4 search.html) -------------


@dataclass(frozen=True)
class StringValue:
    text: str


@dataclass(frozen=True)
class TokenValue:
    """``code`` (any system), ``system|code``, ``system|`` (any code) or ``|code`` (no system).

    ``system_given`` tells ``code`` apart from ``|code``. ``:of-type`` fills ``type_system`` and
    ``type_code`` with the identifier type and ``code`` with the identifier value; ``:text``
    puts the text in ``code``.
    """

    system: str | None
    code: str | None
    system_given: bool = False
    type_system: str | None = None
    type_code: str | None = None


@dataclass(frozen=True)
class ReferenceValue:
    """``Type/id``, a bare ``id`` (any allowed type), an absolute/canonical ``url``, or, with
    ``:identifier``, ``system|value``."""

    target_type: str | None
    target_id: str | None
    url: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None


@dataclass(frozen=True)
class DateValue:
    """A date search value: the prefix and the range ``[low, high)`` its precision covers."""

    prefix: str
    low: datetime
    high: datetime


@dataclass(frozen=True)
class NumberValue:
    """A number: ``value`` as written, ``[low, high)`` the range its precision implies."""

    prefix: str
    value: Decimal
    low: Decimal
    high: Decimal


@dataclass(frozen=True)
class QuantityValue:
    """A quantity: number, prefix and range as for numbers, with an optional system and code;
    ``canonical_*`` when the unit converts to canonical UCUM."""

    prefix: str
    value: Decimal
    low: Decimal
    high: Decimal
    system: str | None
    code: str | None
    canonical_low: Decimal | None = None
    canonical_high: Decimal | None = None
    canonical_value: Decimal | None = None
    canonical_code: str | None = None


@dataclass(frozen=True)
class UriValue:
    uri: str


@dataclass(frozen=True)
class CompositeValue:
    """One value per component, in the order of the parameter's components (``$``-joined)."""

    parts: tuple[Value, ...]


Value = StringValue | TokenValue | ReferenceValue | DateValue | NumberValue | QuantityValue | UriValue | CompositeValue


@dataclass(frozen=True)
class Criterion:
    """One parameter: its values are ORed. ``missing`` is set by ``:missing``.

    A chain (``subject:Patient.name=x``) has ``chain_type`` and ``chain``, the criterion the
    referenced resource must meet; ``values`` is then empty.
    """

    parameter: SearchParameter
    modifier: str | None = None
    values: tuple[Value, ...] = ()
    missing: bool | None = None
    chain_type: str | None = None
    chain: Criterion | None = None


@dataclass(frozen=True)
class ReverseChain:
    """``_has:Source:reference:criterion``: some ``Source`` whose ``reference`` points here meets it."""

    source_type: str
    reference: SearchParameter
    criterion: Criterion | ReverseChain


@dataclass(frozen=True)
class AnyOf:
    """Criteria ORed across parameters (a compartment: subject OR performer ... = Patient/x)."""

    criteria: tuple[Criterion, ...]


Condition = Criterion | ReverseChain | AnyOf


@dataclass(frozen=True)
class Include:
    """``_include=Source:param[:Target]`` or ``_revinclude`` (``reverse``); ``parameter`` None is ``*``."""

    source_type: str
    parameter: SearchParameter | None
    target_type: str | None = None
    iterate: bool = False
    reverse: bool = False


@dataclass(frozen=True)
class SortKey:
    parameter: SearchParameter
    descending: bool = False


@dataclass(frozen=True)
class Search:
    """A whole search: conditions ANDed, then sorting, paging and the shape of the answer.

    ``applied`` holds the parameters as understood, for the ``self`` link (R4 search.html#return).
    """

    resource_types: tuple[str, ...]
    conditions: tuple[Condition, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    cursor: str | None = None
    includes: tuple[Include, ...] = ()
    revincludes: tuple[Include, ...] = ()
    summary: str | None = None
    elements: tuple[str, ...] = ()
    total: str | None = None
    applied: tuple[tuple[str, str], ...] = field(default_factory=tuple)
