"""Query string → ``SearchQuery`` (R4 search.html).

The parameters understood so far are ``_id`` (R4 search.html#id) and the result parameters
``_count`` and ``_cursor`` (the keyset position of the next page). Unknown parameters are
ignored and left out of the ``self`` link, or refused under ``Prefer: handling=strict``
(R4 search.html#errors). Conditional interactions always refuse them: ignoring a criterion
there would match resources the client never meant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_twin.errors import Invalid, Issue
from fhir_twin.fhir.model import is_valid_id

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
