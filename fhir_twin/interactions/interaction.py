"""Which RESTful interaction a request is, what it needs, and how the audit trail names it.

Names are R4's ``restful-interaction`` codes (http.html); ``action`` is ``AuditEvent.action``
(C R U D E) as IHE Basic Audit Log Patterns use it: a search, history of many resources, an
operation or a Bundle is an execute (E). ``permission`` is the SMART v2 letter an interaction
needs on ``resource_type`` (None: checked per entry or by the operation).
"""

from __future__ import annotations

from dataclasses import dataclass

from fhir_twin.fhir.model import is_resource_type


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


def classify(method: str, path: str) -> Interaction:
    """The interaction ``method`` on ``path`` (relative to the base) asks for, following the
    router's table; what the router would refuse is classified as the nearest interaction.

    Only a shape the router serves names a resource instance: the Guard checks an instance
    before the router runs, so an unroutable path naming one (``Type/id/x``, ``POST Type/id``)
    would otherwise answer 404 for another patient's id but 404 "Unknown path" or 405 for an
    unused one (R4 security.html: do not reveal what the client may not see).
    """
    segments = [segment for segment in path.strip("/").split("/") if segment]
    method = "GET" if method == "HEAD" else method.upper()
    if segments and segments[-1].startswith("$"):
        res_type = segments[0] if len(segments) > 1 else None
        res_id = segments[1] if len(segments) == 3 else None
        return Interaction("operation", "E", res_type, res_id, operation=segments[-1][1:])
    if not segments:
        if method == "POST":
            return Interaction("transaction", "E")
        return Interaction("search-system", "E", permission="s")
    head, rest = segments[0], segments[1:]
    if head == "metadata" and not rest and method == "GET":
        # Only this is the (unaudited) capabilities interaction; metadata/x is an unknown path.
        return Interaction("capabilities", "R")
    if head == "_history" and not rest:
        return Interaction("history-system", "E", permission="s")
    if not is_resource_type(head):
        return Interaction("search-system", "E", permission="s")
    if not rest:
        return {
            "POST": Interaction("create", "C", head, permission="c"),
            "PUT": Interaction("update", "U", head, permission="u"),
            "PATCH": Interaction("patch", "U", head, permission="u"),
            "DELETE": Interaction("delete", "D", head, permission="d"),
        }.get(method, Interaction("search-type", "E", head, permission="s"))
    if rest == ["_search"]:
        return Interaction("search-type", "E", head, permission="s")
    if rest == ["_history"]:
        return Interaction("history-type", "E", head, permission="s")
    res_id = rest[0]
    if len(rest) == 1:
        found = {
            "GET": Interaction("read", "R", head, res_id, permission="r"),
            "PUT": Interaction("update", "U", head, res_id, permission="u"),
            "PATCH": Interaction("patch", "U", head, res_id, permission="u"),
            "DELETE": Interaction("delete", "D", head, res_id, permission="d"),
        }.get(method)
        if found is not None:
            return found
    elif rest[1] == "_history" and method == "GET":
        if len(rest) == 2:
            return Interaction("history-instance", "R", head, res_id, permission="r")
        if len(rest) == 3:
            return Interaction("vread", "R", head, res_id, rest[2], permission="r")
    elif len(rest) == 2 and head == "Patient" and is_resource_type(rest[1]):
        return Interaction("search-type", "E", rest[1], permission="s", compartment=res_id)
    # Refused by the router (405, or 404 "Unknown path") whatever the id: no instance to check.
    return Interaction("read", "R", head, permission="r")
