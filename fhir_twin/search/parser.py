"""Query string → ``Search`` (R4 search.html).

Repeated parameters are ANDed and the comma-separated values of one parameter ORed
(search.html#combining); ``\\,``, ``\\$``, ``\\|`` and ``\\\\`` stand for the character itself
(search.html#escaping). A parameter this server does not know, or declares unsupported, is
refused naming the valid ones when ``strict`` (HAPI's default), else left out of ``applied`` and
listed in ``ignored``; a known parameter with a bad value or a modifier that does not fit it is
always refused (search.html#errors). A value no resource can hold (an id with characters ids
cannot have, text with a NUL) is ``Unmatchable``: it finds nothing rather than failing.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace
from decimal import Context, Decimal

from fhir_twin.errors import Invalid
from fhir_twin.fhir.instant import parse_range
from fhir_twin.fhir.model import is_resource_type, is_valid_id
from fhir_twin.search.parameters import ID, UNSUPPORTED, SearchParameter, parameters_for
from fhir_twin.search.query import (
    CompositeValue,
    Condition,
    Criterion,
    DateValue,
    Include,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    ReverseChain,
    Search,
    SortKey,
    StringValue,
    TokenValue,
    Unmatchable,
    UriValue,
    Value,
)

# Parameters that format or shape the answer, handled by the transport or ignored harmlessly.
TRANSPORT_PARAMETERS = frozenset({"_format", "_pretty"})
# Parameters a client library sends that ask for nothing this server would do otherwise: fhirpy's
# count() adds Aidbox's _totalMethod=count next to _count=0, which answers the total anyway.
HARMLESS = frozenset({"_totalMethod"})

# search.html#prefix
PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})
# search.html#modifiers, per parameter type; every type also takes :missing, and a reference
# parameter :[Type] for each type it can refer to.
MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains"}),
    "token": frozenset({"not", "text", "of-type", "in", "not-in", "above", "below"}),
    "reference": frozenset({"identifier"}),
    "uri": frozenset({"below", "above"}),
}
SORTABLE = frozenset({"string", "token", "date", "number", "quantity", "uri", "reference"})
SUMMARY = ("true", "text", "data", "count", "false")
TOTAL = ("none", "estimate", "accurate")
# Result parameters that may appear once, without a modifier.
SINGLE = frozenset({"_count", "_cursor", "_sort", "_summary", "_total", "_elements"})
# What a search takes besides search parameters (search.html#return), for error messages.
RESULT_PARAMETERS = ("_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_has")

_CURSOR = re.compile(r"[A-Za-z0-9\-._~]{1,512}")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_ELEMENT = re.compile(r"[a-z][A-Za-z0-9]{0,63}")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_ESCAPE = re.compile(r"\\([\\,$|])")
# Characters FHIR strings cannot contain (datatypes.html#string: below U+0020 but tab, CR, LF).
_NOT_IN_STRINGS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Exponents beyond this are refused rather than computed with (no FHIR value gets near them).
_MAX_EXPONENT = 1000


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
            conditions.append(_reverse_chain(resource_types, name, name, value))
        elif code not in UNSUPPORTED and _lookup(resource_types, code) is not None:
            conditions.append(_criterion(resource_types, name, name, value))
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


# --- Parameters ---------------------------------------------------------------------------


def _lookup(types: tuple[str, ...], code: str) -> SearchParameter | None:
    """The parameter ``code`` of every type in ``types``, with the same type everywhere.

    For several types (a system search) it is the first type's definition with the targets of
    all of them: the store finds each type's own expression by code (search.html#all).
    """
    found = [parameters_for(resource_type).get(code) for resource_type in types]
    first = found[0]
    if first is None or any(other is None or _shape(other) != _shape(first) for other in found[1:]):
        return None
    if len(found) == 1:
        return first
    return replace(first, targets=tuple(dict.fromkeys(t for other in found if other for t in other.targets)))


def _shape(parameter: SearchParameter) -> tuple[str, ...]:
    return (parameter.type, *(component.parameter.type for component in parameter.components))


def unknown_parameter(types: tuple[str, ...], code: str) -> str:
    """Why ``code`` is not searched, and the parameters that are, as HAPI names them."""
    valid = valid_parameters(types)
    where = ", ".join(types) if len(types) <= 3 else "every type searched"
    if code in UNSUPPORTED:
        reason = f"The search parameter {code} is not supported by this server"
    elif len(types) > 1 and any(code in parameters_for(resource_type) for resource_type in types):
        reason = f"{code!r} is not a search parameter shared by every type searched ({', '.join(types)})"
    else:
        reason = f"Unknown search parameter {code!r} for {where}"
        close = difflib.get_close_matches(code, valid, n=1, cutoff=0.8)
        if close:
            reason += f" (did you mean {close[0]!r}?)"
    return (
        f"{reason}. Valid search parameters for {where} are: {', '.join(valid)}; "
        f"and the result parameters {', '.join(RESULT_PARAMETERS)}"
    )


def valid_parameters(types: tuple[str, ...]) -> list[str]:
    """The search parameters a search of ``types`` understands, sorted."""
    return sorted(code for code in parameters_for(types[0]) if _lookup(types, code) is not None)


def _criterion(types: tuple[str, ...], path: str, name: str, value: str) -> Criterion:
    """``code[:modifier]`` with its values, or a chain ``code[:Type].rest`` (search.html#chaining)."""
    head, dot, rest = path.partition(".")
    code, colon, modifier = head.partition(":")
    parameter = _lookup(types, code)
    if parameter is None:
        raise Invalid.at(name, f"{code!r} is not a search parameter of {', '.join(types)}")
    if colon and not modifier:
        raise Invalid.at(name, f"{name!r} has an empty modifier after {code}")
    if dot:
        return _chain(parameter, modifier or None, rest, name, value)
    return _values(parameter, modifier or None, name, value)


def _chain(parameter: SearchParameter, modifier: str | None, rest: str, name: str, value: str) -> Criterion:
    """``reference[:Type].parameter…``: the referenced resource must meet the rest of the chain."""
    if parameter.type != "reference":
        raise Invalid.at(
            name, f"Only reference parameters can be chained; {parameter.code} is a {parameter.type} parameter"
        )
    if modifier is not None:
        if modifier not in parameter.targets:
            raise Invalid.at(
                name, f"{parameter.code}:{modifier} cannot be chained: {parameter.code} cannot refer to a {modifier!r}"
            )
        return Criterion(parameter, modifier, chain_type=modifier, chain=_criterion((modifier,), rest, name, value))
    code = re.split(r"[:.]", rest, maxsplit=1)[0]
    candidates = [target for target in parameter.targets if _lookup((target,), code) is not None]
    if not candidates:
        where = parameter.targets[0] if len(parameter.targets) == 1 else f"any type {parameter.code} refers to"
        raise Invalid.at(name, f"{code!r} is not a search parameter of {where}")
    if len(candidates) > 1:
        raise Invalid.at(
            name,
            f"{parameter.code}.{code} is ambiguous: {code!r} is a parameter of {', '.join(candidates)}, which "
            f"{parameter.code} can all refer to; name the type, as in {parameter.code}:{candidates[0]}.{rest}",
        )
    target = candidates[0]
    return Criterion(parameter, chain_type=target, chain=_criterion((target,), rest, name, value))


def _reverse_chain(types: tuple[str, ...], path: str, name: str, value: str) -> ReverseChain:
    """``_has:Source:reference:criterion``, possibly nested (search.html#has)."""
    parts = path.split(":", 3)
    if len(parts) < 4 or not all(parts):
        raise Invalid.at(name, "_has takes the form _has:Type:reference:parameter, as in _has:Observation:patient:code")
    _, source, code, rest = parts
    if not is_resource_type(source):
        raise Invalid.at(name, f"{source!r} in {name!r} is not a resource type")
    reference = parameters_for(source).get(code)
    if reference is None or reference.type != "reference":
        raise Invalid.at(name, f"{code!r} is not a reference parameter of {source}")
    if reference.targets and not set(reference.targets) & set(types):
        raise Invalid.at(name, f"{source}.{code} cannot refer to {' or '.join(types)}")
    if rest.startswith("_has:"):
        return ReverseChain(source, reference, _reverse_chain((source,), rest, name, value))
    return ReverseChain(source, reference, _criterion((source,), rest, name, value))


# --- Values -------------------------------------------------------------------------------


def _values(parameter: SearchParameter, modifier: str | None, name: str, value: str) -> Criterion:
    """One criterion: ``:missing=true|false``, or comma-separated values ORed."""
    allowed = _modifiers(parameter)
    if modifier is not None and modifier not in allowed:
        if parameter.type == "reference" and modifier[:1].isupper():
            raise Invalid.at(name, f"{parameter.code} cannot refer to a {modifier!r}")
        takes = [f":{m}" for m in sorted(allowed) if not m[:1].isupper()]
        if parameter.type == "reference":
            takes.append(":[Type]")
        kind = f"{parameter.code} is a {parameter.type} parameter"
        raise Invalid.at(name, f"{kind}: :{modifier} does not apply; it takes {', '.join(takes)}")
    if modifier == "missing":
        if value not in ("true", "false"):
            raise Invalid.at(name, f":missing takes true or false, not {value[:40]!r}")
        return Criterion(parameter, modifier, missing=value == "true")
    return Criterion(parameter, modifier, tuple(_value(parameter, modifier, name, part) for part in _split(value, ",")))


def _modifiers(parameter: SearchParameter) -> frozenset[str]:
    """The modifiers ``parameter`` takes (search.html#modifiers)."""
    if parameter.code == ID:  # every resource has an id: :missing would be meaningless
        return frozenset({"not"})
    allowed = MODIFIERS.get(parameter.type, frozenset()) | {"missing"}
    if parameter.type == "token" and not _is_identifier(parameter):
        allowed -= {"of-type"}
    if parameter.type == "reference":
        allowed |= set(parameter.targets)
    return allowed


def _is_identifier(parameter: SearchParameter) -> bool:
    """Whether every branch of the expression ends at an ``Identifier`` (``…identifier``, ``as Identifier``)."""
    branches = (parameter.expression or "").split("|")
    return all(re.search(r"identifier\W*$", branch.strip(), re.IGNORECASE) for branch in branches)


def _value(parameter: SearchParameter, modifier: str | None, name: str, text: str) -> Value:
    """One value of ``parameter`` as written (still escaped), by the parameter's type."""
    if not text:
        raise Invalid.at(name, f"{name} has an empty value")
    kind = parameter.type
    if kind in ("string", "token", "reference", "uri") and _NOT_IN_STRINGS.search(text):
        return Unmatchable()
    if kind == "string":
        return StringValue(_unescape(text))
    if kind == "token":
        return _token(parameter, modifier, name, text)
    if kind == "reference":
        return _reference(parameter, modifier, name, text)
    if kind == "uri":
        return UriValue(_unescape(text))
    if kind == "date":
        prefix, rest = _prefixed(text)
        try:
            low, high = parse_range(rest)
        except ValueError:
            raise Invalid.at(name, f"{rest[:40]!r} is not a date, such as 2024, 2024-03 or 2024-03-05T10:00Z") from None
        return DateValue(prefix, low, high)
    if kind == "number":
        prefix, rest = _prefixed(text)
        return NumberValue(prefix, *_number(name, rest))
    if kind == "quantity":
        return _quantity(name, text)
    return _composite(parameter, name, text)


def _token(parameter: SearchParameter, modifier: str | None, name: str, text: str) -> Value:
    """``code``, ``system|code``, ``system|``, ``|code`` (search.html#token) and the forms modifiers take."""
    if parameter.code == ID:
        return TokenValue(None, _unescape(text)) if is_valid_id(_unescape(text)) else Unmatchable()
    if modifier == "text":
        return TokenValue(None, _unescape(text))
    if modifier in ("in", "not-in"):
        return UriValue(_unescape(text))
    if modifier == "of-type":
        parts = [_unescape(part) for part in _split(text, "|", 2)]
        if len(parts) != 3 or not all(parts):
            raise Invalid.at(name, f":of-type takes typeSystem|typeCode|value, not {text[:70]!r}")
        return TokenValue(None, parts[2], type_system=parts[0], type_code=parts[1])
    parts = _split(text, "|", 1)
    if len(parts) == 1:
        return TokenValue(None, _unescape(text))
    system, code = (_unescape(part) or None for part in parts)
    if system is None and code is None:
        raise Invalid.at(name, f"{name} needs a system or a code around the |")
    return TokenValue(system, code, system_given=True)


def _reference(parameter: SearchParameter, modifier: str | None, name: str, text: str) -> Value:
    """``Type/id``, ``id``, an absolute URL, ``:Type`` with an id, ``:identifier`` with
    ``system|value`` (search.html#reference); an id part no id can be finds nothing."""
    if modifier == "identifier":
        parts = _split(text, "|", 1)
        if len(parts) == 1:
            return ReferenceValue(None, None, identifier_value=_unescape(text))
        system, value = (_unescape(part) or None for part in parts)
        if system is None and value is None:
            raise Invalid.at(name, f"{name} needs a system or a value around the |")
        return ReferenceValue(None, None, identifier_system=system, identifier_value=value)
    raw = _unescape(text)
    if modifier is not None:
        written_type, slash, resource_id = raw.rpartition("/")
        if (slash and written_type != modifier) or not resource_id:
            raise Invalid.at(name, f"With :{modifier} the value must be the id of a {modifier}, not {raw[:70]!r}")
        return ReferenceValue(modifier, resource_id) if is_valid_id(resource_id) else Unmatchable()
    if ":" in raw:
        if not _SCHEME.fullmatch(raw):
            raise Invalid.at(name, f"{raw[:70]!r} is neither Type/id, an id nor an absolute URL")
        return ReferenceValue(None, None, url=raw)
    if "/" not in raw:
        return ReferenceValue(None, raw) if is_valid_id(raw) else Unmatchable()
    written_type, _, resource_id = raw.partition("/")
    if not _TYPE.fullmatch(written_type) or not resource_id or "/" in resource_id:
        raise Invalid.at(name, f"{raw[:70]!r} is neither Type/id, an id nor an absolute URL")
    if parameter.targets and written_type not in parameter.targets:
        raise Invalid.at(name, f"{parameter.code} cannot refer to a {written_type}")
    return ReferenceValue(written_type, resource_id) if is_valid_id(resource_id) else Unmatchable()


def _prefixed(text: str) -> tuple[str, str]:
    """The comparison prefix (``eq`` when none) and the rest (search.html#prefix)."""
    return (text[:2], text[2:]) if text[:2] in PREFIXES else ("eq", text)


def _number(name: str, text: str) -> tuple[Decimal, Decimal, Decimal]:
    """The number and the range ``[low, high)`` of half a unit of its last significant digit
    either side (search.html#number: ``100`` is [99.5, 100.5), ``1e2`` is [50, 150))."""
    if not _NUMBER.fullmatch(text):
        raise Invalid.at(name, f"{text[:40]!r} is not a number, such as 100, 0.25 or 1e-3")
    value = Decimal(text)
    digits, exponent = value.as_tuple().digits, value.as_tuple().exponent
    if not isinstance(exponent, int) or abs(exponent) > _MAX_EXPONENT or abs(value.adjusted()) > _MAX_EXPONENT:
        raise Invalid.at(name, f"{text[:40]!r} is too large or too small a number to search for")
    half = Decimal((0, (5,), exponent - 1))
    # Enough digits for the exact sum: one more at the end, one for a carry.
    context = Context(prec=len(digits) + 2)
    return value, context.subtract(value, half), context.add(value, half)


def _quantity(name: str, text: str) -> QuantityValue:
    """``[prefix]number``, ``number|system|code`` or ``number||unit`` (search.html#quantity)."""
    prefix, rest = _prefixed(text)
    parts = _split(rest, "|", 2)
    value, low, high = _number(name, parts[0])
    if len(parts) == 1:
        return QuantityValue(prefix, value, low, high, None, None)
    if len(parts) == 2 or not parts[2]:
        raise Invalid.at(name, f"A quantity is number, number|system|code or number||unit, not {text[:70]!r}")
    return QuantityValue(prefix, value, low, high, _unescape(parts[1]) or None, _unescape(parts[2]))


def _composite(parameter: SearchParameter, name: str, text: str) -> CompositeValue:
    """One value per component joined by ``$`` (search.html#composite)."""
    parts = _split(text, "$")
    components = parameter.components
    if len(parts) != len(components):
        codes = "$".join(component.parameter.code for component in components)
        raise Invalid.at(
            name, f"{parameter.code} takes {len(components)} values joined by $ ({codes}), not {len(parts)}"
        )
    return CompositeValue(
        tuple(_value(c.parameter, None, name, part) for c, part in zip(components, parts, strict=True))
    )


def _split(text: str, separator: str, limit: int = -1) -> list[str]:
    """``text`` split at unescaped ``separator``s (at most ``limit`` times); escapes are kept."""
    parts: list[str] = []
    start = index = 0
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == separator and len(parts) != limit:
            parts.append(text[start:index])
            start = index + 1
        index += 1
    parts.append(text[start:])
    return parts


def _unescape(text: str) -> str:
    """``\\,``, ``\\$``, ``\\|`` and ``\\\\`` to the character; other backslashes stay (search.html#escaping)."""
    return _ESCAPE.sub(r"\1", text)


# --- Result parameters (search.html#return) ------------------------------------------------


def _sort(types: tuple[str, ...], name: str, value: str) -> tuple[SortKey, ...]:
    """``_sort=a,-b``: keys in priority order, ``-`` for descending (search.html#sort)."""
    keys = []
    for item in value.split(","):
        code = item.removeprefix("-")
        parameter = _lookup(types, code) if code else None
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
