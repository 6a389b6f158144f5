"""Query string → ``Search`` (R4 search.html).

Repeated parameters are ANDed and the comma-separated values of one parameter ORed
(search.html#combining); each search parameter becomes a ``Criterion`` (``criteria``) of typed
values (``values``), and the result parameters (search.html#return) are read here. A parameter
this server does not know, or declares unsupported, is refused naming the valid ones when
``strict`` (HAPI's default), else left out of ``applied`` and listed in ``ignored``; a known
parameter with a bad value or a modifier that does not fit it is always refused
(search.html#errors).
"""

from __future__ import annotations

import re

from fhir_twin.errors import Invalid
from fhir_twin.fhir.resource_types import is_resource_type
from fhir_twin.search.criteria import criterion, lookup, reverse_chain, unknown_parameter
from fhir_twin.search.parameters import UNSUPPORTED, parameters_for
from fhir_twin.search.query import Condition, Include, Search, SortKey

# Parameters that format or shape the answer, handled by the transport or ignored harmlessly.
TRANSPORT_PARAMETERS = frozenset({"_format", "_pretty"})
# Parameters a client library sends that ask for nothing this server would do otherwise: fhirpy's
# count() adds Aidbox's _totalMethod=count next to _count=0, which answers the total anyway.
HARMLESS = frozenset({"_totalMethod"})

SORTABLE = frozenset({"string", "token", "date", "number", "quantity", "uri", "reference"})
SUMMARY = ("true", "text", "data", "count", "false")
TOTAL = ("none", "estimate", "accurate")
# Result parameters that may appear once, without a modifier.
SINGLE = frozenset({"_count", "_cursor", "_sort", "_summary", "_total", "_elements"})

_CURSOR = re.compile(r"[A-Za-z0-9\-._~]{1,512}")
_ELEMENT = re.compile(r"[a-z][A-Za-z0-9]{0,63}")


def parse(
    resource_types: tuple[str, ...],
    query: list[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
) -> Search:
    """Parse ``query`` for a search of ``resource_types`` (several: a system search with ``_type``).

    400 naming the parameter on a bad value, and on an unknown or unsupported one when ``strict``
    (else it is listed in ``ignored``).
    """
    conditions: list[Condition] = []
    includes: list[Include] = []
    revincludes: list[Include] = []
    applied: list[tuple[str, str]] = []
    ignored: list[tuple[str, str]] = []
    sort: tuple[SortKey, ...] = ()
    count = page_size(None, default_count, max_count)
    cursor: str | None = None
    summary: str | None = None
    total: str | None = None
    elements: tuple[str, ...] = ()
    seen: set[str] = set()
    for name, value in query:
        if name in TRANSPORT_PARAMETERS or name in HARMLESS:
            continue
        code = re.split(r"[:.]", name, maxsplit=1)[0]
        if (code in SINGLE or code == "_type") and name != code:
            raise Invalid.at(name, f"{code} takes no modifier")
        if code in SINGLE:
            if code in seen:
                raise Invalid.at(name, f"{code} may be given only once")
            seen.add(code)
        if code == "_count":
            count = page_size(value, default_count, max_count)
        elif code == "_cursor":
            if not _CURSOR.fullmatch(value):
                raise Invalid.at(name, f"_cursor {value[:40]!r} is not a page position this server made")
            cursor = value
        elif code == "_sort":
            sort = _sort(resource_types, name, value)
        elif code == "_summary":
            summary = _choice(name, value, SUMMARY)
        elif code == "_total":
            total = _choice(name, value, TOTAL)
        elif code == "_elements":
            elements = _elements(name, value)
        elif code == "_type":
            _check_type(resource_types, name, value)
        elif code in ("_include", "_revinclude"):
            (revincludes if code == "_revinclude" else includes).extend(_include(resource_types, name, value))
        elif code == "_has":
            conditions.append(reverse_chain(resource_types, name, name, value))
        elif code not in UNSUPPORTED and lookup(resource_types, code) is not None:
            conditions.append(criterion(resource_types, name, name, value))
        elif strict:
            raise Invalid.at(name, unknown_parameter(resource_types, code), "not-supported")
        else:
            ignored.append((name, unknown_parameter(resource_types, code)))
            continue
        applied.append((name, value))
    return Search(
        resource_types=resource_types,
        conditions=tuple(conditions),
        sort=sort,
        count=count,
        cursor=cursor,
        includes=tuple(includes),
        revincludes=tuple(revincludes),
        summary=summary,
        elements=elements,
        total=total,
        applied=tuple(applied),
        ignored=tuple(ignored),
    )


def page_size(value: str | None, default: int, maximum: int) -> int:
    """The page size ``_count`` asks for, capped at ``maximum`` (R4 search.html#count).

    ``_count=0`` asks for the total alone, as fhirpy's ``count()`` does.
    """
    if value is None:
        return min(default, maximum)
    digits = value.lstrip("0")
    if not (value.isascii() and value.isdigit()):
        raise Invalid.at("_count", f"_count must be a whole number, 0 or more, not {value[:40]!r}")
    if not digits:
        return 0
    # Compare lengths first: int() refuses numbers of thousands of digits.
    return maximum if len(digits) > len(str(maximum)) else min(int(digits), maximum)


def _sort(types: tuple[str, ...], name: str, value: str) -> tuple[SortKey, ...]:
    """``_sort=a,-b``: keys in priority order, ``-`` for descending (search.html#sort)."""
    keys = []
    for item in value.split(","):
        code = item.removeprefix("-")
        parameter = lookup(types, code) if code else None
        if parameter is None:
            raise Invalid.at(name, f"Cannot sort by {item!r}: not a search parameter of {', '.join(types)}")
        if parameter.type not in SORTABLE:
            raise Invalid.at(name, f"Cannot sort by {code}, a {parameter.type} parameter")
        keys.append(SortKey(parameter, descending=item.startswith("-")))
    return tuple(keys)


def _include(types: tuple[str, ...], name: str, value: str) -> list[Include]:
    """``_include``/``_revinclude`` ``=Source:param[:Target]``, ``Source:*`` or ``*``, with an
    optional ``:iterate`` (search.html#include); ``_revinclude=*`` has the source type ``*``."""
    code, _, modifier = name.partition(":")
    if modifier not in ("", "iterate"):
        raise Invalid.at(name, f"{code} takes no modifier but :iterate")
    iterate, reverse = modifier == "iterate", code == "_revinclude"
    if value == "*":
        # Every reference out of the matches; back, every resource of any type pointing at them.
        if reverse:
            return [Include("*", None, iterate=iterate, reverse=True)]
        return [Include(resource_type, None, iterate=iterate) for resource_type in types]
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise Invalid.at(
            name, f"{code} takes Type:parameter, Type:parameter:TargetType, Type:* or *, not {value[:70]!r}"
        )
    source, parameter_code, target = parts[0], parts[1], parts[2] if len(parts) == 3 else None
    if not is_resource_type(source):
        raise Invalid.at(name, f"{source!r} is not a resource type")
    if not (reverse or iterate or source in types):
        raise Invalid.at(name, f"_include={value} starts at {source}, which is not searched here; use _include:iterate")
    if parameter_code == "*" and target is None:
        return [Include(source, None, iterate=iterate, reverse=reverse)]
    parameter = parameters_for(source).get(parameter_code)
    if parameter is None or parameter.type != "reference":
        raise Invalid.at(name, f"{parameter_code!r} is not a reference parameter of {source}")
    if target is not None and parameter.targets and target not in parameter.targets:
        raise Invalid.at(name, f"{source}:{parameter_code} cannot refer to a {target}")
    pointing = (target,) if target else parameter.targets
    if reverse and not iterate and pointing and not set(pointing) & set(types):
        raise Invalid.at(name, f"_revinclude={value} does not point to {' or '.join(types)}, the types searched")
    return [Include(source, parameter, target, iterate, reverse)]


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise Invalid.at(name, f"{name} takes {', '.join(allowed)}, not {value[:40]!r}")
    return value


def _elements(name: str, value: str) -> tuple[str, ...]:
    """Top-level element names, in order, without repeats (search.html#elements)."""
    names = value.split(",")
    bad = [element for element in names if not _ELEMENT.fullmatch(element)]
    if bad:
        raise Invalid.at(name, f"_elements takes element names separated by commas; {bad[0][:40]!r} is not one")
    return tuple(dict.fromkeys(names))


def _check_type(types: tuple[str, ...], name: str, value: str) -> None:
    """``_type`` must list the types being searched (search.html#type), which the caller took from it."""
    for resource_type in value.split(","):
        if not is_resource_type(resource_type):
            raise Invalid.at(name, f"{resource_type[:40]!r} is not a resource type")
        if resource_type not in types:
            raise Invalid.at(name, f"{resource_type} is not among the types searched here ({', '.join(types)})")
