"""A search parameter as written → a ``Criterion``: the parameter a code names for the types
searched, its modifier (search.html#modifiers), chains (search.html#chaining) and ``_has``
(search.html#has); why an unknown code is not searched, naming the valid ones as HAPI does.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import replace

from fhir_twin.errors import Invalid
from fhir_twin.fhir.resource_types import is_resource_type
from fhir_twin.search.parameters import ID, UNSUPPORTED, SearchParameter, parameters_for
from fhir_twin.search.query import Criterion, ReverseChain
from fhir_twin.search.values import split, value_of

# search.html#modifiers, per parameter type; every type also takes :missing, and a reference
# parameter :[Type] for each type it can refer to.
MODIFIERS: dict[str, frozenset[str]] = {
    "string": frozenset({"exact", "contains"}),
    "token": frozenset({"not", "text", "of-type", "in", "not-in", "above", "below"}),
    "reference": frozenset({"identifier"}),
    "uri": frozenset({"below", "above"}),
}
# What a search takes besides search parameters (search.html#return), for error messages.
RESULT_PARAMETERS = ("_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total", "_has")


def lookup(types: tuple[str, ...], code: str) -> SearchParameter | None:
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
    return sorted(code for code in parameters_for(types[0]) if lookup(types, code) is not None)


def criterion(types: tuple[str, ...], path: str, name: str, value: str) -> Criterion:
    """``code[:modifier]`` with its values, or a chain ``code[:Type].rest`` (search.html#chaining)."""
    head, dot, rest = path.partition(".")
    code, colon, modifier = head.partition(":")
    parameter = lookup(types, code)
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
        return Criterion(parameter, modifier, chain_type=modifier, chain=criterion((modifier,), rest, name, value))
    code = re.split(r"[:.]", rest, maxsplit=1)[0]
    candidates = [target for target in parameter.targets if lookup((target,), code) is not None]
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
    return Criterion(parameter, chain_type=target, chain=criterion((target,), rest, name, value))


def reverse_chain(types: tuple[str, ...], path: str, name: str, value: str) -> ReverseChain:
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
        return ReverseChain(source, reference, reverse_chain((source,), rest, name, value))
    return ReverseChain(source, reference, criterion((source,), rest, name, value))


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
    return Criterion(
        parameter, modifier, tuple(value_of(parameter, modifier, name, part) for part in split(value, ","))
    )


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
