"""The MQTT bridge: device messages in, Observations written through the FHIR router.

At least once, end to end: subscriptions are QoS 1 and a message is acknowledged (paho-mqtt's
``manual_ack``) only once what it says is committed or dead-lettered, so a bridge that stops
mid-batch has its unacknowledged messages redelivered. Redeliveries write nothing new: each
Observation's id is its reading's identifier (made of device, code and time, ``reading``), written
by update-as-create (R4 http.html#upsert, ``PUT Observation/{id}``), so a redelivery finds the same
content stored and the server keeps it unchanged, with no new version. A PUT costs one index
lookup where a conditional create (``ifNoneExist``) costs a search, run twice in a transaction:
the bridge's write time per reading halved (docs/performance.md, "The device bridge").

A device's readings go to the patient its ``Device.patient`` names, read at every batch so an
association changed while data flows applies to the next batch; a device with no patient has its
readings held back (dead-lettered as ``unassociated`` and counted), never given to a guessed patient.
Writes go through the router as the device principal: validated, indexed, audited, twin updated.

Several bridges on one broker (``serve``'s and a standalone ``fhir-twin devices``, or two servers)
subscribe as one MQTT shared subscription group (``$share/{group}/{filter}``; MQTT 5.0 section
4.8.2, which Mosquitto also honours on 3.1.1): the broker gives each message to one of them, so
none is written twice and the stream is split between them.

Readings grouped per window (``devices/window.py``) are kept in the database in the batch's
transaction, so their messages are acknowledged with the others and never stall the client.

The bridge runs in ``fhir-twin serve``'s master, which forks a server process whenever one starts
or is replaced: a fork waits for the batch being written (``_FORK_SAFE``), since a child forked
mid-write would inherit the locks it held (the SQLite write gate, the connection pool's) and
hang on its first write.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fhir_twin.devices.mapping_file import DeviceKind
from fhir_twin.devices.reading import DEVICE_SYSTEM, READING_SYSTEM, BadPayload, Message, read_message
from fhir_twin.devices.window import Windows
from fhir_twin.errors import FhirError
from fhir_twin.interactions.message import Request, Response
from fhir_twin.store.device_windows import DeviceWindows

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

log = logging.getLogger("fhir_twin.devices")

Route = Callable[[Request], Response]
# Per device id: its patient's and its own reference, or None when it has no patient.
Patients = dict[str, tuple[str, str] | None]

# Seconds the writer waits for more messages to join a batch (latency traded for throughput).
LINGER = 0.05
# Seconds before a batch that could not be written is tried again, doubled each time up to RETRY_MAX.
RETRY_FIRST = 1.0
RETRY_MAX = 30.0
# Held while a batch is written, and across every fork of this process.
_FORK_SAFE = threading.Lock()
os.register_at_fork(before=_FORK_SAFE.acquire, after_in_parent=_FORK_SAFE.release, after_in_child=_FORK_SAFE.release)


class Refused(Exception):
    """The server answered a batch's transaction Bundle with an error."""


@dataclass(frozen=True)
class Delivery:
    topic: str
    payload: bytes
    mid: int
    qos: int
    kind: DeviceKind


class DeviceBridge:
    """Subscribes to every device kind's topic under ``prefix`` and writes in batches of up to
    ``batch_size`` messages, each batch one transaction Bundle."""

    def __init__(
        self,
        kinds: dict[str, DeviceKind],
        route: Route,
        windows: DeviceWindows,
        base: str,
        url: str,
        prefix: str = "fhir-twin/",
        client_id: str = "",
        batch_size: int = 200,
        shared_group: str = "",
        linger: float = LINGER,
    ) -> None:
        self.kinds = kinds
        self.route = route
        self.base = base
        self.prefix = prefix
        self.batch_size = batch_size
        self.linger = linger
        self.shared_group = shared_group
        self.counts: Counter[str] = Counter()
        owner = f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.windows = Windows(windows, owner, self.counts)
        self._inbox: queue.Queue[Delivery | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self._subscribed = threading.Event()
        self._stopping = threading.Event()
        self._host, self._port = mqtt_address(url)
        # paho loads with a bridge, not in every server that has none.
        import paho.mqtt.client as mqtt

        self._matches = mqtt.topic_matches_sub
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not client_id,
            manual_ack=True,
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def running(self) -> bool:
        return self._writer is not None and self._writer.is_alive()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    def dead_letter_topic(self, kind: str) -> str:
        return f"{self.prefix}dead-letter/{kind}"

    def start(self, timeout: float = 10.0) -> None:
        """Connect (retrying with backoff while the broker is away) and start writing; waits up to
        ``timeout`` seconds for the subscriptions."""
        self._writer = threading.Thread(target=self._write_loop, name="fhir-twin-devices", daemon=True)
        self._writer.start()
        self.client.connect_async(self._host, self._port, keepalive=30)
        self.client.loop_start()
        self._subscribed.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        self.client.disconnect()
        self.client.loop_stop()
        self._inbox.put(None)
        if self._writer is not None:
            self._writer.join(30)

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker refused the bridge: %s", reason)
            return
        client.subscribe([(self.subscription(kind), 1) for kind in self.kinds.values()])

    def subscription(self, kind: DeviceKind) -> str:
        """The topic filter subscribed to for ``kind``: shared by the group, if there is one."""
        share = f"$share/{self.shared_group}/" if self.shared_group else ""
        return share + self.prefix + kind.topic

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, _codes: Any, _props: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        kind = next((k for k in self.kinds.values() if self._matches(self.prefix + k.topic, message.topic)), None)
        if kind is None or message.topic.startswith(self.prefix + "dead-letter/"):
            client.ack(message.mid, message.qos)
            return
        self._inbox.put(Delivery(message.topic, bytes(message.payload), message.mid, message.qos, kind))

    def _write_loop(self) -> None:
        while True:
            try:
                first = self._inbox.get(timeout=1.0)
            except queue.Empty:
                self.windows.close(self._write_entries)
                continue
            if first is None:
                return
            batch = [first]
            # A batch's cost is mostly per batch (its transaction, the Doctor's pass after it): the
            # writer waits up to ``linger`` for more, so a steady stream is written in large batches.
            deadline = time.monotonic() + self.linger
            while len(batch) < self.batch_size:
                try:
                    more = self._inbox.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if more is None:
                    self._inbox.put(None)
                    break
                batch.append(more)
            self.counts["received"] += len(batch)
            delay = RETRY_FIRST
            while True:
                try:
                    with _FORK_SAFE:
                        self.write(batch)
                    break
                except Exception:
                    # The database away, say: the batch, unacknowledged, is tried again (in order,
                    # nothing behind it overtaking) until it is written or the bridge stops.
                    log.exception("device batch of %d messages not written; again in %s s", len(batch), delay)
                    self.counts["retried"] += 1
                    if self._stopping.wait(delay):
                        return  # unacknowledged: the broker sends the messages again to the next bridge
                    delay = min(delay * 2, RETRY_MAX)

    def write(self, batch: list[Delivery]) -> None:
        """Write one batch; every message is acknowledged once committed or dead-lettered."""
        messages: list[tuple[Delivery, Message]] = []
        for delivery in batch:
            try:
                messages.append((delivery, read_message(delivery.kind, delivery.payload)))
            except BadPayload as error:
                self._dead_letter(delivery, "bad-payload", str(error))
        patients = self._patients_of(sorted({message.device_id for _, message in messages}))
        ready = []
        for delivery, message in messages:
            if patients[message.device_id] is None:
                self._dead_letter(delivery, "unassociated", f"Device {message.device_id} has no patient")
            else:
                ready.append((delivery, message))
        if ready and not self._commit(ready, patients):
            for one in ready:  # one message's fault must not hold back the others
                if not self._commit([one], patients):
                    self._dead_letter(one[0], "rejected", self._last_error)
        for delivery, _ in ready:
            self._ack(delivery)
        self.windows.close(self._write_entries)

    _last_error = ""

    def _commit(self, ready: list[tuple[Delivery, Message]], patients: Patients) -> bool:
        """The batch's Observations and its window readings, in one transaction."""
        entries: dict[str, dict[str, Any]] = {}
        for _, message in ready:
            patient, device = patients[message.device_id] or ("", "")
            for reading in message.each:
                identifier = reading.identifier(message.device_id)
                entries.setdefault(identifier, _observation_entry(reading, identifier, patient, device))
        try:
            # Refused, the transaction rolls back whole: the Bundle's writes and the window readings.
            with self.windows.store.transaction():
                created = self._write_entries(list(entries.values())) if entries else 0
                self.windows.keep([(message, *(patients[message.device_id] or ("", ""))) for _, message in ready])
        except (Refused, FhirError) as refused:
            self._last_error = str(refused)
            return False
        self.counts["written"] += created
        # Folded: redelivered, or sent twice in this batch.
        self.counts["duplicates"] += sum(len(message.each) for _, message in ready) - created
        self.counts["committed"] += len(ready)
        return True

    def _write_entries(self, entries: list[dict[str, Any]]) -> int:
        """Post ``entries`` as one transaction Bundle; how many were created."""
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        response = self.route(Request("POST", "", self.base, body=bundle, headers={"prefer": "return=minimal"}))
        if response.status != 200:
            raise Refused(_diagnostics(response))
        return sum(1 for entry in _json(response).get("entry", []) if entry["response"]["status"].startswith("201"))

    def _patients_of(self, device_ids: list[str]) -> Patients:
        """Per device, its (``Patient/..``, ``Device/..``) references, or None without a patient: one
        search for the batch's devices, and a Device created for each one first heard of."""
        found: dict[str, dict[str, Any]] = {}
        if device_ids:
            identifiers = ",".join(f"{DEVICE_SYSTEM}|{device_id}" for device_id in device_ids)
            query = [("identifier", identifiers), ("_count", str(len(device_ids) + 1))]
            response = self.route(Request("GET", "Device", self.base, query=query))
            if response.status != 200:
                raise RuntimeError(f"the batch's Devices could not be read: {_diagnostics(response)}")
            for entry in _json(response).get("entry", []):
                resource = entry["resource"]
                if not isinstance(resource, dict):
                    # Search pages carry stored resources as their raw JSON text (simplejson RawJSON).
                    resource = json.loads(resource.encoded_json)
                for identifier in resource.get("identifier", []):
                    if identifier.get("system") == DEVICE_SYSTEM:
                        found[identifier.get("value")] = resource
        patients: Patients = {}
        for device_id in device_ids:
            device = found.get(device_id) or self._create_device(device_id)
            patient = (device.get("patient") or {}).get("reference")
            patients[device_id] = (patient, f"Device/{device['id']}") if patient else None
        return patients

    def _create_device(self, device_id: str) -> dict[str, Any]:
        """The Device of a device first heard of, by conditional create: two messages, or two
        bridges, never make two."""
        body = {
            "resourceType": "Device",
            "identifier": [{"system": DEVICE_SYSTEM, "value": device_id}],
            "status": "active",
        }
        criteria = f"identifier={DEVICE_SYSTEM}|{device_id}"
        headers = {"if-none-exist": criteria, "prefer": "return=representation"}
        response = self.route(Request("POST", "Device", self.base, body=body, headers=headers))
        if response.status not in (200, 201):
            raise RuntimeError(f"Device {device_id} could not be created: {_diagnostics(response)}")
        if response.status == 201:
            self.counts["devices"] += 1
        return _json(response)

    def _dead_letter(self, delivery: Delivery, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        log.warning("device message on %s dead-lettered (%s): %s", delivery.topic, reason, detail)
        document = {
            "reason": reason,
            "detail": detail,
            "topic": delivery.topic,
            "payload": delivery.payload.decode("utf-8", "replace"),
        }
        self.client.publish(self.dead_letter_topic(delivery.kind.name), json.dumps(document), qos=1)
        self._ack(delivery)

    def _ack(self, delivery: Delivery) -> None:
        if delivery.qos:
            self.client.ack(delivery.mid, delivery.qos)


def mqtt_address(url: str) -> tuple[str, int]:
    """Host and port of ``mqtt://host[:port]`` (the setting ``mqtt_url``)."""
    address = urlsplit(url)
    if address.scheme not in ("mqtt", "tcp") or not address.hostname:
        raise ValueError(f"mqtt_url {url!r} must be mqtt://host[:port]")
    return address.hostname, address.port or 1883


def _observation_entry(reading: Any, identifier: str, patient: str, device: str) -> dict[str, Any]:
    value = reading.value
    return {
        "resource": {
            "resourceType": "Observation",
            "id": identifier,
            "identifier": [{"system": READING_SYSTEM, "value": identifier}],
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": value.system, "code": value.code}], "text": value.name.replace("_", " ")},
            "subject": {"reference": patient},
            "device": {"reference": device},
            "effectiveDateTime": reading.time,
            "valueQuantity": {
                "value": reading.number,
                "unit": value.unit,
                "system": "http://unitsofmeasure.org",
                "code": value.unit,
            },
        },
        "request": {"method": "PUT", "url": f"Observation/{identifier}"},
    }


def _json(response: Response) -> dict[str, Any]:
    """The body as a dict: the router answers stored JSON text or a dict it built."""
    if isinstance(response.body, dict):
        return response.body
    return dict(json.loads(response.body or "{}"))


def _diagnostics(response: Response) -> str:
    body = _json(response)
    issues = body.get("issue") or [{}]
    return f"{response.status}: " + "; ".join(str(i.get("diagnostics", "")) for i in issues)
