"""The typical use, end to end: a ward system subscribes to high NEWS2 assessments and is told
when the Digital Doctor records one from the vital signs written, and not for a low one."""

from __future__ import annotations

import json
import time

from flask.testing import FlaskClient

from tests.ml.doctor_data import NEWS2_VECTORS, ago, news2_set, patient
from tests.subscriptions.receiver import Receiver, eventually

HIGH = NEWS2_VECTORS[3][0]
LOW = NEWS2_VECTORS[0][0]


def test_a_high_news2_assessment_notifies_the_ward(client: FlaskClient, receiver: Receiver) -> None:
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "deteriorating patients",
        "criteria": "RiskAssessment?method=news2&risk=high",
        "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"},
    }
    assert client.post("/fhir/Subscription", json=subscription).status_code == 201
    for patient_id, vitals in (("calm", LOW), ("sick", HIGH)):
        assert client.put(f"/fhir/Patient/{patient_id}", json=patient(patient_id)).status_code == 201
        for observation in news2_set(patient_id, vitals, ago(minutes=10)):
            assert client.post("/fhir/Observation", json=observation).status_code == 201

    # The Doctor assesses as the set comes in (preliminary, "at least" bands) and when complete:
    # each high one stored is notified, exactly what the same search finds, and nothing else.
    def final() -> int:
        found = client.get("/fhir/RiskAssessment?method=news2").get_json().get("entry", [])
        return sum(entry["resource"]["status"] == "final" for entry in found)

    eventually(lambda: final() == 2)

    def high() -> list[str]:
        found = client.get("/fhir/RiskAssessment?method=news2&risk=high").get_json()
        return sorted(entry["resource"]["id"] for entry in found.get("entry", []))

    eventually(lambda: len(receiver.received) == len(high()), timeout=30)
    time.sleep(0.5)
    notified = [json.loads(got.body) for got in receiver.received]
    assert sorted(assessment["id"] for assessment in notified) == high()
    for assessment in notified:
        assert assessment["resourceType"] == "RiskAssessment"
        assert assessment["subject"]["reference"] == "Patient/sick"
        assert assessment["method"]["coding"][0]["code"] == "news2"
        assert assessment["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "high"
    assert any(assessment["status"] == "final" for assessment in notified)
