"""The principal the current request acts for, held for the request's whole call tree.

Bundle entries and operations route nested requests; they keep acting for the same principal.
The server acting for itself (the Digital Doctor) runs under a trusted principal instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from fhir_twin.security.principal import Principal

_CURRENT: ContextVar[Principal | None] = ContextVar("fhir_twin_principal", default=None)


def current() -> Principal | None:
    """Who the request in progress acts for; None outside any authenticated request."""
    return _CURRENT.get()


@contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Act as ``principal`` within the block."""
    token = _CURRENT.set(principal)
    try:
        yield principal
    finally:
        _CURRENT.reset(token)


def begin(principal: Principal) -> Token[Principal | None]:
    """Act as ``principal`` until ``end`` (for hooks that cannot hold a ``with`` block)."""
    return _CURRENT.set(principal)


def end(token: Token[Principal | None]) -> None:
    _CURRENT.reset(token)
