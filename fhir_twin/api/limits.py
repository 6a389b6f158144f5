"""What the server reads of a request: its target, its header fields and its body, each bounded.

Every limit is answered with an OperationOutcome (R4 http.html#errors) by the app itself, not by
the WSGI server's own page: the target past ``max_url_bytes`` is 414 (RFC 9110 section 15.5.15),
header fields past ``max_header_bytes`` 431 (RFC 6585 section 5), and a body past
``max_body_bytes`` 413 (RFC 9110 section 15.5.14), counted while it is read when it comes
chunked without a Content-Length. ``fhir-twin serve`` sets the WSGI server's limits above these.
"""

from __future__ import annotations

from flask import Request

from fhir_twin.config import Config
from fhir_twin.errors import HeaderFieldsTooLarge, PayloadTooLarge, UriTooLong

_CHUNK = 64 * 1024


def check_head(request: Request, config: Config) -> None:
    """414 or 431 before anything else reads the request."""
    environ = request.environ
    # PATH_INFO is decoded (and so never longer than it was sent); QUERY_STRING is as sent.
    query = environ.get("QUERY_STRING", "")
    target = len(environ.get("PATH_INFO", "").encode("latin-1", "replace")) + (len(query) + 1 if query else 0)
    if target > config.max_url_bytes:
        raise UriTooLong(
            f"The request URL is {target} bytes long; this server reads at most {config.max_url_bytes} "
            "(send a long search as POST [type]/_search with a form body)"
        )
    # Each field as sent: "name: value" and CRLF.
    size = sum(len(name) + len(value) + 4 for name, value in request.headers.items())
    if size > config.max_header_bytes:
        raise HeaderFieldsTooLarge(
            f"The request's header fields are {size} bytes; this server reads at most {config.max_header_bytes}"
        )


def read_body(request: Request, limit: int) -> bytes:
    """The whole body, or 413 as soon as it passes ``limit`` bytes.

    A declared Content-Length is checked before reading. A chunked body has none, and werkzeug's
    own stream stops quietly at the limit (the cut body then fails to parse), so it is read here,
    from the server's terminated input stream, one chunk at a time, never more than one byte past.
    """
    length = request.content_length
    if length is not None:
        if length > limit:
            raise _too_large(limit)
        return request.get_data(cache=False)
    if not request.environ.get("wsgi.input_terminated"):
        # No length and no server-marked end: werkzeug's rule, nothing can be read safely.
        return b""
    stream = request.environ["wsgi.input"]
    chunks: list[bytes] = []
    size = 0
    while chunk := stream.read(min(_CHUNK, limit + 1 - size)):
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than this server accepts ({limit} bytes)")
