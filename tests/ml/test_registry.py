"""The model registry: every training run a new, inactive version (1.0.0, 1.1.0, ...); a version serves
patients only once activated, which its model's gates must allow and which the audit trail records
(who, when, which version, why); the active one is served by every process, and older artifacts stay
loadable with the predictions they made when trained. On SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from fhir_twin.app import services_of
from fhir_twin.errors import Invalid, NotFound
from fhir_twin.ml import catalog as catalog_module
from fhir_twin.ml.catalog import LEARNED, Catalog
from fhir_twin.ml.learned import incidence
from fhir_twin.ml.learned.report import TrainResult
from fhir_twin.ml.registry import Activation, GatesFailed, Registry
from tests.ml.learned_data import (
    FAILING,
    OTHER_PASSING,
    PASSING,
    TESTING,
    TYPICAL,
    incidence_result,
    instant,
    registry,
)

AT = datetime(2012, 1, 1, tzinfo=UTC)
DIABETES = LEARNED["incident-diabetes"]


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(doctor=False)


def served(catalog: Catalog, model_id: str = "incident-diabetes") -> str | None:
    """The version of ``model_id`` the catalog runs on patients, None when it runs none."""
    return next((runner.model.version for runner in catalog.runners() if runner.model.id == model_id), None)


def probability(artifact: object) -> float:
    score = incidence.predict(artifact, TYPICAL, AT)  # type: ignore[arg-type]
    assert score.probability is not None
    return score.probability


def activate(models: Registry, version: str, activation: Activation = TESTING) -> list[dict[str, object]]:
    return models.activate(DIABETES.model, version, DIABETES.gates, activation)


def test_each_registration_is_a_new_inactive_version(app: Flask) -> None:
    models = registry(app)
    trained = incidence_result(PASSING)
    registered = [models.register(trained) for _ in range(3)]
    assert [result.model.version for result in registered] == ["1.0.0", "1.1.0", "1.2.0"]
    assert trained.model.version == "1.0.0", "the trained result itself is left as it was"
    for result in registered:
        assert result.report["model"]["version"] == result.model.version
        assert result.card.startswith(f"# Model card: incident-diabetes {result.model.version}\n")

    versions = models.versions("incident-diabetes")
    assert [(v.version, v.active, v.activated) for v in versions] == [
        ("1.0.0", False, None),
        ("1.1.0", False, None),
        ("1.2.0", False, None),
    ]
    assert models.active_version("incident-diabetes") is None
    assert served(services_of(app).catalog) is None, "a registered version serves no patient"
    assert models.versions("hr-forecast") == [] and models.active_version("hr-forecast") is None
    for stored in versions:
        report = json.loads(stored.report)
        assert report["model"] == {**trained.report["model"], "version": stored.version}
        assert report["cross_validation"] == trained.report["cross_validation"]
        assert f"# Model card: incident-diabetes {stored.version}" in stored.card
        assert abs(stored.created - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)


def test_activating_a_version_makes_every_process_serve_it(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "ACTIVE_TTL", 0.2)
    server: Catalog = services_of(app).catalog
    first, second = incidence_result(PASSING), incidence_result(OTHER_PASSING)
    assert probability(first.artifact) != probability(second.artifact)
    elsewhere = registry(app)  # another process training and choosing versions
    elsewhere.register(first)
    elsewhere.register(second)
    results = activate(elsewhere, "1.1.0")
    assert [(r["name"], r["passed"]) for r in results] == [(g.name, True) for g in DIABETES.gates]
    assert served(_waited(server, "1.1.0")) == "1.1.0"

    activate(elsewhere, "1.0.0", dataclasses.replace(TESTING, reason="back to the first", by="alice"))
    assert served(Catalog(elsewhere.repository, timedelta(minutes=5))) == "1.0.0"
    _waited(server, "1.0.0")
    (runner,) = [runner for runner in server.runners() if runner.model.id == "incident-diabetes"]
    assert probability(runner.artifact) == probability(first.artifact)  # type: ignore[attr-defined]
    versions = elsewhere.versions("incident-diabetes")
    assert [(v.version, v.active) for v in versions] == [("1.0.0", True), ("1.1.0", False)]
    assert (versions[0].activated_by, versions[0].activation_reason) == ("alice", "back to the first")
    assert abs(versions[0].activated - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)
    assert (versions[1].activated_by, versions[1].activation_reason) == ("tester", TESTING.reason), "its last one"


@pytest.mark.audited
def test_an_activation_is_an_audit_event_naming_who_which_version_and_why(app: Flask) -> None:
    models = registry(app)
    models.register(incidence_result(PASSING))
    before = datetime.now(UTC)
    activate(models, "1.0.0", Activation("better calibrated than 0.9.0", "alice", "fhir-twin models activate", ""))
    found = app.test_client().get("/fhir/AuditEvent?entity=Device/incident-diabetes-1.0.0").get_json()
    (event,) = [entry["resource"] for entry in found["entry"]]
    assert event["action"] == "U" and event["outcome"] == "0"
    assert {"system": "urn:fhir-twin:CodeSystem/operation", "code": "activate-model"} in event["subtype"]
    assert event["purposeOfEvent"] == [{"text": "better calibrated than 0.9.0"}]
    assert [agent["name"] for agent in event["agent"]] == ["fhir-twin models activate", "alice", "fhir-twin"]
    assert event["entity"][0]["what"] == {"reference": "Device/incident-diabetes-1.0.0"}
    assert before - timedelta(seconds=1) <= instant(event["recorded"]) <= datetime.now(UTC)


@pytest.mark.audited
def test_a_version_failing_its_gates_is_not_activated_and_nothing_changes(app: Flask) -> None:
    models = registry(app)
    models.register(incidence_result(PASSING))
    models.register(incidence_result(FAILING))
    activate(models, "1.0.0")
    with pytest.raises(
        GatesFailed, match=r"incident-diabetes 1\.1\.0 was not activated: its gates failed: hold-out AUROC"
    ):
        activate(models, "1.1.0", dataclasses.replace(TESTING, audit_key=""))
    assert [(v.version, v.active) for v in models.versions("incident-diabetes")] == [("1.0.0", True), ("1.1.0", False)]
    assert models.versions("incident-diabetes")[1].activated is None
    found = app.test_client().get("/fhir/AuditEvent?entity=Device/incident-diabetes-1.1.0").get_json()
    assert not found.get("entry"), "no activation was recorded"


def test_older_artifacts_load_and_predict_as_when_trained(app: Flask) -> None:
    first, second = incidence_result(PASSING), incidence_result(FAILING)
    models = registry(app)
    models.register(first)
    models.register(second)
    activate(models, "1.0.0")

    fresh = Registry(models.repository)  # nothing in memory: artifacts come from the database
    old_version, old = fresh.load("incident-diabetes", "1.1.0")  # type: ignore[misc]
    active_version, active = fresh.load("incident-diabetes")  # type: ignore[misc]
    assert (old_version, active_version) == ("1.1.0", "1.0.0")
    assert incidence.predict(old, TYPICAL, AT) == incidence.predict(second.artifact, TYPICAL, AT)
    assert incidence.predict(active, TYPICAL, AT) == incidence.predict(first.artifact, TYPICAL, AT)
    assert probability(old) != probability(active)
    assert fresh.load("incident-diabetes", "1.5.0") is None
    assert fresh.load("hr-forecast") is None


def test_activating_an_unknown_version_or_without_a_reason_is_refused(app: Flask) -> None:
    models = registry(app)
    models.register(incidence_result(PASSING))
    with pytest.raises(NotFound, match=r"incident-diabetes has no version 2\.0\.0"):
        activate(models, "2.0.0")
    forecast = LEARNED["hr-forecast"]
    with pytest.raises(NotFound, match=r"hr-forecast has no version 1\.0\.0"):
        models.activate(forecast.model, "1.0.0", forecast.gates, TESTING)
    with pytest.raises(Invalid, match="give the reason"):
        activate(models, "1.0.0", dataclasses.replace(TESTING, reason="  "))
    assert models.active_version("incident-diabetes") is None
    assert [(v.version, v.active) for v in models.versions()] == [("1.0.0", False)]


def test_replacing_the_report_of_an_unknown_version_is_not_found(app: Flask) -> None:
    models = registry(app)
    result = models.register(incidence_result(PASSING))
    with pytest.raises(NotFound):
        models.update_report(dataclasses.replace(result.model, version="1.9.0"), result.report)
    (stored,) = models.versions("incident-diabetes")
    assert json.loads(stored.report) == result.report and stored.card == result.card


def test_training_keys_are_kept_per_version_outside_the_report(app: Flask) -> None:
    models = registry(app)
    result = models.register(incidence_result(PASSING), frozenset({"a" * 32, "b" * 32}))
    models.register(incidence_result(PASSING))
    assert models.training_keys("incident-diabetes", "1.0.0") == {"a" * 32, "b" * 32}
    assert models.training_keys("incident-diabetes", "1.1.0") == frozenset()
    assert "a" * 32 not in models.versions("incident-diabetes")[0].report
    assert result.report == json.loads(models.versions("incident-diabetes")[0].report)


def test_concurrent_registrations_get_distinct_versions(make_app: Callable[..., Flask]) -> None:
    processes = [registry(make_app(doctor=False)) for _ in range(4)]  # four engines, as four processes
    trained: TrainResult = incidence_result(PASSING)
    start = threading.Barrier(len(processes))
    versions: list[str] = []
    errors: list[BaseException] = []

    def train_and_register(models: Registry) -> None:
        try:
            start.wait()
            versions.append(models.register(trained).model.version)
        except BaseException as error:  # reported below, with the versions that were given
            errors.append(error)

    threads = [threading.Thread(target=train_and_register, args=(models,)) for models in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(versions) == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    stored = processes[0].versions("incident-diabetes")
    assert sorted(v.version for v in stored) == sorted(versions)
    assert [v.version for v in stored if v.active] == [], "none is active until activated"


def _waited(catalog: Catalog, version: str) -> Catalog:
    """The catalog, once it serves ``version`` (it trusts what it knows for ACTIVE_TTL seconds)."""
    deadline = time.monotonic() + catalog_module.ACTIVE_TTL + 3
    while served(catalog) != version:
        assert time.monotonic() < deadline, f"still serving {served(catalog)}, not {version}"
        time.sleep(0.05)
    return catalog
