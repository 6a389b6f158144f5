"""The synthetic cohort: seeded, labelled synthetic, accepted by the server, and the same Dataset either way."""

from __future__ import annotations

import json
from collections import Counter

from flask.testing import FlaskClient

from fhir_twin.app import services_of
from fhir_twin.ml.cohort import cohort_bundles, cohort_dataset, cohort_resources
from fhir_twin.ml.dataset import from_repository


def test_cohorts_are_seeded_and_a_patient_does_not_depend_on_the_cohort_size() -> None:
    assert cohort_bundles(1, 4) == cohort_bundles(1, 4)
    assert cohort_bundles(1, 6)[:4] == cohort_bundles(1, 4)
    assert cohort_bundles(2, 4) != cohort_bundles(1, 4)
    assert cohort_dataset(1, 30).digest() == cohort_dataset(1, 30).digest()


def test_every_resource_is_put_with_a_deterministic_id_and_labelled_synthetic() -> None:
    bundles = cohort_bundles(5, 3, stream_patients=1)
    assert all(bundle["type"] == "transaction" for bundle in bundles)
    ids = []
    for bundle in bundles:
        patient = bundle["entry"][0]["resource"]
        assert patient["resourceType"] == "Patient" and patient["id"].startswith("cohort-s5-")
        for entry in bundle["entry"]:
            resource = entry["resource"]
            assert entry["request"] == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
            assert entry["fullUrl"].startswith("urn:uuid:")
            assert resource["meta"]["security"][0]["code"] == "HTEST"
            assert resource["meta"]["tag"][0]["code"] == "seed-5"
            if resource["resourceType"] != "Patient":
                assert resource["subject"] == {"reference": f"Patient/{patient['id']}"}
            ids.append(entry["fullUrl"])
    assert len(ids) == len(set(ids))
    kinds = Counter(r["resourceType"] for r in cohort_resources(bundles))
    assert kinds["Patient"] == 3 and kinds["Observation"] > 48


def test_the_generator_makes_incident_late_and_prevalent_diabetes() -> None:
    dataset = cohort_dataset(1, 400)
    patients = dataset.patients.set_index("patient_id")
    first = dataset.measurements.groupby("patient_id")["time"].min()
    onset = dataset.conditions[dataset.conditions["code"].str.endswith("|44054006")].set_index("patient_id")["onset"]
    years = (onset - first[onset.index]).dt.days / 365.25
    assert 50 < (years.between(0, 5)).sum() < 120, "incident within 5 years"
    assert (years > 5).sum() > 20, "diagnosed later than 5 years: not counted"
    assert 5 < (years < 0).sum() < 40, "already diabetic at the index date: excluded"
    assert set(patients["gender"]) == {"female", "male"}
    assert dataset.synthetic and "synthetic" in dataset.name
    fields = set(dataset.measurements["field"])
    assert fields == {"bmi", "systolic_bp", "diastolic_bp", "glucose", "hba1c", "hdl_cholesterol", "smoking_status"}
    assert set(dataset.measurements["category"].dropna()) == {"current", "former", "never"}


def test_the_server_accepts_the_bundles_and_reads_back_the_same_dataset(client: FlaskClient) -> None:
    bundles = cohort_bundles(7, 5, stream_patients=1)
    for bundle in bundles:
        response = client.post("/fhir", data=json.dumps(bundle), content_type="application/fhir+json")
        assert response.status_code == 200, response.get_json()
        assert all(entry["response"]["status"].startswith("201") for entry in response.get_json()["entry"])
    expected = cohort_dataset(7, 5, stream_patients=1)
    twins = services_of(client.application).twins
    for field in ("hba1c", "systolic_bp", "bmi", "heart_rate", "smoking_status"):
        series = twins.series("cohort-s7-0", field, None, None, None)
        rows = expected.measurements[
            (expected.measurements["patient_id"] == "cohort-s7-0") & (expected.measurements["field"] == field)
        ]
        assert [(p.value, p.category, p.source, p.flag) for p in series.points] == [
            (None if value != value else value, category if isinstance(category, str) else None, source, None)
            for value, category, source in zip(rows["value"], rows["category"], rows["source"], strict=True)
        ], field
    assert len(twins.series("cohort-s7-0", "heart_rate", None, None, None).points) == 48
    repository = services_of(client.application).interactions.repository
    assert from_repository(repository, expected.name, True).digest() == expected.digest()
