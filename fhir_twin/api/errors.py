"""The one translator from errors to OperationOutcome responses (R4 http.html#errors).

Typed ``FhirError``s keep their status; werkzeug's routing errors (404, 405, 413) become the
matching FHIR errors; anything else is a 500 whose traceback goes to the log, never the client.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from fhir_twin import errors
from fhir_twin.api.negotiation import Format, response_format
from fhir_twin.api.representation import render
from fhir_twin.fhir.outcome import operation_outcome

log = logging.getLogger("fhir_twin.api")


def register(app: Flask) -> None:
    app.register_error_handler(errors.FhirError, _fhir_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)


def error_response(error: errors.FhirError) -> Response:
    # For the audit trail's record of a request the router never saw (api/security.py).
    g.error = error
    try:
        fmt = response_format(request)
    except errors.FhirError:
        fmt = Format.JSON
    body, content_type = render(operation_outcome(error.issues), fmt, pretty=False)
    response = Response(body, status=error.status, content_type=content_type)
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _fhir_error(error: errors.FhirError) -> Response:
    if error.status == 500:
        log.error("request %s failed with %s: %s", g.get("request_id"), error.status, error.diagnostics)
    return error_response(error)


def _http_error(error: HTTPException) -> Response:
    if isinstance(error, RequestEntityTooLarge):
        return error_response(errors.PayloadTooLarge("The request body is larger than this server accepts"))
    if isinstance(error, MethodNotAllowed):
        allowed = {"Allow": ", ".join(error.valid_methods or [])}
        return error_response(
            errors.MethodNotAllowed(f"{request.method} is not allowed on {request.path}", headers=allowed)
        )
    if isinstance(error, NotFound):
        return error_response(errors.NotFound(f"Nothing is served at {request.path}"))
    status = error.code or 500
    mapped = errors.Invalid if 400 <= status < 500 else errors.FhirError
    outcome = mapped(error.description or error.name)
    outcome.status = status
    return error_response(outcome)


def _unexpected(error: Exception) -> Response:
    log.exception("request %s failed with an unexpected error", g.get("request_id"))
    return error_response(
        errors.FhirError(f"An unexpected error occurred; it was logged with request id {g.get('request_id')}")
    )
