"""The model registry: every training run a new version (1.0.0, 1.1.0, ...), the newest active, an
older one activated on request and served by every process, and older artifacts still loadable with
the predictions they made when trained. On SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from fhir_twin.errors import NotFound
from fhir_twin.ml import catalog as catalog_module
from fhir_twin.ml.catalog import Catalog
from fhir_twin.ml.learned import incidence
from fhir_twin.ml.learned.report import TrainResult
from fhir_twin.ml.registry import Registry
from tests.ml.learned_data import TYPICAL, incidence_result, registry

AT = datetime(2012, 1, 1, tzinfo=UTC)
SMALL = 60  # patients of a second, different training set


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


def test_each_registration_is_a_new_version_and_the_newest_is_active(app: Flask) -> None:
    models = registry(app)
    trained = incidence_result()
    registered = [models.register(trained) for _ in range(3)]
    assert [result.model.version for result in registered] == ["1.0.0", "1.1.0", "1.2.0"]
    assert trained.model.version == "1.0.0", "the trained result itself is left as it was"
    for result in registered:
        assert result.report["model"]["version"] == result.model.version
        assert result.card.startswith(f"# Model card: incident-diabetes {result.model.version}\n")

    versions = models.versions("incident-diabetes")
    assert [(v.version, v.active) for v in versions] == [("1.0.0", False), ("1.1.0", False), ("1.2.0", True)]
    assert models.active_version("incident-diabetes") == "1.2.0"
    assert models.versions("hr-forecast") == [] and models.active_version("hr-forecast") is None
    for stored in versions:
        report = json.loads(stored.report)
        assert report["model"] == {**trained.report["model"], "version": stored.version}
        assert report["cross_validation"] == trained.report["cross_validation"]
        assert f"# Model card: incident-diabetes {stored.version}" in stored.card
        assert abs(stored.created - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=1)


def test_activating_an_older_version_makes_every_process_serve_it(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(catalog_module, "ACTIVE_TTL", 0.2)
    server: Catalog = app.extensions["fhir_twin.catalog"]
    assert served(server) is None, "an untrained learned model is not run"
    first, second = incidence_result(150), incidence_result(SMALL)
    assert probability(first.artifact) != probability(second.artifact)
    elsewhere = registry(app)  # another process training and choosing versions
    elsewhere.register(first)
    elsewhere.register(second)
    assert served(_waited(server, "1.1.0")) == "1.1.0"

    elsewhere.activate("incident-diabetes", "1.0.0")
    assert served(Catalog(elsewhere.repository, timedelta(minutes=5))) == "1.0.0"
    _waited(server, "1.0.0")
    (runner,) = [runner for runner in server.runners() if runner.model.id == "incident-diabetes"]
    assert probability(runner.artifact) == probability(first.artifact)  # type: ignore[attr-defined]
    assert [(v.version, v.active) for v in elsewhere.versions("incident-diabetes")] == [
        ("1.0.0", True),
        ("1.1.0", False),
    ]


def _waited(catalog: Catalog, version: str) -> Catalog:
    """The catalog, once it serves ``version`` (it trusts what it knows for ACTIVE_TTL seconds)."""
    deadline = time.monotonic() + catalog_module.ACTIVE_TTL + 3
    while served(catalog) != version:
        assert time.monotonic() < deadline, f"still serving {served(catalog)}, not {version}"
        time.sleep(0.05)
    return catalog


def test_older_artifacts_load_and_predict_as_when_trained(app: Flask) -> None:
    first, second = incidence_result(150), incidence_result(SMALL)
    models = registry(app)
    models.register(first)
    models.register(second)

    fresh = Registry(models.repository)  # nothing in memory: artifacts come from the database
    old_version, old = fresh.load("incident-diabetes", "1.0.0")  # type: ignore[misc]
    active_version, active = fresh.load("incident-diabetes")  # type: ignore[misc]
    assert (old_version, active_version) == ("1.0.0", "1.1.0")
    assert incidence.predict(old, TYPICAL, AT) == incidence.predict(first.artifact, TYPICAL, AT)
    assert incidence.predict(active, TYPICAL, AT) == incidence.predict(second.artifact, TYPICAL, AT)
    assert probability(old) != probability(active)
    assert fresh.load("incident-diabetes", "1.5.0") is None
    assert fresh.load("hr-forecast") is None


def test_activating_an_unknown_version_or_model_is_not_found(app: Flask) -> None:
    models = registry(app)
    models.register(incidence_result())
    with pytest.raises(NotFound, match=r"incident-diabetes has no version 2\.0\.0"):
        models.activate("incident-diabetes", "2.0.0")
    with pytest.raises(NotFound, match=r"hr-forecast has no version 1\.0\.0"):
        models.activate("hr-forecast", "1.0.0")
    assert models.active_version("incident-diabetes") == "1.0.0"
    assert [(v.version, v.active) for v in models.versions()] == [("1.0.0", True)]


def test_replacing_the_report_of_an_unknown_version_is_not_found(app: Flask) -> None:
    models = registry(app)
    result = models.register(incidence_result())
    with pytest.raises(NotFound):
        models.update_report(dataclasses.replace(result.model, version="1.9.0"), result.report)
    (stored,) = models.versions("incident-diabetes")
    assert json.loads(stored.report) == result.report and stored.card == result.card


def test_concurrent_registrations_get_distinct_versions(make_app: Callable[..., Flask]) -> None:
    processes = [registry(make_app(doctor=False)) for _ in range(4)]  # four engines, as four processes
    trained: TrainResult = incidence_result()
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
    assert [v.version for v in stored if v.active] == ["1.3.0"], "the last one registered is active"
