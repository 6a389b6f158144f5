"""Which RESTful interaction a request is, what it needs, and how the audit trail names it: the
value matching a request against the route table gives (``routes.match``).

Names are R4's ``restful-interaction`` codes (http.html); ``action`` is ``AuditEvent.action``
(C R U D E) as IHE Basic Audit Log Patterns use it: a search, history of many resources, an
operation or a Bundle is an execute (E). ``permission`` is the SMART v2 letter an interaction
needs on ``resource_type`` (None: checked per entry or by the operation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fhir_twin.errors import FhirError
from fhir_twin.interactions.message import Request, Response
from fhir_twin.security.principal import Principal
from fhir_twin.store.repository import DatabaseTransaction
from fhir_twin.store.version import Version


@dataclass(frozen=True)
class Interaction:
    name: str
    action: str
    resource_type: str | None = None
    resource_id: str | None = None
    version_id: str | None = None
    permission: str | None = None
    # Patient/{id}/{type}: the compartment searched.
    compartment: str | None = None
    operation: str | None = None


@dataclass(frozen=True)
class Completion:
    """What one interaction came to, as ``interaction_completed`` reports it: the principal it
    acted for, the answer or the error, and for a write the transaction it ran in (still open, so a
    listener writes in the same transaction) and the versions it wrote with their index rows."""

    principal: Principal | None
    interaction: Interaction
    request: Request
    response: Response | None
    error: FhirError | None
    tx: DatabaseTransaction | None = None
    written: Sequence[tuple[Version, list[Any]]] = ()
