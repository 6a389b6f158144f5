"""The twin API's audit views: accesses to one patient's record (by id or identifier) with
filters, as JSON pages or CSV; a summary per client; the audit chain's head and its last
verification, run by ``fhir-twin audit verify`` or ``POST /twin/audit/chain/verify``. Only a
credential that may search AuditEvent sees them, and each is audited as an AuditEvent search."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy
from click.testing import CliRunner
from flask import Flask

from fhir_twin import cli
from fhir_twin.app import services_of
from tests.api.twin_app_data import Clinic, open_clinic
from tests.factories import bearer, outcome

pytestmark = pytest.mark.audited


@pytest.fixture
def clinic(make_app: Callable[..., Flask]) -> Clinic:
    found = open_clinic(make_app)
    # Accesses to pa's record: two reads by the ward app, one refused write by a reader named
    # like a spreadsheet formula, and pa's own app reading it.
    for _ in range(2):
        assert found.get("/fhir/Patient/pa", found.clinician).status_code == 200
    formula = bearer(found.app, "user/*.rs", name="=HYPERLINK(1)")
    refused = found.client.put("/fhir/Patient/pa", json={"resourceType": "Patient", "id": "pa"}, headers=formula)
    assert refused.status_code == 403
    assert found.get("/fhir/Patient/pa", found.pa).status_code == 200
    services_of(found.app).recorder.flush()
    return found


def view(clinic: Clinic, path: str, headers: dict[str, str] | None = None) -> Any:
    answer = clinic.get(f"/twin/audit/{path}", headers or clinic.auditor)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_accesses_to_a_patient_newest_first_with_their_details(clinic: Clinic) -> None:
    found = view(clinic, "accesses?patient=pa&agent=ward-app")
    assert found["patient"] == "pa"
    assert found["total"] == 2
    for row in found["accesses"]:
        assert set(row) == {"time", "agent", "user", "action", "interaction", "outcome", "address", "what", "event"}
        assert (row["agent"], row["action"], row["interaction"], row["outcome"]) == ("ward-app", "R", "read", "success")
        assert row["address"] == "10.4.5.6"
        assert row["what"].startswith("Patient/pa")
        assert row["event"].startswith("AuditEvent/")
    times = [row["time"] for row in found["accesses"]]
    assert times == sorted(times, reverse=True)


def test_found_by_identifier_as_by_id(clinic: Clinic) -> None:
    by_id = view(clinic, "accesses?patient=pa&action=R")
    by_identifier = view(clinic, "accesses?identifier=urn:mrn|mrn-pa&action=R")
    assert by_identifier["patient"] == "pa"
    assert [row["event"] for row in by_identifier["accesses"]] == [row["event"] for row in by_id["accesses"]]


def test_filters(clinic: Clinic) -> None:
    failed = view(clinic, "accesses?patient=pa&outcome=4")
    assert [row["agent"] for row in failed["accesses"]] == ["=HYPERLINK(1)"]
    assert failed["accesses"][0]["action"] == "U"
    assert view(clinic, "accesses?patient=pa&agent=pa-app")["total"] == 1
    assert view(clinic, "accesses?patient=pa&from=2999-01-01")["total"] == 0
    assert view(clinic, "accesses?patient=pa&to=2000-01-01")["total"] == 0
    assert view(clinic, "accesses?patient=pb&agent=ward-app")["total"] == 0


def test_paging(clinic: Clinic) -> None:
    everything = view(clinic, "accesses?patient=pa&_count=100")
    first = view(clinic, "accesses?patient=pa&_count=2")
    assert first["count"] == 2 and first["total"] == everything["total"]
    assert first["links"]["previous"] is None
    second = clinic.client.get(first["links"]["next"], headers=clinic.auditor).get_json()
    # The views' own reads are recorded too, newest first, and may land between the calls on a
    # slow machine: the pages must follow the listing in order, whatever was added above it.
    listed = [row["event"] for row in everything["accesses"]]
    paged = [row["event"] for row in first["accesses"] + second["accesses"] if row["event"] in listed]
    assert len(paged) >= 2
    assert paged == listed[listed.index(paged[0]) :][: len(paged)]


def test_csv_download_neutralises_formulas(clinic: Clinic) -> None:
    answer = clinic.get("/twin/audit/accesses?patient=pa&_format=csv", clinic.auditor)
    assert answer.status_code == 200
    assert answer.mimetype == "text/csv"
    assert answer.headers["Content-Disposition"] == 'attachment; filename="accesses-pa.csv"'
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert rows[0] == ["time", "agent", "user", "action", "interaction", "outcome", "address", "what", "event"]
    # Every matching row (reads: the views' own records, searches, come and go as they flush).
    reads = clinic.get("/twin/audit/accesses?patient=pa&action=R&_format=csv", clinic.auditor)
    assert (
        len(list(csv.reader(io.StringIO(reads.get_data(as_text=True))))) - 1
        == view(clinic, "accesses?patient=pa&action=R")["total"]
    )
    assert [row[1] for row in rows[1:] if "HYPERLINK" in row[1]] == ["'=HYPERLINK(1)"]
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    by_accept = clinic.client.get(
        "/twin/audit/accesses?patient=pa&action=R", headers={**clinic.auditor, "Accept": "text/csv"}
    )
    assert by_accept.mimetype == "text/csv"
    assert by_accept.get_data(as_text=True) == reads.get_data(as_text=True)


def test_summary_per_client(clinic: Clinic) -> None:
    found = view(clinic, "summary?patient=pa")
    assert found["patient"] == "pa"
    clients = {client["agent"]: client for client in found["clients"]}
    counts = [client["count"] for client in found["clients"]]
    assert counts == sorted(counts, reverse=True)
    assert clients["ward-app"]["actions"] == {"R": 2}
    assert clients["ward-app"]["failures"] == 0
    assert clients["ward-app"]["first"] <= clients["ward-app"]["last"]
    assert clients["=HYPERLINK(1)"]["failures"] == 1
    assert view(clinic, "summary?patient=pa&agent=pa-app")["clients"][0]["agent"] == "pa-app"


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("accesses", "patient"),
        ("accesses?patient=pa&identifier=urn:mrn|mrn-pa", "patient"),
        ("accesses?patient=pa&action=X", "action"),
        ("accesses?patient=pa&outcome=3", "outcome"),
        ("accesses?patient=pa&from=last-week", "from"),
        ("accesses?patient=pa&user=x", "user"),
        ("accesses?patient=pa&_count=0", "_count"),
        ("summary?patient=pa&_count=5", "_count"),
        ("accesses?patient=a%20b", "patient"),
    ],
)
def test_bad_parameters_are_refused_naming_them(clinic: Clinic, query: str, named: str) -> None:
    issue = outcome(clinic.get(f"/twin/audit/{query}", clinic.auditor), 400)
    assert issue["expression"] == [named]


def test_an_unknown_identifier_is_404(clinic: Clinic) -> None:
    outcome(clinic.get("/twin/audit/accesses?identifier=urn:mrn|nobody", clinic.auditor), 404, "not-found")


@pytest.mark.parametrize("path", ["accesses?patient=pa", "summary?patient=pa", "chain"])
def test_only_a_credential_that_may_search_the_trail_sees_it(clinic: Clinic, path: str) -> None:
    outcome(clinic.get(f"/twin/audit/{path}", clinic.pa), 403, "forbidden")
    outcome(clinic.get(f"/twin/audit/{path}", bearer(clinic.app, "user/Patient.rs")), 403, "forbidden")
    assert clinic.get(f"/twin/audit/{path}", clinic.auditor).status_code == 200
    refused = clinic.client.post("/twin/audit/chain/verify", headers=clinic.pa)
    outcome(refused, 403, "forbidden")


def test_each_view_is_audited_as_an_audit_event_search(clinic: Clinic) -> None:
    view(clinic, "accesses?patient=pb")
    view(clinic, "summary?patient=pb")
    services_of(clinic.app).recorder.flush()
    found = view(clinic, "accesses?patient=pb&agent=auditor")
    interactions = {(row["interaction"], row["action"]) for row in found["accesses"]}
    assert interactions == {("search-type", "E")}
    whats = {row["what"] for row in found["accesses"]}
    assert any("/twin/audit/accesses" in what for what in whats)
    assert any("/twin/audit/summary" in what for what in whats)


def test_the_chain_and_its_last_verification(clinic: Clinic) -> None:
    before = view(clinic, "chain")
    assert before["head"]["seq"] >= 1 and len(before["head"]["hash"]) == 64
    assert before["lastVerification"] is None
    answer = clinic.client.post("/twin/audit/chain/verify", headers=clinic.auditor)
    assert answer.status_code == 200, answer.get_json()
    done = answer.get_json()["lastVerification"]
    assert (done["ok"], done["problem"], done["by"]) == (True, None, "auditor")
    assert done["checked"] >= before["head"]["seq"]
    assert view(clinic, "chain")["lastVerification"] == done


def test_a_verification_by_the_cli_is_shown_and_a_broken_chain_stays_broken(clinic: Clinic, database_url: str) -> None:
    engine = services_of(clinic.app).repository.engine
    with engine.begin() as connection:
        connection.execute(
            sqlalchemy.text(
                "UPDATE resource_version SET body = REPLACE(body, 'ward-app', 'someone') "
                "WHERE res_type = 'AuditEvent' AND body LIKE '%ward-app%'"
            )
        )
    result = CliRunner().invoke(cli.main, ["audit", "verify", "--database", database_url])
    assert result.exit_code == 1, result.output
    found = view(clinic, "chain")["lastVerification"]
    assert (found["ok"], found["by"]) == (False, "cli")
    assert found["problem"]
