"""Index rows: the values of a resource's search parameters, one row per value.

Rows are extracted from a resource on every write (``extract``) and stored in one table per
parameter type, as HAPI FHIR does. ``group`` ties together the rows of one composite value:
the component rows taken from the same element share it (R4 search.html#composite).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True)
class StringRow:
    """``normalized`` is case- and accent-folded for the default and ``:contains`` searches."""

    param: str
    normalized: str
    exact: str
    group: int = 0


@dataclass(frozen=True)
class TokenRow:
    """A code with its system; ``text`` (folded) serves ``:text``; ``type_*`` serve ``:of-type``."""

    param: str
    system: str | None
    code: str | None
    text: str | None = None
    type_system: str | None = None
    type_code: str | None = None
    group: int = 0


@dataclass(frozen=True)
class ReferenceRow:
    """A reference: local ``Type/id``, or an absolute/canonical ``url``, or only an identifier."""

    param: str
    target_type: str | None
    target_id: str | None
    url: str | None = None
    identifier_system: str | None = None
    identifier_value: str | None = None
    group: int = 0


@dataclass(frozen=True)
class DateRow:
    """The instants ``[low, high)`` a date, Period or Timing covers, in naive UTC."""

    param: str
    low: datetime
    high: datetime
    group: int = 0


@dataclass(frozen=True)
class NumberRow:
    param: str
    value: Decimal
    group: int = 0


@dataclass(frozen=True)
class QuantityRow:
    """``canonical_*`` hold the value in canonical UCUM units when the unit could be converted."""

    param: str
    value: Decimal
    system: str | None
    code: str | None
    unit: str | None
    canonical_value: Decimal | None = None
    canonical_code: str | None = None
    group: int = 0


@dataclass(frozen=True)
class UriRow:
    param: str
    uri: str
    group: int = 0


IndexRow = StringRow | TokenRow | ReferenceRow | DateRow | NumberRow | QuantityRow | UriRow

# The row type of each search parameter type (composites are rows of their components' types).
ROW_TYPES: dict[str, type[IndexRow]] = {
    "string": StringRow,
    "token": TokenRow,
    "reference": ReferenceRow,
    "date": DateRow,
    "number": NumberRow,
    "quantity": QuantityRow,
    "uri": UriRow,
}
