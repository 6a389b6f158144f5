"""The audit trail's hash chain and its verification.

Each link is ``H(previous link || digest)``, where ``digest`` is the SHA-256 of the AuditEvent's
stored JSON and H is SHA-256, or HMAC-SHA-256 under ``audit_key`` when one is configured (then
someone who can edit the database but has not the key cannot rebuild a consistent chain).
Sequence numbers run without gaps, so a removed record shows as a gap, an edited one as a digest
that no longer matches, an inserted one as a link that fits neither its predecessor nor lets its
successor fit.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

GENESIS = "0" * 64


def digest(body: str) -> str:
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def link(previous: str, body_digest: str, key: str = "") -> str:
    message = (previous + body_digest).encode("ascii")
    if key:
        return hmac.new(key.encode("utf-8"), message, hashlib.sha256).hexdigest()
    return hashlib.sha256(message).hexdigest()


@dataclass(frozen=True)
class Record:
    """One link as stored, with the AuditEvent body it covers (None when that is gone)."""

    seq: int
    res_id: str
    digest: str
    link: str
    body: str | None


@dataclass(frozen=True)
class Finding:
    """The first break in the chain: ``kind`` is changed, removed or inserted."""

    kind: str
    seq: int
    res_id: str
    message: str


@dataclass(frozen=True)
class Verdict:
    checked: int
    finding: Finding | None = None


def verify(records: Iterable[Record], key: str = "", unchained: Iterable[str] = ()) -> Verdict:
    """Walk ``records`` in sequence order and report the first break. ``unchained`` are the ids
    of stored AuditEvents that no link covers: inserted behind the chain's back."""
    previous, expected_seq, checked = GENESIS, 1, 0
    pending: Record | None = None
    for record in records:
        if pending is not None:
            # The record before did not fit; if this one fits its predecessor, that one was inserted.
            if record.link == link(previous, record.digest, key):
                return Verdict(checked, _inserted(pending))
            return Verdict(checked, _changed(pending, "its link does not follow from the record before"))
        if record.seq != expected_seq:
            if record.seq < expected_seq:
                return Verdict(checked, _inserted(record))
            missing = f"{expected_seq}" if record.seq == expected_seq + 1 else f"{expected_seq}-{record.seq - 1}"
            return Verdict(
                checked,
                Finding(
                    "removed", expected_seq, "", f"audit record(s) {missing} were removed (found {record.seq} next)"
                ),
            )
        if record.body is None:
            return Verdict(
                checked, Finding("removed", record.seq, record.res_id, f"AuditEvent/{record.res_id} was removed")
            )
        if digest(record.body) != record.digest:
            return Verdict(checked, _changed(record, "its content no longer matches its digest"))
        if record.link != link(previous, record.digest, key):
            pending = record
            continue
        previous, expected_seq, checked = record.link, expected_seq + 1, checked + 1
    if pending is not None:
        # The last record does not follow from the one before: appended behind the chain's back.
        return Verdict(checked, _inserted(pending))
    for res_id in unchained:
        return Verdict(
            checked, Finding("inserted", 0, res_id, f"AuditEvent/{res_id} is stored but not in the chain: inserted")
        )
    return Verdict(checked)


def _changed(record: Record, why: str) -> Finding:
    return Finding(
        "changed", record.seq, record.res_id, f"AuditEvent/{record.res_id} (record {record.seq}) was changed: {why}"
    )


def _inserted(record: Record) -> Finding:
    return Finding(
        "inserted", record.seq, record.res_id, f"AuditEvent/{record.res_id} (record {record.seq}) was inserted"
    )
