"""The server's objects, each built once and complete by ``build(config)``: the app serves them
(``create_app``), the commands that need more than a database use them (``fhir-twin load``,
``assess``, ``train``, ``evaluate``). No Flask here, so a command that builds them starts no web
app; with ``workers=False`` it starts no thread either."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fhir_twin.audit.recorder import AuditRecorder
from fhir_twin.bundles import Bundles
from fhir_twin.bundles.helper import HELPER
from fhir_twin.config import Config
from fhir_twin.devices.bridge import DeviceBridge
from fhir_twin.devices.mapping_file import DeviceKind, load_device_mappings
from fhir_twin.interactions import Interactions
from fhir_twin.interactions.message import Request, Response
from fhir_twin.interactions.operations.export import ExportWorker
from fhir_twin.ml.catalog import Catalog
from fhir_twin.ml.doctor import Doctor
from fhir_twin.ml.operations import predict_operation, whatif_operation
from fhir_twin.ml.queue import DoctorQueue, DoctorWorker
from fhir_twin.security.authentication import Authenticator
from fhir_twin.security.context import acting_as
from fhir_twin.security.discovery import rest_security
from fhir_twin.security.principal import Principal
from fhir_twin.store import claims
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.device_windows import DeviceWindows
from fhir_twin.store.repository import Repository
from fhir_twin.store.schema import device_window_reading, doctor_queue, subscription_outbox
from fhir_twin.store.wal_checkpoint import WalCheckpointer
from fhir_twin.store.worker import Worker, worker_repository
from fhir_twin.subscriptions.delivery import DeliveryWorker
from fhir_twin.subscriptions.matching import SubscriptionMatcher
from fhir_twin.subscriptions.websocket import WebsocketChannel
from fhir_twin.twin.mapping import Mapping
from fhir_twin.twin.mapping_file import duration, load_mappings
from fhir_twin.twin.operation import twin_operation
from fhir_twin.twin.sync import TwinSync
from fhir_twin.twin.twins import Twins

if TYPE_CHECKING:
    # cryptography (the checkpoints' signatures) loads only in a server that anchors its chain.
    from fhir_twin.audit.anchor_schedule import AnchorSchedule

DOCTOR = Principal("fhir-twin doctor", kind="server", trusted=True)
# The MQTT bridge writes device readings as this: audited under its name, not limited by scopes.
DEVICES = Principal("fhir-twin devices", kind="device", trusted=True)


@dataclass(frozen=True)
class Services:
    """What one process serves with, on one database."""

    config: Config
    repository: Repository
    authenticator: Authenticator
    interactions: Interactions
    twins: Twins
    doctor: Doctor
    # Present with ``audit`` on; it records writes in their transactions whether or not its thread runs.
    recorder: AuditRecorder | None
    # Held here with ``twin`` on: the signal keeps only a weak reference to its receiver.
    twin_sync: TwinSync | None
    # With ``twin`` and ``doctor`` on: twin changes queue their patients for assessment.
    doctor_queue: DoctorQueue | None
    # With ``workers``: Bulk Data exports, and live assessment with ``doctor_queue``.
    exports: ExportWorker | None
    doctor_worker: DoctorWorker | None
    # Writes matching an active Subscription owe it a notification; with ``workers``, sent from here.
    subscription_matcher: SubscriptionMatcher
    deliveries: DeliveryWorker | None
    # With ``workers`` on SQLite: the write-ahead log's checkpoints, off the commits' path.
    checkpointer: WalCheckpointer | None
    # The background threads this process runs (``workers``): those four and the recorder's.
    workers: tuple[Worker, ...]
    # The device kinds of ``mappings/devices.yaml``, and with ``workers`` and ``mqtt_url`` the bridge
    # that receives them (run by the process that builds the app: gunicorn's master, one per server).
    device_kinds: dict[str, DeviceKind]
    bridge: DeviceBridge | None
    # With ``workers`` and ``websocket_port``: the websocket Subscriptions' server (in the process
    # that builds the app, as the bridge), pinging the sockets bound to it.
    websocket: WebsocketChannel | None = None
    # With ``workers``, ``audit`` and ``audit_anchor_every``: the audit chain's checkpoints, taken by
    # the process that builds the app (as the bridge), so a server has one writer of them.
    anchors: AnchorSchedule | None = None

    @property
    def catalog(self) -> Catalog:
        return self.doctor.catalog

    def start(self, *, here: bool = True) -> None:
        """Start the background threads. Not ``here`` (gunicorn's master, which serves no request
        but runs the device bridge): the Doctor's, the deliveries' and the exports' threads are
        only enabled, for each forked server process to run, so the bridge has the master's core to
        itself; the audit recorder runs here too, for the bridge's audited reads. The audit chain's
        checkpoints are taken here, and only here."""
        # After a crash, what this machine's dead processes held is taken up at once.
        claims.release_dead(self.repository, (doctor_queue, subscription_outbox, device_window_reading))
        for worker in self.workers:
            if here or worker is self.recorder:
                worker.start()
            else:
                worker.enable()
        if self.bridge is not None and not self.bridge.running:
            self.bridge.start()
        if self.websocket is not None and not self.websocket.running:
            self.websocket.start()
        if self.anchors is not None:
            self.anchors.start()

    def device_bridge(
        self, url: str, prefix: str, client_id: str = "", shared_group: str | None = None
    ) -> DeviceBridge:
        """A bridge from the broker at ``url`` into this server, writing as ``DEVICES``, in the
        shared subscription group ``shared_group`` (by default the setting ``mqtt_shared_group``)."""
        group = self.config.mqtt_shared_group if shared_group is None else shared_group
        return _device_bridge(
            self.interactions, self.repository, self.device_kinds, self.config.base_url, url, prefix, client_id, group
        )

    def ensure_running(self) -> None:
        """Resume the worker threads paused by a fork or by disposing the engine."""
        for worker in self.workers:
            worker.ensure_running()

    def close(self) -> None:
        """Close every database connection; the workers pause, and queued audit records are written.
        The process's Bundle helper ends (a later large Bundle starts another)."""
        self.repository.engine.dispose()
        HELPER.stop()


def build(config: Config, *, workers: bool = True) -> Services:
    """Everything, on ``config``'s database, migrated first. A mapping file that cannot be used
    stops it (``MappingError``), and bad authentication settings before the database is touched.
    ``workers``: whether this process runs the background threads (built, started by the caller)."""
    mapping = load_mappings(config.resolved_mappings_dir)
    device_kinds = load_device_mappings(config.resolved_mappings_dir, mapping)
    repository = Repository(make_engine(config.resolved_database_url), config.referential_integrity)
    repository.websocket = bool(config.websocket_port)
    authenticator = Authenticator(config, repository)
    migrate(repository.engine)
    recorder = AuditRecorder(repository, config.audit_key, config.base_url) if config.audit else None
    try:
        interactions, doctor = _router_and_doctor(repository, mapping, config, recorder)
    except Exception:
        # A model reads a field the mappings lack (``UnmappedField``): nothing will use the
        # connections already opened.
        repository.engine.dispose()
        raise
    live = config.twin and config.doctor
    exports = ExportWorker(repository) if workers else None
    doctor_worker = _doctor_worker(repository, mapping, config, recorder) if workers and live else None
    bridge = (
        _device_bridge(
            interactions,
            repository,
            device_kinds,
            config.base_url,
            config.mqtt_url,
            config.mqtt_topic_prefix,
            config.mqtt_client_id,
            config.mqtt_shared_group,
        )
        if workers and config.mqtt_url
        else None
    )
    deliveries = _delivery_worker(repository, config, recorder) if workers else None
    checkpointer = WalCheckpointer(repository) if workers and repository.engine.dialect.name == "sqlite" else None
    return Services(
        config=config,
        repository=repository,
        authenticator=authenticator,
        interactions=interactions,
        twins=doctor.twins,
        doctor=doctor,
        recorder=recorder,
        twin_sync=TwinSync(repository, mapping, config.base_url) if config.twin else None,
        doctor_queue=DoctorQueue(repository) if live else None,
        exports=exports,
        doctor_worker=doctor_worker,
        subscription_matcher=_matcher(repository, doctor_worker, deliveries),
        deliveries=deliveries,
        checkpointer=checkpointer,
        workers=tuple(
            worker
            for worker in (exports, doctor_worker, deliveries, recorder, checkpointer)
            if workers and worker is not None
        ),
        device_kinds=device_kinds,
        bridge=bridge,
        websocket=(
            WebsocketChannel(repository, authenticator, interactions.route, config)
            if workers and config.websocket_port
            else None
        ),
        anchors=(
            _anchor_schedule(repository, config) if workers and config.audit and config.audit_anchor_every else None
        ),
    )


def _device_bridge(
    router: Interactions,
    repository: Repository,
    kinds: dict[str, DeviceKind],
    base: str,
    url: str,
    prefix: str,
    client_id: str,
    shared_group: str,
) -> DeviceBridge:
    def as_devices(request: Request) -> Response:
        with acting_as(DEVICES):
            return router.route(request)

    return DeviceBridge(
        kinds, as_devices, DeviceWindows(repository), base, url, prefix, client_id, shared_group=shared_group
    )


def _doctor_worker(
    repository: Repository, mapping: Mapping, config: Config, recorder: AuditRecorder | None
) -> DoctorWorker:
    """The live assessment thread, whose Doctor writes through a router of its own on an engine
    of the thread's own (``worker_repository``)."""
    _, doctor = _router_and_doctor(worker_repository(repository), mapping, config, recorder)
    return DoctorWorker(repository, doctor)


def _matcher(
    repository: Repository, doctor_worker: DoctorWorker | None, deliveries: DeliveryWorker | None
) -> SubscriptionMatcher:
    """Subscriptions match every write to the database: clients', the Doctor's and the notifier's."""
    matcher = SubscriptionMatcher(repository, DeliveryWorker)
    for worker in (doctor_worker, deliveries):
        if worker is not None and worker.own_repository is not None:
            matcher.listen(worker.own_repository)
    return matcher


def _delivery_worker(repository: Repository, config: Config, recorder: AuditRecorder | None) -> DeliveryWorker:
    """The rest-hook delivery thread, on an engine of its own, with a router of its own to write
    a failing Subscription's ``error`` status (audited like any write)."""
    own = worker_repository(repository)
    router = Interactions(own, config)
    if recorder is not None:
        recorder.listen(router)
    return DeliveryWorker(repository, own, router.route, config)


def _router_and_doctor(
    repository: Repository, mapping: Mapping, config: Config, recorder: AuditRecorder | None
) -> tuple[Interactions, Doctor]:
    """The FHIR router on ``repository`` with every operation, and the Digital Doctor writing
    through it as the server itself (its writes are validated, indexed and audited under its name,
    and no client's scopes limit them).

    The two need each other: ``$predict`` and ``$whatif`` are built from the Doctor, and the Doctor
    writes through the router. The Doctor is built first, with a route that looks up ``router``
    when called: the name is bound below, before anything can route a request.
    """

    def as_doctor(request: Request) -> Response:
        with acting_as(DOCTOR):
            return router.route(request)

    twins = Twins(repository, mapping, config.base_url)
    catalog = Catalog(repository, duration(config.observation_window))
    doctor = Doctor(repository, twins, as_doctor, catalog, config.base_url)
    router = Interactions(
        repository,
        config,
        operations=[twin_operation(twins), predict_operation(doctor), whatif_operation(doctor)],
        bundles=lambda route: Bundles(route, repository, config).process,
        security=lambda base: rest_security(config, base),
    )
    if recorder is not None:
        recorder.listen(router)
    return router, doctor


def _anchor_schedule(repository: Repository, config: Config) -> AnchorSchedule:
    from fhir_twin.audit.anchor_schedule import AnchorSchedule

    return AnchorSchedule(repository, config.audit_key, config.resolved_audit_anchor_to, config.audit_anchor_every)
