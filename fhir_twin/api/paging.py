"""Offset paging of the twin API's lists (``_count``, ``_offset``) and the links to the pages beside."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import request

from fhir_twin.errors import Invalid


def whole_number(name: str, default: int, low: int, high: int) -> int:
    """The query's ``name`` as a whole number in ``[low, high]``; 400 naming it otherwise."""
    values = request.args.getlist(name)
    if len(values) > 1:
        raise Invalid.at(name, f"{name} may be given only once")
    if not values:
        return default
    if not values[0].isdigit() or not low <= int(values[0]) <= high:
        raise Invalid.at(name, f"{name} must be a whole number from {low} to {high}, not {values[0][:40]!r}")
    return int(values[0])


def links(total: int, offset: int, count: int) -> dict[str, str | None]:
    """``next`` and ``previous``: this request's URL with ``_offset`` moved by ``count``."""

    def at(moved: int) -> str:
        query = [(name, value) for name, value in request.args.items(multi=True) if name != "_offset"]
        return f"{request.base_url}?{urlencode([*query, ('_offset', str(moved))])}"

    return {
        "next": at(offset + count) if offset + count < total else None,
        "previous": at(max(offset - count, 0)) if offset > 0 else None,
    }
