"""The search query model: what ``parser`` builds from a query string and the store compiles
to SQL (R4 search.html)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from fhir_twin.search.parameters import SearchParameter


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
class CodeSet:
    """The codes a terminology modifier stands for (``:in``, ``:not-in``, ``:above``, ``:below``,
    R4 search.html#token), as (system, code) pairs once the store has resolved it."""

    pairs: frozenset[tuple[str, str]]


@dataclass(frozen=True)
class CompositeValue:
    """One value per component, in the order of the parameter's components (``$``-joined)."""

    parts: tuple[Value, ...]


@dataclass(frozen=True)
class Unmatchable:
    """A value no stored resource can hold, so it matches nothing: an id with characters or a
    length ids cannot have (R4 datatypes.html#id), text with a control character FHIR strings
    exclude (datatypes.html#string), such as NUL."""


Value = (
    StringValue
    | TokenValue
    | ReferenceValue
    | DateValue
    | NumberValue
    | QuantityValue
    | UriValue
    | CompositeValue
    | CodeSet
    | Unmatchable
)


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
    # The Patient whose compartment the chained resource must be in (a patient-context search).
    within: str | None = None
    # What the chained resource must also meet: the credential's narrowed scopes on its type.
    narrowed: Narrowed | None = None


@dataclass(frozen=True)
class ReverseChain:
    """``_has:Source:reference:criterion``: some ``Source`` whose ``reference`` points here meets it."""

    source_type: str
    reference: SearchParameter
    criterion: Criterion | ReverseChain
    # The Patient whose compartment the ``Source`` must be in (a patient-context search).
    within: str | None = None
    # What the ``Source`` must also meet: the credential's narrowed scopes on its type.
    narrowed: Narrowed | None = None


@dataclass(frozen=True)
class AnyOf:
    """Criteria ORed across parameters (a compartment: subject OR performer ... = Patient/x)."""

    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class InCompartment:
    """In Patient ``patient_id``'s compartment (any patient's when None): the patient, and what refers
    to it through the parameters the Patient CompartmentDefinition names for each type (R4
    compartmentdefinition-patient.html). ``referenced`` adds what those resources refer to, one level,
    other Patients apart (R4 patient-operation-everything.html)."""

    patient_id: str | None
    referenced: bool = False


@dataclass(frozen=True)
class Narrowed:
    """Held to what SMART v2 scopes narrowed by a query grant on ``resource_type``
    (scopes-and-launch-context.html, "Finer-grained resource constraints using search
    parameters"): any one of ``ways``, each its conditions ANDed (a ``patient/`` scope's with
    its compartment). A resource of another type is not held by it."""

    resource_type: str
    ways: tuple[tuple[Condition, ...], ...]


Condition = Criterion | ReverseChain | AnyOf | InCompartment | Narrowed


@dataclass(frozen=True)
class Include:
    """``_include=Source:param[:Target]`` or ``_revinclude`` (``reverse``); ``parameter`` None is
    ``*``, and ``source_type`` ``*`` is ``_revinclude=*``."""

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

    ``applied`` holds the parameters as understood, for the ``self`` link (R4 search.html#return);
    ``ignored`` the unknown ones a lenient search left out, each with why (search.html#errors).
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
    ignored: tuple[tuple[str, str], ...] = field(default_factory=tuple)
