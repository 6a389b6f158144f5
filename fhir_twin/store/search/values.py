"""One SQL condition per search value, per parameter type (R4 search.html, "Search Parameter Types").

Each function takes an alias of the parameter type's index table and one parsed value, and
answers the condition a row must meet. Values are always bound parameters.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, literal, not_, or_, true

from fhir_twin.errors import Invalid, Issue
from fhir_twin.search import ucum
from fhir_twin.search.extract import UCUM
from fhir_twin.search.query import (
    CodeSet,
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
)
from fhir_twin.search.text import fold
from fhir_twin.store.indexing import INDEXED_LENGTH

# The largest value a string prefix match can reach: every folded string starting with the
# prefix sorts below prefix + this character.
_TOP = "\U0010ffff"


def string(table: Any, value: StringValue, modifier: str | None) -> ColumnElement[bool]:
    """Default: starts with, ignoring case and accents; ``:exact``; ``:contains`` (search.html#string)."""
    if modifier == "exact":
        return table.c.exact == value.text
    # Stored folded text is cut at INDEXED_LENGTH; a longer prefix is compared over that length.
    folded = fold(value.text)[:INDEXED_LENGTH]
    if modifier == "contains":
        return table.c.normalized.like(f"%{_escape_like(folded)}%", escape="\\")
    return and_(table.c.normalized >= folded, table.c.normalized < folded + _TOP)


def token(table: Any, value: TokenValue, modifier: str | None) -> ColumnElement[bool]:
    """``code``, ``system|code``, ``system|``, ``|code``; ``:text``; ``:of-type`` (search.html#token)."""
    if modifier == "text":
        folded = fold(value.code or "")
        return and_(table.c.text >= folded, table.c.text < folded + _TOP)
    if modifier == "of-type":
        return and_(
            table.c.type_system == value.type_system, table.c.type_code == value.type_code, table.c.code == value.code
        )
    conditions = []
    if value.code is not None:
        conditions.append(table.c.code == value.code)
    if value.system is not None:
        conditions.append(table.c.system == value.system)
    elif value.system_given:
        conditions.append(table.c.system.is_(None))
    return and_(*conditions) if conditions else true()


def code_set(table: Any, value: CodeSet) -> ColumnElement[bool]:
    """A coding among the pairs of a resolved ``:in`` / ``:above`` / ``:below``, one ``IN`` per
    system. A ``code`` element is indexed without a system (its binding implies it), so a code
    without one matches the same code of the set."""
    by_system: dict[str, list[str]] = {}
    for system, code in value.pairs:
        by_system.setdefault(system, []).append(code)
    if not by_system:
        return false()
    return or_(
        *(
            and_(or_(table.c.system == system, table.c.system.is_(None)), table.c.code.in_(sorted(codes)))
            for system, codes in sorted(by_system.items())
        )
    )


def reference(
    table: Any, value: ReferenceValue, modifier: str | None, base: str, targets: tuple[str, ...] = ()
) -> ColumnElement[bool]:
    """``Type/id``, ``id``, an absolute URL, ``:Type``, ``:identifier`` (search.html#reference)."""
    if modifier == "identifier":
        conditions = []
        if value.identifier_value is not None:
            conditions.append(table.c.identifier_value == value.identifier_value)
        if value.identifier_system is not None:
            conditions.append(table.c.identifier_system == value.identifier_system)
        return and_(*conditions) if conditions else true()
    if value.url is not None:
        local = _local_reference(value.url, base)
        if local is None:
            return table.c.url == value.url
        local_type, local_id = local
        return or_(table.c.url == value.url, and_(table.c.target_type == local_type, table.c.target_id == local_id))
    conditions = [table.c.target_id == value.target_id]
    target_type = modifier or value.target_type
    if target_type is not None:
        conditions.append(table.c.target_type == target_type)
    elif targets:
        # A bare id may name any type the parameter allows; saying which keeps the index usable.
        conditions.append(table.c.target_type.in_(targets))
    return and_(*conditions)


def date(low: Any, high: Any, value: DateValue, width: timedelta | None = None) -> ColumnElement[bool]:
    """Range comparison of the target ``[low, high)`` with the search value (search.html#prefix).

    With ``width`` the target is an instant column ``low`` standing for ``[low, low + width)``
    (``high`` unused): the search bounds move instead of the column, as SQLite cannot add an
    interval to a timestamp. Open Period ends are stored as the calendar's ends, so at those
    ends ``gt``/``ge`` and ``lt``/``le`` also take a target reaching them.
    """

    def ends_after(bound: datetime) -> ColumnElement[bool]:  # high > bound
        if width is not None:
            return low > _moved(bound, -width)
        return high > bound if bound < datetime.max else high == bound

    def ends_by(bound: datetime) -> ColumnElement[bool]:  # high <= bound
        return low <= _moved(bound, -width) if width is not None else high <= bound

    def starts_before(bound: datetime) -> ColumnElement[bool]:  # low < bound
        return low < bound if bound > datetime.min else low == bound

    contained = and_(low >= value.low, ends_by(value.high))
    match value.prefix:
        case "eq":
            return contained
        case "ne":
            return not_(contained)
        case "gt":
            return ends_after(value.high)
        case "lt":
            return starts_before(value.low)
        case "ge":
            return or_(ends_after(value.high), contained)
        case "le":
            return or_(starts_before(value.low), contained)
        case "sa":
            return low >= value.high
        case "eb":
            return ends_by(value.low)
        case _:  # ap: overlaps the value widened by a tenth of its distance from now (at least a day)
            now = datetime.now()
            margin = max(abs(now - value.low) / 10, timedelta(days=1))
            return and_(low < _moved(value.high, margin), ends_after(_moved(value.low, -margin)))


def number(column: Any, value: NumberValue | QuantityValue, canonical: bool = False) -> ColumnElement[bool]:
    """A stored number against the search value and its precision range (search.html#number)."""
    if canonical:
        if (
            not isinstance(value, QuantityValue)
            or value.canonical_value is None
            or value.canonical_low is None
            or value.canonical_high is None
        ):
            return false()
        exact, low, high = value.canonical_value, value.canonical_low, value.canonical_high
    else:
        exact, low, high = value.value, value.low, value.high
    match value.prefix:
        case "eq":
            return and_(column >= low, column < high)
        case "ne":
            return or_(column < low, column >= high)
        case "gt" | "sa":
            return column > exact
        case "lt" | "eb":
            return column < exact
        case "ge":
            return column >= exact
        case "le":
            return column <= exact
        case _:  # ap: within 10 % of the value
            margin = abs(exact) / 10 or Decimal("0.1")
            return and_(column >= exact - margin, column <= exact + margin)


def quantity(table: Any, value: QuantityValue) -> ColumnElement[bool]:
    """Number comparison with unit matching; units that convert are compared in canonical UCUM
    (search.html#quantity)."""
    if value.code is None and value.system is None:
        return number(table.c.value, value)
    if value.canonical_code is None and value.system == UCUM and value.code:  # the parser leaves these empty
        value = _in_canonical_units(value, value.code)
    as_sent = [number(table.c.value, value)]
    if value.code is not None:
        as_sent.append(or_(table.c.code == value.code, table.c.unit == value.code))
    if value.system is not None:
        as_sent.append(table.c.system == value.system)
    if value.canonical_code is None:
        return and_(*as_sent)
    canonical = and_(table.c.canonical_code == value.canonical_code, number(table.c.canonical_value, value, True))
    return or_(and_(*as_sent), canonical)


def _in_canonical_units(value: QuantityValue, code: str) -> QuantityValue:
    """``value`` with its canonical UCUM form filled in when ``code`` converts (search.html#quantity)."""
    exact, low, high = (ucum.canonical(amount, code) for amount in (value.value, value.low, value.high))
    if exact is None or low is None or high is None:
        return value
    (amount, unit), (bottom, _), (top, _) = exact, low, high
    return replace(value, canonical_value=amount, canonical_low=bottom, canonical_high=top, canonical_code=unit)


def uri(table: Any, value: UriValue, modifier: str | None) -> ColumnElement[bool]:
    """Exact, ``:below`` (the value is a prefix), ``:above`` (the stored uri is a prefix).

    Case-sensitive on both databases and without LIKE: SQLite's LIKE ignores ASCII case, and a
    stored uri used as a LIKE pattern would read its ``_`` and ``%`` as wildcards.
    """
    if modifier == "below":
        return and_(table.c.uri >= value.uri, table.c.uri < value.uri + _TOP)
    if modifier == "above":
        return table.c.uri == func.substr(literal(value.uri), 1, func.length(table.c.uri))
    return table.c.uri == value.uri


def unsupported(name: str, modifier: str) -> Invalid:
    message = f"The modifier :{modifier} is not supported on {name}"
    return Invalid(message, issues=[Issue("not-supported", message, expression=(name,))])


def _moved(instant: datetime, delta: timedelta) -> datetime:
    """``instant + delta``, clamped to the ends of the calendar."""
    try:
        return instant + delta
    except OverflowError:
        return datetime.max if delta > timedelta(0) else datetime.min


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _local_reference(url: str, base: str) -> tuple[str, str] | None:
    """``Type/id`` when ``url`` points into this server's own base."""
    prefix = base.rstrip("/") + "/"
    if not url.startswith(prefix):
        return None
    parts = url[len(prefix) :].split("/")
    if len(parts) >= 2:
        return parts[0], parts[1]
    return None
