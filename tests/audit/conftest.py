"""Fixtures for the audit trail's tests: a server with named tokens, and the stored trail read back.

Records of writes commit with the write; those of reads and refusals are queued and written by a
thread, so every count here comes after ``flush``. Counting ``audit_chain`` rows directly keeps
the count free of the records the counting itself would add through the API.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy
from flask import Flask

from fhir_twin.app import services_of
from tests import factories
from tests.factories import bearer

# The address requests come from, so the audit trail's network address is one the test chose.
CLIENT_ADDRESS = "10.1.2.3"


class Server(factories.Server):
    """An app in auth mode "tokens" with a system token ``ehr``, an auditor token, and the
    address its client's requests come from."""

    def __init__(self, app: Flask, address: str = CLIENT_ADDRESS) -> None:
        super().__init__(app, bearer(app, "system/*.cruds", name="ehr"))
        self.address = address
        self.client.environ_base["REMOTE_ADDR"] = address
        self.auditor = bearer(app, "user/AuditEvent.rs", name="auditor")

    @property
    def ehr(self) -> dict[str, str]:
        return self.system

    @property
    def engine(self) -> sqlalchemy.Engine:
        return services_of(self.app).repository.engine

    def flush(self) -> None:
        services_of(self.app).recorder.flush()

    def chain_count(self) -> int:
        self.flush()
        with self.engine.connect() as connection:
            return connection.exec_driver_sql("SELECT COUNT(*) FROM audit_chain").scalar_one()

    def events(self) -> list[dict[str, Any]]:
        """Every AuditEvent in chain order, as stored."""
        self.flush()
        with self.engine.connect() as connection:
            rows = connection.exec_driver_sql(
                "SELECT rv.body FROM audit_chain c JOIN resource_version rv"
                " ON rv.res_type = 'AuditEvent' AND rv.res_id = c.res_id AND rv.version = 1 ORDER BY c.seq"
            ).all()
        return [json.loads(row[0]) for row in rows]

    def events_since(self, mark: int) -> list[dict[str, Any]]:
        """The AuditEvents recorded after the first ``mark`` ones."""
        return self.events()[mark:]

    def audit_search(self, query: str) -> dict[str, Any]:
        """``GET AuditEvent?query`` as the auditor (which itself adds a record)."""
        answer = self.client.get(f"/fhir/AuditEvent?{query}", headers=self.auditor)
        assert answer.status_code == 200, answer.get_json()
        return answer.get_json()

    def audit_ids(self, query: str) -> set[str]:
        bundle = self.audit_search(query + "&_count=1000")
        return {entry["resource"]["id"] for entry in bundle.get("entry", [])}

    @staticmethod
    def subtype(event: dict[str, Any]) -> str:
        """The restful-interaction code of ``event``."""
        codes = [c["code"] for c in event["subtype"] if c["system"] == "http://hl7.org/fhir/restful-interaction"]
        assert len(codes) == 1, event["subtype"]
        return codes[0]

    @staticmethod
    def whats(event: dict[str, Any]) -> list[str]:
        return [entity["what"]["reference"] for entity in event.get("entity", []) if "what" in entity]

    @staticmethod
    def requestor(event: dict[str, Any]) -> dict[str, Any]:
        """The requesting agent (the client), first of the agents."""
        agents = [agent for agent in event["agent"] if agent.get("requestor")]
        assert agents, event["agent"]
        return agents[0]


@pytest.fixture
def server(make_app: Callable[..., Flask]) -> Server:
    return Server(make_app(auth_mode="tokens", doctor=False))
