"""Server settings: defaults, overridden by ``FHIR_TWIN_<NAME>`` environment variables.

The same names are what ``create_app(config)`` accepts as keys and what ``fhir-twin serve``
takes as options, so a setting means one thing wherever it is given.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ENV_PREFIX = "FHIR_TWIN_"
# R4 search.html#errors and http.html (Prefer: handling=): the two ways to treat unknown parameters.
SEARCH_HANDLING = ("strict", "lenient")


def default_data_dir() -> Path:
    """Where the embedded SQLite database lives unless told otherwise."""
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "fhir-twin"


@dataclass(frozen=True)
class Config:
    """Every setting the server reads; see README "Configuration"."""

    database_url: str = ""
    data_dir: str = ""
    max_body_bytes: int = 16 * 1024 * 1024
    # The longest request target (path and query) and the most header-field bytes read (api/limits.py).
    max_url_bytes: int = 8192
    max_header_bytes: int = 16384
    default_page_size: int = 20
    max_page_size: int = 1000
    base_url: str = ""
    log_level: str = "INFO"
    referential_integrity: bool = True
    max_bundle_entries: int = 10_000
    # A large transaction Bundle is validated and indexed by the request's process and a helper
    # process of its own, on two cores (bundles/helper.py).
    bundle_helper: bool = True
    # The digital twin: kept in step with every write unless switched off; its mappings folder.
    twin: bool = True
    mappings_dir: str = ""
    # The Digital Doctor: assess patients live as their twins change; how close in time the
    # observations of one NEWS2/qSOFA set must be (ISO 8601 duration).
    doctor: bool = True
    observation_window: str = "PT1H"
    # Security: how requests authenticate ("tokens", "jwt" or "none"); for "jwt", the JWKS (a
    # file or an https URL) and the issuer and audience every token must name.
    auth_mode: str = "tokens"
    jwks: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    # CDS Hooks clients that sign their calls (cds-hooks.hl7.org/2.0 "Trusting CDS Clients"): a JSON
    # object of issuer → JWKS URL, the only key sets a JWT's jku may name; and what they may read.
    cds_clients: str = ""
    cds_client_scope: str = "system/*.rs"
    # The FHIR servers a CDS Hooks call's fhirServer may name (comma-separated base URLs; none: only
    # this server's own store), and how long the cards issued are remembered for their feedback.
    cds_fhir_servers: str = ""
    cds_card_retention: str = "P30D"
    # The SMART discovery document's endpoints of the external authorization server, if any.
    smart_token_endpoint: str = ""
    smart_authorization_endpoint: str = ""
    # The key this server's own authorization server (``/auth``, ``tokens`` mode) signs id_tokens
    # with, generated at first start (default: ``smart-signing-key.pem`` in the data directory).
    smart_signing_key_file: str = ""
    # Audit: an AuditEvent per interaction, hash-chained; with ``audit_key`` the chain is an
    # HMAC, so a database editor without the key cannot forge it.
    audit: bool = True
    audit_key: str = ""
    # Where the key ``fhir-twin serve`` generates at first start is kept when ``audit_key`` is not
    # given (default: ``audit.key`` in the data directory), and where ``fhir-twin audit anchor``
    # appends the chain's signed checkpoints and ``audit verify`` reads them (default:
    # ``audit-anchors.jsonl`` there).
    audit_key_file: str = ""
    audit_anchor_file: str = ""
    # The server's own checkpoints of the chain (``audit.anchor_schedule``): one every so many
    # seconds when the chain has grown (0: none; run ``audit anchor --every`` instead), appended to
    # ``audit_anchor_to`` (default: ``audit_anchor_file``, which ``audit verify`` reads).
    audit_anchor_every: float = 0.0
    audit_anchor_to: str = ""
    # Origins allowed to call the API from a browser (comma-separated, or "*"); none by default.
    cors_origins: str = ""
    # Search parameters the server does not know: "strict" refuses them (400), "lenient" ignores
    # them with a warning in the Bundle; ``Prefer: handling=`` overrides it per request.
    search_handling: str = "strict"
    # Bedside devices over MQTT (README "Devices over MQTT"): the broker (mqtt://host:port; none: no
    # bridge), the prefix of every device topic and of the dead-letter topics, and the client id
    # of the bridge's persistent session (none: a clean session, messages sent while away are lost).
    mqtt_url: str = ""
    mqtt_topic_prefix: str = "fhir-twin/"
    mqtt_client_id: str = "fhir-twin-bridge"
    # The MQTT shared subscription group the bridges on one broker form ($share/{group}/...): each
    # message goes to one of them (none: every bridge takes every message).
    mqtt_shared_group: str = "fhir-twin"
    # Subscriptions (rest-hook): how long a receiver may take to answer, the delay before the first
    # retry (doubled at each further failure), and the failures after which one goes to ``error``.
    subscription_timeout_ms: int = 10_000
    subscription_retry_delay_ms: int = 1_000
    subscription_max_attempts: int = 5
    # Subscriptions (websocket): the port of the websocket server (0: none; websocket Subscriptions
    # are stored but no client can bind), run by the process that builds the app, and its address
    # (``fhir-twin serve`` sets it to its ``--host``).
    websocket_port: int = 0
    websocket_host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.search_handling not in SEARCH_HANDLING:
            raise ValueError(f"search_handling must be strict or lenient, not {self.search_handling!r}")
        if not self.audit_anchor_every >= 0:
            raise ValueError(f"audit_anchor_every must be seconds, 0 or more, not {self.audit_anchor_every!r}")

    @property
    def resolved_database_url(self) -> str:
        """The database URL, or the embedded SQLite file under ``data_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'fhir-twin.db'}"

    @property
    def resolved_data_dir(self) -> Path:
        return Path(self.data_dir) if self.data_dir else default_data_dir()

    @property
    def resolved_audit_key_file(self) -> Path:
        """The audit key's file: one per database (named after its URL), so a key generated for one
        database is never taken for another's trail, which it would break."""
        default = self.resolved_data_dir / f"audit-{self.database_identity}.key"
        return Path(self.audit_key_file) if self.audit_key_file else default

    @property
    def resolved_audit_anchor_file(self) -> Path:
        default = self.resolved_data_dir / f"audit-anchors-{self.database_identity}.jsonl"
        return Path(self.audit_anchor_file) if self.audit_anchor_file else default

    @property
    def resolved_audit_anchor_to(self) -> Path:
        """Where the server appends its scheduled checkpoints: ``audit_anchor_file`` unless told."""
        return Path(self.audit_anchor_to) if self.audit_anchor_to else self.resolved_audit_anchor_file

    @property
    def database_identity(self) -> str:
        """16 hex digits of the SHA-256 of the database URL without its password."""
        parts = urlsplit(self.resolved_database_url)
        netloc = parts.netloc.rpartition("@")
        user = netloc[0].partition(":")[0]
        url = urlunsplit(parts._replace(netloc=f"{user}@{netloc[2]}" if netloc[1] else netloc[2]))
        return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]

    @property
    def resolved_smart_signing_key_file(self) -> Path:
        default = self.resolved_data_dir / "smart-signing-key.pem"
        return Path(self.smart_signing_key_file) if self.smart_signing_key_file else default

    @property
    def resolved_mappings_dir(self) -> Path:
        """The mappings folder: as configured (``FHIR_TWIN_MAPPINGS_DIR``), else the one installed with
        the package (in a checkout, a link to its top-level ``mappings/``)."""
        if self.mappings_dir:
            return Path(self.mappings_dir)
        return Path(__file__).with_name("mappings")

    @classmethod
    def from_env(cls, overrides: dict[str, Any] | None = None) -> Config:
        """Defaults, then ``FHIR_TWIN_*`` variables, then explicit ``overrides``; without an
        ``audit_key``, the one kept in ``audit_key_file`` if there is one."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _coerce(f.type, raw, f.name)
        config = replace(cls(), **values)
        if overrides:
            known = {f.name: f for f in fields(cls)}
            unknown = set(overrides) - set(known)
            if unknown:
                raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
            config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        if not config.audit_key and config.resolved_audit_key_file.is_file():
            # The key ``fhir-twin serve`` generated (audit/key.py): every command chains and verifies with it.
            config = replace(config, audit_key=config.resolved_audit_key_file.read_text(encoding="ascii").strip())
        return config


def _coerce(type_name: Any, raw: str, name: str) -> Any:
    if type_name in (bool, "bool"):
        if raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"{ENV_PREFIX}{name.upper()} must be true or false, not {raw!r}")
    if type_name in (int, "int"):
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name.upper()} must be a whole number, not {raw!r}") from None
    if type_name in (float, "float"):
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}{name.upper()} must be a number, not {raw!r}") from None
    return raw
