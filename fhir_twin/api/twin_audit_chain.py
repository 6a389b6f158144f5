"""The audit chain's state in the twin API: its head and its last verification, and a
verification run now (``audit.trail.verify_recorded``, as ``fhir-twin audit verify`` runs it).
A broken chain is shown as found, with the problem in words."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from fhir_twin.audit.trail import head, verify_recorded
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
        principal = current()
        verify_recorded(repository, config.audit_key, principal.name if principal is not None else "anonymous")
        return jsonify(_state(repository))

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
