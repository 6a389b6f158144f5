"""Authorization of each routed request against the principal it acts for (SMART scopes and the
launch patient's compartment; see ``fhir_twin.security.access``).

Checked at the router, so a Bundle entry or a nested request is held to exactly what the same
request sent alone would be. A patient-context credential meets what lies outside its patient's
compartment as if it did not exist: the same 404, never a 403 that would tell it exists.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from fhir_twin.errors import Forbidden, MethodNotAllowed, NotFound
from fhir_twin.fhir.model import is_resource_type, resource_types
from fhir_twin.interactions.interaction import Interaction
from fhir_twin.interactions.message import Request, Response
from fhir_twin.search.index import IndexRow
from fhir_twin.security.access import ALL, in_compartment, patients_in, reach, require
from fhir_twin.security.principal import Principal
from fhir_twin.store.repository import Repository
from fhir_twin.store.version import Version

# The server writes its audit trail itself; through the API it is read-only (issue 7).
AUDIT_TYPE = "AuditEvent"
_WRITES = ("create", "update", "patch", "delete")
# Operations on one patient's record, and what each needs beyond reading the Patient.
_PATIENT_OPERATIONS = {"everything": None, "twin": None, "whatif": None, "predict": ("RiskAssessment", "c")}
_EXPORT_OPERATIONS = ("export", "export-poll-status", "export-file")
# What the twin shows of a patient (Body, Case and the Doctor's assessments): reading it needs
# reading each of them.
TWIN_TYPES = (
    "Patient",
    "Observation",
    "Condition",
    "DiagnosticReport",
    "Encounter",
    "Procedure",
    "MedicationRequest",
    "CarePlan",
    "RiskAssessment",
)


class Guard:
    """Checks a request before it runs and what it wrote before its transaction commits."""

    def __init__(self, repository: Repository) -> None:
        self.repository = repository

    def before(self, principal: Principal, interaction: Interaction, request: Request) -> None:
        """403 for what the scopes do not grant, 404 for what lies outside the compartment, 405
        for a write to the audit trail."""
        if interaction.resource_type == AUDIT_TYPE and interaction.name in _WRITES:
            message = "AuditEvents are recorded by the server and cannot be created or changed"
            raise MethodNotAllowed(message, headers={"Allow": "GET, HEAD"})
        if principal.trusted:
            return
        if interaction.name == "operation":
            self._operation(principal, interaction, request)
            return
        if interaction.permission is None or interaction.resource_type is None:
            return
        held_to = require(principal, interaction.resource_type, interaction.permission)
        if held_to == ALL:
            return
        if interaction.name in _WRITES and interaction.resource_id is None and interaction.name != "create":
            raise Forbidden("Conditional updates, patches and deletes need a user or system scope")
        if interaction.name == "create" and request.header("if-none-exist"):
            raise Forbidden("Conditional creates need a user or system scope")
        # An update's new content first: refused alike whether or not the id is taken.
        if (
            interaction.name == "update"
            and isinstance(request.body, dict)
            and not in_compartment(request.body, held_to)
        ):
            raise Forbidden(
                f"{interaction.resource_type}/{interaction.resource_id} would not be in the compartment "
                f"of Patient/{held_to}"
            )
        if interaction.resource_id is not None and interaction.name != "search-type":
            self._instance(held_to, interaction)

    def searchable(self, principal: Principal | None, types: tuple[str, ...]) -> tuple[str, ...]:
        """Of ``types``, those ``principal`` may search (a system search without ``_type``)."""
        if principal is None or principal.trusted:
            return types
        return tuple(name for name in types if reach(principal, name, "s") is not None)

    def written(self, principal: Principal, versions: list[tuple[Version, list[IndexRow]]]) -> None:
        """A patient-context write must leave each resource it wrote in the compartment."""
        if principal.trusted:
            return
        for version, index in versions:
            held_to = reach(principal, version.res_type, "u" if version.version > 1 else "c")
            if held_to in (ALL, None) or version.deleted:
                continue
            if held_to not in patients_in(version.res_type, version.res_id, index):
                raise Forbidden(
                    f"{version.res_type}/{version.res_id} would not be in the compartment of Patient/{held_to}"
                )

    def visible(self, principal: Principal | None, response: Response) -> Response:
        """Drop from a Bundle answer the entries ``principal`` may not read: ``_include``d
        resources of other types or patients, other patients' history."""
        body = response.body
        if principal is None or principal.trusted or not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            return response
        entries = body.get("entry")
        if not entries:
            return response
        kept = [entry for entry in entries if self._readable(principal, entry)]
        if len(kept) != len(entries):
            body = {**body, "entry": kept}
            if not kept:
                del body["entry"]
            if principal.patient is not None:
                # Held to a compartment: a total that counted what was withheld ($everything's
                # references) would tell of it.
                body.pop("total", None)
        return Response(response.status, response.headers, body, response.content_type)

    def _readable(self, principal: Principal, entry: dict[str, Any]) -> bool:
        resource = entry.get("resource")
        res_type = _type_of(entry)
        if res_type is None:
            return True
        held_to = reach(principal, res_type, "r")
        if held_to is None:
            return False
        if held_to == ALL:
            return True
        if resource is None:
            # A deletion in a history: shown when the resource was the patient's before.
            request = entry.get("request", {})
            parts = str(request.get("url", "")).split("/")
            if len(parts) >= 2:
                return self._was_in(held_to, parts[0], parts[1])
            return False
        return in_compartment(_as_dict(resource), held_to)

    def _instance(self, patient_id: str, interaction: Interaction) -> None:
        res_type, res_id = interaction.resource_type, interaction.resource_id
        assert res_type is not None and res_id is not None
        with self.repository.unit() as unit:
            if interaction.version_id is not None and interaction.version_id.isdigit():
                found = unit.version(res_type, res_id, int(interaction.version_id))
            else:
                found = unit.current(res_type, res_id)
            if found is None:
                if interaction.name == "delete":
                    # A delete of an unused id would answer 200; held to a compartment, it answers
                    # as for another patient's resource.
                    raise NotFound(f"{res_type}/{res_id} is not known")
                return  # the interaction answers 404 itself, or creates it (update)
            if found.deleted:
                found = unit.version(res_type, res_id, found.version - 1) if found.version > 1 else None
        if found is None or found.body is None or not in_compartment(json.loads(found.body), patient_id):
            if interaction.version_id is not None:
                shown = interaction.version_id if interaction.version_id.isdigit() else repr(interaction.version_id)
                raise NotFound(f"{res_type}/{res_id} has no version {shown}")
            raise NotFound(f"{res_type}/{res_id} is not known")

    def _was_in(self, patient_id: str, res_type: str, res_id: str) -> bool:
        if not is_resource_type(res_type):
            return False
        with self.repository.unit() as unit:
            current = unit.current(res_type, res_id)
            while current is not None and current.deleted and current.version > 1:
                current = unit.version(res_type, res_id, current.version - 1)
        return current is not None and current.body is not None and in_compartment(json.loads(current.body), patient_id)

    def _operation(self, principal: Principal, interaction: Interaction, request: Request) -> None:
        name, res_type = interaction.operation, interaction.resource_type
        if name in _PATIENT_OPERATIONS and res_type == "Patient":
            held_to = require(principal, "Patient", "r")
            if name != "everything":
                for read in TWIN_TYPES:
                    require(principal, read, "r")
            extra = _PATIENT_OPERATIONS[name]
            if extra is not None:
                require(principal, *extra)
            if held_to != ALL:
                if interaction.resource_id is None:
                    raise Forbidden(f"${name} over every patient needs a user or system scope")
                if interaction.resource_id != held_to:
                    raise NotFound(f"Patient/{interaction.resource_id} is not known")
        elif name in _EXPORT_OPERATIONS:
            exported = [res_type] if res_type not in (None, "Group", "Patient") else sorted(resource_types())
            for exported_type in exported:
                if reach(principal, exported_type, "r") != ALL:
                    raise Forbidden("Bulk export needs a user or system scope that reads every type exported")
        elif name == "lastn":
            require(principal, "Observation", "s")
        elif name == "validate":
            if res_type is not None and interaction.resource_id is not None:
                # $validate of a stored resource (mode update or delete) reads it.
                held = require(principal, res_type, "r")
                if held != ALL:
                    self._instance(held, replace(interaction, name="read"))
        elif res_type is not None:
            require(principal, res_type, "r")


def _type_of(entry: dict[str, Any]) -> str | None:
    full_url = str(entry.get("fullUrl", ""))
    parts = full_url.rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and is_resource_type(parts[-2]) else None


def _as_dict(resource: Any) -> dict[str, Any]:
    if isinstance(resource, dict):
        return resource
    return json.loads(getattr(resource, "encoded_json", resource))
