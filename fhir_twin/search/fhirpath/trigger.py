"""A SubscriptionTopic's ``resourceTrigger.fhirPathCriteria`` (R4B subscriptiontopic.html):
a FHIRPath expression over ``%previous`` and ``%current``, the versions before and after the
write (an empty collection for the side that does not exist), that fires when it is true."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import fhirpathpy

from fhir_twin.search.fhirpath import MODEL, check_syntax

Trigger = Callable[[dict[str, Any] | None, dict[str, Any] | None], bool]


def check_trigger(expression: str, base: str) -> None:
    """Raise ValueError unless ``expression`` parses strictly and runs on empty ``base`` versions."""
    check_syntax(expression)
    empty = {"resourceType": base}
    try:
        compile_trigger(expression)(empty, empty)
    except Exception as error:  # fhirpathpy raises plain Exceptions for arity and type errors
        raise ValueError(str(error)) from None


@cache
def compile_trigger(expression: str) -> Trigger:
    """The predicate of ``expression``: true when its result is the single value ``true``."""
    compiled = fhirpathpy.compile(expression, MODEL)

    def fires(previous: dict[str, Any] | None, current: dict[str, Any] | None) -> bool:
        focus = current if current is not None else previous
        result = compiled(focus or {}, {"previous": previous, "current": current})
        return result == [True]

    return fires
