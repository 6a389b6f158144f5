"""Delivery by real server processes: a crash between the write and the delivery loses nothing,
and two processes on one database send each notification once."""

from __future__ import annotations

import json
import time
from typing import Any

import requests

from fhir_twin.subscriptions.matching import CACHE_SECONDS
from tests.live_server import LiveServer, make_token
from tests.subscriptions.receiver import Receiver, eventually

FAST_RETRIES = {"subscription_retry_delay_ms": "100", "subscription_max_attempts": "1000"}


def post(server: LiveServer, token: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    response = requests.post(f"{server.base}/{body['resourceType']}", json=body, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def subscribe(server: LiveServer, token: str, receiver: Receiver) -> None:
    channel = {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"}
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "t",
        "criteria": "Patient",
        "channel": channel,
    }
    post(server, token, body)


def notified_ids(receiver: Receiver) -> list[str]:
    return [json.loads(got.body)["id"] for got in receiver.received]


def test_a_crash_before_delivery_loses_nothing(database_url: str, receiver: Receiver) -> None:
    token = make_token(database_url)
    first = LiveServer(database_url, **FAST_RETRIES).start()
    try:
        subscribe(first, token, receiver)
        receiver.status = 503  # the ward system is down: the notifications stay owed
        ids = [post(first, token, {"resourceType": "Patient", "gender": "female"})["id"] for _ in range(3)]
        time.sleep(0.3)
        first.kill()
    finally:
        first.stop()
    assert receiver.received == []
    receiver.status = 200
    second = LiveServer(database_url, **FAST_RETRIES).start()
    try:
        eventually(lambda: len(receiver.received) == 3, timeout=30)
        time.sleep(0.5)
        assert notified_ids(receiver) == ids
    finally:
        second.stop()


def test_two_processes_on_one_database_notify_once(database_url: str, receiver: Receiver) -> None:
    token = make_token(database_url)
    servers = [LiveServer(database_url, **FAST_RETRIES).launch() for _ in range(2)]
    try:
        for server in servers:
            server.wait_ready()
        subscribe(servers[0], token, receiver)
        time.sleep(CACHE_SECONDS + 0.2)  # the other process sees the new Subscription
        ids = [post(servers[n % 2], token, {"resourceType": "Patient", "gender": "female"})["id"] for n in range(20)]
        eventually(lambda: len(receiver.received) >= 20, timeout=30)
        time.sleep(1.0)
        assert sorted(notified_ids(receiver)) == sorted(ids)
    finally:
        for server in servers:
            server.stop()
