"""Reading the audit trail back: verifying its hash chain, and who accessed a patient's record."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from fhir_twin.audit.chain import GENESIS, Finding, Record, Verdict, link, verify
from fhir_twin.fhir.instant import format_instant, now
from fhir_twin.search.parser import parse
from fhir_twin.search.query import Search
from fhir_twin.store import audit
from fhir_twin.store import audit_verification as verifications
from fhir_twin.store.audit_verification import Verification
from fhir_twin.store.repository import Repository

_PAGE = 500
SUCCESS = "success"
# Links looked at to tell a wrong ``audit_key`` from a changed first record.
_KEY_PROBE = 20


@dataclass(frozen=True)
class Anchor:
    """A link of the chain as it was once seen (``fhir-twin audit head``), kept outside the
    database: the chain must still hold it, which catches records removed from its end (and,
    without ``audit_key``, a chain rebuilt by someone who can write the database)."""

    seq: int
    link: str

    def __str__(self) -> str:
        return f"{self.seq}:{self.link}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        seq, _, found = text.strip().partition(":")
        if not seq.isdigit() or int(seq) < 1 or len(found) != 64 or any(c not in "0123456789abcdef" for c in found):
            raise ValueError(f"{text!r} is not an anchor SEQ:LINK as `fhir-twin audit head` prints it")
        return cls(int(seq), found)


def head(repository: Repository) -> Anchor | None:
    """The chain's last link, to keep outside the database as an anchor."""
    found = audit.link_at(repository)
    return Anchor(*found) if found else None


def verify_recorded(repository: Repository, key: str, by: str, anchor: Anchor | None = None) -> Verdict:
    """``verify_trail``, its result kept (``store.audit_verification``) with when and by whom
    (``cli``, or the principal's name), so the chain's state can be shown with its last check."""
    return recorded(repository, verify_trail(repository, key, anchor), by)


def recorded(repository: Repository, verdict: Verdict, by: str) -> Verdict:
    """``verdict``, kept as the newest verification."""
    problem = verdict.finding.message if verdict.finding is not None else None
    verifications.record(repository, Verification(now(), problem is None, verdict.checked, problem, by))
    return verdict


def verify_trail(repository: Repository, key: str = "", anchor: Anchor | None = None) -> Verdict:
    """Check every link of the chain, that no stored AuditEvent lies outside it, and that it
    still holds ``anchor``."""
    records = (Record(*row) for row in audit.chained(repository))
    verdict = verify(records, key)
    if verdict.finding is not None:
        return _wrong_key(repository, key) or verdict
    if anchor is not None:
        found = audit.link_at(repository, anchor.seq)
        if found is None:
            last = audit.link_at(repository)
            message = (
                f"the chain ends at record {last[0] if last else 0}, before the anchored record {anchor.seq}: "
                "records were removed from its end"
            )
            return Verdict(verdict.checked, Finding("removed", anchor.seq, "", message))
        if found[1] != anchor.link:
            message = f"record {anchor.seq}'s link is not the anchored one: the chain was changed and its links rebuilt"
            return Verdict(verdict.checked, Finding("changed", anchor.seq, "", message))
    rewritten = audit.rewritten(repository)
    if rewritten:
        message = f"AuditEvent/{rewritten[0]} was changed: it has a version other than the one recorded"
        return Verdict(verdict.checked, Finding("changed", 0, rewritten[0], message))
    unchained = audit.unchained(repository)
    return verify([], key, unchained) if unchained else verdict


def key_mismatch(repository: Repository, key: str) -> str | None:
    """Why ``key`` is not the key the trail was written with, or None when it is (or the trail is
    too short to tell): checked before a server writes, so it never chains under another key."""
    verdict = _wrong_key(repository, key)
    return verdict.finding.message if verdict is not None and verdict.finding is not None else None


def _wrong_key(repository: Repository, key: str) -> Verdict | None:
    """A verdict that ``key`` is not the trail's key, when not one of the first links follows
    from the link before it under it. A changed, removed or inserted record breaks the links
    next to it only; a different key (or none where one was used, or one where none was) breaks
    every link."""
    probe: list[tuple[str, str]] = []
    for seq, _res_id, body_digest, stored, _body in audit.chained(repository, batch=_KEY_PROBE):
        probe.append((body_digest, stored))
        if len(probe) == _KEY_PROBE or seq >= _KEY_PROBE:
            break
    if len(probe) < 2:
        return None
    previous = [GENESIS] + [stored for _digest, stored in probe[:-1]]
    if any(
        link(before, body_digest, key) == stored for before, (body_digest, stored) in zip(previous, probe, strict=True)
    ):
        return None
    without = all(
        link(before, body_digest) == stored for before, (body_digest, stored) in zip(previous, probe, strict=True)
    )
    if key and without:
        why = "the trail was written without an audit_key, and one is configured"
    elif not key:
        why = "the trail was written under an audit_key, and none is configured"
    else:
        why = "the configured audit_key is not the one the trail was written with"
    return Verdict(0, Finding("key", 0, "", f"no link of the chain follows under this key: {why}"))


@dataclass(frozen=True)
class Access:
    """One line of an access report; ``event`` is the AuditEvent's id."""

    recorded: str
    agent: str
    user: str
    address: str
    interaction: str
    action: str
    outcome: str
    what: str
    event: str = ""

    def as_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Filters:
    """What narrows an access report, as AuditEvent search values (R4 auditevent.html#search),
    so the audit index filters in SQL: the client or user name (``agent-name:exact``), action
    (C R U D E), outcome (0 4 8 12), and a range of ``recorded`` (FHIR dateTimes, inclusive)."""

    agent: str | None = None
    action: str | None = None
    outcome: str | None = None
    start: str | None = None
    end: str | None = None

    def params(self) -> list[tuple[str, str]]:
        found = [("agent-name:exact", self.agent), ("action", self.action), ("outcome", self.outcome)]
        found += [("date", f"ge{self.start}" if self.start else None), ("date", f"le{self.end}" if self.end else None)]
        return [(name, value) for name, value in found if value]


def _query(patient_id: str, params: list[tuple[str, str]], count: int) -> Search:
    return parse(
        ("AuditEvent",),
        [("patient", f"Patient/{patient_id}"), *params, ("_count", str(count))],
        strict=True,
        default_count=_PAGE,
        max_count=_PAGE,
    )


def accesses(
    repository: Repository,
    patient_id: str,
    since: datetime | None = None,
    filters: Filters = Filters(),
    newest_first: bool = False,
) -> Iterator[Access]:
    """Every recorded interaction that involved Patient ``patient_id`` and meets ``filters``,
    oldest first (or newest first)."""
    params = [("_sort", "-date" if newest_first else "date"), *filters.params()]
    if since is not None:
        params.append(("date", f"ge{format_instant(since)}"))
    query = _query(patient_id, params, _PAGE)
    while True:
        with repository.transaction() as tx:
            page = tx.search(query, "")
        for version in page.matches:
            if version.body is not None:
                yield _access(json.loads(version.body))
        if page.next_cursor is None:
            return
        query = replace(query, cursor=page.next_cursor)


def access_count(repository: Repository, patient_id: str, filters: Filters = Filters()) -> int:
    """How many recorded interactions ``accesses`` would yield, counted in the database."""
    with repository.transaction() as tx:
        page = tx.search(_query(patient_id, filters.params(), 0), "")
    return page.total or 0


@dataclass
class Client:
    """One client's (or user's) accesses in a report: how many, by action, how many failed, when."""

    agent: str
    count: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    failures: int = 0
    first: str = ""
    last: str = ""


def clients(repository: Repository, patient_id: str, filters: Filters = Filters()) -> list[Client]:
    """``accesses`` summed per client, most accesses first."""
    found: dict[str, Client] = {}
    for access in accesses(repository, patient_id, filters=filters):
        client = found.setdefault(access.agent, Client(access.agent, first=access.recorded))
        client.count += 1
        client.actions[access.action] = client.actions.get(access.action, 0) + 1
        client.failures += access.outcome != SUCCESS
        client.last = access.recorded
    return sorted(found.values(), key=lambda client: (-client.count, client.agent))


def _access(event: dict[str, Any]) -> Access:
    agents: list[dict[str, Any]] = event.get("agent", [])
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
        outcome=SUCCESS if outcome == "0" else event.get("outcomeDesc", outcome),
        what=" ".join(what),
        event=f"AuditEvent/{event.get('id', '')}",
    )
