"""Tables: the current state of each resource and every version of it (HAPI's shape, kept small).

``resource_version.body`` holds the JSON exactly as served, so reads send stored bytes without
re-serialising; a delete is a version with no body (R4 http.html#delete: deletes are versioned).
Migrations in ``migrations/`` create these; this module is their single description.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator, TypeEngine

metadata = MetaData()


class Number(TypeDecorator[Decimal]):
    """An exact decimal on PostgreSQL; a float on SQLite, which has no decimal type."""

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Float())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name == "sqlite":
            return float(value)
        return value


# SQLite only auto-increments an INTEGER PRIMARY KEY.
Sequence64 = BigInteger().with_variant(Integer(), "sqlite")

#: The largest version number the ``version`` columns hold (a 32-bit INTEGER on PostgreSQL).
MAX_VERSION = 2**31 - 1

resource = Table(
    "resource",
    metadata,
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=False), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    PrimaryKeyConstraint("res_type", "res_id", name="pk_resource"),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
)

resource_version = Table(
    "resource_version",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("last_updated", DateTime(timezone=False), nullable=False),
    Column("method", String(8), nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("body", Text, nullable=True),
    UniqueConstraint("res_type", "res_id", "version", name="uq_resource_version"),
    Index("ix_resource_version_updated", "last_updated", "seq"),
    Index("ix_resource_version_type_updated", "res_type", "last_updated", "seq"),
)


def _index_table(name: str, *columns: Column, indexes: tuple[tuple[str, ...], ...]) -> Table:
    """An index table: one row per value of a search parameter of a current resource version."""
    table = Table(
        name,
        metadata,
        Column("res_type", String(64), nullable=False),
        Column("res_id", String(64), nullable=False),
        Column("param", String(128), nullable=False),
        Column("grp", Integer, nullable=False, default=0),
        *columns,
    )
    # Per resource, with the first index's value columns: a probe "does this resource have such
    # a value" then matches more index columns here than anywhere else, so planners choose it.
    Index(f"ix_{name}_resource", table.c.res_type, table.c.res_id, *(table.c[column] for column in indexes[0][1:]))
    # The value indexes end with res_id, so "the ids with such a value" is read from them alone.
    for number, columns_of_index in enumerate(indexes):
        Index(f"ix_{name}_{number}", *(table.c[column] for column in (*columns_of_index, "res_id")))
    return table


# R4 search.html: one table per parameter type, the columns each type's comparisons need.
idx_string = _index_table(
    "idx_string",
    Column("normalized", Text, nullable=False),
    Column("exact", Text, nullable=False),
    indexes=(("res_type", "param", "normalized"),),
)
idx_token = _index_table(
    "idx_token",
    Column("system", Text),
    Column("code", Text),
    Column("text", Text),
    Column("type_system", Text),
    Column("type_code", Text),
    indexes=(("res_type", "param", "code", "system"),),
)
idx_reference = _index_table(
    "idx_reference",
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("url", Text),
    Column("identifier_system", Text),
    Column("identifier_value", Text),
    indexes=(("res_type", "param", "target_type", "target_id"), ("target_type", "target_id")),
)
idx_date = _index_table(
    "idx_date",
    Column("low", DateTime(timezone=False), nullable=False),
    Column("high", DateTime(timezone=False), nullable=False),
    indexes=(("res_type", "param", "low", "high"),),
)
idx_number = _index_table(
    "idx_number",
    Column("value", Number(), nullable=False),
    indexes=(("res_type", "param", "value"),),
)
idx_quantity = _index_table(
    "idx_quantity",
    Column("value", Number(), nullable=False),
    Column("system", Text),
    Column("code", Text),
    Column("unit", Text),
    Column("canonical_value", Number()),
    Column("canonical_code", Text),
    indexes=(
        ("res_type", "param", "value"),
        ("res_type", "param", "code", "value"),
        ("res_type", "param", "canonical_code", "canonical_value"),
    ),
)
idx_uri = _index_table(
    "idx_uri",
    Column("uri", Text, nullable=False),
    indexes=(("res_type", "param", "uri"),),
)

# The index table of each search parameter type.
INDEX_TABLE = {
    "string": idx_string,
    "token": idx_token,
    "reference": idx_reference,
    "date": idx_date,
    "number": idx_number,
    "quantity": idx_quantity,
    "uri": idx_uri,
}
INDEX_TABLES = tuple(INDEX_TABLE.values())


# --- Bulk Data export (fhir_twin/store/export_jobs.py) -------------------------------------------
# Jobs and their NDJSON output live in the database, so every server process can answer a poll
# and any of them can finish a job another one started (Bulk Data IG v2 export.html).
export_job = Table(
    "export_job",
    metadata,
    Column("id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("patient_id", String(64)),
    Column("types", Text),
    Column("since", DateTime(timezone=False)),
    Column("request_url", Text, nullable=False),
    Column("transaction_time", DateTime(timezone=False), nullable=False),
    Column("owner", String(128)),
    Column("heartbeat", DateTime(timezone=False)),
    Column("attempts", Integer, nullable=False),
    Column("cursor_type", String(64)),
    Column("cursor_id", String(64)),
    Column("file_no", Integer, nullable=False),
    Column("file_count", Integer, nullable=False),
    Column("exported", Integer, nullable=False),
    Column("total", Integer),
    Column("error", Text),
    Column("finished", DateTime(timezone=False)),
    # Who started the job ("token:NAME", "client:ID"): only they may poll, fetch or cancel it.
    Column("requester", String(200)),
    # What narrows the export beyond its level and types, as JSON (``export_snapshot.Selection``):
    # the Group's members, the ``_typeFilter`` queries, the ``_elements`` asked for.
    Column("options", Text),
    PrimaryKeyConstraint("id", name="pk_export_job"),
    Index("ix_export_job_status", "status", "heartbeat"),
)

# One row per batch: a file is its rows in ``position`` order (the offset of the first line).
export_file = Table(
    "export_file",
    metadata,
    Column("job_id", String(64), nullable=False),
    Column("file_no", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("count", Integer, nullable=False),
    Column("body", Text, nullable=False),
    PrimaryKeyConstraint("job_id", "file_no", "position", name="pk_export_file"),
)


# --- The digital twin (fhir_twin/store/twin_facts.py) ----------------------------------------------
# Facts derived from resource versions by the mappings. Each row lives from the version that
# produced it (``valid_from``) until a later version or a delete replaced it (``valid_to``), so
# the twin as it was at any instant is a query, not a replay.
def _twin_table(name: str, *columns: Column) -> Table:
    table = Table(
        name,
        metadata,
        Column("seq", Sequence64, primary_key=True, autoincrement=True),
        Column("patient_id", String(64), nullable=False),
        Column("res_type", String(64), nullable=False),
        Column("res_id", String(64), nullable=False),
        Column("res_version", Integer, nullable=False),
        Column("valid_from", DateTime(timezone=False), nullable=False),
        Column("valid_to", DateTime(timezone=False)),
        *columns,
    )
    Index(f"ix_{name}_source", table.c.res_type, table.c.res_id, table.c.valid_to)
    return table


twin_measurement = _twin_table(
    "twin_measurement",
    Column("field", String(64), nullable=False),
    Column("code", Text, nullable=False),
    Column("effective", DateTime(timezone=False)),
    Column("value", Float),
    Column("category", String(64)),
    Column("original_value", Text),
    Column("original_unit", Text),
    Column("converted", Boolean, nullable=False),
    Column("flag", String(32)),
)
Index(
    "ix_twin_measurement_patient",
    twin_measurement.c.patient_id,
    twin_measurement.c.field,
    twin_measurement.c.effective,
)

twin_case = _twin_table(
    "twin_case",
    Column("kind", String(64), nullable=False),
    Column("code", Text),
    Column("display", Text),
    Column("status", String(64)),
    Column("start", DateTime(timezone=False)),
    Column("end", DateTime(timezone=False)),
    Column("details", Text),
)
Index("ix_twin_case_patient", twin_case.c.patient_id, twin_case.c.kind, twin_case.c.start)

TWIN_TABLES = (twin_measurement, twin_case)


# --- The Digital Doctor (fhir_twin/store/doctor_state.py) ------------------------------------------
# Patients whose twin changed and whose models must run again: a durable queue, written in the
# changing write's transaction and drained by a worker thread in each server process.
doctor_queue = Table(
    "doctor_queue",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("patient_id", String(64), nullable=False),
    Column("enqueued", DateTime(timezone=False), nullable=False),
    Column("claimed_by", String(128)),
    Column("claimed_at", DateTime(timezone=False)),
    Index("ix_doctor_queue_claim", "claimed_by", "seq"),
)

# What each model last assessed for a patient: a new RiskAssessment only when this changes.
doctor_last = Table(
    "doctor_last",
    metadata,
    Column("patient_id", String(64), nullable=False),
    Column("model_id", String(64), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("assessment_id", String(64), nullable=False),
    # What that assessment said (migration 0010), so the patients list sorts by risk in the
    # database: the score, probability (0-1), the model's band (e.g. NEWS2 "low-medium"), the
    # risk-probability code, the RiskAssessment's status and its occurrence.
    Column("score", Float),
    Column("probability", Float),
    Column("band", String(32)),
    # The score is a lower bound ("at least"): a partial set (NEWS2 with parameters missing).
    Column("bound", Boolean),
    Column("risk", String(32)),
    Column("status", String(16)),
    Column("occurrence", DateTime(timezone=False)),
    PrimaryKeyConstraint("patient_id", "model_id", name="pk_doctor_last"),
    Index("ix_doctor_last_score", "model_id", "score"),
    Index("ix_doctor_last_probability", "model_id", "probability"),
)

# Every trained version of a learned model, its fitted artifact and its evaluation report; when, by
# whom and why it was last activated (migration 0009); the identity keys of its training patients
# (``ml.identity``, one per line), read only when an evaluation checks for overlap.
model_version = Table(
    "model_version",
    metadata,
    Column("model_id", String(64), nullable=False),
    Column("version", String(32), nullable=False),
    Column("created", DateTime(timezone=False), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("artifact", LargeBinary, nullable=False),
    Column("report", Text, nullable=False),
    Column("card", Text, nullable=False),
    Column("activated", DateTime(timezone=False)),
    Column("activated_by", String(200)),
    Column("activation_reason", Text),
    Column("training_keys", Text),
    PrimaryKeyConstraint("model_id", "version", name="pk_model_version"),
)


# --- Security and audit (fhir_twin/store/tokens.py, fhir_twin/store/audit.py) ----------------
# API tokens: only a SHA-256 of each secret is kept, so the table cannot be replayed.
api_token = Table(
    "api_token",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("scope", Text, nullable=False),
    Column("patient_id", String(64)),
    Column("created", DateTime(timezone=False), nullable=False),
    Column("expires", DateTime(timezone=False)),
    Column("revoked", DateTime(timezone=False)),
    # Who a token the SMART authorization server issued acts for: the signed-in user's fhirUser
    # (Practitioner/1), or their user name when they have none; the audit trail names them.
    Column("acting_user", String(200)),
)

# The SMART App Launch authorization server (security/oauth): registered clients (a confidential
# one's secret as a SHA-256 hash), users who sign in (an Argon2 hash of the password), the
# authorization codes (hashed, single use, ten minutes) and the grants behind each access token
# issued (the token itself is an ``api_token`` row, so ``tokens`` mode accepts it as it is).
oauth_client = Table(
    "oauth_client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_hash", String(64)),
    Column("redirect_uris", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("created", DateTime(timezone=False), nullable=False),
    # A private_key_jwt client's public JWK Set (RFC 7517), as registered (0019).
    Column("jwks", Text),
    # Where an EHR opens the app for an EHR launch (SMART app-launch.html, "Launch App: EHR Launch").
    Column("launch_uri", Text),
)

oauth_user = Table(
    "oauth_user",
    metadata,
    Column("username", String(128), primary_key=True),
    Column("password_hash", String(256), nullable=False),
    Column("fhir_user", String(200)),
    Column("created", DateTime(timezone=False), nullable=False),
)

oauth_code = Table(
    "oauth_code",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("username", String(128), nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient_id", String(64)),
    Column("nonce", String(256)),
    Column("code_challenge", String(128), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    Column("auth_time", BigInteger, nullable=False),
    Column("expires", DateTime(timezone=False), nullable=False),
    # The EHR launch's context besides the patient (encounter, need_patient_banner), as JSON.
    Column("launch_context", Text),
)

oauth_grant = Table(
    "oauth_grant",
    metadata,
    Column("token_id", String(32), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("username", String(128), nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient_id", String(64)),
    Column("refresh_hash", String(64), unique=True),
    Column("issued", DateTime(timezone=False), nullable=False),
    Column("expires", DateTime(timezone=False), nullable=False),
    Column("refresh_expires", DateTime(timezone=False)),
    Column("revoked", DateTime(timezone=False)),
    Column("launch_context", Text),
)

# SMART EHR launch (security/oauth/launch.py): the context an EHR hands an app, under the SHA-256
# of its opaque ``launch`` id, for one client and a few minutes.
oauth_launch = Table(
    "oauth_launch",
    metadata,
    Column("launch_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("encounter_id", String(64)),
    Column("created", DateTime(timezone=False), nullable=False),
    Column("expires", DateTime(timezone=False), nullable=False),
)

# OpenID nonces a client has used (OpenID Connect Core 3.1.2.1: a nonce is not to be replayed).
oauth_nonce = Table(
    "oauth_nonce",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("nonce", String(256), primary_key=True),
    Column("expires", DateTime(timezone=False), nullable=False),
)

# Failed sign-ins counted per user name and per address (security/oauth/sign_in_limit.py), in the
# database so every server process sees them.
oauth_sign_in_failure = Table(
    "oauth_sign_in_failure",
    metadata,
    Column("subject", String(200), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last", DateTime(timezone=False), nullable=False),
)

# The audit trail's hash chain: one link per AuditEvent, in the order they were recorded.
# ``seq`` is the previous link's plus one (no gaps), ``digest`` the SHA-256 of the AuditEvent's
# stored JSON, ``link`` the hash of the previous link and this digest.
audit_chain = Table(
    "audit_chain",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=False),
    Column("res_id", String(64), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("link", String(64), nullable=False),
)

# The audit trail's search index (``store.audit_index``): AuditEvents are not in the generic
# index tables but here, one row per event and one per entity or user it names, which searches
# see in the generic tables' shape. Every read is audited, so this is the server's most written
# index; a row per event costs a read a fraction of ~18 generic rows.
audit_record = Table(
    "audit_record",
    metadata,
    Column("res_id", String(64), nullable=False),
    # The ``date`` parameter's range: ``recorded`` to the millisecond.
    Column("low", DateTime(timezone=False), nullable=False),
    Column("high", DateTime(timezone=False), nullable=False),
    Column("action", String(8), nullable=False),
    Column("outcome", String(8), nullable=False),
    Column("interaction", String(64), nullable=False),
    Column("operation", Text),
    # The requesting client's identifier, name and network address.
    Column("agent_system", Text, nullable=False),
    Column("agent", Text, nullable=False),
    Column("agent_folded", Text, nullable=False),
    Column("address", Text),
    Column("address_folded", Text),
    # The human user a JWT named: by identifier (``user_reference`` false) or by reference (then
    # also an ``audit_entity`` row of role ``user``).
    Column("user_name", Text),
    Column("user_folded", Text),
    Column("user_reference", Boolean, nullable=False),
    Column("site", Text),
    Column("site_folded", Text),
    # Whether a Query entity records the search.
    Column("query", Boolean, nullable=False),
    PrimaryKeyConstraint("res_id", name="pk_audit_record"),
    Index("ix_audit_record_date", "low", "high"),
    Index("ix_audit_record_agent", "agent"),
)

# Each verification of the audit trail's hash chain (migration 0010): when, by whom (``cli`` or
# the principal's name), how many events it checked, and the problem found (None: intact).
audit_verification = Table(
    "audit_verification",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=False), nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("checked", Integer, nullable=False),
    Column("problem", Text),
    Column("by", String(200), nullable=False),
)

# The resources, patients and user an AuditEvent names: one reference each (``url`` when absolute,
# else ``target_type``/``target_id``; none when it cannot be parsed), ``patient`` when it names a
# Patient.
audit_entity = Table(
    "audit_entity",
    metadata,
    Column("res_id", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("target_type", String(64)),
    Column("target_id", String(64)),
    Column("url", Text),
    Column("patient", Boolean, nullable=False),
    Index("ix_audit_entity_target", "target_type", "target_id", "res_id"),
    Index("ix_audit_entity_record", "res_id"),
)

# --- The CDS Hooks service (migration 0011) --------------------------------------------------------
# Each CDS client JWT's ``jti`` seen (``store/cds_jti.py``), keyed by a SHA-256 of its issuer and
# jti: the unique key makes the second insert of one the replay, in whichever server process it
# lands; a row is kept until its token has expired.
cds_jti = Table(
    "cds_jti",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("expires", DateTime(timezone=False), nullable=False),
    Index("ix_cds_jti_expires", "expires"),
)

# Each card the service issued (``store/cds_cards.py``): its feedback, to any server process, is
# audited naming the patient the card was about; kept for ``cds_card_retention``.
cds_card = Table(
    "cds_card",
    metadata,
    Column("uuid", String(36), primary_key=True),
    Column("service", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("issued", DateTime(timezone=False), nullable=False),
    Column("issued_to", String(200), nullable=False),
    Index("ix_cds_card_issued", "issued"),
)

# Notifications owed to Subscriptions (``store/subscription_outbox.py``): a row per matching
# version, inserted in the write's transaction, deleted once its receiver answered 2xx. A
# subscription's rows are delivered in ``seq`` order; ``due`` holds back a retry (backoff).
# ``channel`` is the Subscription's channel type when the row was owed: each channel's workers
# claim their own (``rest-hook`` by any process, ``websocket`` by the one holding a bound socket).
subscription_outbox = Table(
    "subscription_outbox",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("subscription_id", String(64), nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("channel", String(16), nullable=False, server_default="rest-hook"),
    Column("enqueued", DateTime(timezone=False), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("due", DateTime(timezone=False), nullable=False),
    Column("last_error", Text),
    Column("claimed_by", String(128)),
    Column("claimed_at", DateTime(timezone=False)),
    # Topic-based Subscriptions (Subscriptions Backport IG): the notification's type (handshake,
    # heartbeat, event-notification; NULL for an R4 Subscription's) and its event number.
    Column("kind", String(20)),
    Column("event_number", BigInteger),
    Index("ix_subscription_outbox_subscription", "subscription_id", "seq"),
)

# The readings of device windows not yet written (``store/device_windows.py``): inserted in the
# transaction of the bridge's batch, so the broker is acknowledged at once and nothing lives only
# in a bridge's memory; a window's rows are deleted in the transaction that writes its Observation.
# One row per window and reading time: a redelivered reading is not counted twice.
device_window_reading = Table(
    "device_window_reading",
    metadata,
    Column("seq", Sequence64, primary_key=True, autoincrement=True),
    Column("window", String(36), nullable=False),  # the window Observation's identifier
    Column("device_id", String(200), nullable=False),
    Column("value", String(64), nullable=False),  # the mapping's value name
    Column("code", String(300), nullable=False),  # system|code
    Column("unit", String(64), nullable=False),
    Column("grouping", String(16), nullable=False),
    Column("period", Integer),  # ms between samples (sampled)
    Column("start", BigInteger, nullable=False),  # epoch seconds
    Column("end", BigInteger, nullable=False),
    Column("at", BigInteger, nullable=False),  # the reading's time, ms since the epoch
    Column("number", Float, nullable=False),
    Column("patient", String(200), nullable=False),
    Column("device", String(200), nullable=False),
    Column("due", DateTime(timezone=False), nullable=False),  # max(end, arrival) + lateness
    Column("claimed_by", String(128)),
    Column("claimed_at", DateTime(timezone=False)),
    UniqueConstraint("window", "at", name="uq_device_window_reading"),
    Index("ix_device_window_reading_due", "due"),
)

# A topic-based Subscription's event count (``eventsSinceSubscriptionStart``, incremented in the
# write's transaction, so numbers follow commit order) and when it was last sent anything (its
# heartbeat is owed ``heartbeat-period`` seconds after that).
subscription_event = Table(
    "subscription_event",
    metadata,
    Column("subscription_id", String(64), primary_key=True),
    Column("events", BigInteger, nullable=False, default=0),
    Column("last_sent", DateTime(timezone=False), nullable=False),
)
