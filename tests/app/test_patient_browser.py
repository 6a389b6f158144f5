"""The patient page in a real browser: the Digital Body's charts hold the points the server sent
(downsampled ones say of how many, and keep a flagged reading), vital signs sit on the NEWS2 bands,
the Digital Case and the Digital Doctor are shown, a what-if moves the PCE risk, and a patient token
cannot open another patient's page. Everything it shows was loaded through the FHIR API."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from fhir_twin.security import tokens
from fhir_twin.store.database import make_engine, migrate
from fhir_twin.store.repository import Repository
from tests.app.conftest import AppServer
from tests.ml.doctor_data import (
    MEDIUM,
    ago,
    cardiovascular_set,
    infection,
    news2_set,
    patient,
    quantity,
    transaction_bundle,
)

GLUCOSE = "2339-0"
HEART_RATE = "8867-4"
GLUCOSE_POINTS = 25  # 5 of them sent in mmol/L: converted
HEART_RATE_POINTS = 5000  # beside the NEWS2 set's one, and one of them implausible


def _send(server: AppServer, method: str, path: str, body: Any) -> Any:
    request = urllib.request.Request(
        f"{server.root}{path}",
        data=json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {server.token}", "Content-Type": "application/fhir+json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def _read(server: AppServer, path: str) -> Any:
    request = urllib.request.Request(f"{server.root}{path}", headers={"Authorization": f"Bearer {server.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _transaction(server: AppServer, resources: list[dict[str, Any]]) -> None:
    _send(server, "POST", "/fhir", transaction_bundle(resources))


def _heart_rates(patient_id: str) -> list[dict[str, Any]]:
    """5,000 readings a minute apart, ending an hour ago (older than the NEWS2 set), one of 900/min."""
    start = datetime.now(UTC) - timedelta(hours=1, minutes=HEART_RATE_POINTS)
    found = []
    for i in range(HEART_RATE_POINTS):
        value = 900 if i == 2500 else 60 + (i * 7) % 40
        moment = (start + timedelta(minutes=i)).isoformat(timespec="seconds").replace("+00:00", "Z")
        found.append(quantity(patient_id, HEART_RATE, value, "/min", moment))
    return found


def _glucose(patient_id: str) -> list[dict[str, Any]]:
    found = []
    for i in range(GLUCOSE_POINTS):
        when = ago(hours=3 + i)
        if i % 5 == 0:
            found.append(quantity(patient_id, GLUCOSE, 5.5, "mmol/L", when, category="laboratory"))
        else:
            found.append(quantity(patient_id, GLUCOSE, 90 + i, "mg/dL", when, category="laboratory"))
    return found


def _assessed(server: AppServer, patient_id: str, model: str, seconds: float = 60) -> dict[str, Any]:
    """The newest assessment ``model`` made of the patient, once the live Doctor has made one."""
    query = (
        f"/fhir/RiskAssessment?subject=Patient/{patient_id}&method=urn:fhir-twin:CodeSystem/model|{model}&_sort=-date"
    )
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = _read(server, query.replace("|", "%7C"))
        if found.get("entry"):
            return found["entry"][0]["resource"]
        time.sleep(0.2)
    pytest.fail(f"the Digital Doctor made no {model} assessment of {patient_id}")


@pytest.fixture(scope="module")
def record(app_server: AppServer) -> dict[str, Any]:
    """app-p1: pneumonia, a medium NEWS2 set, cholesterol and smoking, 25 glucose readings and 5,001
    heart rates; app-p2, another patient. The newest PCE assessment of app-p1."""
    named = {"name": [{"family": "Chalmers", "given": ["Peter"]}]}
    _send(app_server, "PUT", "/fhir/Patient/app-p1", {**patient("app-p1"), **named})
    _send(app_server, "PUT", "/fhir/Patient/app-p2", {**patient("app-p2"), "name": [{"family": "Other"}]})
    _transaction(
        app_server,
        [
            infection("app-p1"),
            *news2_set("app-p1", MEDIUM, ago(minutes=10)),
            *cardiovascular_set("app-p1", ago(minutes=11)),
            *_glucose("app-p1"),
        ],
    )
    _transaction(app_server, _heart_rates("app-p1"))
    _assessed(app_server, "app-p1", "news2")
    return {"pce": _assessed(app_server, "app-p1", "pooled-cohort-ascvd")}


def _policy_violations(browser: Any) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]


def _sign_in(browser: Any, server: AppServer, token: str) -> None:
    browser.get(f"{server.root}/app/")
    browser.execute_script("sessionStorage.clear()")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    WebDriverWait(browser, 20).until(lambda b: "/app/patients" in b.current_url)


def _open_patient(browser: Any, server: AppServer, patient_id: str) -> None:
    browser.get(f"{server.root}/app/patients/{patient_id}")
    WebDriverWait(browser, 60).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready") != "0")


def _chart(browser: Any, field: str) -> Any:
    return browser.find_element(By.ID, f"chart-{field}")


def test_each_chart_holds_the_points_sent_and_says_how_many(
    app_server: AppServer, record: dict[str, Any], browser: Any, screenshots: Path
) -> None:
    _sign_in(browser, app_server, app_server.token)
    _open_patient(browser, app_server, "app-p1")
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", browser.find_element(
        By.ID, "problem"
    ).text
    assert browser.find_element(By.ID, "patient-name").text == "Peter Chalmers"

    glucose = _chart(browser, "glucose")
    assert glucose.get_attribute("data-points") == str(GLUCOSE_POINTS)
    assert glucose.get_attribute("data-total") == str(GLUCOSE_POINTS)
    assert f"{GLUCOSE_POINTS} of {GLUCOSE_POINTS} points shown" in glucose.text
    assert "5 converted to mg/dL" in glucose.text
    # A converted value is read as a clinician writes it, beside what was measured.
    assert re.search(r"latest \d+(\.\d)? mg/dL \(measured [\d.]+ mmol/L\)", glucose.text), glucose.text
    assert glucose.get_attribute("data-bands") is None, "NEWS2 does not score glucose"
    assert "mg/dL" in glucose.find_element(By.CSS_SELECTOR, "[role=img]").get_attribute("aria-label")

    heart_rate = _chart(browser, "heart_rate")
    shown = int(heart_rate.get_attribute("data-points"))
    assert heart_rate.get_attribute("data-total") == "5001"
    assert heart_rate.get_attribute("data-downsampled") == "true"
    assert 3 <= shown < 5001
    assert f"{shown:,} of 5,001 points shown" in heart_rate.text
    assert heart_rate.get_attribute("data-flagged") == "1", "the implausible reading is kept"
    assert "1 needs verification (implausible)" in heart_rate.text
    assert int(heart_rate.get_attribute("data-bands")) >= 2, "drawn on the NEWS2 bands"
    browser.save_screenshot(str(screenshots / "app-patient.png"))

    toggle = heart_rate.find_element(By.CSS_SELECTOR, "button[aria-expanded]")
    toggle.click()
    table = heart_rate.find_element(By.CSS_SELECTOR, ".values table")
    assert toggle.get_attribute("aria-expanded") == "true"
    assert len(table.find_elements(By.CSS_SELECTOR, "tbody tr")) == shown
    assert "needs verification: implausible" in table.text

    timeline = browser.find_element(By.ID, "timeline")
    assert "Conditions (1)" in timeline.text
    doctor = browser.find_element(By.ID, "models")
    news2 = doctor.find_element(By.CSS_SELECTOR, "[data-model=news2]")
    assert "score 6" in news2.text and "medium" in news2.text
    assert _policy_violations(browser) == []


def test_an_input_opens_as_fhir_json_with_the_token(
    app_server: AppServer, record: dict[str, Any], browser: Any
) -> None:
    _sign_in(browser, app_server, app_server.token)
    _open_patient(browser, app_server, "app-p1")
    pce = browser.find_element(By.CSS_SELECTOR, "[data-model=pooled-cohort-ascvd]")
    pce.find_element(By.CSS_SELECTOR, "details summary").click()
    first = pce.find_element(By.CSS_SELECTOR, "ul.basis button")
    reference = first.text
    first.click()
    dialog = WebDriverWait(browser, 10).until(
        expected_conditions.visibility_of_element_located((By.ID, "resource-dialog"))
    )
    WebDriverWait(browser, 10).until(lambda b: '"resourceType"' in b.find_element(By.ID, "resource-body").text)
    assert f'"id": "{reference.split("/")[1]}"' in dialog.find_element(By.ID, "resource-body").text
    dialog.find_element(By.ID, "resource-close").click()
    assert _policy_violations(browser) == []


def test_a_what_if_moves_the_risk_and_is_not_recorded(
    app_server: AppServer, record: dict[str, Any], browser: Any
) -> None:
    _sign_in(browser, app_server, app_server.token)
    _open_patient(browser, app_server, "app-p1")
    recorded = record["pce"]["prediction"][0]["probabilityDecimal"]
    systolic = browser.find_element(By.ID, "whatif-systolic_bp")
    systolic.clear()
    systolic.send_keys("170")
    browser.find_element(By.CSS_SELECTOR, "#whatif-form button[type=submit]").click()
    output = WebDriverWait(browser, 20).until(
        lambda b: b.find_element(By.CSS_SELECTOR, ".whatif-result[data-probability]")
    )
    assert float(output.get_attribute("data-probability")) > recorded
    assert "What-if (not recorded)" in output.text and "Recorded" in output.text
    assert _assessed(app_server, "app-p1", "pooled-cohort-ascvd")["id"] == record["pce"]["id"], "nothing recorded"
    assert _policy_violations(browser) == []


def _patient_token(server: AppServer, patient_id: str) -> str:
    engine = make_engine(server.database_url)
    try:
        migrate(engine)
        secret, _ = tokens.create(Repository(engine), "app-patient", "patient/*.read", patient_id, None)
    finally:
        engine.dispose()
    return secret


def test_a_patient_token_cannot_open_another_patients_page(
    app_server: AppServer, record: dict[str, Any], browser: Any
) -> None:
    _sign_in(browser, app_server, _patient_token(app_server, "app-p2"))
    _open_patient(browser, app_server, "app-p1")
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "error"
    assert browser.find_element(By.ID, "problem").is_displayed()
    assert not browser.find_element(By.ID, "patient-page").is_displayed()
    assert browser.find_elements(By.CSS_SELECTOR, "figure.chart") == []
    assert "Chalmers" not in browser.find_element(By.TAG_NAME, "body").text
    assert _policy_violations(browser) == []


def test_the_page_reads_at_phone_width(
    app_server: AppServer, record: dict[str, Any], browser: Any, screenshots: Path
) -> None:
    browser.set_window_size(390, 844)
    try:
        _sign_in(browser, app_server, app_server.token)
        _open_patient(browser, app_server, "app-p1")
        width = browser.execute_script("return document.documentElement.clientWidth")
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        browser.save_screenshot(str(screenshots / "app-patient-phone.png"))
    finally:
        browser.set_window_size(1280, 900)
    assert _policy_violations(browser) == []
