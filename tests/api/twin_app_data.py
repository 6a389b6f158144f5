"""A small clinic for the twin API's web-app views: four patients, three with NEWS2 sets scored by
the live Digital Doctor and two with what the Pooled Cohort Equations read, and the tokens that
see it as a clinician, a patient and an auditor do."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.factories import bearer
from tests.ml.doctor_data import Roster, roster_resources, settle, transaction

CLINIC: Roster = {
    "pa": ("Ada Alpha", 0, 160.0),
    "pb": ("Ben Beta", 1, None),
    "pc": ("Cy Gamma", 3, 280.0),
    "pd": ("Di Delta", None, None),
}


class Clinic:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client: FlaskClient = app.test_client()
        self.client.environ_base["REMOTE_ADDR"] = "10.4.5.6"
        self.system = bearer(app, "system/*.cruds", name="ehr")
        # The system token is this client's default credential; tests pass others as headers.
        self.client.environ_base["HTTP_AUTHORIZATION"] = self.system["Authorization"]
        self.clinician = bearer(app, "user/*.rs", name="ward-app")
        self.auditor = bearer(app, "user/AuditEvent.rs user/Provenance.rs", name="auditor")
        self.pa = bearer(app, "patient/*.rs", "pa", name="pa-app")

    def get(self, url: str, headers: dict[str, str]) -> Any:
        return self.client.get(url, headers=headers)


def seed(clinic: Clinic) -> None:
    transaction(clinic.client, roster_resources(CLINIC))
    settle(clinic.app, deadline=30)


def open_clinic(make_app: Callable[..., Flask]) -> Clinic:
    """The clinic on a new app in auth mode "tokens", once the Doctor has assessed it."""
    found = Clinic(make_app(auth_mode="tokens"))
    seed(found)
    return found
