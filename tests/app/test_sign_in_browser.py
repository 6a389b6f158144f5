"""Signing in and out, in a real browser: where each kind of token lands, and where the token
never goes (a URL, the page, the server's log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.app.browsing import policy_violations, sign_in, status_of, wait
from tests.app.conftest import AppServer


def test_a_refused_token_is_said_so_and_not_kept(app_server: AppServer, browser: Any, screenshots: Path) -> None:
    browser.get(f"{app_server.root}/app/")
    browser.find_element(By.ID, "token").send_keys("ftw_not-a-token")
    browser.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    # The refusal sends the page back to sign-in afresh; the problem is read on that new page, not on
    # the one it replaces (whose element goes stale as it goes).
    WebDriverWait(browser, 10).until(expected_conditions.url_to_be(f"{app_server.root}/app/?expired=1"))
    problem = WebDriverWait(browser, 10).until(expected_conditions.visibility_of_element_located((By.ID, "problem")))
    assert "sign in again" in problem.text
    assert browser.execute_script("return sessionStorage.getItem('fhir-twin.token')") is None
    assert "ftw_not-a-token" not in browser.current_url
    browser.save_screenshot(str(screenshots / "sign-in-refused.png"))
    assert policy_violations(browser) == []


def visible_links(browser: Any) -> list[str]:
    return [link.text for link in browser.find_elements(By.CSS_SELECTOR, "#nav a") if link.is_displayed()]


def test_each_kind_of_token_lands_on_its_first_view(app_server: AppServer, browser: Any) -> None:
    sign_in(browser, app_server, app_server.token_for("user/*.rs", name="clinician"), "/app/patients")
    # user/*.rs reads AuditEvent too: both views are offered.
    wait(browser).until(lambda _: visible_links(browser) == ["Patients", "Audit"])
    assert browser.find_element(By.ID, "who").text == "clinician"
    # A patient token goes to its own patient.
    sign_in(browser, app_server, app_server.token_for("patient/*.rs", patient="p7", name="p7-app"), "/app/patients/p7")
    # An auditor goes to the audit views, and is offered no Patients link.
    auditor = app_server.token_for("user/AuditEvent.rs user/Provenance.rs", name="auditor")
    sign_in(browser, app_server, auditor, "/app/audit")
    wait(browser).until(lambda _: visible_links(browser) == ["Audit"])
    assert browser.find_element(By.CSS_SELECTOR, ".brand").get_attribute("href") == f"{app_server.root}/app/audit"
    # The patients list is not its to see: the page says so, and the API refuses it.
    browser.get(f"{app_server.root}/app/patients")
    problem = wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "problem")))
    assert "may not search patients" in problem.text
    assert not browser.find_element(By.ID, "patient-search").is_displayed()
    assert status_of(browser, "/twin/patients") == 403
    assert policy_violations(browser) == []


def test_a_token_that_may_show_nothing_is_told_so(app_server: AppServer, browser: Any) -> None:
    browser.get(f"{app_server.root}/app/")
    browser.execute_script("sessionStorage.clear()")
    browser.find_element(By.ID, "token").send_keys(app_server.token_for("user/Observation.rs", name="labs"))
    browser.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    problem = wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "problem")))
    assert "neither patients nor the audit trail" in problem.text
    assert browser.current_url == f"{app_server.root}/app/"


def test_sign_out_forgets_the_token(app_server: AppServer, browser: Any) -> None:
    sign_in(browser, app_server, app_server.token_for("user/*.rs", name="clinician"), "/app/patients")
    wait(browser).until(expected_conditions.element_to_be_clickable((By.ID, "sign-out"))).click()
    wait(browser).until(expected_conditions.url_to_be(f"{app_server.root}/app/"))
    assert browser.execute_script("return sessionStorage.length") == 0
    # Without a token a view sends the reader back to sign in.
    browser.get(f"{app_server.root}/app/patients")
    wait(browser).until(expected_conditions.url_to_be(f"{app_server.root}/app/"))


def test_the_token_is_in_no_url_page_or_log(app_server: AppServer, browser: Any) -> None:
    token = app_server.token_for("user/*.rs", name="clinician")
    sign_in(browser, app_server, token, "/app/patients")
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "patients-status"), "found"))
    browser.get(f"{app_server.root}/app/patients?name=ada&sort=-news2")
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "patients-status"), "found"))
    history = browser.execute_script("return performance.getEntriesByType('resource').map((entry) => entry.name)")
    assert history and all(token not in url for url in history)
    assert token not in browser.current_url and token not in browser.page_source
    log = app_server.log()
    assert "GET /twin/patients 200" in log  # the access log is on, and names paths only
    assert token not in log and token[4:20] not in log
