"""FHIR RESTful interactions (R4 http.html) over a Repository, independent of HTTP transport.

``route`` takes a transport-neutral ``Request`` and answers a ``Response``; the Flask views and
Bundle entries both go through it, so an entry behaves exactly like a top-level request.
"""

from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.router import Interactions, unrecorded

__all__ = ["Interactions", "Request", "Response", "unrecorded"]
