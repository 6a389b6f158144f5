"""``create_app(config)``: the application factory. Wiring only."""

from __future__ import annotations

from typing import Any

from flask import Flask

from fhir_twin.api import errors, hygiene, security, smart_auth, smart_ehr_launch
from fhir_twin.api.cds_hooks import cds_blueprint, cds_settings
from fhir_twin.api.fhir import fhir_blueprint
from fhir_twin.api.twin_audit import audit_blueprint
from fhir_twin.api.twin_audit_chain import chain_blueprint
from fhir_twin.api.twin_caller import caller_blueprint
from fhir_twin.api.twin_models import models_blueprint
from fhir_twin.api.twin_patient_list import patient_list_blueprint
from fhir_twin.api.twin_patients import twin_blueprint
from fhir_twin.api.web_app import web_app_blueprint
from fhir_twin.config import Config
from fhir_twin.fhir.resource_types import resource_types
from fhir_twin.services import Services, build

# The single key under which an app keeps its services; read it through ``services_of``.
_SERVICES = "fhir_twin.services"


def create_app(config: Config | dict[str, Any] | None = None, *, to_fork: bool = False) -> Flask:
    """A ready-to-serve app: the database migrated, the FHIR API mounted at ``/fhir``, the twin
    API at ``/twin``, the background threads started. A mapping file that cannot be used stops
    it here (``MappingError``). ``to_fork``: built by gunicorn's master, which serves no request
    and forks the processes that do (``Services.start``)."""
    if not isinstance(config, Config):
        config = Config.from_env(config)
    hygiene.configure_logging(config.log_level)
    # fhir.resources imports its models lazily (about 1.7 s for all): done here, before gunicorn
    # forks, no worker's first request or first assessment pays for it.
    resource_types()
    cds = cds_settings(config)
    services = build(config)

    app = Flask("fhir_twin")
    # "//" in a path is a 404 OperationOutcome, not werkzeug's HTML redirect page.
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.extensions[_SERVICES] = services
    app.register_blueprint(fhir_blueprint(services.interactions, config))
    app.register_blueprint(twin_blueprint(services.twins, services.doctor))
    app.register_blueprint(models_blueprint(services.catalog))
    app.register_blueprint(caller_blueprint(services.interactions))
    app.register_blueprint(patient_list_blueprint(services.repository, config))
    app.register_blueprint(audit_blueprint(services.repository, config))
    app.register_blueprint(chain_blueprint(services.repository, config))
    app.register_blueprint(web_app_blueprint())
    app.register_blueprint(cds_blueprint(services.doctor, services.interactions, config, cds))
    if config.auth_mode == "tokens":
        # The SMART authorization server issues API tokens, which only ``tokens`` mode accepts.
        smart_auth.register(app, services.repository, config)
        smart_ehr_launch.register(app, services.repository, services.authenticator, services.interactions.route, config)
    # Request ids, logging and CORS preflights come before authentication.
    hygiene.register(app, config)
    security.register(app, services.authenticator, services.interactions, config)
    errors.register(app)
    # Each process runs its own threads; a request resumes those a fork or a dispose paused.
    app.before_request(services.ensure_running)
    services.start(here=not to_fork)
    return app


def services_of(app: Flask) -> Services:
    """The services ``app`` was built with."""
    found: Services = app.extensions[_SERVICES]
    return found
