"""``$validate`` (R4 resource-operation-validate.html): would this resource be accepted?

Answers 200 with an OperationOutcome listing every issue — the same checks a create or update
runs — or one informational issue when there is none. Nothing is stored.
"""

from __future__ import annotations

from typing import Any

from fhir_twin.errors import Invalid, Issue, NotFound
from fhir_twin.fhir.outcome import information, operation_outcome
from fhir_twin.fhir.validation import resource_issues
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations import Context, Operation, Permission, parameters

MODES = ("create", "update", "delete")


def validate(context: Context, request: Request, res_type: str | None, res_id: str | None) -> Response:
    given = parameters(request)
    mode = mode_of(given, res_id)
    if mode not in MODES:
        message = f"mode must be one of {', '.join(MODES)}, not {mode!r}"
        raise Invalid.at("mode", message)
    if mode == "delete":
        if res_id is None:
            raise Invalid("mode=delete needs a resource id: POST [type]/[id]/$validate")
        with context.repository.transaction() as tx:
            current = tx.current(str(res_type), res_id)
        if current is None or current.deleted:
            raise NotFound(f"{res_type}/{res_id} is not known")
        return Response(200, {}, information(f"{res_type}/{res_id} can be deleted"))
    resource = _resource(request, given)
    issues = []
    if resource.get("resourceType") != res_type:
        issues.append(
            Issue(
                "invalid",
                f"The resource is a {resource.get('resourceType')!r}, not a {res_type}",
                expression=("resourceType",),
            )
        )
    if mode == "update" and res_id is not None and resource.get("id") != res_id:
        issues.append(
            Issue("invalid", f"The resource's id must be {res_id!r} to update it", expression=(f"{res_type}.id",))
        )
    issues += resource_issues(resource)
    if not issues:
        return Response(200, {}, information("No issues detected"))
    return Response(200, {}, operation_outcome(issues))


def mode_of(given: list[tuple[str, Any]], res_id: str | None) -> str:
    """The mode asked for: the last ``mode`` parameter, else update on an instance, create on a type."""
    modes = [value for name, value in given if name == "mode"]
    return str(modes[-1]) if modes else ("update" if res_id else "create")


def _resource(request: Request, given: list[tuple[str, Any]]) -> dict[str, Any]:
    """The resource: the ``resource`` parameter of a Parameters body, or the body itself."""
    for name, value in given:
        if name == "resource" and isinstance(value, dict):
            return value
    body = request.body
    if isinstance(body, dict) and body.get("resourceType") not in (None, "Parameters"):
        return body
    raise Invalid("$validate needs a resource: the body, or a Parameters body with a 'resource' part")


VALIDATE = Operation(
    name="validate",
    levels=frozenset({"type", "instance"}),
    methods=frozenset({"POST"}),
    handler=validate,
    definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
    # Validating a stored resource (mode update or delete) reads it; only mode=delete looks it up,
    # the others answer alike whether it exists or not.
    permission=Permission(
        reads=("*",), looks_up=lambda request, res_id: mode_of(parameters(request), res_id) == "delete"
    ),
)
