"""The shape of a JSON Patch document (RFC 6902 section 4), checked before anything is applied.

jsonpatch checks members lazily, while applying, and then fails with ``KeyError`` or
``JsonPointerException``; a patch a client got wrong is a 400 naming the operation and the member
instead (R4 http.html#patch: the server "SHALL return 400" for a patch document it cannot use).
"""

from __future__ import annotations

from typing import Any

from jsonpointer import JsonPointer, JsonPointerException

from fhir_twin.errors import Invalid

#: Each operation and the members it needs besides ``op`` and ``path`` (RFC 6902 sections 4.1-4.6).
MEMBERS: dict[str, tuple[str, ...]] = {
    "add": ("value",),
    "remove": (),
    "replace": ("value",),
    "move": ("from",),
    "copy": ("from",),
    "test": ("value",),
}


def check_patch(document: Any) -> None:
    """Raise a 400 naming the first operation of ``document`` that RFC 6902 does not allow."""
    if not isinstance(document, list):
        raise Invalid("A JSON Patch document is a JSON array of operations")
    for number, operation in enumerate(document):
        where = f"The JSON Patch document is malformed: operation {number}"
        if not isinstance(operation, dict):
            raise Invalid(f"{where} is not a JSON object")
        op = operation.get("op")
        if not isinstance(op, str) or op not in MEMBERS:
            raise Invalid(f"{where} has op {op!r}; it must be one of {', '.join(MEMBERS)}")
        for member in ("path", *MEMBERS[op]):
            if member not in operation:
                raise Invalid(f"{where} ({op}) has no {member!r} member")
        for member in ("path", "from"):
            if member in operation:
                _check_pointer(operation[member], f"{where} ({op}) {member!r}")


def _check_pointer(pointer: Any, where: str) -> None:
    """A JSON Pointer (RFC 6901) is empty or starts with ``/``, and ``~`` only escapes 0 or 1."""
    if not isinstance(pointer, str):
        raise Invalid(f"{where} must be a JSON Pointer string")
    try:
        JsonPointer(pointer)
    except JsonPointerException as exc:
        raise Invalid(f"{where} {pointer[:100]!r} is not a JSON Pointer: {exc}") from None
