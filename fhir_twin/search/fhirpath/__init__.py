"""Evaluating search-parameter expressions: compiled fast paths, fhirpathpy for the rest.

A write indexes ~40 expressions per resource and fhirpathpy needs tens of microseconds for
each, so the forms almost every R4 expression takes (R4 searchparameter.html) are compiled
to plain dict walks (``compiled``): ``Type.a.b``, ``Resource.meta.tag``, ``%resource.a``, choice
elements with or without ``as``/``.as()``/``.ofType()``, ``[n]``, ``where(resolve() is T)``,
``where(name='literal')``, a bare ``Type``, and ``|`` unions of those. Anything else is given
to fhirpathpy, compiled once per expression.

Every result carries its FHIR datatype (``results``). The fast path (``compiled``) tracks types
statically along the path with the element table; fhirpathpy (``engine``) takes its R4 model's.

Both engines read the expressions in one dialect, the one HAPI's engine implements: ``as`` on
a collection filters it (fhirpathpy refuses more than one item, FHIRPath §6.3.3; R4 writes
``(Observation.component.value as Quantity)``), and type names are matched like HAPI's
case-insensitive ``hasType``, so ``value.as(DateTime)`` keeps a FHIR ``dateTime``. ``normalize``
rewrites an expression into fhirpathpy's strict reading of that dialect.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from antlr4 import CommonTokenStream, InputStream, Token
from antlr4.error.ErrorListener import ErrorListener
from antlr4.error.Errors import LexerNoViableAltException
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

from fhir_twin.search.fhirpath.compiled import fast_selector
from fhir_twin.search.fhirpath.engine import (
    ENGINE_OPTIONS,
    MODEL,
    engine_nodes,
    engine_selector,
    normalize,
    split_union,
)
from fhir_twin.search.fhirpath.results import PRIMITIVES, Group, Selector, reference_target

__all__ = [
    "ENGINE_OPTIONS",
    "MODEL",
    "PRIMITIVES",
    "Group",
    "Selector",
    "check_expression",
    "check_syntax",
    "compile_expression",
    "engine_nodes",
    "engine_selector",
    "fast_selector",
    "normalize",
    "reference_target",
    "split_union",
]


def compile_expression(expression: str, base: str) -> Selector:
    """The selector for ``expression`` evaluated on a ``base``-typed focus: fast if it can be."""
    return fast_selector(expression, base) or engine_selector(expression, base)


class _Refuse(ErrorListener):
    def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int, message: str, error: Any) -> None:
        raise ValueError(f"at character {column + 1}: {message}")


@lru_cache(maxsize=1024)
def check_expression(expression: str, base: str) -> None:
    """Raise ValueError unless ``expression`` parses strictly and runs on an empty ``base``.

    fhirpathpy's own parser recovers from syntax errors, so ``a.where(`` would otherwise pass
    and fail (or select nothing) only when a resource is evaluated — too late for a mapping file.
    An expression that passed is remembered: each app a process builds checks the same mapping
    files, and the strict parse was about a third of building one.
    """
    check_syntax(expression)
    empty = {"resourceType": base}
    try:
        compile_expression(expression, base)(empty, empty)
    except Exception as error:  # fhirpathpy raises plain Exceptions for arity and type errors
        raise ValueError(str(error)) from None


def check_syntax(expression: str) -> None:
    """Raise ValueError unless ``expression`` parses strictly as FHIRPath (see ``check_expression``)."""
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
