"""The audit chain's state in the twin API: its head and its last verification, and a
verification run now against the latest signed checkpoint (``audit.anchor.verify``, as
``fhir-twin audit verify`` runs it). A broken chain is shown as found, with the problem in words."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from fhir_twin.audit.trail import head
from fhir_twin.config import Config
from fhir_twin.fhir.instant import format_instant
from fhir_twin.security.context import current
from fhir_twin.store import audit_verification
from fhir_twin.store.repository import Repository


def chain_blueprint(repository: Repository, config: Config) -> Blueprint:
    blueprint = Blueprint("twin_audit_chain", __name__)

    @blueprint.get("/twin/audit/chain")
    def chain() -> Response:
        return jsonify(_state(repository))

    @blueprint.post("/twin/audit/chain/verify")
    def verify() -> Response:
        # Checkpoints' signatures (cryptography) are loaded by the first verification, not at start.
        from fhir_twin.audit import anchor

        principal = current()
        by = principal.name if principal is not None else "anonymous"
        _verdict, checkpoint = anchor.verify(repository, config.audit_key, config.resolved_audit_anchor_file, by)
        state = _state(repository)
        state["checkpoint"] = (
            {"seq": checkpoint.seq, "hash": checkpoint.hash, "count": checkpoint.count, "at": checkpoint.at}
            if checkpoint is not None
            else None
        )
        return jsonify(state)

    return blueprint


def _state(repository: Repository) -> dict[str, Any]:
    anchor = head(repository)
    last = audit_verification.last(repository)
    return {
        "head": {"seq": anchor.seq, "hash": anchor.link, "anchor": str(anchor)} if anchor is not None else None,
        "lastVerification": {
            "at": format_instant(last.at),
            "ok": last.ok,
            "checked": last.checked,
            "problem": last.problem,
            "by": last.by,
        }
        if last is not None
        else None,
    }
