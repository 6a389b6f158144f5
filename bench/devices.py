"""Device messages over MQTT into the server: sustained messages per second with zero loss, and
p50/p95 latency from MQTT publish to the Observations committed.

Starts an app on a fresh database (SQLite by default) with its bridge on the local broker under a
topic prefix of its own, admits ``--patients`` patients with monitors, publishes ``--messages``
monitor messages (six readings each) at ``--rate`` messages/s (0: as fast as possible) and waits
for every one to be committed; then counts the Observations stored.

    python bench/devices.py --messages 2000
    python bench/devices.py --database postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid

import paho.mqtt.client as mqtt
from ingest import fresh_database

from fhir_twin.app import create_app, services_of
from fhir_twin.devices.bridge import Delivery
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, fresh_database(args.database, folder) as url:
        run(url, args)


def run(url: str, args: argparse.Namespace) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    app = create_app({"database_url": url, "auth_mode": "none", "audit": False, "doctor": False})
    services = services_of(app)
    monitors = []
    for index in range(args.patients):
        monitor = SimulatedMonitor(f"bench-{index}")
        with acting_as(DEVICES):
            services.interactions.route(Request("POST", "", "", body=admission(monitor.device_id, f"Bench {index}")))
        monitors.append(monitor)
    bridge = services.device_bridge(args.broker, prefix, client_id="")
    committed: list[float] = []
    published: dict[str, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    write = bridge.write

    def timed(batch: list[Delivery]) -> None:
        write(batch)
        done = time.time()
        with lock:
            for delivery in batch:
                latencies.append(done - published[json.loads(delivery.payload)["time"]])
                committed.append(done)

    bridge.write = timed  # type: ignore[method-assign]
    bridge.start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    publisher.max_inflight_messages_set(1000)
    publisher.connect("127.0.0.1", 1883)
    publisher.loop_start()
    started = time.time()
    for number in range(args.messages):
        monitor = monitors[number % len(monitors)]
        # Each message a distinct reading time (a millisecond apart), so none is folded as a duplicate.
        message = monitor.message(started + number / 1000)
        published[message["time"]] = time.time()
        publisher.publish(f"{prefix}devices/monitor/{monitor.device_id}/vitals", json.dumps(message), qos=1)
        if args.rate:
            time.sleep(max(0.0, started + (number + 1) / args.rate - time.time()))
    deadline = time.time() + 120
    while len(committed) < args.messages and time.time() < deadline:
        time.sleep(0.05)
    elapsed = max(committed) - started if committed else float("nan")
    publisher.disconnect()
    publisher.loop_stop()
    bridge.stop()
    client = app.test_client()
    stored = client.get("/fhir/Observation?_summary=count").json["total"]
    quantiles = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [float("nan")] * 19
    print(f"database: {url.split(':')[0]}, {args.patients} monitors, {args.messages} messages (6 readings each)")
    print(f"committed {len(committed)}/{args.messages} messages, {stored}/{6 * args.messages} Observations stored")
    print(f"sustained: {len(committed) / elapsed:.0f} messages/s, {6 * len(committed) / elapsed:.0f} readings/s")
    print(f"publish to committed: p50 {quantiles[9] * 1000:.0f} ms, p95 {quantiles[18] * 1000:.0f} ms")
    print(f"bridge counts: {dict(bridge.counts)}")
    services.repository.engine.dispose()
    if stored != 6 * args.messages:
        sys.exit("loss or duplication: the stored Observations are not six per message")


if __name__ == "__main__":
    main()
