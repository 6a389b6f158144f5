"""HTTP hygiene every answer gets: a request id, an access log, security headers and CORS;
and every request, bounds on its URL and header fields (``api.limits``).

FHIR answers hold patient data (R4 security.html), so browsers and proxies are told not to keep,
frame or sniff them (OWASP Secure Headers Project), the access log names paths but never query
strings or bodies, and cross-origin browser access (Fetch standard, "CORS protocol") is off unless
``cors_origins`` names the origins allowed.
"""

from __future__ import annotations

import logging
import random
import re
import time
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, g, has_app_context, request

from fhir_twin.api.limits import check_head
from fhir_twin.config import Config

#: The log line format: every record carries the request id (``-`` outside a request).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

access_log = logging.getLogger("fhir_twin.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# OWASP Secure Headers Project: no MIME sniffing, no framing, no active content, no referrer.
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}
# The web app's pages (``/app/``) load their own scripts, styles and data from this origin only:
# no inline script or style, nothing from elsewhere, never framed (CSP Level 3).
_APP_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# The authorization server's sign-in and consent pages (``/auth/``): the web app's stylesheet, no
# script; the empty data: icon (no favicon request); no form-action, as the consent form's answer
# redirects to the client's redirect_uri.
_AUTH_POLICY = "default-src 'none'; style-src 'self'; img-src data:; base-uri 'none'; frame-ancestors 'none'"
_HSTS = "max-age=31536000"
# Fetch standard: what a browser script may read of an answer, and what a preflight allows.
_EXPOSE_HEADERS = "Location, Content-Location, ETag, Last-Modified, X-Request-ID, WWW-Authenticate"
_ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
_ALLOW_HEADERS = (
    "Authorization, Content-Type, Accept, If-Match, If-None-Match, If-None-Exist, If-Modified-Since, Prefer, "
    "X-Request-ID"
)
_PREFLIGHT_MAX_AGE = "600"


def configure_logging(level: str) -> None:
    """Log to stderr in ``LOG_FORMAT``; the request id is on every record before any is formatted."""
    _install_record_factory()
    logging.basicConfig(level=level.upper(), format=LOG_FORMAT)


def register(app: Flask, config: Config) -> None:
    """Install the request id, access log, security headers and CORS on ``app``, once.

    The request hook goes first, so a CORS preflight is answered before authentication (browsers
    send preflights without credentials), a URL or header fields past the limits are refused
    before anything reads them, and every later hook and log line sees ``g.request_id``; the
    response hook goes last, so it sees the final answer, error answers included.
    """
    if app.extensions.get("fhir_twin.hygiene"):
        return
    app.extensions["fhir_twin.hygiene"] = True
    _install_record_factory()
    cors = _Cors(config.cors_origins)

    def begin() -> Response | None:
        g.request_start = time.perf_counter()
        g.request_id = _request_id(request.headers.get("X-Request-ID", ""))
        check_head(request, config)
        return cors.preflight()

    def finish(response: Response) -> Response:
        elapsed = (time.perf_counter() - g.request_start) * 1000
        response.headers["X-Request-ID"] = g.request_id
        # W3C Server Timing: the app's own time, which a browser's Resource Timing shows beside the
        # network's (bench/app_page.py reads it).
        response.headers["Server-Timing"] = f"app;dur={elapsed:.1f}"
        _secure(response)
        cors.annotate(response)
        access_log.info(
            "%s %s %s %.1f ms", request.method, quote(request.path, safe="/$"), response.status_code, elapsed
        )
        return response

    app.before_request_funcs.setdefault(None, []).insert(0, begin)
    # after_request hooks run in reverse order of registration: the first one runs last.
    app.after_request_funcs.setdefault(None, []).insert(0, finish)


def _request_id(incoming: str) -> str:
    """The caller's id if it is safe to echo and log (no spaces, newlines or floods), else a new one."""
    # Unique, not secret: Python's generator (reseeded in each forked worker) is far cheaper
    # than the system's entropy, which uuid4 draws on for every request.
    return incoming if _REQUEST_ID.fullmatch(incoming) else f"{random.getrandbits(128):032x}"


def _secure(response: Response) -> None:
    """OWASP Secure Headers; ``no-store`` unless the answer chose its own caching (R4 security.html)."""
    response.headers.update(_SECURITY_HEADERS)
    if request.path == "/app" or request.path.startswith("/app/"):
        response.headers["Content-Security-Policy"] = _APP_POLICY
    elif request.path.startswith("/auth/"):
        response.headers["Content-Security-Policy"] = _AUTH_POLICY
    if "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    # RFC 6797 section 7.2: HSTS is sent over secure transport only.
    if request.is_secure:
        response.headers["Strict-Transport-Security"] = _HSTS


class _Cors:
    """The CORS protocol (Fetch standard) for the configured origins; without any, it adds nothing."""

    def __init__(self, setting: str) -> None:
        origins = {origin.strip().rstrip("/") for origin in setting.split(",")} - {""}
        self.wildcard = "*" in origins
        self.origins = origins - {"*"}

    def allowed(self, origin: str | None) -> bool:
        return origin is not None and (self.wildcard or origin in self.origins)

    def preflight(self) -> Response | None:
        """A 204 for a preflight from an allowed origin; anything else goes on to normal handling."""
        if not (
            request.method == "OPTIONS"
            and "Access-Control-Request-Method" in request.headers
            and self.allowed(request.origin)
        ):
            return None
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = _ALLOW_METHODS
        response.headers["Access-Control-Allow-Headers"] = _ALLOW_HEADERS
        response.headers["Access-Control-Max-Age"] = _PREFLIGHT_MAX_AGE
        return response

    def annotate(self, response: Response) -> None:
        """Let an allowed origin read the answer; answers that depend on ``Origin`` say so (``Vary``)."""
        if self.origins and not self.wildcard:
            response.vary.add("Origin")
        if not self.allowed(request.origin):
            return
        response.headers["Access-Control-Allow-Origin"] = "*" if self.wildcard else str(request.origin)
        response.headers["Access-Control-Expose-Headers"] = _EXPOSE_HEADERS


class _RequestIdRecords:
    """A log record factory adding ``request_id`` to every record, whichever logger makes it, so a
    format naming ``%(request_id)s`` never fails on sqlalchemy's, gunicorn's or werkzeug's records."""

    def __init__(self, make: Any) -> None:
        self.make = make

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.make(*args, **kwargs)
        record.request_id = g.get("request_id", "-") if has_app_context() else "-"
        return record


def _install_record_factory() -> None:
    """Wrap the current record factory once per process, however many apps are created."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, _RequestIdRecords):
        logging.setLogRecordFactory(_RequestIdRecords(current))
