"""Device messages over MQTT into the server, the whole loop: sustained readings and messages per
second with zero loss, and p50/p95 latency from MQTT publish to (a) the Observations committed,
(b) the NEWS2 RiskAssessment stored that first reflects them and (c) that RiskAssessment's
rest-hook notification received.

Starts an app on a fresh database (SQLite by default) with everything on (twin, Digital Doctor,
audit trail) and its bridge on the local broker under a topic prefix of its own; subscribes a local
HTTP receiver to ``RiskAssessment?method=news2`` (rest-hook, the resource as payload); admits
``--patients`` patients with monitors and publishes ``--messages`` monitor messages (six readings
each) at ``--rate`` messages/s (0: as fast as possible, for throughput; a rate below capacity for
latency). It waits for every message to be committed, then for the Doctor and the notifications
to settle, and counts the Observations stored: six per message, or it exits 1.

A message's assessment is the first NEWS2 RiskAssessment whose ``basis`` holds one of its
Observations; a message superseded by a newer one of its patient before the Doctor got to it has
none (the Doctor assesses a patient's latest set), and is counted as such.

    python bench/devices.py --messages 3000                  # throughput
    python bench/devices.py --messages 3000 --rate 170       # latency at about 1,000 readings/s
    python bench/devices.py --database postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import requests
from ingest import fresh_database

from fhir_twin.app import create_app, services_of
from fhir_twin.devices.bridge import Delivery, mqtt_address
from fhir_twin.devices.simulation import SimulatedMonitor, admission
from fhir_twin.interactions.message import Request
from fhir_twin.security.context import acting_as
from fhir_twin.services import DEVICES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default="", help="PostgreSQL URL beside which a fresh database is made")
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=0, help="messages per second (0: as fast as possible)")
    parser.add_argument("--batch", type=int, default=0, help="messages a transaction at most (0: the bridge's own)")
    parser.add_argument(
        "--linger", type=float, default=None, help="seconds the writer waits to fill a batch (default: the bridge's)"
    )
    parser.add_argument(
        "--spawn",
        action="store_true",
        help="the bridge of a real `fhir-twin serve` (the Doctor and deliveries in its worker processes)",
    )
    parser.add_argument("--profile", type=int, default=0, help="print the top N of the bridge's writes by CPU time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, fresh_database(args.database, folder) as url:
        (run_served if args.spawn else run)(url, args)


class Receiver:
    """A local rest-hook endpoint: when each notification arrived, and its RiskAssessment."""

    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append((time.time(), json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def run(url: str, args: argparse.Namespace) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    app = create_app({"database_url": url, "auth_mode": "none"})
    services = services_of(app)
    client = app.test_client()
    receiver = Receiver()
    subscription = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "bench",
        "criteria": "RiskAssessment?method=news2",
        "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"},
    }
    assert client.post("/fhir/Subscription", json=subscription).status_code == 201
    monitors = []
    for index in range(args.patients):
        monitor = SimulatedMonitor(f"bench-{index}")
        with acting_as(DEVICES):
            services.interactions.route(Request("POST", "", "", body=admission(monitor.device_id, f"Bench {index}")))
        monitors.append(monitor)
    bridge = services.device_bridge(args.broker, prefix, client_id="", shared_group="")
    if args.batch:
        bridge.batch_size = args.batch
    if args.linger is not None:
        bridge.linger = args.linger
    committed: dict[str, float] = {}
    published: dict[str, float] = {}
    write = bridge.write

    # CPU time of the writer thread, not wall time: on a shared machine waits would swamp it.
    profile = cProfile.Profile(time.thread_time)

    writer_cpu = [0.0]
    batches: list[int] = []

    def timed(batch: list[Delivery]) -> None:
        cpu = time.thread_time()
        if args.profile:
            profile.runcall(write, batch)
        else:
            write(batch)
        done = time.time()
        writer_cpu[0] += time.thread_time() - cpu
        batches.append(len(batch))
        for delivery in batch:
            committed[_instant(json.loads(delivery.payload)["time"])] = done

    bridge.write = timed  # type: ignore[method-assign]
    bridge.start()
    publisher = _publisher(args)
    started = time.time()
    process_cpu = time.process_time()
    publishing_cpu = time.thread_time()
    _publish(publisher, monitors, prefix, args, started, published)
    publishing_cpu = time.thread_time() - publishing_cpu
    _until(lambda: len(committed) >= args.messages, 300)
    elapsed = max(committed.values()) - started if committed else float("nan")
    # Everything the process ran meanwhile but the publishing loop: the bridge's threads, the
    # Doctor, the deliveries (and the publisher's network thread, a small part).
    server_cpu = time.process_time() - process_cpu - publishing_cpu
    publisher.disconnect()
    publisher.loop_stop()
    bridge.stop()
    # The Doctor and the notifications settle: no new assessment for 2 s, and each one notified.
    stored = _news2(client)
    while True:
        time.sleep(2)
        again = _news2(client)
        if again == stored:
            break
        stored = again
    _until(lambda: len(receiver.received) >= stored, 60)
    observations = client.get("/fhir/Observation?_summary=count").json["total"]
    to_stored, to_notified = _latencies(client, receiver, published)
    to_committed = [committed[moment] - published[moment] for moment in committed]
    print(
        f"database: {url.split(':')[0]}, {args.patients} monitors, {args.messages} messages (6 readings each), "
        f"rate {args.rate or 'as fast as possible'}, at most {bridge.batch_size} messages a transaction, "
        f"linger {bridge.linger * 1000:g} ms"
    )
    print(
        f"committed {len(committed)}/{args.messages} messages, {observations}/{6 * args.messages} Observations stored"
    )
    print(f"sustained: {len(committed) / elapsed:.0f} messages/s, {6 * len(committed) / elapsed:.0f} readings/s")
    readings = 6 * len(committed)
    print(
        f"server CPU per reading: {server_cpu / readings * 1000:.2f} ms in all, "
        f"{writer_cpu[0] / readings * 1000:.2f} ms in the bridge's writes; "
        f"{len(batches)} batches, mean {statistics.fmean(batches):.0f} messages"
    )
    print(f"publish to Observations committed: {_p50_p95(to_committed)} ({len(to_committed)} messages)")
    print(
        f"publish to NEWS2 RiskAssessment stored: {_p50_p95(to_stored)} ({len(to_stored)} messages assessed, "
        f"{stored} assessments, the other messages superseded before the Doctor's pass)"
    )
    print(f"publish to notification received: {_p50_p95(to_notified)} ({len(receiver.received)} notifications)")
    print(f"bridge counts: {dict(bridge.counts)}")
    if args.profile:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(args.profile)
    receiver.server.shutdown()
    services.repository.engine.dispose()
    if observations != 6 * args.messages:
        sys.exit("loss or duplication: the stored Observations are not six per message")


class Served:
    """``fhir-twin serve`` with its bridge on the broker (``--spawn``), answering as the test
    client does (``get(path).json``)."""

    def __init__(self, url: str, args: argparse.Namespace, prefix: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        env = {
            **os.environ,
            "FHIR_TWIN_AUTH_MODE": "none",
            "FHIR_TWIN_LOG_LEVEL": "WARNING",
            "FHIR_TWIN_MQTT_URL": args.broker,
            "FHIR_TWIN_MQTT_TOPIC_PREFIX": prefix,
            "FHIR_TWIN_MQTT_CLIENT_ID": f"fhir-twin-{prefix.rstrip('/')}",
            "FHIR_TWIN_DATA_DIR": tempfile.mkdtemp(),
        }
        command = ["fhir-twin", "serve", "--port", str(self.port), "--database", url, "--workers", "2"]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.session = requests.Session()
        _until(lambda: self._answers(), 60)

    def _answers(self) -> bool:
        try:
            return self.session.get(f"http://127.0.0.1:{self.port}/fhir/metadata", timeout=2).ok
        except requests.RequestException:
            return False

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"http://127.0.0.1:{self.port}{path}", timeout=60)

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.session.post(f"http://127.0.0.1:{self.port}{path}", json=body, timeout=60)

    def cpu(self) -> tuple[float, float]:
        """CPU seconds of the master (the bridge) and of its server processes (the Doctor, the
        deliveries), from /proc."""
        tick = os.sysconf("SC_CLK_TCK")

        def used(pid: int) -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick

        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        return used(self.process.pid), sum(used(int(child)) for child in children)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def run_served(url: str, args: argparse.Namespace) -> None:
    """The same stream into a real server: sustained readings/s until every Observation is stored,
    publish to RiskAssessment stored and to notification received, and the processes' CPU."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    server = Served(url, args, prefix)
    try:
        receiver = Receiver()
        subscription = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "bench",
            "criteria": "RiskAssessment?method=news2",
            "channel": {"type": "rest-hook", "endpoint": receiver.url, "payload": "application/fhir+json"},
        }
        assert server.post("/fhir/Subscription", subscription).status_code == 201
        monitors = []
        for index in range(args.patients):
            monitor = SimulatedMonitor(f"bench-{index}")
            assert server.post("/fhir", admission(monitor.device_id, f"Bench {index}")).status_code == 200
            monitors.append(monitor)
        published: dict[str, float] = {}
        publisher = _publisher(args)
        master_cpu, workers_cpu = server.cpu()
        started = time.time()
        _publish(publisher, monitors, prefix, args, started, published)
        offered = args.messages / (time.time() - started)
        expected = 6 * args.messages
        stored_at = [0.0]

        def all_stored() -> bool:
            count = int(server.get("/fhir/Observation?_summary=count").json()["total"])
            stored_at[0] = time.time()
            return count >= expected

        _until(all_stored, 300)
        elapsed = stored_at[0] - started
        master_after, workers_after = server.cpu()
        publisher.disconnect()
        publisher.loop_stop()
        stored = _news2(_Json(server))
        while True:
            time.sleep(2)
            again = _news2(_Json(server))
            if again == stored:
                break
            stored = again
        _until(lambda: len(receiver.received) >= stored, 60)
        observations = int(server.get("/fhir/Observation?_summary=count").json()["total"])
        to_stored, to_notified = _latencies(_Json(server), receiver, published)
        print(
            f"database: {url.split(':')[0]}, `fhir-twin serve --workers 2`, {args.patients} monitors, "
            f"{args.messages} messages (6 readings each), rate {args.rate or 'as fast as possible'}"
        )
        print(f"{observations}/{expected} Observations stored")
        print(f"published: {offered:.0f} messages/s, {6 * offered:.0f} readings/s")
        print(f"sustained: {args.messages / elapsed:.0f} messages/s, {expected / elapsed:.0f} readings/s")
        print(
            f"server CPU per reading: {(master_after - master_cpu) / expected * 1000:.2f} ms in the master "
            f"(the bridge), {(workers_after - workers_cpu) / expected * 1000:.2f} ms in the server processes"
        )
        print(f"publish to NEWS2 RiskAssessment stored: {_p50_p95(to_stored)} ({len(to_stored)} messages assessed)")
        print(f"publish to notification received: {_p50_p95(to_notified)} ({len(receiver.received)} notifications)")
        receiver.server.shutdown()
    finally:
        server.stop()
    if observations != expected:
        sys.exit("loss or duplication: the stored Observations are not six per message")


class _Json:
    """``Served`` answering ``get(path).json`` as Flask's test client does."""

    def __init__(self, server: Served) -> None:
        self.server = server

    def get(self, path: str) -> Any:
        answer = self.server.get(path)
        return type("Answer", (), {"json": answer.json()})


def _latencies(client: Any, receiver: Receiver, published: dict[str, float]) -> tuple[list[float], list[float]]:
    """Per notification, from the publish of the newest message it reflects (that no earlier one
    did) to its RiskAssessment stored and to its arrival."""
    times = _effective_times(client)
    to_stored: list[float] = []
    to_notified: list[float] = []
    assessed: set[str] = set()
    for arrived, assessment in sorted(receiver.received, key=lambda pair: pair[0]):
        moments = {
            times.get(ref["reference"].split("/")[1], "")
            for ref in assessment.get("basis", [])
            if ref["reference"].startswith("Observation/")
        } - assessed
        moments &= published.keys()
        if not moments:
            continue
        assessed |= moments
        newest = max(moments, key=lambda moment: published[moment])
        to_stored.append(_epoch(assessment["meta"]["lastUpdated"]) - published[newest])
        to_notified.append(arrived - published[newest])
    return to_stored, to_notified


def _publisher(args: argparse.Namespace) -> mqtt.Client:
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.max_inflight_messages_set(1000)
    publisher.connect(*mqtt_address(args.broker))
    publisher.loop_start()
    return publisher


def _publish(
    publisher: mqtt.Client,
    monitors: list[SimulatedMonitor],
    prefix: str,
    args: argparse.Namespace,
    started: float,
    published: dict[str, float],
) -> None:
    """``args.messages`` monitor messages, round the monitors, at ``args.rate`` a second (0: flat
    out); when each was published, by its reading time, into ``published``."""
    for number in range(args.messages):
        monitor = monitors[number % len(monitors)]
        # Each message a distinct reading time (a millisecond apart), so none is folded as a duplicate.
        message = monitor.message(started + number / 1000)
        published[_instant(message["time"])] = time.time()
        publisher.publish(f"{prefix}devices/monitor/{monitor.device_id}/vitals", json.dumps(message), qos=1)
        if args.rate:
            time.sleep(max(0.0, started + (number + 1) / args.rate - time.time()))


def _instant(text: str) -> str:
    """A reading time as the bridge stores it (UTC, milliseconds, ``Z``)."""
    return datetime.fromisoformat(text).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _news2(client: Any) -> int:
    return int(client.get("/fhir/RiskAssessment?method=news2&_summary=count").json["total"])


def _effective_times(client: Any) -> dict[str, str]:
    """Each Observation's id and reading time, page by page."""
    times: dict[str, str] = {}
    link = "/fhir/Observation?_elements=effectiveDateTime&_count=1000"
    while link:
        bundle = client.get(link).json
        for entry in bundle.get("entry", []):
            if "effectiveDateTime" in entry["resource"]:
                times[entry["resource"]["id"]] = _instant(entry["resource"]["effectiveDateTime"])
        following = [item["url"] for item in bundle.get("link", []) if item["relation"] == "next"]
        link = "/fhir/" + following[0].split("/fhir/", 1)[1] if following else ""
    return times


def _until(condition: Any, seconds: float) -> None:
    deadline = time.time() + seconds
    while not condition() and time.time() < deadline:
        time.sleep(0.05)


def _p50_p95(values: list[float]) -> str:
    if len(values) < 2:
        return "p50 - ms, p95 - ms"
    quantiles = statistics.quantiles(values, n=20)
    return f"p50 {quantiles[9] * 1000:.0f} ms, p95 {quantiles[18] * 1000:.0f} ms"


if __name__ == "__main__":
    main()
