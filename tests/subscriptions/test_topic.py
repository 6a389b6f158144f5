"""Topic-based Subscriptions (Subscriptions R5 Backport IG on R4B): topics stored and checked,
Subscriptions on them checked, and what a receiver gets: handshake, numbered events in history
Bundles led by a SubscriptionStatus, per payload content; ``$status``."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle
from flask import Flask
from flask.testing import FlaskClient

from tests.ml.doctor_data import NEWS2_VECTORS, ago, news2_set, patient
from tests.subscriptions.receiver import Receiver, eventually

IG = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FHIR_JSON = "application/fhir+json"
# The shipped topic: a NEWS2 RiskAssessment created high, or updated from another band to high.
NEWS2_HIGH: dict[str, Any] = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "subscription-topics" / "news2-high.json").read_text(encoding="utf-8")
)
TOPIC_URL = NEWS2_HIGH["url"]


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    client = make_app(subscription_retry_delay_ms=50, subscription_max_attempts=20).test_client()
    assert client.put("/fhir/SubscriptionTopic/news2-high", json=NEWS2_HIGH).status_code == 201
    for patient_id in ("sick", "calm"):
        assert client.put(f"/fhir/Patient/{patient_id}", json=patient(patient_id)).status_code == 201
    return client


def subscription(endpoint: str, content: str = "id-only", *filters: str, **channel: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Subscription",
        "meta": {"profile": [IG + "backport-subscription"]},
        "status": "requested",
        "reason": "deteriorating patients",
        "criteria": TOPIC_URL,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": FHIR_JSON,
            "_payload": {"extension": [{"url": IG + "backport-payload-content", "valueCode": content}]},
            **channel,
        },
    }
    if filters:
        extension = [{"url": IG + "backport-filter-criteria", "valueString": text} for text in filters]
        body["_criteria"] = {"extension": extension}
    return body


def assessment(patient: str, risk: str, method: str = "news2") -> dict[str, Any]:
    system = "http://terminology.hl7.org/CodeSystem/risk-probability"
    return {
        "resourceType": "RiskAssessment",
        "status": "final",
        "subject": {"reference": f"Patient/{patient}"},
        "method": {"coding": [{"system": "urn:fhir-twin:model", "code": method}]},
        "prediction": [{"qualitativeRisk": {"coding": [{"system": system, "code": risk}]}}],
    }


def create(client: FlaskClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(f"/fhir/{body['resourceType']}", json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def bundles(receiver: Receiver) -> list[dict[str, Any]]:
    found = [json.loads(got.body) for got in receiver.received]
    for notification in found:
        Bundle.model_validate(notification)  # a valid R4B Bundle, SubscriptionStatus included
    return found


def of_type(receiver: Receiver, kind: str) -> list[dict[str, Any]]:
    return [found for found in bundles(receiver) if found["entry"][0]["resource"]["type"] == kind]


def test_topics_are_stored_and_searched_by_url_and_status(client: FlaskClient) -> None:
    found = client.get(f"/fhir/SubscriptionTopic?url={TOPIC_URL}&status=active").get_json()
    assert found["total"] == 1
    assert found["entry"][0]["resource"]["title"] == "NEWS2 high"
    assert client.get("/fhir/SubscriptionTopic?status=retired").get_json()["total"] == 0


@pytest.mark.parametrize(
    ("change", "element", "words"),
    [
        ({"url": None}, "SubscriptionTopic.url", "required"),
        ({"resourceTrigger": None}, "SubscriptionTopic.resourceTrigger", "at least one"),
        ({"resourceTrigger": [{"resource": "Nonsense"}]}, "SubscriptionTopic.resourceTrigger[0].resource", "Nonsense"),
        (
            {"resourceTrigger": [{"resource": "Patient", "queryCriteria": {"current": "colour=blue"}}]},
            "SubscriptionTopic.resourceTrigger[0].queryCriteria.current",
            "colour",
        ),
        (
            {"resourceTrigger": [{"resource": "Patient", "queryCriteria": {"current": "birthdate=ap2000"}}]},
            "SubscriptionTopic.resourceTrigger[0].queryCriteria.current",
            "birthdate",
        ),
        (
            {"resourceTrigger": [{"resource": "Patient", "queryCriteria": {"previous": "_id=p1"}}]},
            "SubscriptionTopic.resourceTrigger[0].queryCriteria.previous",
            "_id",
        ),
        (
            {"resourceTrigger": [{"resource": "Patient", "fhirPathCriteria": "%current.where("}]},
            "SubscriptionTopic.resourceTrigger[0].fhirPathCriteria",
            "FHIRPath",
        ),
        (
            {"canFilterBy": [{"resource": "RiskAssessment", "filterParameter": "colour"}]},
            "SubscriptionTopic.canFilterBy[0].filterParameter",
            "colour",
        ),
    ],
)
def test_a_topic_the_server_cannot_evaluate_is_refused(
    client: FlaskClient, change: dict[str, Any], element: str, words: str
) -> None:
    body = {key: value for key, value in {**NEWS2_HIGH, **change, "url": "http://x/t"}.items() if value is not None}
    if "url" in change:
        del body["url"]
    response = client.post("/fhir/SubscriptionTopic", json=body)
    assert response.status_code == 400, response.get_json()
    issue = response.get_json()["issue"][0]
    assert issue["expression"] == [element]
    assert words in issue["diagnostics"]
    assert client.get("/fhir/SubscriptionTopic").get_json()["total"] == 1


@pytest.mark.parametrize(
    ("change", "element", "words"),
    [
        ({"criteria": "http://example.org/no-such-topic"}, "Subscription.criteria", "no SubscriptionTopic"),
        (
            {"_criteria": {"extension": [{"url": IG + "backport-filter-criteria", "valueString": "status=final"}]}},
            "Subscription.criteria.extension[0]",
            "cannot filter by 'status'",
        ),
        ({"channel": {"type": "rest-hook", "endpoint": "http://x/y", "payload": FHIR_JSON}}, None, "payload-content"),
        ({"channel": {"type": "rest-hook", "endpoint": "http://x/y"}}, "Subscription.channel.payload", "Bundles"),
    ],
)
def test_a_topic_based_subscription_is_checked_when_created(
    client: FlaskClient, change: dict[str, Any], element: str | None, words: str
) -> None:
    response = client.post("/fhir/Subscription", json={**subscription("http://127.0.0.1:9/hook"), **change})
    assert response.status_code == 400, response.get_json()
    issue = response.get_json()["issue"][0]
    if element is not None:
        assert issue["expression"] == [element]
    assert words in issue["diagnostics"]
    assert client.get("/fhir/Subscription").get_json()["total"] == 0


def test_handshake_then_numbered_id_only_events_for_the_filtered_patient(
    client: FlaskClient, receiver: Receiver
) -> None:
    stored = create(client, subscription(receiver.url, "id-only", "subject=Patient/sick"))
    assert stored["status"] == "active"
    eventually(lambda: len(of_type(receiver, "handshake")) == 1)

    create(client, assessment("calm", "high"))  # another patient: filtered out
    create(client, assessment("sick", "low"))  # not high: the topic does not fire
    first = create(client, assessment("sick", "high"))
    second = create(client, assessment("sick", "high"))
    eventually(lambda: len(of_type(receiver, "event-notification")) == 2)
    time.sleep(0.3)
    events = of_type(receiver, "event-notification")
    assert len(events) == 2
    for number, (notification, written) in enumerate(zip(events, (first, second), strict=True), start=1):
        assert notification["type"] == "history"
        status = notification["entry"][0]["resource"]
        assert status["resourceType"] == "SubscriptionStatus"
        assert status["topic"] == TOPIC_URL
        assert status["subscription"]["reference"].endswith(f"/Subscription/{stored['id']}")
        assert status["eventsSinceSubscriptionStart"] == str(number)
        event = status["notificationEvent"][0]
        assert event["eventNumber"] == str(number)
        assert event["focus"]["reference"].endswith(f"/RiskAssessment/{written['id']}")
        focus = notification["entry"][1]
        assert focus["fullUrl"].endswith(f"/RiskAssessment/{written['id']}")
        assert focus["request"]["method"] == "POST"
        assert "resource" not in focus
    assert of_type(receiver, "handshake")[0]["entry"][0]["resource"]["eventsSinceSubscriptionStart"] == "0"


def test_an_update_fires_only_when_the_query_criteria_change(client: FlaskClient, receiver: Receiver) -> None:
    create(client, subscription(receiver.url, "full-resource"))
    low = create(client, assessment("sick", "low"))
    eventually(lambda: len(of_type(receiver, "handshake")) == 1)
    became_high = client.put(f"/fhir/RiskAssessment/{low['id']}", json={**assessment("sick", "high"), "id": low["id"]})
    assert became_high.status_code == 200
    stays_high = {**assessment("sick", "high"), "id": low["id"], "note": [{"text": "again"}]}
    assert client.put(f"/fhir/RiskAssessment/{low['id']}", json=stays_high).status_code == 200
    eventually(lambda: len(of_type(receiver, "event-notification")) == 1)
    time.sleep(0.3)
    [notification] = of_type(receiver, "event-notification")
    focus = notification["entry"][1]
    assert focus["request"] == {"method": "PUT", "url": f"RiskAssessment/{low['id']}"}
    assert focus["resource"]["meta"]["versionId"] == "2"
    assert focus["resource"]["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "high"


def test_an_empty_payload_names_no_resource(client: FlaskClient, receiver: Receiver) -> None:
    create(client, subscription(receiver.url, "empty"))
    create(client, assessment("sick", "high"))
    eventually(lambda: len(of_type(receiver, "event-notification")) == 1)
    [notification] = of_type(receiver, "event-notification")
    assert len(notification["entry"]) == 1
    event = notification["entry"][0]["resource"]["notificationEvent"][0]
    assert event["eventNumber"] == "1" and "focus" not in event


def test_fhirpath_criteria_and_delete_triggers(client: FlaskClient, receiver: Receiver) -> None:
    topic = {
        "resourceType": "SubscriptionTopic",
        "url": "http://example.org/fhir-twin/SubscriptionTopic/patient-gone",
        "status": "active",
        "resourceTrigger": [
            {
                "resource": "Patient",
                "supportedInteraction": ["delete", "update"],
                "fhirPathCriteria": "%previous.gender = 'female' and %current.empty()",
            }
        ],
    }
    create(client, topic)
    body = {**subscription(receiver.url, "id-only"), "criteria": topic["url"]}
    create(client, body)
    patient = create(client, {"resourceType": "Patient", "gender": "female"})
    client.put(f"/fhir/Patient/{patient['id']}", json={**patient, "gender": "other"})
    other = create(client, {"resourceType": "Patient", "gender": "female"})
    assert client.delete(f"/fhir/Patient/{other['id']}").status_code in (200, 204)
    eventually(lambda: len(of_type(receiver, "event-notification")) == 1)
    time.sleep(0.3)
    [notification] = of_type(receiver, "event-notification")
    assert notification["entry"][1]["request"] == {"method": "DELETE", "url": f"Patient/{other['id']}"}


def test_status_reports_topic_based_subscriptions(client: FlaskClient, receiver: Receiver) -> None:
    stored = create(client, subscription(receiver.url))
    create(client, {**subscription(receiver.url), "status": "off"})
    create(client, assessment("sick", "high"))
    eventually(lambda: len(of_type(receiver, "event-notification")) == 1)

    found = client.get(f"/fhir/Subscription/{stored['id']}/$status").get_json()
    Bundle.model_validate(found)
    assert found["type"] == "searchset" and found["total"] == 1
    status = found["entry"][0]["resource"]
    assert status["type"] == "query-status"
    assert status["status"] == "active"
    assert status["eventsSinceSubscriptionStart"] == "1"
    assert client.get("/fhir/Subscription/$status").get_json()["total"] == 2
    active = client.get("/fhir/Subscription/$status?status=active").get_json()
    assert [entry["resource"]["subscription"]["reference"] for entry in active["entry"]] == [
        f"http://localhost/fhir/Subscription/{stored['id']}"
    ]
    r4 = create(
        client,
        {
            **subscription(receiver.url),
            "criteria": "Patient",
            "channel": {"type": "rest-hook", "endpoint": receiver.url},
        },
    )
    refused = client.get(f"/fhir/Subscription/{r4['id']}/$status")
    assert refused.status_code == 400
    assert "not topic-based" in refused.get_json()["issue"][0]["diagnostics"]
    assert client.get("/fhir/Subscription/nope/$status").status_code == 404


def test_heartbeats_are_sent_when_idle(make_app: Callable[..., Flask], receiver: Receiver) -> None:
    client = make_app().test_client()
    assert client.put("/fhir/SubscriptionTopic/news2-high", json=NEWS2_HIGH).status_code == 201
    heartbeat = [{"url": IG + "backport-heartbeat-period", "valueUnsignedInt": 1}]
    create(client, subscription(receiver.url, "empty", extension=heartbeat))
    eventually(lambda: len(of_type(receiver, "heartbeat")) >= 2, timeout=10)
    beat = of_type(receiver, "heartbeat")[0]["entry"][0]["resource"]
    assert beat["eventsSinceSubscriptionStart"] == "0" and "notificationEvent" not in beat


def test_the_capability_statement_offers_topics_and_status(client: FlaskClient) -> None:
    statement = client.get("/fhir/metadata").get_json()
    resources = {item["type"]: item for item in statement["rest"][0]["resource"]}
    assert "SubscriptionTopic" in resources
    assert {"url", "status"} <= {item["name"] for item in resources["SubscriptionTopic"]["searchParam"]}
    subscription_resource = resources["Subscription"]
    assert "status" in {item["name"] for item in subscription_resource["operation"]}
    assert IG + "backport-subscription" in subscription_resource["supportedProfile"]


def test_a_rolled_back_write_takes_no_event_number(client: FlaskClient, receiver: Receiver) -> None:
    create(client, subscription(receiver.url, "id-only"))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": assessment("sick", "high"), "request": {"method": "POST", "url": "RiskAssessment"}},
            {
                "resource": {"resourceType": "Patient", "gender": "nonsense"},
                "request": {"method": "POST", "url": "Patient"},
            },
        ],
    }
    assert client.post("/fhir", json=bundle).status_code == 400
    kept = create(client, assessment("sick", "high"))
    eventually(lambda: len(of_type(receiver, "event-notification")) == 1)
    time.sleep(0.3)
    [notification] = of_type(receiver, "event-notification")
    event = notification["entry"][0]["resource"]["notificationEvent"][0]
    assert event["eventNumber"] == "1"
    assert event["focus"]["reference"].endswith(f"/RiskAssessment/{kept['id']}")


def test_the_doctors_high_news2_fires_the_shipped_topic(client: FlaskClient, receiver: Receiver) -> None:
    """The typical use: the Digital Doctor records a high NEWS2 from the vital signs written, and
    the ward subscribed to the shipped topic is sent it; the calm patient's is not sent."""
    create(client, subscription(receiver.url, "full-resource"))
    for patient_id, vitals in (("calm", NEWS2_VECTORS[0][0]), ("sick", NEWS2_VECTORS[3][0])):
        for observation in news2_set(patient_id, vitals, ago(minutes=10)):
            create(client, observation)

    def final() -> int:
        found = client.get("/fhir/RiskAssessment?method=news2").get_json().get("entry", [])
        return sum(entry["resource"]["status"] == "final" for entry in found)

    eventually(lambda: final() == 2)  # the Doctor is done with both patients

    def high() -> list[str]:
        found = client.get("/fhir/RiskAssessment?method=news2&risk=high").get_json()
        return [entry["resource"]["id"] for entry in found.get("entry", [])]

    eventually(lambda: bool(high()) and len(of_type(receiver, "event-notification")) >= len(high()), timeout=30)
    time.sleep(0.3)
    notified = [found["entry"][1]["resource"] for found in of_type(receiver, "event-notification")]
    assert {assessment["id"] for assessment in notified} == set(high())
    assert {assessment["subject"]["reference"] for assessment in notified} == {"Patient/sick"}
    numbers = [
        found["entry"][0]["resource"]["notificationEvent"][0]["eventNumber"]
        for found in of_type(receiver, "event-notification")
    ]
    assert numbers == [str(n) for n in range(1, len(numbers) + 1)]


@pytest.mark.parametrize("gone", ["deleted", "retired"])
def test_a_subscription_whose_topic_is_gone_is_set_to_error(client: FlaskClient, receiver: Receiver, gone: str) -> None:
    created = create(client, subscription(receiver.url, "id-only"))
    if gone == "deleted":
        assert client.delete("/fhir/SubscriptionTopic/news2-high").status_code in (200, 204)
    else:
        retired = {**NEWS2_HIGH, "id": "news2-high", "status": "retired"}
        assert client.put("/fhir/SubscriptionTopic/news2-high", json=retired).status_code == 200

    def errored() -> bool:
        return client.get(f"/fhir/Subscription/{created['id']}").get_json()["status"] == "error"

    eventually(errored, timeout=10)
    stopped = client.get(f"/fhir/Subscription/{created['id']}").get_json()
    said = "no longer exists" if gone == "deleted" else "is retired"
    assert TOPIC_URL in stopped["error"] and said in stopped["error"]
