"""``create_app(config)``: the application factory. Wiring only."""

from __future__ import annotations

from typing import Any

from flask import Flask

from fhir_twin.api import errors, hygiene, security
from fhir_twin.api.fhir import blueprint
from fhir_twin.api.models import blueprint as models_blueprint
from fhir_twin.api.twin import blueprint as twin_blueprint
from fhir_twin.audit.recorder import AuditRecorder
from fhir_twin.bundles import Bundles
from fhir_twin.config import Config
from fhir_twin.fhir.model import resource_types
from fhir_twin.interactions import Interactions
from fhir_twin.interactions.message import Request as FhirRequest
from fhir_twin.interactions.message import Response as FhirResponse
from fhir_twin.interactions.operations.export import ExportWorker
from fhir_twin.ml.catalog import Catalog
from fhir_twin.ml.doctor import Doctor
from fhir_twin.ml.operations import predict_operation, whatif_operation
from fhir_twin.ml.queue import DoctorQueue, DoctorWorker
from fhir_twin.security.authentication import Authenticator
from fhir_twin.security.context import acting_as
from fhir_twin.security.discovery import rest_security
from fhir_twin.security.principal import Principal
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.repository import Repository
from fhir_twin.store.worker import worker_repository
from fhir_twin.twin.mapping import Mapping
from fhir_twin.twin.mapping_file import duration, load_mappings
from fhir_twin.twin.operation import twin_operation
from fhir_twin.twin.sync import TwinSync
from fhir_twin.twin.twins import Twins


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    """A ready-to-serve app: the database migrated, the FHIR API mounted at ``/fhir``, the twin
    API at ``/twin``. A mapping file that cannot be used stops it here (``MappingError``)."""
    if not isinstance(config, Config):
        config = Config.from_env(config)
    hygiene.configure_logging(config.log_level)
    # fhir.resources imports its models lazily (about 1.7 s for all): done here, before gunicorn
    # forks, no worker's first request or first assessment pays for it.
    resource_types()
    mapping = load_mappings(config.resolved_mappings_dir)
    authenticator = Authenticator(config)
    engine = make_engine(config.resolved_database_url)
    migrate(engine)
    repository = Repository(engine, config.referential_integrity)
    authenticator.repository = repository

    app = Flask("fhir_twin")
    # "//" in a path is a 404 OperationOutcome, not werkzeug's HTML redirect page.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions["fhir_twin.config"] = config
    app.extensions["fhir_twin.engine"] = engine
    interactions = Interactions(repository, config)
    interactions.bundles = Bundles(interactions.route, repository, config).process
    interactions.security = rest_security(config)
    app.extensions["fhir_twin.interactions"] = interactions
    recorder = AuditRecorder(repository, config.audit_key, config.base_url) if config.audit else None
    if recorder is not None:
        recorder.listen(interactions)
        app.extensions["fhir_twin.audit"] = recorder
    twins = Twins(repository, mapping, config.base_url)
    app.extensions["fhir_twin.twins"] = twins
    interactions.operations["twin"] = twin_operation(twins)
    if config.twin:
        # Held here: the signal keeps only a weak reference to its receiver.
        app.extensions["fhir_twin.twin_sync"] = TwinSync(repository, mapping, config.base_url)
    doctor = _doctor(repository, mapping, config, interactions, recorder)
    app.extensions["fhir_twin.catalog"] = doctor.catalog
    app.extensions["fhir_twin.doctor"] = doctor
    interactions.operations["predict"] = predict_operation(doctor)
    interactions.operations["whatif"] = whatif_operation(doctor)
    app.register_blueprint(blueprint)
    app.register_blueprint(twin_blueprint)
    app.register_blueprint(models_blueprint)
    # Request ids, logging and CORS preflights come before authentication.
    hygiene.register(app, config)
    security.register(app, authenticator)
    errors.register(app)

    # Bulk Data $export jobs: one worker thread per process; app.extensions["fhir_twin.exports"].stop() ends it.
    exports = ExportWorker(repository)
    app.extensions["fhir_twin.exports"] = exports
    app.before_request(exports.ensure_running)
    exports.start()
    if config.twin and config.doctor:
        app.extensions["fhir_twin.doctor_queue"] = DoctorQueue(repository)
        assessments = DoctorWorker(repository, _doctor(worker_repository(repository), mapping, config, None, recorder))
        app.extensions["fhir_twin.doctor_worker"] = assessments
        app.before_request(assessments.ensure_running)
        assessments.start()
    if recorder is not None:
        app.before_request(recorder.ensure_running)
        recorder.start()
    return app


def _doctor(
    repository: Repository,
    mapping: Mapping,
    config: Config,
    interactions: Interactions | None = None,
    recorder: AuditRecorder | None = None,
) -> Doctor:
    """The Digital Doctor on ``repository``, writing through the FHIR interactions on it as the
    server itself (its writes are audited under its name, and no client's scopes limit them)."""
    if interactions is None:
        interactions = Interactions(repository, config)
        interactions.bundles = Bundles(interactions.route, repository, config).process
        if recorder is not None:
            recorder.listen(interactions)
    route = interactions.route

    def as_doctor(request: FhirRequest) -> FhirResponse:
        with acting_as(DOCTOR):
            return route(request)

    catalog = Catalog(repository, duration(config.observation_window))
    twins = Twins(repository, mapping, config.base_url)
    return Doctor(repository, twins, as_doctor, catalog, config.base_url)


DOCTOR = Principal("fhir-twin doctor", kind="server", trusted=True)
