"""The FHIR REST endpoint: every request under ``/fhir`` goes to ``Interactions.route``."""

from __future__ import annotations

from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from flask import Blueprint, Response, g, request
from werkzeug.sansio.utils import get_current_url

from fhir_twin.api.limits import read_body
from fhir_twin.api.negotiation import body_kind, response_format
from fhir_twin.api.representation import render
from fhir_twin.config import Config
from fhir_twin.fhir import json
from fhir_twin.fhir.json import MAX_DEPTH, require_depth, require_object
from fhir_twin.fhir.xml import xml_to_resource
from fhir_twin.interactions import Interactions
from fhir_twin.interactions import Request as FhirRequest

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
_TRUE = ("true", "1", "yes")
NDJSON = "application/fhir+ndjson"


def fhir_blueprint(interactions: Interactions, config: Config) -> Blueprint:
    """The endpoint under ``/fhir``, answering through ``interactions``."""
    blueprint = Blueprint("fhir", __name__)

    @blueprint.route(
        "/fhir", defaults={"path": ""}, methods=METHODS, strict_slashes=False, provide_automatic_options=False
    )
    @blueprint.route("/fhir/<path:path>", methods=METHODS, provide_automatic_options=False)
    def endpoint(path: str) -> Response:
        fmt = response_format(request)
        fhir_request = _fhir_request(path, config)
        # The router records every request it is given, answered, refused or failed.
        g.audited = True
        answer = interactions.route(fhir_request)
        response = Response(status=answer.status)
        for name, value in answer.headers.items():
            response.headers[name] = value
        if answer.streamed is not None:
            # Sent as it is read (a Bulk Data file): waitress writes each part out, chunked.
            response.response, response.content_type = answer.streamed, answer.content_type or NDJSON
        elif answer.content_type is not None and isinstance(answer.body, str):
            response.data, response.content_type = answer.body.encode("utf-8"), answer.content_type
        elif answer.body is not None and answer.status != 304:
            pretty = request.args.get("_pretty", "").lower() in _TRUE
            response.data, response.content_type = render(answer.body, fmt, pretty)
        return response

    return blueprint


def _fhir_request(path: str, config: Config) -> FhirRequest:
    base = config.base_url.rstrip("/") if config.base_url else _base(request.scheme, request.host, request.root_path)
    query = list(request.args.items(multi=True))
    body: Any = None
    patch_format = None
    if request.method in ("POST", "PUT", "PATCH") and request.content_length != 0:
        # The type is checked first: a body of the wrong type is refused unread.
        kind = body_kind(request, path)
        data = read_body(request, config.max_body_bytes)
        if data:
            if kind == "form":
                query.extend(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True))
            elif kind == "xml":
                body = xml_to_resource(data)
                # Arrays are levels in JSON that repeated elements are not in XML.
                require_depth(body, MAX_DEPTH, "objects and arrays (in its JSON form)")
            else:
                body = json.loads(data, MAX_DEPTH)
                if kind == "json-patch":
                    patch_format = "application/json-patch+json"
                elif request.method != "PATCH":
                    body = require_object(body)
    headers = {name.lower(): value for name, value in request.headers.items()}
    return FhirRequest(request.method, path, base, query, headers, body, patch_format)


@lru_cache(maxsize=64)
def _base(scheme: str, host: str, root_path: str) -> str:
    """The FHIR base under ``request.url_root``, built as werkzeug builds that (quoting the host
    and path) once per host the server is reached by, not once a request: about 5 % of a read's
    time in the app."""
    return get_current_url(scheme, host, root_path).rstrip("/") + "/fhir"
