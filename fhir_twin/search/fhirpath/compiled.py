"""Search expressions compiled to plain dict walks, for the forms almost every R4 expression takes.

A write indexes ~40 expressions per resource and fhirpathpy needs tens of microseconds for
each, so the forms almost every R4 expression takes (R4 searchparameter.html) are compiled
here to plain dict walks: ``Type.a.b``, ``Resource.meta.tag``, ``%resource.a``, choice
elements with or without ``as``/``.as()``/``.ofType()``, ``[n]``, ``where(resolve() is T)``,
``where(name='literal')``, a bare ``Type``, and ``|`` unions of those. ``fast_selector`` answers
None for anything else, which ``engine`` runs.

Types are tracked statically along the path with the element table of
``fhir_twin.fhir.definitions`` (exact, also for choice elements, where the JSON name tells the
type).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from fhir_twin.fhir.definitions import table
from fhir_twin.search.fhirpath.results import PARENT, PRIMITIVES, SYSTEM, Group, Selector, distinct, reference_target


@cache
def fast_selector(expression: str, base: str) -> Selector | None:
    """The compiled walk for ``expression``, or None when it is not one of the fast forms."""
    if expression in _BY_HAND:
        return _BY_HAND[expression]
    try:
        branches = _Parser(expression).parse()
        programs = [_Compiler(base, branch).program() for branch in branches]
    except _NotFast:
        return None
    live = [program for program in programs if program is not None]
    return _union(live) if len(branches) > 1 else live[0] if live else _nothing


def _nothing(focus: Any, resource: dict[str, Any]) -> list[Group]:
    return []


def _patient_deceased(focus: Any, resource: dict[str, Any]) -> list[Group]:
    """``Patient.deceased.exists() and Patient.deceased != false``: every Patient is indexed
    ``true`` or ``false``; by hand because it is the one R4 expression outside the fast forms
    and Patient writes are common."""
    deceased = [focus[key] for key in ("deceasedBoolean", "deceasedDateTime") if key in focus]
    if not deceased:
        return [("boolean", [False])]
    return [("boolean", [deceased[0] is not False])]


_BY_HAND: dict[str, Selector] = {"Patient.deceased.exists() and Patient.deceased != false": _patient_deceased}

# --- parsing ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(%?[A-Za-z_]\w*)|('[^'\\]*')|(\d+)|([().|\[\]=]))")


class _NotFast(Exception):
    """The expression needs the real engine."""


# A step: ("head", name), ("child", name), ("type", T), ("index", n), ("resolve", T), ("equals", name, text).
Step = tuple[str, ...]


class _Parser:
    """Recursive descent over the fast forms; anything else raises ``_NotFast``."""

    def __init__(self, expression: str) -> None:
        self.tokens: list[str] = []
        position, end = 0, len(expression.rstrip())
        while position < end:
            match = _TOKEN.match(expression, position)
            if not match:
                raise _NotFast
            self.tokens.append(match.group(match.lastindex or 0))
            position = match.end()
        self.at = 0

    def parse(self) -> list[list[Step]]:
        branches = [self._branch()]
        while self._take("|"):
            branches.append(self._branch())
        if self.at != len(self.tokens):
            raise _NotFast
        return branches

    def _peek(self) -> str | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self, token: str) -> bool:
        if self._peek() == token:
            self.at += 1
            return True
        return False

    def _expect(self, token: str) -> None:
        if not self._take(token):
            raise _NotFast

    def _name(self) -> str:
        token = self._peek()
        if token is None or not (token[0].isalpha() or token[0] in "_%"):
            raise _NotFast
        self.at += 1
        return token

    def _type(self) -> str:
        name = self._name().removeprefix("FHIR.")
        return SYSTEM.get(name, name)

    def _branch(self) -> list[Step]:
        if self._take("("):
            steps = self._branch()
            self._expect(")")
        else:
            steps = [("head", self._name())]
        while True:
            if self._take("."):
                steps.append(self._step())
            elif self._take("["):
                index = self._peek()
                if index is None or not index.isdigit():
                    raise _NotFast
                self.at += 1
                self._expect("]")
                steps.append(("index", index))
            elif self._take("as"):
                steps.append(("type", self._type()))
            else:
                return steps

    def _step(self) -> Step:
        name = self._name()
        if name in ("as", "ofType") and self._take("("):
            step: Step = ("type", self._type())
        elif name == "where" and self._take("("):
            step = self._condition()
        elif self._peek() == "(":
            raise _NotFast
        else:
            return ("child", name)
        self._expect(")")
        return step

    def _condition(self) -> Step:
        name = self._name()
        if name == "resolve" and self._take("("):
            self._expect(")")
            self._expect("is")
            return ("resolve", self._type())
        self._expect("=")
        literal = self._peek()
        if literal is None or not literal.startswith("'"):
            raise _NotFast
        self.at += 1
        return ("equals", name, literal[1:-1])


# --- compiling -------------------------------------------------------------------------------

# A compiled tail of a path: from the values reached so far to typed groups.
Program = Callable[[list[Any]], list[Group]]


@cache
def _elements(type_name: str) -> dict[str, tuple[str, bool]]:
    types: dict[str, dict[str, list[Any]]] = table()["types"]
    if type_name not in types:
        raise _NotFast
    return {name: (child, is_array) for name, (child, _, is_array) in types[type_name].items()}


@cache
def _candidates(type_name: str, name: str) -> tuple[tuple[str, str], ...]:
    """The JSON names and types ``name`` selects on ``type_name``: itself, or each ``nameType`` of a choice."""
    elements = _elements(type_name)
    if name in elements:
        return ((name, elements[name][0]),)
    return tuple((key, child) for key, (child, _) in elements.items() if key == name + child[:1].upper() + child[1:])


def _is_a(type_name: str | None, wanted: str) -> bool:
    """``type_name`` is ``wanted`` or specialises it (HAPI compares names ignoring case)."""
    while type_name is not None:
        if type_name.lower() == wanted.lower():
            return True
        type_name = PARENT.get(type_name)
    return False


def _is_resource(type_name: str) -> bool:
    return "." not in type_name and "implicitRules" in _elements(type_name)


class _Compiler:
    """Turns one branch into a ``Program``, resolving element names and types along the path."""

    def __init__(self, base: str, steps: list[Step]) -> None:
        self.base = base
        self.steps = steps

    def program(self) -> Selector | None:
        """The branch as a selector, or None when it can select nothing from a ``base`` focus."""
        (kind, *args), rest = self.steps[0], self.steps[1:]
        head = args[0] if kind == "head" else None
        if head == "%resource":
            return self._from_resource(rest)
        if head == self.base or (head in ("Resource", "DomainResource") and _is_resource(self.base)):
            tail = self._build(rest, 0, self.base, False)
        elif head is not None and head[0].islower():
            tail = self._build([("child", head), *rest], 0, self.base, False)
        else:
            raise _NotFast
        if tail is None:
            return None
        return lambda focus, resource: tail([focus])

    def _from_resource(self, rest: list[Step]) -> Selector | None:
        root = self.base.partition(".")[0]
        tail = self._build(rest, 0, root, False)
        if tail is None:
            return None
        return lambda focus, resource: tail([resource]) if resource.get("resourceType") == root else []

    def _build(self, steps: list[Step], at: int, type_name: str, forked: bool) -> Program | None:
        """The program for ``steps[at:]`` on values of ``type_name``; ``forked`` once choices split the path."""
        if at == len(steps):
            return _resources if type_name == "Resource" else _typed(type_name)
        kind, *args = steps[at]
        if kind == "type":
            return self._build(steps, at + 1, type_name, forked) if _is_a(type_name, args[0]) else None
        if kind == "head":
            raise _NotFast
        if kind == "child":
            if type_name == "Resource" or type_name in PRIMITIVES:
                raise _NotFast
            found = _candidates(type_name, args[0])
            if not found:
                raise _NotFast
            forks = forked or len(found) > 1
            branches = [(key, self._build(steps, at + 1, child_type, forks)) for key, child_type in found]
            return _children([(key, tail) for key, tail in branches if tail is not None])
        tail = self._build(steps, at + 1, type_name, forked)
        if tail is None:
            return None
        if kind == "index" and not forked:
            return _index(int(args[0]), tail)
        if kind == "resolve" and type_name == "Reference":
            return _filter(lambda value: _resolves_to(value, args[0]), tail)
        if kind == "equals" and self._is_single_primitive(type_name, args[0]):
            return _filter(lambda value: value.get(args[0]) == args[1], tail)
        raise _NotFast

    @staticmethod
    def _is_single_primitive(type_name: str, name: str) -> bool:
        child, is_array = _elements(type_name).get(name, ("", True))
        return child in PRIMITIVES and not is_array


def _typed(type_name: str) -> Program:
    return lambda values: [(type_name, values)]


def _resources(values: list[Any]) -> list[Group]:
    return [(value.get("resourceType"), [value]) for value in values]


def _children(branches: list[tuple[str, Program]]) -> Program | None:
    """Step into ``key`` (one per choice type), flattening arrays; each key goes on with its own tail."""
    if not branches:
        return None

    def step(values: list[Any]) -> list[Group]:
        groups: list[Group] = []
        for key, tail in branches:
            found: list[Any] = []
            for value in values:
                if type(value) is dict and (child := value.get(key)) is not None:
                    if type(child) is list:
                        found.extend(item for item in child if item is not None)
                    else:
                        found.append(child)
            if found:
                groups.extend(tail(found))
        return groups

    return step


def _index(index: int, tail: Program) -> Program:
    return lambda values: tail(values[index : index + 1]) if len(values) > index else []


def _filter(keep: Callable[[dict[str, Any]], bool], tail: Program) -> Program:
    def step(values: list[Any]) -> list[Group]:
        kept = [value for value in values if type(value) is dict and keep(value)]
        return tail(kept) if kept else []

    return step


def _resolves_to(reference: dict[str, Any], type_name: str) -> bool:
    """``resolve() is T`` without fetching: the type a reference names (contained and urn: ones name none)."""
    target = reference.get("reference")
    parsed = reference_target(target) if isinstance(target, str) else None
    return parsed is not None and parsed[0] == type_name


def _union(selectors: list[Selector]) -> Selector:
    """``a | b``: the values of each, equal ones once (FHIRPath §6.5, union)."""

    def select(focus: Any, resource: dict[str, Any]) -> list[Group]:
        groups = [group for selector in selectors for group in selector(focus, resource)]
        return distinct(groups) if groups else groups

    return select
