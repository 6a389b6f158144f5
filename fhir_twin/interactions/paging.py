"""Links between pages of a Bundle (R4 http.html#paging).

A link repeats the criteria and the page position, plus the format the client chose
(``_format``, ``_pretty``), so following ``next`` answers in the same format as the first page.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fhir_twin.interactions.message import Request
from fhir_twin.search.parser import TRANSPORT_PARAMETERS


def link(request: Request, url: str, params: list[tuple[str, str]]) -> str:
    """An absolute URL for ``params`` and the request's format parameters."""
    params = params + [(name, value) for name, value in request.query if name in TRANSPORT_PARAMETERS]
    return f"{url}?{urlencode(params)}" if params else url
