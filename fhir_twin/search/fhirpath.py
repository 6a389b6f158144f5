"""Evaluating search-parameter expressions: compiled fast paths, fhirpathpy for the rest.

A write indexes ~40 expressions per resource and fhirpathpy needs tens of microseconds for
each, so the forms almost every R4 expression takes (R4 searchparameter.html) are compiled
here to plain dict walks: ``Type.a.b``, ``Resource.meta.tag``, ``%resource.a``, choice
elements with or without ``as``/``.as()``/``.ofType()``, ``[n]``, ``where(resolve() is T)``,
``where(name='literal')``, a bare ``Type``, and ``|`` unions of those. Anything else is given
to fhirpathpy, compiled once per expression.

Every result carries its FHIR datatype, which the index conversions need (a dict may be a
Coding, an Identifier or a ContactPoint). The fast path tracks types statically along the path
with the element table of ``fhir_twin.fhir.definitions`` (exact, also for choice elements,
where the JSON name tells the type). fhirpathpy's nodes carry the types of its R4 model; only
values it computes itself (``exists() and ...`` gives a System Boolean) are typed by shape.

Both engines read the expressions in one dialect, the one HAPI's engine implements: ``as`` on
a collection filters it (fhirpathpy refuses more than one item, FHIRPath §6.3.3; R4 writes
``(Observation.component.value as Quantity)``), and type names are matched like HAPI's
case-insensitive ``hasType``, so ``value.as(DateTime)`` keeps a FHIR ``dateTime``. ``normalize``
rewrites an expression into fhirpathpy's strict reading of that dialect.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

import fhirpathpy
from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from antlr4.error.Errors import LexerNoViableAltException
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_twin.fhir.definitions import table

# Values of one FHIR datatype (None: unknown), in document order.
Group = tuple[str | None, list[Any]]


class Selector(Protocol):
    """What an expression selects from ``focus`` (``resource`` answers ``%resource``)."""

    def __call__(self, focus: Any, resource: dict[str, Any]) -> list[Group]: ...


# fmt: off
PRIMITIVES = frozenset({
    "boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary", "instant", "date",
    "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt", "positiveInt", "uuid", "xhtml",
})
# fmt: on
# Specialisations the R4 type hierarchy defines among the types an ``as`` names (datatypes.html).
_PARENT = {
    "code": "string",
    "id": "string",
    "markdown": "string",
    "canonical": "uri",
    "url": "uri",
    "oid": "uri",
    "uuid": "uri",
    "positiveInt": "integer",
    "unsignedInt": "integer",
    "Age": "Quantity",
    "Count": "Quantity",
    "Distance": "Quantity",
    "Duration": "Quantity",
    "MoneyQuantity": "Quantity",
    "SimpleQuantity": "Quantity",
}
# FHIRPath System types that name a FHIR primitive in HAPI's case-insensitive type tests.
_SYSTEM = {
    name[0].upper() + name[1:]: name for name in ("boolean", "string", "integer", "decimal", "date", "dateTime", "time")
}

_ID = r"[A-Za-z0-9\-.]{1,64}"
_TARGET = re.compile(rf"(?:^|.*/)([A-Z][A-Za-z]+)/({_ID})(?:/_history/{_ID})?$")


def reference_target(reference: str) -> tuple[str, str] | None:
    """``(type, id)`` of a RESTful reference, relative or absolute, versioned or not (R4 references.html)."""
    match = _TARGET.match(reference)
    return (match.group(1), match.group(2)) if match else None


def compile_expression(expression: str, base: str) -> Selector:
    """The selector for ``expression`` evaluated on a ``base``-typed focus: fast if it can be."""
    return fast_selector(expression, base) or engine_selector(expression, base)


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
        return _SYSTEM.get(name, name)

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
        type_name = _PARENT.get(type_name)
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
        return _distinct(groups) if groups else groups

    return select


def _distinct(groups: list[Group]) -> list[Group]:
    """Drop repeated values; ``1.0`` and ``1.00`` stay apart, as fhirpathpy compares their JSON text."""
    scalars: dict[tuple[bool, Any], list[Any]] = {}
    objects: list[Any] = []
    result: list[Group] = []
    for type_name, values in groups:
        kept = []
        for value in values:
            pool = objects if isinstance(value, dict | list) else scalars.setdefault((type(value) is bool, value), [])
            if not any(value == other and _text(value) == _text(other) for other in pool):
                pool.append(value)
                kept.append(value)
        if kept:
            result.append((type_name, kept))
    return result


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


# --- fhirpathpy ------------------------------------------------------------------------------

_RESOURCE_HEAD = re.compile(r"('[^']*')|(^|[\s(|])(?:Domain)?Resource\.")
_AS_OPERATOR = re.compile(r"('[^']*')|\s+as\s+([A-Za-z][\w.]*)|\.as\(")
_TYPE_ARGUMENT = re.compile(r"('[^']*')|\b(ofType|is)\((?:FHIR\.)?(\w+)\)|\bis\s+(?:FHIR\.)?(\w+)")


def normalize(expression: str, base: str) -> str:
    """``expression`` in fhirpathpy's strict FHIRPath, for a ``base``-typed focus.

    ``x as T`` becomes ``x.ofType(T)`` and System type names FHIR ones; a ``Resource.`` or
    ``DomainResource.`` head names the resource type, as fhirpathpy does not match a resource
    against the types it specialises.

    ``as`` binds tighter than ``|`` and looser than ``.``, so the rewrite is exact for the path
    operands the R4 expressions give it (not for arithmetic ones such as ``a + b as T``).
    """

    def rewrite_as(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        return f".ofType({match.group(2)})" if match.group(2) else ".ofType("

    def rename(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)
        if match.group(2):
            return f"{match.group(2)}({_SYSTEM.get(match.group(3), match.group(3))})"
        return f"is {_SYSTEM.get(match.group(4), match.group(4))}"

    def rehead(match: re.Match[str]) -> str:
        return match.group(1) or f"{match.group(2)}{base.partition('.')[0]}."

    return _TYPE_ARGUMENT.sub(rename, _AS_OPERATOR.sub(rewrite_as, _RESOURCE_HEAD.sub(rehead, expression)))


def _resolve(references: list[Any]) -> list[ResourceNode]:
    """fhirpathpy's ``resolve()``: a placeholder of the type each reference names, as ``_resolves_to`` reads it."""
    found = []
    for reference in references:
        target = reference.get("reference") if isinstance(reference, dict) else None
        parsed = reference_target(target) if isinstance(target, str) else None
        if parsed:
            found.append(ResourceNode.create_node({"resourceType": parsed[0], "id": parsed[1]}))
    return found


ENGINE_OPTIONS = {"userInvocationTable": {"resolve": {"fn": _resolve, "arity": {0: []}}}}
MODEL = models["r4"]


_ENGINE_LOCK = threading.Lock()


@cache
def engine_selector(expression: str, base: str) -> Selector:
    """fhirpathpy on ``normalize(expression)``; top-level ``|`` branches run apart so nodes keep their types."""
    compiled = [
        fhirpathpy.compile(branch, MODEL, {**ENGINE_OPTIONS, "returnRawData": True})
        for branch in split_union(normalize(expression, base))
    ]

    def select(focus: Any, resource: dict[str, Any]) -> list[Group]:
        root = focus if focus is resource else ResourceNode.create_node(focus, base)
        context = {"resource": resource, "rootResource": resource}
        # fhirpathpy keeps evaluation state in module globals: one evaluation at a time per process.
        with _ENGINE_LOCK:
            groups = [_engine_group(node) for function in compiled for node in function(root, context)]
        return _distinct(groups) if len(compiled) > 1 else groups

    return select


def _engine_group(node: Any) -> Group:
    if isinstance(node, ResourceNode):
        path = node.path or ""
        type_name = _SYSTEM.get(path.removeprefix("System."), path)
        if type_name in PRIMITIVES or type_name in table()["types"]:
            return type_name, [node.data]
        node = node.data
    return _infer_type(node), [node]


def _infer_type(value: Any) -> str | None:
    """The datatype of a value fhirpathpy computed rather than selected: System values by shape."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return value["resourceType"]
    return "decimal" if isinstance(value, float | Decimal) else None


def split_union(expression: str) -> list[str]:
    """The top-level ``|`` branches of ``expression`` (outside parentheses and string literals)."""
    branches, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(expression):
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "([":
            depth += 1
        elif not quoted and char in ")]":
            depth -= 1
        elif not quoted and depth == 0 and char == "|":
            branches.append(expression[start:index].strip())
            start = index + 1
    branches.append(expression[start:].strip())
    return branches


class _Refuse(ErrorListener):
    def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int, message: str, error: Any) -> None:
        raise ValueError(f"at character {column + 1}: {message}")


def check_expression(expression: str, base: str) -> None:
    """Raise ValueError unless ``expression`` parses strictly and runs on an empty ``base``.

    fhirpathpy's own parser recovers from syntax errors, so ``a.where(`` would otherwise pass
    and fail (or select nothing) only when a resource is evaluated — too late for a mapping file.
    """
    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Refuse())
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(_Refuse())
    try:
        parser.expression()
    except LexerNoViableAltException as error:
        raise ValueError(f"not a FHIRPath expression: {error}") from None
    if tokens.LA(1) != Token.EOF:
        raise ValueError(f"unexpected {tokens.LT(1).text!r} at character {tokens.LT(1).column + 1}")
    empty = {"resourceType": base}
    try:
        compile_expression(expression, base)(empty, empty)
    except Exception as error:  # fhirpathpy raises plain Exceptions for arity and type errors
        raise ValueError(str(error)) from None
