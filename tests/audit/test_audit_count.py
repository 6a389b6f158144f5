"""One AuditEvent per interaction: a scripted session of every kind of request, counted exactly.

A Bundle is recorded once for itself and once per entry (each entry is routed like a request
sent alone); the CapabilityStatement, which any client may fetch unauthenticated, is not
recorded.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

pytestmark = pytest.mark.audited

JSON_PATCH = "application/json-patch+json"
PATIENT_URN = "urn:uuid:6f1d0a52-41c1-4b4e-9a4b-2f7f3a1c9e01"


def test_every_interaction_is_recorded_exactly_once(server: Any) -> None:
    client, ehr = server.client, server.ehr
    assert server.chain_count() == 0

    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"}, headers=ehr)
    assert created.status_code == 201
    pid = created.get_json()["id"]
    script: list[tuple[str, int, int]] = []  # (what, status, records it adds)
    script.append(("create", 201, 1))

    def run(what: str, answer: Any, status: int, records: int) -> None:
        assert answer.status_code == status, (what, answer.get_json())
        script.append((what, status, records))

    run("read", client.get(f"/fhir/Patient/{pid}", headers=ehr), 200, 1)
    run("vread", client.get(f"/fhir/Patient/{pid}/_history/1", headers=ehr), 200, 1)
    updated = {"resourceType": "Patient", "id": pid, "gender": "male"}
    run("update", client.put(f"/fhir/Patient/{pid}", json=updated, headers=ehr), 200, 1)
    patch = json.dumps([{"op": "add", "path": "/active", "value": True}])
    run("patch", client.patch(f"/fhir/Patient/{pid}", data=patch, content_type=JSON_PATCH, headers=ehr), 200, 1)
    run("search", client.get(f"/fhir/Patient?_id={pid}", headers=ehr), 200, 1)
    run("history", client.get(f"/fhir/Patient/{pid}/_history", headers=ehr), 200, 1)
    invalid = {"resourceType": "Patient", "gender": 5}
    run("invalid create", client.post("/fhir/Patient", json=invalid, headers=ehr), 400, 1)
    # The auditor's token grants AuditEvent only: reading a Patient is refused.
    run("denied read", client.get(f"/fhir/Patient/{pid}", headers=server.auditor), 403, 1)
    run("read of nothing", client.get("/fhir/Patient/no-such-patient", headers=ehr), 404, 1)
    run("no token", client.get(f"/fhir/Patient/{pid}"), 401, 1)
    run("capabilities", client.get("/fhir/metadata"), 200, 0)
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{pid}"}},
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        ],
    }
    run("batch of 2", client.post("/fhir", json=batch, headers=ehr), 200, 2 + 1)
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": PATIENT_URN,
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "heart rate"},
                    "subject": {"reference": PATIENT_URN},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
            {
                "resource": {"resourceType": "Patient", "id": "tx-put"},
                "request": {"method": "PUT", "url": "Patient/tx-put"},
            },
        ],
    }
    run("transaction of 3", client.post("/fhir", json=transaction, headers=ehr), 200, 3 + 1)
    run("delete", client.delete(f"/fhir/Patient/{pid}", headers=ehr), 200, 1)

    # 12 single interactions (create, read, vread, update, patch, search, history, 400, 403,
    # 404, 401, delete), capabilities 0, the batch 2 entries + 1, the transaction 3 entries + 1.
    expected = 12 + 0 + (2 + 1) + (3 + 1)
    assert expected == 19
    assert sum(records for _, _, records in script) == expected
    assert server.chain_count() == expected

    # The auditor sees the same count through the API; its search is recorded after it answers.
    counted = server.audit_search("_summary=count")
    assert counted["total"] == expected
    assert server.chain_count() == expected + 1

    events = server.events()[:expected]
    assert len({event["id"] for event in events}) == expected
    kinds = Counter((server.subtype(event), event["outcome"]) for event in events)
    assert kinds == {
        # The create, the batch's and the transaction's two creates; the invalid one refused.
        ("create", "0"): 4,
        ("create", "4"): 1,
        # The read and the batch's read; the 403, the 404 and the 401.
        ("read", "0"): 2,
        ("read", "4"): 3,
        ("vread", "0"): 1,
        # The update and the transaction's PUT.
        ("update", "0"): 2,
        ("patch", "0"): 1,
        ("search-type", "0"): 1,
        ("history-instance", "0"): 1,
        ("batch", "0"): 1,
        ("transaction", "0"): 1,
        ("delete", "0"): 1,
    }


def test_the_chain_numbers_every_record_once_without_gaps(server: Any) -> None:
    for n in range(3):
        server.client.put(f"/fhir/Patient/p{n}", json={"resourceType": "Patient", "id": f"p{n}"}, headers=server.ehr)
        server.client.get(f"/fhir/Patient/p{n}", headers=server.ehr)
    server.flush()
    with server.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT seq, res_id FROM audit_chain ORDER BY seq").all()
        stored = connection.exec_driver_sql("SELECT COUNT(*) FROM resource WHERE res_type = 'AuditEvent'").scalar_one()
    assert [row[0] for row in rows] == list(range(1, 7))
    assert len({row[1] for row in rows}) == 6
    assert stored == 6
