"""The R4 websocket channel (R4 subscription.html "websocket"): a client connects to the server's
websocket URL (advertised in the CapabilityStatement), sends ``bind {id}``, is answered
``bound {id}``, and is sent ``ping {id}`` for each notification the Subscription is owed; it then
reads what changed with an ordinary search.

waitress cannot upgrade a connection, so the channel is a server of its own (the ``websockets``
library, threaded) on ``websocket_port``, run by the process that builds the app (under
``fhir-twin serve``, gunicorn's master, as the MQTT bridge is).

Authentication: a browser cannot set ``Authorization`` on a websocket, so the bearer token rides
in the bind, ``bind {id} {token}`` (``Authorization: Bearer`` on the upgrade request is taken
when the bind has none). The bind is refused, the socket closed with the reason (1008), when
the token is not valid, when that credential may not read the Subscription (the same read a
client makes, through the router: scopes, compartment and audit as usual), or when the
Subscription is not an active websocket one.

Delivery: rows owed to a websocket Subscription (``channel`` ``websocket`` in the outbox) are
claimed only by a process holding a socket bound to it, and deleted once a ``ping`` was written
to at least one of its sockets; every socket bound to it here is pinged. With no socket bound the
rows wait, so a client that binds after a drop is pinged for what it missed, in order.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
import weakref
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode
from websockets.http11 import Request as Upgrade
from websockets.http11 import Response as Refusal
from websockets.sync.server import Server, ServerConnection, serve

from fhir_twin.config import Config
from fhir_twin.errors import FhirError, Unauthorized
from fhir_twin.fhir import json
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.subscription import WEBSOCKET
from fhir_twin.security.authentication import Authenticator
from fhir_twin.security.context import acting_as
from fhir_twin.store import subscription_outbox as outbox
from fhir_twin.store.repository import Repository
from fhir_twin.store.worker import worker_repository

log = logging.getLogger("fhir_twin.subscriptions")

PATH = "/websocket"
# How often owed pings are looked for while a socket is bound (a bind looks at once).
POLL_INTERVAL = 0.25
# Each socket holds a thread: one that has bound nothing within BIND_TIMEOUT seconds is closed, and
# past MAX_SOCKETS open at once a new one is closed at once (1013, try again later). A bind is a
# line of an id and a token: a larger message closes the socket (1009).
BIND_TIMEOUT = 10.0
MAX_SOCKETS = 1000
MAX_MESSAGE = 8192


class WebsocketChannel:
    """The websocket server and the thread pinging its bound sockets from the outbox."""

    def __init__(
        self, repository: Repository, authenticator: Authenticator, route: Callable[[Request], Response], config: Config
    ) -> None:
        self.own = worker_repository(repository)
        self.authenticator = authenticator
        self.route = route
        self.config = config
        self.owner = f"{socket.gethostname()[:64]}:{os.getpid()}:ws:{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()
        self._bound: dict[str, set[ServerConnection]] = {}
        self._server: Server | None = None
        self._pinger: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._forked = False
        self._open = 0
        _CHANNELS.add(self)

    @property
    def running(self) -> bool:
        return self._pinger is not None and self._pinger.is_alive()

    def bound(self, subscription_id: str) -> int:
        """How many sockets are bound to the Subscription in this process."""
        with self._lock:
            return len(self._bound.get(subscription_id, ()))

    def start(self) -> None:
        """Listen on ``websocket_host``:``websocket_port`` and start pinging. Threads started here
        are daemons (as the connection threads they start): they end with the process."""
        self._server = serve(
            self._connection,
            self.config.websocket_host,
            self.config.websocket_port,
            process_request=_only_path,
            max_size=MAX_MESSAGE,
        )
        threading.Thread(target=self._server.serve_forever, name="fhir-twin-websocket", daemon=True).start()
        self._pinger = threading.Thread(target=self._ping_loop, name="fhir-twin-websocket-pings", daemon=True)
        self._pinger.start()
        log.info("Websocket Subscriptions at ws://%s:%s%s", *self._server.socket.getsockname()[:2], PATH)

    def stop(self) -> None:
        """Close every socket (1001 going away), stop listening and pinging."""
        if self._forked:
            return
        self._stopping.set()
        self._wakeup.set()
        if self._server is not None:
            self._server.shutdown()
        if self._pinger is not None:
            self._pinger.join(30)
        self.own.engine.dispose()

    def _connection(self, connection: ServerConnection) -> None:
        """One client: binds until it goes; a bad bind closes it with the reason."""
        with self._lock:
            self._open += 1
            crowded = self._open > MAX_SOCKETS
        bound: set[str] = set()
        try:
            if crowded:
                connection.close(CloseCode.TRY_AGAIN_LATER, "too many websocket connections; try again later")
                return
            while True:
                try:
                    message = connection.recv(timeout=None if bound else BIND_TIMEOUT)
                except TimeoutError:
                    connection.close(CloseCode.POLICY_VIOLATION, f"no bind within {BIND_TIMEOUT:g} s")
                    return
                words = message.split() if isinstance(message, str) else []
                if not 2 <= len(words) <= 3 or words[0] != "bind":
                    connection.close(CloseCode.POLICY_VIOLATION, "expected 'bind {subscription-id} {access-token}'")
                    return
                subscription_id = words[1]
                refusal = self._refusal(connection, subscription_id, words[2] if len(words) == 3 else None)
                if refusal is not None:
                    connection.close(CloseCode.POLICY_VIOLATION, refusal[:120])
                    return
                # ``bound`` goes first: no ping may overtake it. What is owed meanwhile waits.
                connection.send(f"bound {subscription_id}")
                with self._lock:
                    self._bound.setdefault(subscription_id, set()).add(connection)
                bound.add(subscription_id)
                self._wakeup.set()
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._open -= 1
            for subscription_id in bound:
                self._unbind(subscription_id, connection)

    def _refusal(self, connection: ServerConnection, subscription_id: str, token: str | None) -> str | None:
        """Why the bind is refused, or None: the credential must read the active websocket Subscription."""
        request = connection.request
        authorization = f"Bearer {token}" if token else request.headers.get("Authorization") if request else None
        try:
            principal = self.authenticator.authenticate(authorization)
        except Unauthorized:
            return "the access token is missing, unknown, expired or revoked"
        try:
            with acting_as(principal):
                response = self.route(Request("GET", f"Subscription/{subscription_id}", self.config.base_url))
        except FhirError as error:
            response = Response(error.status)
        if response.status in (HTTPStatus.NOT_FOUND, HTTPStatus.GONE, HTTPStatus.BAD_REQUEST):
            return f"no Subscription {subscription_id}"
        if response.status != HTTPStatus.OK:
            return f"the access token may not read Subscription/{subscription_id}"
        subscription = _body(response)
        kind = (subscription.get("channel") or {}).get("type")
        if kind != WEBSOCKET:
            return f"Subscription/{subscription_id} has channel {kind}, not websocket"
        if subscription.get("status") != "active":
            return f"Subscription/{subscription_id} is {subscription.get('status')}, not active"
        return None

    def _unbind(self, subscription_id: str, connection: ServerConnection) -> None:
        with self._lock:
            sockets = self._bound.get(subscription_id)
            if sockets is not None:
                sockets.discard(connection)
                if not sockets:
                    del self._bound[subscription_id]

    def _ping_loop(self) -> None:
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                self._ping_pass()
            except Exception:
                log.exception("A websocket ping pass failed; the next one starts in %s s", POLL_INTERVAL)
            self._wakeup.wait(POLL_INTERVAL)

    def _ping_pass(self) -> None:
        """Claim what is owed to the Subscriptions bound here, and ping their sockets."""
        with self._lock:
            among = set(self._bound)
        if not among:
            return
        for subscription_id in outbox.claim(self.own, self.owner, WEBSOCKET, among):
            try:
                self._ping(subscription_id)
            finally:
                outbox.release(self.own, self.owner, subscription_id)

    def _ping(self, subscription_id: str) -> None:
        with self.own.transaction() as tx:
            current = tx.current("Subscription", subscription_id)
        subscription = json.loads(current.body) if current is not None and current.body is not None else None
        if subscription is None or subscription.get("status") != "active":
            outbox.discard(self.own, subscription_id)
            return
        if (subscription.get("channel") or {}).get("type") != WEBSOCKET:
            outbox.discard(self.own, subscription_id, WEBSOCKET)  # changed to another channel since
            return
        for owed in outbox.claimed(self.own, self.owner, subscription_id):
            if self._stopping.is_set() or not self._send(subscription_id):
                return  # no socket took it: it waits, and those behind it, for the next bind
            outbox.delivered(self.own, self.owner, owed.seq)

    def _send(self, subscription_id: str) -> bool:
        """``ping {id}`` to every socket bound to the Subscription; whether any was written to."""
        with self._lock:
            sockets = list(self._bound.get(subscription_id, ()))
        sent = False
        for connection in sockets:
            try:
                connection.send(f"ping {subscription_id}")
                sent = True
            except ConnectionClosed:
                self._unbind(subscription_id, connection)
        return sent

    def _after_fork(self) -> None:
        """A forked child (a gunicorn worker) has none of the threads: it lets go of the listening
        socket and of the pinger's connections, which stay the parent's."""
        self._forked = True
        if self._server is not None:
            self._server.socket.close()
        self.own.engine.dispose(close=False)


def _only_path(_connection: ServerConnection, upgrade: Upgrade) -> Refusal | None:
    """Only ``/websocket`` upgrades; another path is a 404."""
    if upgrade.path.split("?")[0] == PATH:
        return None
    return _connection.respond(HTTPStatus.NOT_FOUND, f"Websocket Subscriptions are at {PATH}\n")


def _body(response: Response) -> dict[str, Any]:
    body = response.body
    if isinstance(body, dict):
        return body
    return json.loads(body) if body else {}


_CHANNELS: weakref.WeakSet[WebsocketChannel] = weakref.WeakSet()


def _forget_in_child() -> None:
    for channel in list(_CHANNELS):
        channel._after_fork()


os.register_at_fork(after_in_child=_forget_in_child)
