"""The audit views in a real browser: an auditor sees the accesses just made to a patient's
record, filters them, downloads them as CSV, and verifies the audit chain (a broken one is said
so, loudly)."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select
from sqlalchemy import select, update

from fhir_twin.store.database import make_engine
from fhir_twin.store.schema import audit_chain
from tests.app.browsing import call, policy_violations, seed_ward, sign_in, wait
from tests.app.conftest import AppServer

AUDITOR_SCOPES = "user/AuditEvent.rs user/Provenance.rs"


@pytest.fixture(scope="module")
def accessed(app_server: AppServer, browser: Any) -> AppServer:
    """The ward, and Patient/wa's record used three ways: found in the app's patients list by the
    ward's app, read by the EHR, and refused to a lab system that may read Observations only."""
    seed_ward(app_server)
    sign_in(browser, app_server, app_server.token_for("user/*.rs", name="ward-app"), "/app/patients")
    browser.get(f"{app_server.root}/app/patients?name=ada")
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "patients-status"), "1 patient"))
    assert call(app_server, "GET", "/fhir/Patient/wa", app_server.token_for("user/*.rs", name="ehr"))[0] == 200
    assert (
        call(app_server, "GET", "/fhir/Patient/wa", app_server.token_for("user/Observation.rs", name="labs"))[0] == 403
    )
    # Reads are recorded by a thread within 0.5 s: wait until the three agents are in the trail.
    auditor = app_server.token_for(AUDITOR_SCOPES, name="auditor")
    deadline = time.monotonic() + 10
    while True:
        status, summary = call(app_server, "GET", "/twin/audit/summary?patient=wa", auditor)
        assert status == 200, summary
        if {"ward-app", "ehr", "labs"} <= {client["agent"] for client in summary["clients"]}:
            return app_server
        assert time.monotonic() < deadline, summary
        time.sleep(0.1)


@pytest.fixture
def auditor(accessed: AppServer, browser: Any) -> Iterator[Any]:
    """The browser signed in as an auditor, on the audit view; after the test, no policy violation."""
    sign_in(browser, accessed, accessed.token_for(AUDITOR_SCOPES, name="auditor"), "/app/audit")
    wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "audit-search")))
    yield browser
    assert policy_violations(browser) == []


def accesses(browser: Any) -> list[dict[str, str]]:
    """The accesses table as the reader sees it, read at once."""
    script = """const head = [...document.querySelectorAll("#accesses-table thead th")].map((th) => th.innerText);
        return [...document.querySelectorAll("#accesses-table tbody tr")].map((row) =>
            Object.fromEntries([...row.cells].map((cell, i) => [head[i].trim(), cell.innerText.trim()])))"""
    return browser.execute_script(script)  # type: ignore[no-any-return]


def summary(browser: Any) -> dict[str, list[str]]:
    script = """return [...document.querySelectorAll("#summary-table tbody tr")]
        .map((row) => [...row.cells].map((cell) => cell.innerText.trim()))"""
    return {row[0]: row[1:] for row in browser.execute_script(script)}


def shown(browser: Any, expected: str) -> None:
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "audit-status"), expected))


def search(browser: Any, **fields: str) -> None:
    """Fill the form (empty what is not given) and submit it."""
    for name in ("patient", "identifier", "agent", "from", "to"):
        box = browser.find_element(By.ID, f"audit-{name}")
        browser.execute_script("arguments[0].value = arguments[1]", box, fields.get(name, ""))
    for name in ("action", "outcome"):
        Select(browser.find_element(By.ID, f"audit-{name}")).select_by_value(fields.get(name, ""))
    browser.find_element(By.CSS_SELECTOR, "#audit-search button[type=submit]").click()


def test_the_auditor_sees_the_accesses_just_made(accessed: AppServer, auditor: Any, screenshots: Path) -> None:
    browser = auditor
    search(browser, patient="wa")
    shown(browser, "to Patient/wa.")
    found = accesses(browser)
    assert {"ward-app", "ehr", "labs"} <= {row["Client"] for row in found}
    # The app's list search, the EHR's read and the refusal, each as it happened.
    assert any(
        row["Client"] == "ward-app" and "Patient" in row["What"] and row["Outcome"] == "success" for row in found
    )
    assert any(
        row["Client"] == "ehr" and row["Action"] == "read" and row["What"].startswith("Patient/wa") for row in found
    )
    assert any(row["Client"] == "labs" and row["Outcome"].startswith("failed: 403") for row in found)
    assert all(row["Address"] == "127.0.0.1" for row in found if row["Client"] in ("ehr", "labs"))
    clients = summary(browser)
    assert clients["labs"][2] == "1"  # failures
    assert clients["ehr"][1] == "read 1"
    assert parse_qs(urlsplit(browser.current_url).query) == {"patient": ["wa"]}
    browser.set_window_size(1200, 800)
    browser.execute_script("document.getElementById('audit-status').scrollIntoView()")
    browser.save_screenshot(str(screenshots / "app-audit.png"))  # the README's (docs/img/)
    browser.set_window_size(1280, 900)


def test_filters_narrow_the_accesses(accessed: AppServer, auditor: Any) -> None:
    browser = auditor
    search(browser, patient="wa", agent="ehr")
    shown(browser, "to Patient/wa.")
    assert {row["Client"] for row in accesses(browser)} == {"ehr"}
    assert list(summary(browser)) == ["ehr"]
    search(browser, patient="wa", action="R")
    shown(browser, "to Patient/wa.")
    assert {row["Action"] for row in accesses(browser)} == {"read"}
    search(browser, patient="wa", outcome="4")
    shown(browser, "to Patient/wa.")
    refused = accesses(browser)
    assert {row["Client"] for row in refused} == {"labs"}
    assert all(row["Outcome"].startswith("failed: 403") for row in refused)
    today = datetime.now(UTC).date()
    search(browser, patient="wa", to=(today - timedelta(days=2)).isoformat())
    shown(browser, "No access to Patient/wa matches.")
    assert accesses(browser) == []
    search(browser, patient="wa", agent="ehr", **{"from": (today - timedelta(days=1)).isoformat()})
    shown(browser, "to Patient/wa.")
    assert {row["Client"] for row in accesses(browser)} == {"ehr"}
    # The filters are in the URL: a reload shows the same view.
    browser.refresh()
    shown(browser, "to Patient/wa.")
    assert browser.find_element(By.ID, "audit-agent").get_attribute("value") == "ehr"
    assert {row["Client"] for row in accesses(browser)} == {"ehr"}


def test_the_patient_is_found_by_identifier_and_a_bad_one_is_said(accessed: AppServer, auditor: Any) -> None:
    browser = auditor
    search(browser, identifier="urn:mrn|mrn-wa")
    shown(browser, "to Patient/wa.")
    assert {"ehr", "labs"} <= {row["Client"] for row in accesses(browser)}
    search(browser, identifier="urn:mrn|nobody")
    problem = wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "problem")))
    assert "urn:mrn|nobody" in problem.text
    assert not browser.find_element(By.ID, "audit-results").is_displayed()
    search(browser, patient="wa", identifier="urn:mrn|mrn-wa")
    shown(browser, "not both")


def test_paging_through_the_accesses(accessed: AppServer, auditor: Any) -> None:
    browser = auditor
    # The ward's app searched twice (the whole list, then "ada"); the auditor's own views of the
    # trail are accesses too, so they are filtered out to keep the count still.
    browser.get(f"{accessed.root}/app/audit?patient=wa&agent=ward-app&count=1")
    shown(browser, "2 accesses to Patient/wa.")
    assert browser.find_element(By.ID, "audit-counts").text == "1–1 of 2"
    assert not browser.find_element(By.ID, "audit-previous").is_enabled()
    (newest,) = accesses(browser)
    assert "name=ada" in newest["What"]
    browser.find_element(By.ID, "audit-next").click()
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "audit-counts"), "2–2 of 2"))
    (oldest,) = accesses(browser)
    assert "name=ada" not in oldest["What"] and not browser.find_element(By.ID, "audit-next").is_enabled()
    assert parse_qs(urlsplit(browser.current_url).query)["offset"] == ["1"]


def test_csv_download_holds_every_matching_access(accessed: AppServer, auditor: Any, tmp_path: Path) -> None:
    browser = auditor
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path)})
    search(browser, patient="wa", agent="ehr")
    shown(browser, "to Patient/wa.")
    rows = len(accesses(browser))
    browser.find_element(By.ID, "audit-csv").click()
    saved = tmp_path / "accesses-wa.csv"
    wait(browser).until(lambda _: saved.exists() and saved.stat().st_size > 0)
    with saved.open(newline="") as file:
        table = list(csv.DictReader(file))
    assert len(table) == rows and {row["agent"] for row in table} == {"ehr"}
    assert "Downloaded accesses-wa.csv" in browser.find_element(By.ID, "audit-status").text
    # The token went in a header, not in the URL of any request the page made.
    names = browser.execute_script("return performance.getEntriesByType('resource').map((entry) => entry.name)")
    assert not any("ftw_" in name for name in names)


def test_verify_now_records_and_shows_the_chain_state(accessed: AppServer, auditor: Any) -> None:
    browser = auditor
    browser.find_element(By.ID, "chain-verify").click()
    verdict = wait(browser).until(
        expected_conditions.text_to_be_present_in_element((By.ID, "chain-verdict"), "OK: the chain is intact")
    )
    assert verdict
    facts = browser.find_element(By.ID, "chain-state").text
    assert "auditor" in facts and "Records checked" in facts and "Head" in facts
    # It was recorded: a new visit shows it without verifying again.
    browser.refresh()
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "chain-verdict"), "OK"))
    assert "auditor" in browser.find_element(By.ID, "chain-state").text


def test_a_broken_chain_is_shown_as_broken(accessed: AppServer, auditor: Any, screenshots: Path) -> None:
    browser = auditor
    engine = make_engine(accessed.database_url)
    try:
        # A write transaction from its start (BEGIN IMMEDIATE on SQLite): a deferred one that reads and
        # then writes fails at once with "database is locked", whatever the busy timeout, when the
        # server commits in between (its recorder writes the page's audit records meanwhile).
        with engine.connect().execution_options(fhir_write=True) as connection, connection.begin():
            seq, digest = connection.execute(
                select(audit_chain.c.seq, audit_chain.c.digest).order_by(audit_chain.c.seq)
            ).first()
            connection.execute(update(audit_chain).where(audit_chain.c.seq == seq).values(digest="0" * 64))
        try:
            browser.find_element(By.ID, "chain-verify").click()
            broken = wait(browser).until(
                expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, "#chain-verdict .broken"))
            )
            assert "BROKEN" in broken.text and broken.get_attribute("role") == "alert"
            assert len(broken.text.splitlines()) >= 2  # the problem itself, under the verdict
            browser.save_screenshot(str(screenshots / "audit-chain-broken.png"))
        finally:
            with engine.begin() as connection:
                connection.execute(update(audit_chain).where(audit_chain.c.seq == seq).values(digest=digest))
    finally:
        engine.dispose()
    browser.find_element(By.ID, "chain-verify").click()
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "chain-verdict"), "OK"))


def test_readable_at_phone_width(accessed: AppServer, auditor: Any, screenshots: Path) -> None:
    browser = auditor
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{accessed.root}/app/audit?patient=wa")
        shown(browser, "to Patient/wa.")
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        browser.save_screenshot(str(screenshots / "app-audit-390.png"))
    finally:
        browser.set_window_size(1280, 900)
