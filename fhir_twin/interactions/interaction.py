"""Which RESTful interaction a request is, what it needs, and how the audit trail names it: the
value matching a request against the route table gives (``routes.match``).

Names are R4's ``restful-interaction`` codes (http.html); ``action`` is ``AuditEvent.action``
(C R U D E) as IHE Basic Audit Log Patterns use it: a search, history of many resources, an
operation or a Bundle is an execute (E). ``permission`` is the SMART v2 letter an interaction
needs on ``resource_type`` (None: checked per entry or by the operation).
"""

from __future__ import annotations

from dataclasses import dataclass


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
