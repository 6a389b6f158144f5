"""The party a request acts for, as its credential says."""

from __future__ import annotations

from dataclasses import dataclass, field

from fhir_twin.security.scopes import Scope, parse_scopes

# The auditor role (issue "Security and audit"): the audit trail and provenance, read and searched.
AUDITOR_SCOPES = "user/AuditEvent.rs user/Provenance.rs"


@dataclass(frozen=True)
class Principal:
    """``name`` is what the audit trail calls it: the token's name, or the JWT's client.

    ``patient`` is the launch patient of a patient-context credential: its ``patient/`` scopes
    reach only that patient's compartment. ``trusted`` is the server acting for itself (the
    Digital Doctor writing its assessments), which scopes do not limit.
    """

    name: str
    scope: str = ""
    patient: str | None = None
    user: str | None = None
    kind: str = "token"
    trusted: bool = False
    # The client's network address, for the audit trail.
    address: str | None = None
    scopes: tuple[Scope, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", parse_scopes(self.scope))


# Auth mode "none": every request acts as this, with every permission.
ANONYMOUS = Principal("anonymous", "system/*.cruds", kind="none")
