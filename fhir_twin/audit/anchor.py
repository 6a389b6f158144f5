"""Signed checkpoints of the audit chain's head, kept outside the database, so records removed
from the chain's end are caught: the chain verified from the database alone is whole whatever
its length.

``fhir-twin audit anchor`` appends one JSON line per checkpoint (sequence number, head link,
record count, time) to ``audit_anchor_file``, and so does the server every ``audit_anchor_every``
seconds (``audit.anchor_schedule``); ``audit verify`` and the twin API's verification
check every line's signature and that the chain still holds the latest one's link. Signatures
are Ed25519 (RFC 8032) under a key derived from ``audit_key`` with HKDF (RFC 5869): there is one
secret to keep, and whoever holds only the public key (printed by ``audit anchor``) can check the
checkpoints without being able to forge one, which an HMAC would not allow. Lines are appended
(``O_APPEND``) and synced: an append-only file (``chattr +a``) or a copy shipped elsewhere keeps
them from being cut short in turn.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fhir_twin.audit.chain import Finding, Verdict
from fhir_twin.audit.trail import Anchor, recorded, verify_recorded
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.store import audit
from fhir_twin.store.repository import Repository

# Domain separation: the key signs nothing but checkpoints, and a checkpoint means nothing else.
_HKDF_INFO = b"fhir-twin audit checkpoint signing key"
_CONTEXT = b"fhir-twin audit checkpoint\n"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be trusted: unreadable, unsigned, or signed by another key."""


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head as it was at ``at``: link number ``seq`` was ``hash``, ``count`` links."""

    seq: int
    hash: str
    count: int
    at: str

    @property
    def anchor(self) -> Anchor:
        return Anchor(self.seq, self.hash)

    def signed(self) -> bytes:
        return _CONTEXT + json.dumps(self.__dict__, sort_keys=True, separators=(",", ":")).encode("ascii")


def signing_key(audit_key: str) -> Ed25519PrivateKey:
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(audit_key.encode("utf-8"))
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_key(audit_key: str) -> str:
    """The checkpoints' public key, raw and base64url-encoded as in a JWK's ``x`` (RFC 8037)."""
    return _b64(signing_key(audit_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def take(repository: Repository, audit_key: str, path: Path, after: int | None = None) -> Checkpoint | None:
    """Append a signed checkpoint of the chain's head to ``path``; None when the chain is empty,
    or its head is still record ``after`` (the one last anchored: nothing new to anchor)."""
    if not audit_key:
        raise CheckpointError("no audit_key is configured: checkpoints are signed with a key derived from it")
    head = audit.link_at(repository)
    if head is None or head[0] == after:
        return None
    checkpoint = Checkpoint(head[0], head[1], audit.size(repository), format_instant(now()))
    signature = signing_key(audit_key).sign(checkpoint.signed())
    line = {**checkpoint.__dict__, "key": public_key(audit_key), "signature": _b64(signature)}
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        # One write of the whole line: a process stopped around it leaves no half line behind.
        os.write(descriptor, (json.dumps(line, separators=(",", ":")) + "\n").encode("ascii"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    return checkpoint


def latest(path: Path, key: str) -> Checkpoint | None:
    """The last checkpoint in ``path`` (None when there is no file or no line), after checking
    every line's signature under ``key`` (the public key) and that none goes back on the one before."""
    if not path.is_file():
        return None
    verifier = Ed25519PublicKey.from_public_bytes(_unb64(key))
    found: Checkpoint | None = None
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, text in enumerate(lines, 1):
            if not text.strip():
                continue
            checkpoint, line_key, signature = _parse(text, f"{path} line {number}")
            if line_key != key:
                raise CheckpointError(f"{path} line {number} is signed by another key ({line_key}, not {key})")
            try:
                verifier.verify(signature, checkpoint.signed())
            except InvalidSignature:
                raise CheckpointError(
                    f"{path} line {number}: its signature does not match its content: the checkpoint was altered"
                ) from None
            if found is not None and checkpoint.seq < found.seq:
                raise CheckpointError(
                    f"{path} line {number} anchors record {checkpoint.seq}, before the {found.seq} of the line before"
                )
            found = checkpoint
    return found


def verify(repository: Repository, audit_key: str, path: Path, by: str) -> tuple[Verdict, Checkpoint | None]:
    """The chain verified against the latest checkpoint in ``path`` (as ``trail.verify_recorded``,
    its result recorded), and that checkpoint; a checkpoint file that cannot be trusted fails it."""
    try:
        if audit_key:
            checkpoint = latest(path, public_key(audit_key))
        elif path.is_file():
            raise CheckpointError(f"the checkpoints in {path} cannot be checked: no audit_key is configured")
        else:
            checkpoint = None
    except CheckpointError as error:
        return recorded(repository, Verdict(0, Finding("checkpoint", 0, "", str(error))), by), None
    return verify_recorded(repository, audit_key, by, checkpoint.anchor if checkpoint else None), checkpoint


def _parse(text: str, where: str) -> tuple[Checkpoint, str, bytes]:
    try:
        line: dict[str, Any] = json.loads(text)
        checkpoint = Checkpoint(int(line["seq"]), str(line["hash"]), int(line["count"]), str(line["at"]))
        return checkpoint, str(line["key"]), _unb64(str(line["signature"]))
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{where} is not a checkpoint ({error})") from None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
