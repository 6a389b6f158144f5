"""Reading the audit trail back: verifying its hash chain, and who accessed a patient's record."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from fhir_twin.audit.chain import Finding, Record, Verdict, verify
from fhir_twin.fhir.instant import format_instant
from fhir_twin.search.parser import parse
from fhir_twin.store import audit
from fhir_twin.store.repository import Repository

_PAGE = 500


def verify_trail(repository: Repository, key: str = "") -> Verdict:
    """Check every link of the chain and that no stored AuditEvent lies outside it."""
    records = (Record(*row) for row in audit.chained(repository))
    verdict = verify(records, key)
    if verdict.finding is not None:
        return verdict
    rewritten = audit.rewritten(repository)
    if rewritten:
        message = f"AuditEvent/{rewritten[0]} was changed: it has a version other than the one recorded"
        return Verdict(verdict.checked, Finding("changed", 0, rewritten[0], message))
    unchained = audit.unchained(repository)
    return verify([], key, unchained) if unchained else verdict


@dataclass(frozen=True)
class Access:
    """One line of an access report."""

    recorded: str
    agent: str
    user: str
    address: str
    interaction: str
    action: str
    outcome: str
    what: str

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


def accesses(repository: Repository, patient_id: str, since: datetime | None = None) -> Iterator[Access]:
    """Every recorded interaction that involved Patient ``patient_id``, oldest first."""
    params = [("patient", f"Patient/{patient_id}"), ("_sort", "date"), ("_count", str(_PAGE))]
    if since is not None:
        params.append(("date", f"ge{format_instant(since)}"))
    query = parse(("AuditEvent",), params, strict=True, default_count=_PAGE, max_count=_PAGE)
    while True:
        with repository.unit() as unit:
            page = unit.search(query, "")
        for version in page.matches:
            if version.body is not None:
                yield _access(json.loads(version.body))
        if page.next_cursor is None:
            return
        query = replace(query, cursor=page.next_cursor)


def _access(event: dict[str, Any]) -> Access:
    agents = event.get("agent", [])
    client = next((agent for agent in agents if agent.get("requestor") and "network" in agent), None)
    client = client or next((agent for agent in agents if agent.get("requestor")), {})
    user = next((agent.get("name", "") for agent in agents[1:] if agent.get("requestor")), "")
    interaction = next((coding.get("code", "") for coding in event.get("subtype", [])), "")
    what = []
    for entity in event.get("entity", []):
        if "what" in entity:
            what.append(entity["what"].get("reference", ""))
        elif "query" in entity:
            what.append(base64.b64decode(entity["query"]).decode("utf-8", "replace"))
    outcome = event.get("outcome", "")
    return Access(
        recorded=event.get("recorded", ""),
        agent=client.get("name", ""),
        user=user,
        address=client.get("network", {}).get("address", ""),
        interaction=interaction,
        action=event.get("action", ""),
        outcome="success" if outcome == "0" else event.get("outcomeDesc", outcome),
        what=" ".join(what),
    )
