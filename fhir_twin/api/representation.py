"""Serialising response bodies: stored JSON bytes as they are, or JSON/XML built from a dict."""

from __future__ import annotations

from typing import Any

from fhir_twin.api.negotiation import Format
from fhir_twin.fhir import json
from fhir_twin.fhir.xml import resource_to_xml


def render(body: str | dict[str, Any], fmt: Format, pretty: bool) -> tuple[bytes, str]:
    """Bytes and Content-Type for ``body`` in ``fmt``; stored text is sent without re-parsing."""
    if fmt is Format.JSON and not pretty:
        data = body.encode("utf-8") if isinstance(body, str) else json.dumps(body)
        return data, fmt.content_type
    # Bundles hold stored bodies as RawJSON: one round trip through text makes them plain values.
    value = json.loads(body if isinstance(body, str) else json.dumps(body))
    if fmt is Format.JSON:
        return json.dumps(value, pretty=True), fmt.content_type
    return resource_to_xml(value, pretty=pretty), fmt.content_type
