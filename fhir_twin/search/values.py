"""One search value as written → a typed ``Value``, by the parameter's type (R4 search.html).

Prefixes (search.html#prefix), escapes (search.html#escaping: ``\\,``, ``\\$``, ``\\|`` and
``\\\\`` stand for the character itself), tokens, references, numbers with their implicit range,
quantities and composites. A value no resource can hold (an id with characters ids cannot have,
text with a NUL) is ``Unmatchable``: it finds nothing rather than failing.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal

from fhir_twin.errors import Invalid
from fhir_twin.fhir.instant import parse_range
from fhir_twin.fhir.resource_types import is_valid_id
from fhir_twin.search.parameters import ID, SearchParameter
from fhir_twin.search.query import (
    CompositeValue,
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    Unmatchable,
    UriValue,
    Value,
)

# search.html#prefix
PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_TYPE = re.compile(r"[A-Z][A-Za-z]{0,63}")
_ESCAPE = re.compile(r"\\([\\,$|])")
# Characters FHIR strings cannot contain (datatypes.html#string: below U+0020 but tab, CR, LF).
_NOT_IN_STRINGS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
# Exponents beyond this are refused rather than computed with (no FHIR value gets near them).
_MAX_EXPONENT = 1000


def value_of(parameter: SearchParameter, modifier: str | None, name: str, text: str) -> Value:
    """One value of ``parameter`` as written (still escaped), by the parameter's type."""
    if not text:
        raise Invalid.at(name, f"{name} has an empty value")
    kind = parameter.type
    if kind in ("string", "token", "reference", "uri") and _NOT_IN_STRINGS.search(text):
        return Unmatchable()
    if kind == "string":
        return StringValue(unescape(text))
    if kind == "token":
        return _token(parameter, modifier, name, text)
    if kind == "reference":
        return _reference(parameter, modifier, name, text)
    if kind == "uri":
        return UriValue(unescape(text))
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
        return TokenValue(None, unescape(text)) if is_valid_id(unescape(text)) else Unmatchable()
    if modifier == "text":
        return TokenValue(None, unescape(text))
    if modifier in ("in", "not-in"):
        return UriValue(unescape(text))
    if modifier == "of-type":
        parts = [unescape(part) for part in split(text, "|", 2)]
        if len(parts) != 3 or not all(parts):
            raise Invalid.at(name, f":of-type takes typeSystem|typeCode|value, not {text[:70]!r}")
        return TokenValue(None, parts[2], type_system=parts[0], type_code=parts[1])
    parts = split(text, "|", 1)
    if len(parts) == 1:
        return TokenValue(None, unescape(text))
    system, code = (unescape(part) or None for part in parts)
    if system is None and code is None:
        raise Invalid.at(name, f"{name} needs a system or a code around the |")
    return TokenValue(system, code, system_given=True)


def _reference(parameter: SearchParameter, modifier: str | None, name: str, text: str) -> Value:
    """``Type/id``, ``id``, an absolute URL, ``:Type`` with an id, ``:identifier`` with
    ``system|value`` (search.html#reference); an id part no id can be finds nothing."""
    if modifier == "identifier":
        parts = split(text, "|", 1)
        if len(parts) == 1:
            return ReferenceValue(None, None, identifier_value=unescape(text))
        system, value = (unescape(part) or None for part in parts)
        if system is None and value is None:
            raise Invalid.at(name, f"{name} needs a system or a value around the |")
        return ReferenceValue(None, None, identifier_system=system, identifier_value=value)
    raw = unescape(text)
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
    parts = split(rest, "|", 2)
    value, low, high = _number(name, parts[0])
    if len(parts) == 1:
        return QuantityValue(prefix, value, low, high, None, None)
    if len(parts) == 2 or not parts[2]:
        raise Invalid.at(name, f"A quantity is number, number|system|code or number||unit, not {text[:70]!r}")
    return QuantityValue(prefix, value, low, high, unescape(parts[1]) or None, unescape(parts[2]))


def _composite(parameter: SearchParameter, name: str, text: str) -> CompositeValue:
    """One value per component joined by ``$`` (search.html#composite)."""
    parts = split(text, "$")
    components = parameter.components
    if len(parts) != len(components):
        codes = "$".join(component.parameter.code for component in components)
        raise Invalid.at(
            name, f"{parameter.code} takes {len(components)} values joined by $ ({codes}), not {len(parts)}"
        )
    return CompositeValue(
        tuple(value_of(c.parameter, None, name, part) for c, part in zip(components, parts, strict=True))
    )


def split(text: str, separator: str, limit: int = -1) -> list[str]:
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


def unescape(text: str) -> str:
    """``\\,``, ``\\$``, ``\\|`` and ``\\\\`` to the character; other backslashes stay (search.html#escaping)."""
    return _ESCAPE.sub(r"\1", text)
