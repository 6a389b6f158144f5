"""Rest-hook delivery (R4 subscription.html#channels): a worker thread per process sends what
the outbox owes rest-hook Subscriptions (websocket ones are the bound socket's process's,
``websocket.py``), each Subscription's notifications in the order they were owed.

A notification is a POST to ``channel.endpoint`` with each ``channel.header``, the signature
header when the Subscription has a secret, and, with ``payload`` ``application/fhir+json``, the
version that matched as its body. It is forgotten only after a 2xx (at least once). A failure
holds back that Subscription's later notifications and is retried after
``subscription_retry_delay_ms``, doubled at each further failure; the
``subscription_max_attempts``-th failure sets the Subscription to ``error`` with the reason
(R4 "Subscription Status"), a new version written through the router as the server itself, so
it is validated and audited like any write, and what it was owed is dropped.

A topic-based Subscription (Subscriptions Backport IG) is sent its notification Bundle
(``notification``) whatever its payload, within its ``backport-timeout``; each pass first owes
heartbeats to those idle for their ``backport-heartbeat-period``.

``Subscription.end`` (R4: "the time for the server to turn the subscription off"): nothing is sent
once it has passed, and the server sets the Subscription ``off`` (a version written the same way),
checked at each pass, so within ``POLL_INTERVAL`` of it whether or not anything was owed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fhir_twin.config import Config
from fhir_twin.fhir import json
from fhir_twin.fhir.instant import now
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.subscription import FHIR_JSON, REST_HOOK
from fhir_twin.interactions.subscription_backport import Backport, backport
from fhir_twin.security.context import acting_as
from fhir_twin.security.principal import Principal
from fhir_twin.store import subscription_outbox as outbox
from fhir_twin.store.repository import Repository
from fhir_twin.store.worker import Worker
from fhir_twin.subscriptions import notification, signature
from fhir_twin.subscriptions.matching import end_of

if TYPE_CHECKING:
    import requests

log = logging.getLogger("fhir_twin.subscriptions")

NOTIFIER = Principal("fhir-twin subscriptions", kind="server", trusted=True)
POLL_INTERVAL = 0.5
MAX_DELAY = timedelta(minutes=10)


class DeliveryWorker(Worker):
    """Delivers owed notifications, working on ``own`` (an engine of the thread's own) and
    writing a failed Subscription's ``error`` status through ``route``."""

    name = "fhir-twin-subscriptions"

    def __init__(
        self,
        repository: Repository,
        own: Repository,
        route: Callable[[Request], Response],
        config: Config,
        poll_interval: float = POLL_INTERVAL,
    ) -> None:
        super().__init__(repository, poll_interval, own=own)
        self.own = own
        self.route = route
        self.config = config
        # requests (about 5 MB) loads with the first notification sent, not in every idle server.
        self._session: requests.Session | None = None

    def run_pass(self, owner: str, should_stop: Callable[[], bool]) -> None:
        with self.own.transaction() as tx:
            found = outbox.subscriptions(tx)
            # The topics are read only when some Subscription is topic-based.
            topics = outbox.subscriptions(tx, "SubscriptionTopic") if any(map(backport, found)) else []
        self._turn_off_ended(found)
        self._stop_orphaned(found, topics)
        self.owe_heartbeats(found)
        while not should_stop():
            claimed = outbox.claim(self.own, owner, REST_HOOK)
            if not claimed:
                return
            for subscription_id in claimed:
                try:
                    self._deliver(owner, subscription_id, should_stop)
                finally:
                    outbox.release(self.own, owner, subscription_id)

    def _deliver(self, owner: str, subscription_id: str, should_stop: Callable[[], bool]) -> None:
        with self.own.transaction() as tx:
            current = tx.current("Subscription", subscription_id)
        subscription = json.loads(current.body) if current is not None and current.body is not None else None
        if subscription is None or subscription.get("status") != "active":
            outbox.discard(self.own, subscription_id)
            return
        if _channel(subscription) != REST_HOOK:
            outbox.discard(self.own, subscription_id, REST_HOOK)  # changed to another channel since
            return
        sent: list[int] = []
        try:
            self._send_claimed(owner, subscription, outbox.claimed(self.own, owner, subscription_id), sent, should_stop)
        finally:
            # Forgotten together: a stop before this write sends them again (at least once).
            if sent:
                outbox.delivered(self.own, owner, *sent)

    def _send_claimed(
        self,
        owner: str,
        subscription: dict[str, Any],
        owed_rows: list[outbox.Owed],
        sent: list[int],
        should_stop: Callable[[], bool],
    ) -> None:
        """Send ``owed_rows`` in order, adding each acknowledged one to ``sent``, until one fails."""
        subscription_id = str(subscription["id"])
        for owed in owed_rows:
            if should_stop():
                return
            if _ended(subscription):
                self._write_status(subscription, "off")
                outbox.discard(self.own, subscription_id)
                return
            error = self._send(subscription, owed)
            if error is None:
                sent.append(owed.seq)
                continue
            attempts = owed.attempts + 1
            log.warning("Notifying Subscription/%s failed (attempt %s): %s", subscription_id, attempts, error)
            if attempts >= self.config.subscription_max_attempts:
                reason = f"{attempts} attempts to notify {_endpoint(subscription)} failed: {error}"
                self._write_status(subscription, "error", reason)
                outbox.discard(self.own, subscription_id)
                return
            delay = min(timedelta(milliseconds=self.config.subscription_retry_delay_ms * 2**owed.attempts), MAX_DELAY)
            outbox.failed(self.own, owner, owed.seq, error, now() + delay)
            return  # the later ones wait behind it, to keep the order

    def _send(self, subscription: dict[str, Any], owed: outbox.Owed) -> str | None:
        """POST one notification; None when the receiver took it, else why not."""
        channel = subscription["channel"]
        headers: dict[str, str] = {}
        for line in channel.get("header") or []:
            name, _, value = str(line).partition(":")
            headers[name.strip()] = value.strip()
        body = b""
        timeout = self.config.subscription_timeout_ms / 1000
        wanted = backport(subscription)
        if wanted is not None:
            body = self._notification(subscription, wanted, owed)
            headers["Content-Type"] = FHIR_JSON
            timeout = wanted.timeout or timeout
        elif channel.get("payload") == FHIR_JSON:
            with self.own.transaction() as tx:
                version = tx.version(owed.res_type, owed.res_id, owed.version)
            if version is None or version.body is None:
                return None  # nothing left to send (the database was restored without it)
            body = version.body.encode("utf-8")
            headers["Content-Type"] = FHIR_JSON
        key = signature.secret(subscription)
        if key is not None:
            headers[signature.HEADER] = signature.sign(key, body)
        import requests

        if self._session is None:
            self._session = requests.Session()
        try:
            answer = self._session.post(str(channel["endpoint"]), data=body, headers=headers, timeout=timeout)
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"
        if 200 <= answer.status_code < 300:
            if wanted is not None:
                outbox.sent(self.own, str(subscription["id"]))
            return None
        return f"the endpoint answered {answer.status_code}"

    def _notification(self, subscription: dict[str, Any], wanted: Backport, owed: outbox.Owed) -> bytes:
        """A topic-based Subscription's notification Bundle (``notification``)."""
        with self.own.transaction() as tx:
            focus = tx.version(owed.res_type, owed.res_id, owed.version) if owed.kind == "event-notification" else None
            events = outbox.events(tx, owed.subscription_id)
        found = notification.bundle(subscription, wanted, owed, events, focus, self.config.base_url)
        return json.dumps(found)

    def owe_heartbeats(self, found: list[dict[str, Any]]) -> None:
        """Owe a heartbeat to each active topic-based Subscription of ``found`` with a
        ``heartbeat-period`` that was sent nothing for that long."""
        for subscription in found:
            wanted = backport(subscription)
            if wanted is not None and wanted.heartbeat_period and subscription.get("status") == "active":
                outbox.owe_heartbeat(self.own, str(subscription["id"]), timedelta(seconds=wanted.heartbeat_period))

    def _stop_orphaned(self, found: list[dict[str, Any]], topics: list[dict[str, Any]]) -> None:
        """Set ``error`` each active topic-based Subscription whose topic was deleted or retired
        since: it could never be sent another event (Subscriptions Backport IG, "Subscription
        errors"), and a silent one would look like a quiet ward."""
        status: dict[str, str] = {}
        for topic in topics:
            url = str(topic.get("url") or "")
            status[url] = status.get(url, str(topic.get("status")))
            if topic.get("version"):
                status[f"{url}|{topic['version']}"] = str(topic.get("status"))
        for subscription in found:
            wanted = backport(subscription)
            if wanted is None or subscription.get("status") != "active":
                continue
            if wanted.topic not in status:
                reason = f"the SubscriptionTopic {wanted.topic} no longer exists"
            elif status[wanted.topic] == "retired":
                reason = f"the SubscriptionTopic {wanted.topic} is retired"
            else:
                continue
            self._write_status(subscription, "error", reason)
            outbox.discard(self.own, str(subscription["id"]))

    def _turn_off_ended(self, found: list[dict[str, Any]]) -> None:
        """Set ``off`` each active Subscription of ``found`` whose ``end`` has passed."""
        for subscription in [s for s in found if s.get("status") == "active" and _ended(s)]:
            self._write_status(subscription, "off")
            outbox.discard(self.own, str(subscription["id"]))

    def _write_status(self, subscription: dict[str, Any], status: str, reason: str | None = None) -> None:
        """Write the Subscription's new ``status``, ``error`` with a ``reason`` (R4 subscription.html
        "Subscription Status"), as the server; another process writing it first is a 412, ignored."""
        stopped = {k: v for k, v in subscription.items() if k != "meta"}
        stopped["status"] = status
        if reason is not None:
            stopped["error"] = reason[:1000]
        version = (subscription.get("meta") or {}).get("versionId")
        request = Request(
            "PUT",
            f"Subscription/{subscription['id']}",
            self.config.base_url,
            headers={"if-match": f'W/"{version}"', "prefer": "return=minimal"},
            body=stopped,
        )
        with acting_as(NOTIFIER):
            self.route(request)
        log.warning("Subscription/%s set to %s%s", subscription["id"], status, f": {reason}" if reason else "")


def _ended(subscription: dict[str, Any]) -> bool:
    end = end_of(subscription)
    return end is not None and end <= now()


def _channel(subscription: dict[str, Any]) -> str | None:
    channel = subscription.get("channel")
    return channel.get("type") if isinstance(channel, dict) else None


def _endpoint(subscription: dict[str, Any]) -> str:
    channel = subscription.get("channel")
    return str(channel.get("endpoint")) if isinstance(channel, dict) else "?"
