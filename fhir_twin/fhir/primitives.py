"""The strings and numbers a FHIR resource may hold, checked on the raw JSON (R4 datatypes.html).

Strings: R4 says they "SHOULD not contain Unicode character points below 32, except for u0009
(horizontal tab), u0010 (carriage return) and u0013 (line feed)". This server makes that a rule:
XML 1.0 cannot carry those characters, so a resource holding one could not be served as XML, and
PostgreSQL text cannot hold U+0000 at all, so the same body would be stored on SQLite and fail on
PostgreSQL. Refusing them gives one answer on every database and format.

Numbers: R4 decimals have no stated range, but ``1e400`` is no number the search index, the twin
or any client library's double can hold (it would become infinity, or a zero for ``1e-400``).
Numbers beyond IEEE 754 double precision's range are refused, naming the element.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from fhir_twin.errors import Issue

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def primitive_issues(resource: dict[str, Any]) -> list[Issue]:
    """An issue per string, property name or number in ``resource`` that FHIR cannot carry."""
    if _clean(resource):
        return []
    issues: list[Issue] = []
    resource_type = resource.get("resourceType")
    # An explicit stack rather than recursion: the depth of the body is the client's choice.
    stack: list[tuple[str, Any]] = [(resource_type if isinstance(resource_type, str) else "Resource", resource)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, dict):
            for key in value:
                if _CONTROL.search(key):
                    issues.append(_control_issue(f"A property name in {path}", key, path))
            # Pushed in reverse, so the issues come in document order.
            stack.extend((f"{path}.{key}", item) for key, item in reversed(value.items()) if not _CONTROL.search(key))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(value))))
        elif isinstance(value, str):
            if _CONTROL.search(value):
                issues.append(_control_issue(path, value, path))
        elif isinstance(value, int | Decimal) and not isinstance(value, bool) and not _in_range(value):
            issues.append(
                Issue(
                    "value",
                    f"{path} is {_shown(value)}, beyond the range of numbers this server holds "
                    "(IEEE 754 double precision: at most about 1.8e308 in magnitude, and not so small it rounds to 0)",
                    expression=(path,),
                )
            )
    return issues


def _clean(resource: dict[str, Any]) -> bool:
    """Whether nothing in ``resource`` needs an issue: what almost every write finds, checked
    without naming elements (a third of the time), the strings searched as one text."""
    strings: list[str] = []
    stack: list[Any] = [resource]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            strings.extend(node)
            values = node.values()
        else:
            values = node
        for value in values:
            kind = type(value)
            if kind is str:
                strings.append(value)
            elif kind is dict or kind is list:
                stack.append(value)
            elif kind is not bool and isinstance(value, int | Decimal) and not _in_range(value):
                return False
    return _CONTROL.search(" ".join(strings)) is None


def _in_range(number: int | Decimal) -> bool:
    """Whether ``number`` is zero or a finite, non-zero double (converting never builds huge ints)."""
    try:
        as_float = float(number)
    except OverflowError:
        return False
    return math.isfinite(as_float) and (as_float != 0 or number == 0)


def _shown(number: int | Decimal) -> str:
    """The number to four digits: the text the client sent may be thousands of digits long."""
    return f"{Decimal(number):.3e}"


def _control_issue(subject: str, text: str, path: str) -> Issue:
    found = _CONTROL.search(text)
    assert found is not None
    return Issue(
        "value",
        f"{subject} holds the control character U+{ord(found.group()):04X}; FHIR strings may hold no "
        "control character but tab, carriage return and line feed (R4 datatypes.html#string)",
        expression=(path,),
    )
