"""Typed errors raised by core code; ``api`` turns each into an OperationOutcome response.

Status codes follow R4 http.html (section 3.1.0.4 "General" and each interaction's table);
``code`` is the OperationOutcome ``issue.code`` from the IssueType value set.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: what is wrong (diagnostics) and where (expression)."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()


@dataclass
class FhirError(Exception):
    """Base of every error the server answers with an OperationOutcome."""

    diagnostics: str = ""
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    status = 500
    code = "exception"

    def __post_init__(self) -> None:
        super().__init__(self.diagnostics)
        if not self.issues:
            self.issues = [Issue(code=self.code, diagnostics=self.diagnostics)]

    def __str__(self) -> str:
        return self.diagnostics


class Invalid(FhirError):
    """400: the request could not be parsed or fails basic FHIR validation."""

    status = 400
    code = "invalid"

    @classmethod
    def at(cls, expression: str, message: str, code: str = "invalid") -> Invalid:
        """A 400 whose single issue names where the problem is (a parameter or an element)."""
        return cls(message, issues=[Issue(code, message, expression=(expression,))])


class Unauthorized(FhirError):
    status = 401
    code = "login"


class Forbidden(FhirError):
    status = 403
    code = "forbidden"


class NotFound(FhirError):
    status = 404
    code = "not-found"


class MethodNotAllowed(FhirError):
    status = 405
    code = "not-supported"


class NotAcceptable(FhirError):
    status = 406
    code = "not-supported"


class Conflict(FhirError):
    status = 409
    code = "conflict"


@dataclass
class StillReferenced(Conflict):
    """409: a delete of a resource another one refers to (referential integrity); ``target`` is
    what could not be deleted, for an answer that need not name the referrer."""

    target: str = ""


class Gone(FhirError):
    status = 410
    code = "deleted"


class PreconditionFailed(FhirError):
    status = 412
    code = "conflict"


class PayloadTooLarge(FhirError):
    status = 413
    code = "too-costly"


class UriTooLong(FhirError):
    """414 (RFC 9110 section 15.5.15): the request target is longer than the server reads."""

    status = 414
    code = "too-long"


class UnsupportedMediaType(FhirError):
    status = 415
    code = "not-supported"


class Unprocessable(FhirError):
    """422: valid FHIR that breaks a server business rule (R4 http.html#create)."""

    status = 422
    code = "processing"


class HeaderFieldsTooLarge(FhirError):
    """431 (RFC 6585 section 5): the request's header fields are larger than the server reads."""

    status = 431
    code = "too-long"


class ServiceUnavailable(FhirError):
    """503: something the server depends on (the authorization server's keys) cannot be reached."""

    status = 503
    code = "transient"


class NotImplementedInteraction(FhirError):
    """501: a FHIR feature this server does not offer."""

    status = 501
    code = "not-supported"
