"""What many tests build: FHIR resources, requests through the test client, the router on a
bare Repository. One definition each, so a change of the server's conventions is one edit here.

Builders return plain dicts and take keyword overrides, so a test states only what it relies on.
"""

from __future__ import annotations

import json
from typing import Any

from fhir_twin.bundles import Bundles
from fhir_twin.config import Config
from fhir_twin.fhir.json import dumps
from fhir_twin.interactions import Interactions, Request, Response
from fhir_twin.store.repository import Repository

BASE = "http://localhost/fhir"


def router(repository: Repository, config: Config) -> Interactions:
    """The FHIR router on ``repository`` with batch and transaction Bundles plugged in, as the
    app wires it (without the twin, the Doctor, the audit trail or authentication)."""
    interactions = Interactions(repository, config)
    interactions.bundles = Bundles(interactions.route, repository, config).process
    return interactions


def send(interactions: Interactions, method: str, target: str, body: Any = None, **headers: str) -> Response:
    """Route ``method target`` (``Type/id`` or ``Type?a=b&c=d``, relative to ``BASE``) as the
    API would hand it over: header names lower-case, the query split but not decoded."""
    path, _, text = target.partition("?")
    query = [(key, value) for key, _, value in (pair.partition("=") for pair in text.split("&") if pair)]
    return interactions.route(Request(method, path, BASE, query, headers, body))


def response_json(response: Response) -> Any:
    """The body of an answer as plain JSON values, as a client would read it (a built Bundle
    embeds stored bodies unparsed)."""
    return json.loads(response.body if isinstance(response.body, str) else dumps(response.body))
