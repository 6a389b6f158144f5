"""The Digital Doctor on the command line: ``fhir-twin cohort`` writes a labelled synthetic cohort,
``train`` registers versions with their report and card, ``models list|show|activate`` manages them,
``evaluate`` adds an external validation, ``assess`` runs the models on every patient; failures are
one-line errors with a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask

from fhir_twin import cli
from fhir_twin.ml.cohort import cohort_bundles
from tests.ml.doctor_data import ago, patient, put, transaction
from tests.ml.learned_data import SMALL_COHORT, diabetes_inputs

HTEST = "http://terminology.hl7.org/CodeSystem/v3-ActReason"


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default reports go under FHIR_TWIN_DATA_DIR, never under the user's home."""
    folder = tmp_path / "data"
    monkeypatch.setenv("FHIR_TWIN_DATA_DIR", str(folder))
    return folder


def run(*args: str | Path, code: int = 0) -> Result:
    """``fhir-twin ARGS``, which must exit with ``code``; a failure is a message, not a traceback."""
    result = CliRunner().invoke(cli.main, [str(arg) for arg in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if code:
        assert isinstance(result.exception, SystemExit), result.exception
    return result


@pytest.fixture
def loaded(database_url: str, tmp_path: Path) -> str:
    """The test database with the seed-1 cohort loaded by ``fhir-twin load``; its URL."""
    cohort = tmp_path / "cohort-1.ndjson"
    run("cohort", cohort, "--seed", 1, "--patients", SMALL_COHORT)
    result = run("load", cohort, "--database", database_url)
    assert f"1 files, {_resources(1, SMALL_COHORT)} resources loaded" in result.output
    return database_url


def _resources(seed: int, patients: int, streams: int = 0) -> int:
    return sum(len(bundle["entry"]) for bundle in cohort_bundles(seed, patients, streams))


def _models(database_url: str) -> dict[str, list[str]]:
    """``fhir-twin models list``: each model's line split into words."""
    lines = run("models", "list", "--database", database_url).output.splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines}


def test_cohort_writes_a_seeded_synthetic_cohort_as_ndjson(tmp_path: Path) -> None:
    out = tmp_path / "out" / "cohort.ndjson"
    result = run("cohort", out, "--seed", 1, "--patients", 60, "--stream-patients", 2)
    count = _resources(1, 60, 2)
    assert result.output == f"wrote {count} resources of 60 synthetic patients to {out}\n"
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == count
    resources = [json.loads(line) for line in lines]
    assert sum(r["resourceType"] == "Patient" for r in resources) == 60
    assert sum(r.get("code", {}).get("coding", [{}])[0].get("code") == "8867-4" for r in resources) == 2 * 48
    for resource in resources:
        assert {"system": HTEST, "code": "HTEST", "display": "test health data"} in resource["meta"]["security"]
    again = tmp_path / "again.ndjson"
    run("cohort", again, "--seed", 1, "--patients", 60, "--stream-patients", 2)
    assert again.read_bytes() == out.read_bytes(), "seeded: the same cohort every time"


def test_train_registers_versions_to_list_activate_and_show(loaded: str, tmp_path: Path, data_dir: Path) -> None:
    reports = tmp_path / "reports"
    result = run("train", "incident-diabetes", "--reports", reports, "--database", loaded)
    assert f"training incident-diabetes on {SMALL_COHORT} patients' twins (seed 0)" in result.output
    assert "# Model card: incident-diabetes 1.0.0" in result.output
    assert "## Intended use" in result.output and "## Cross-validation" in result.output
    assert "registered incident-diabetes 1.0.0 as the active version" in result.output
    stored = json.loads(
        (reports / "incident-diabetes-1.0.0.json").read_text(),
        parse_constant=lambda name: pytest.fail(f"{name} in the JSON report"),
    )
    assert stored["model"]["version"] == "1.0.0"
    assert stored["data"]["synthetic"] is True and stored["data"]["patients"] == SMALL_COHORT
    card = (reports / "incident-diabetes-1.0.0.md").read_text()
    assert card.startswith("# Model card: incident-diabetes 1.0.0\n") and card in result.output

    result = run("train", "incident-diabetes", "--database", loaded)  # reports under the data directory
    assert "registered incident-diabetes 1.1.0 as the active version" in result.output
    assert json.loads((data_dir / "reports" / "incident-diabetes-1.1.0.json").read_text())["model"]["version"] == (
        "1.1.0"
    )
    listed = _models(loaded)
    assert listed["incident-diabetes"] == ["learned", "1.1.0", "1.0.0,", "1.1.0*"]
    assert listed["hr-forecast"] == ["learned", "not", "trained"]
    assert listed["news2"] == ["rule-based", "1.0.0"]

    result = run("models", "activate", "incident-diabetes", "1.0.0", "--database", loaded)
    assert result.output == "incident-diabetes 1.0.0 is now the active version\n"
    assert _models(loaded)["incident-diabetes"] == ["learned", "1.0.0", "1.0.0*,", "1.1.0"]
    shown = run("models", "show", "incident-diabetes", "--database", loaded).output
    assert shown == card + "\n"
    shown = run("models", "show", "incident-diabetes", "--version", "1.1.0", "--database", loaded).output
    assert shown.startswith("# Model card: incident-diabetes 1.1.0\n")


def test_evaluate_adds_an_external_validation_to_the_report(
    loaded: str, tmp_path: Path, make_app: Callable[..., Flask]
) -> None:
    reports = tmp_path / "reports"
    run("train", "incident-diabetes", "--reports", reports, "--database", loaded)
    other = tmp_path / "cohort-2.ndjson"
    run("cohort", other, "--seed", 2, "--patients", 30)
    result = run("evaluate", "incident-diabetes", "--data", other, "--reports", reports, "--database", loaded)
    external = result.output.split("## External validation", 1)[1].split("## Calibration", 1)[0]
    assert f"Dataset: external data: {other} (synthetic: yes, 30 patients" in external
    assert "| auroc |" in external and "Not performed" not in external
    assert f"evaluated incident-diabetes 1.0.0 on external data: {other}" in result.output

    report = json.loads((reports / "incident-diabetes-1.0.0.json").read_text())
    assert report["external"]["dataset"]["synthetic"] is True
    assert report["external"]["dataset"]["patients"] == 30
    assert 0 <= report["external"]["metrics"]["auroc"] <= 1
    assert report["cross_validation"]["metrics"]["auroc"]["k"] == 5, "the training evaluation stays"
    served = make_app(doctor=False).test_client().get("/twin/models/incident-diabetes").get_json()
    assert served["report"]["external"] == report["external"]
    assert "## External validation\n\nDataset: external data:" in served["card"]
    assert served["card"] == (reports / "incident-diabetes-1.0.0.md").read_text()


def test_train_diabetes_progression_compares_linear_and_polynomial(database_url: str, tmp_path: Path) -> None:
    result = run("train", "diabetes-progression", "--reports", tmp_path, "--database", database_url)
    rows = {
        match[0]: [float(value) for value in match[1:]]
        for match in re.findall(
            r"^\| (linear|polynomial \(degree 2\)) \| ([-\d.]+) \| ([-\d.]+) \| ([-\d.]+)", result.output, re.M
        )
    }
    linear_mse, _, linear_r2 = rows["linear"]
    assert linear_mse == pytest.approx(2985, abs=1) and linear_r2 == pytest.approx(0.48, abs=0.01)
    assert rows["polynomial (degree 2)"][0] > linear_mse, "the polynomial overfits: a larger CV MSE"
    assert "Chosen: linear." in result.output
    assert "registered diabetes-progression 1.0.0 as the active version" in result.output
    report: dict[str, Any] = json.loads((tmp_path / "diabetes-progression-1.0.0.json").read_text())
    assert report["comparison"]["candidates"]["linear"]["cv_mse"] == pytest.approx(2985, abs=1)
    assert report["data"]["patients"] == 442 and report["data"]["synthetic"] is False


def test_assess_runs_the_models_on_every_patient(loaded: str, make_app: Callable[..., Flask]) -> None:
    run("train", "incident-diabetes", "--database", loaded)
    client = make_app(doctor=False).test_client()
    put(client, patient("fresh"))
    transaction(client, diabetes_inputs("fresh", ago(minutes=5)))
    result = run("assess", "--database", loaded)
    # The cohort's measurements are from 2010-2017: one lone systolic BP of 88 mmHg is a partial NEWS2
    # set that already scores 3 (preliminary, and said to be old); the fresh patient gets its risk.
    assert re.search(
        rf"^assessed {SMALL_COHORT + 1} patients in [\d.]+ s .*; 2 new RiskAssessments$", result.output, re.M
    )
    found = client.get("/fhir/RiskAssessment?subject=Patient/fresh").get_json()
    assert [e["resource"]["method"]["coding"][0]["code"] for e in found["entry"]] == ["incident-diabetes"]

    result = run("assess", "--patient", "fresh", "--database", loaded)
    assert re.search(r"^assessed 1 patients in .*; 0 new RiskAssessments$", result.output, re.M), (
        "nothing changed since the last assessment: " + result.output
    )


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["train", "framingham"], 2, "'framingham' is not a learned model; choose one of hr-forecast"),
        (["train", "hr-forecast"], 1, "hr-forecast needs a patient with at least 24 heart-rate readings"),
        (["evaluate", "incident-diabetes"], 1, "is not trained; run fhir-twin train incident-diabetes"),
        (["evaluate", "hr-forecast"], 1, "hr-forecast is evaluated when it is trained"),
        (["models", "activate", "incident-diabetes", "1.0.0"], 1, "incident-diabetes has no version 1.0.0"),
        (["models", "show", "incident-diabetes"], 1, "incident-diabetes has no active version"),
        (["assess", "--model", "hr-forecast"], 2, "'hr-forecast' is not served"),
    ],
    ids=[
        "unknown-model",
        "no-heart-rate-streams",
        "evaluate-untrained",
        "evaluate-at-training",
        "activate",
        "show",
        "assess-untrained",
    ],
)
def test_doctor_commands_fail_with_a_message(loaded: str, args: list[str], code: int, says: str) -> None:
    result = run(*args, "--database", loaded, code=code)
    assert says in result.output
    listed = _models(loaded)
    assert listed["hr-forecast"][1:] == listed["incident-diabetes"][1:] == ["not", "trained"]


def test_train_on_too_few_patients_says_how_many_there_are(database_url: str, tmp_path: Path) -> None:
    cohort = tmp_path / "tiny.ndjson"
    run("cohort", cohort, "--seed", 1, "--patients", 10)
    run("load", cohort, "--database", database_url)
    result = run("train", "incident-diabetes", "--database", database_url, code=1)
    assert "incident-diabetes needs at least 20 examples with at least 5 of each outcome" in result.output
    assert "gives 10 (3 with incident diabetes, 7 without" in result.output
