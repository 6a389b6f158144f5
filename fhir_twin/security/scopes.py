"""SMART App Launch scopes, v1 (``patient/Observation.read``) and v2 (``patient/Observation.rs``).

A scope grants permissions (``c r u d s``) on one resource type or ``*`` at one level:
``patient`` (only the launch patient's compartment), ``user`` or ``system`` (unrestricted).
v1 ``read`` is ``rs``, ``write`` is ``cud``, ``*`` all five (SMART v2 scopes-and-launch-context,
"Scopes for requesting FHIR resources"). Other scopes (``openid``, ``launch/patient``...) grant
nothing here. A v2 scope narrowed by a query (``?category=...``) is not honoured, so grants
nothing rather than more than it says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

PERMISSIONS = "cruds"
_SCOPE = re.compile(r"^(patient|user|system)/([A-Za-z]+|\*)\.(read|write|\*|c?r?u?d?s?)$")
_V1 = {"read": "rs", "write": "cud", "*": PERMISSIONS}


@dataclass(frozen=True)
class Scope:
    """One resource scope: ``level`` patient, user or system; ``resource_type`` a type or ``*``."""

    level: str
    resource_type: str
    permissions: str

    def grants(self, resource_type: str, permission: str) -> bool:
        return self.resource_type in ("*", resource_type) and permission in self.permissions


def parse_scope(text: str) -> Scope | None:
    """The resource scope ``text`` states, or None for any other scope."""
    found = _SCOPE.match(text)
    if found is None:
        return None
    level, resource_type, permissions = found.groups()
    permissions = _V1.get(permissions, permissions)
    return Scope(level, resource_type, permissions) if permissions else None


@lru_cache(maxsize=1024)
def parse_scopes(text: str) -> tuple[Scope, ...]:
    """The resource scopes of a space-separated scope string (parsed once per string: every
    request's principal is built from its credential's)."""
    return tuple(scope for part in text.split() if (scope := parse_scope(part)) is not None)


def is_scope(text: str) -> bool:
    """Whether ``text`` is a well-formed SMART resource scope (what ``token create`` accepts)."""
    return parse_scope(text) is not None
