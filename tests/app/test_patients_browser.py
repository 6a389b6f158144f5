"""The patients list in a real browser: search, NEWS2 badges, sort by risk, paging, and what a
patient token may see."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select

from tests.app.browsing import policy_violations, seed_ward, sign_in, status_of, wait
from tests.app.conftest import AppServer


@pytest.fixture(scope="module")
def ward(app_server: AppServer) -> AppServer:
    seed_ward(app_server)
    return app_server


@pytest.fixture
def clinician(ward: AppServer, browser: Any) -> Iterator[Any]:
    """The browser signed in with a token that reads everything, on the patients list; after the
    test, no Content-Security-Policy violation in the console."""
    sign_in(browser, ward, ward.token_for("user/*.rs", name="ward-app"), "/app/patients")
    yield browser
    assert policy_violations(browser) == []


def rows(browser: Any) -> list[list[str]]:
    """The table's rows as the reader sees them, read at once (the page replaces them as it goes)."""
    script = """return [...document.querySelectorAll("#patients-table tbody tr")]
        .map((row) => [...row.cells].map((cell) => cell.innerText.trim()))"""
    return browser.execute_script(script)  # type: ignore[no-any-return]


def first_names(browser: Any) -> list[str]:
    return [row[0] for row in rows(browser)]


def searched(browser: Any, expected: str) -> None:
    """Wait until the status line says what the last search found."""
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "patients-status"), expected))


def query(browser: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(browser.current_url).query)


def test_find_a_patient_by_name_with_the_newest_news2_and_pce(ward: AppServer, clinician: Any) -> None:
    browser = clinician
    searched(browser, "5 patients found")
    assert first_names(browser) == ["Ada Alpha", "Ben Beta", "Cy Gamma", "Di Delta", "Eve Epsilon"]
    browser.find_element(By.ID, "search-name").send_keys("gamma")
    browser.find_element(By.CSS_SELECTOR, "#patient-search button[type=submit]").click()
    searched(browser, "1 patient found")
    (row,) = rows(browser)
    name, birth_date, gender, identifier, news2, pce, measured = row
    assert (name, gender, identifier) == ("Cy Gamma", "male", "urn:mrn|mrn-wc")
    assert birth_date and measured != "—"
    # The band is said in words beside its colour, with the score, and when it was assessed: a
    # score is the patient's state at that time (hazard H29).
    news2_said, news2_time = news2.splitlines()
    assert news2_said == "10 · high" and news2_time
    badge = browser.find_element(By.CSS_SELECTOR, "#patients-table td.news2 .band")
    assert "band-high" in badge.get_attribute("class")
    assessed = browser.find_element(By.CSS_SELECTOR, "#patients-table td.news2 time.assessed")
    assert assessed.get_attribute("datetime").startswith(str(datetime.now(UTC).year))
    # Preliminary: the ward's record does not say whether Cy smokes or is treated, so it is assumed and said.
    pce_said, pce_time = pce.splitlines()
    percent, unit, status = pce_said.split()
    assert float(percent) > 0 and unit == "%" and status == "preliminary" and pce_time
    link = browser.find_element(By.LINK_TEXT, "Cy Gamma")
    assert link.get_attribute("href") == f"{ward.root}/app/patients/wc"
    # The search is in the URL (a reload shows it again); the token never is.
    assert query(browser)["name"] == ["gamma"]
    browser.refresh()
    searched(browser, "1 patient found")
    assert browser.find_element(By.ID, "search-name").get_attribute("value") == "gamma"
    assert first_names(browser) == ["Cy Gamma"]


def test_no_match_and_a_refused_search_are_said_in_words(ward: AppServer, clinician: Any) -> None:
    browser = clinician
    browser.get(f"{ward.root}/app/patients?name=nobody-by-this-name")
    searched(browser, "No patient found")
    assert browser.find_element(By.ID, "patients-results").is_displayed() is False
    browser.get(f"{ward.root}/app/patients?birthdate=not-a-date")
    problem = wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "problem")))
    assert "birthdate" in problem.text
    assert "The search failed" in browser.find_element(By.ID, "patients-status").text


def test_sort_by_news2_puts_the_highest_risk_first(ward: AppServer, clinician: Any, screenshots: Path) -> None:
    browser = clinician
    searched(browser, "5 patients found")
    Select(browser.find_element(By.ID, "search-sort")).select_by_value("-news2")
    wait(browser).until(lambda _: "sort=-news2" in browser.current_url)
    searched(browser, "5 patients found")
    wait(browser).until(lambda _: first_names(browser)[0] == "Cy Gamma")
    badges = [row[4].splitlines()[0] for row in rows(browser)]
    assert badges == ["10 · high", "6 · medium", "3 · low–medium", "0 · low", "none"]
    assert first_names(browser)[-1] == "Di Delta"  # without an assessment: last, either way
    Select(browser.find_element(By.ID, "search-sort")).select_by_value("news2")
    wait(browser).until(lambda _: first_names(browser)[0] == "Ada Alpha")
    assert first_names(browser)[-1] == "Di Delta"
    browser.set_window_size(1200, 800)
    browser.get(f"{ward.root}/app/patients?sort=-news2")
    searched(browser, "5 patients found")
    browser.save_screenshot(str(screenshots / "app-patients.png"))  # the README's (docs/img/)
    browser.set_window_size(1280, 900)


def test_paging_moves_through_the_list_with_counts(ward: AppServer, clinician: Any) -> None:
    browser = clinician
    browser.get(f"{ward.root}/app/patients?count=2")
    searched(browser, "5 patients found")
    counts = browser.find_element(By.ID, "patients-counts")
    previous, following = browser.find_element(By.ID, "patients-previous"), browser.find_element(By.ID, "patients-next")
    assert counts.text == "1–2 of 5" and not previous.is_enabled() and following.is_enabled()
    assert first_names(browser) == ["Ada Alpha", "Ben Beta"]
    following.click()
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "patients-counts"), "3–4 of 5"))
    assert first_names(browser) == ["Cy Gamma", "Di Delta"]
    assert query(browser)["offset"] == ["2"]
    following.click()
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "patients-counts"), "5–5 of 5"))
    assert first_names(browser) == ["Eve Epsilon"] and not following.is_enabled()
    browser.back()  # the page is in the URL: back is the page before
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "patients-counts"), "3–4 of 5"))
    previous.click()
    wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "patients-counts"), "1–2 of 5"))


def test_readable_at_phone_width(ward: AppServer, clinician: Any, screenshots: Path) -> None:
    browser = clinician
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{ward.root}/app/patients?sort=-news2")
        searched(browser, "5 patients found")
        # The page does not scroll sideways; the table scrolls within its own box.
        width = browser.execute_script("return document.documentElement.scrollWidth")
        assert width <= browser.execute_script("return window.innerWidth")
        assert browser.find_element(By.ID, "search-name").is_displayed()
        browser.save_screenshot(str(screenshots / "app-patients-390.png"))
    finally:
        browser.set_window_size(1280, 900)


def test_a_patient_token_sees_its_patient_only(ward: AppServer, browser: Any) -> None:
    token = ward.token_for("patient/*.rs", patient="wb", name="wb-app")
    sign_in(browser, ward, token, "/app/patients/wb")
    # Its list holds its own patient only, and the nav offers no audit view.
    browser.get(f"{ward.root}/app/patients")
    searched(browser, "1 patient found")
    assert first_names(browser) == ["Ben Beta"]
    assert not browser.find_element(By.LINK_TEXT, "Patients").get_attribute("hidden")
    assert browser.find_elements(By.CSS_SELECTOR, "#nav a[href='/app/audit']:not([hidden])") == []
    # Another patient's page shows the refusal and nothing of the record; the API refuses it as
    # if it did not exist (a patient token's reach, README "Security and audit").
    browser.get(f"{ward.root}/app/patients/wc")
    wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "problem")))
    assert "Cy Gamma" not in browser.page_source
    assert status_of(browser, "/twin/patients/wc") == 404
    assert status_of(browser, "/fhir/Patient/wc") == 404
    # The audit view says it is not for this token, and the API refuses it.
    browser.get(f"{ward.root}/app/audit")
    problem = wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "problem")))
    assert "may not read the audit trail" in problem.text
    assert not browser.find_element(By.ID, "audit-views").is_displayed()
    assert status_of(browser, "/twin/audit/chain") == 403
    assert status_of(browser, "/twin/audit/accesses?patient=wb") == 403
    assert token not in browser.page_source and token not in browser.current_url
    assert policy_violations(browser) == []


# Every visible control's accessible name, as a screen reader finds it (aria-label, aria-labelledby,
# a <label>, or a button's text); charts are images with a text alternative.
UNNAMED = """
const visible = (node) => node.offsetParent !== null;
const named = (node) =>
  (node.getAttribute("aria-label") || "").trim() ||
  (node.getAttribute("aria-labelledby") || "")
    .split(" ")
    .map((id) => document.getElementById(id)?.textContent || "")
    .join("")
    .trim() ||
  (node.id && document.querySelector(`label[for="${CSS.escape(node.id)}"]`)?.textContent.trim()) ||
  node.closest("label")?.textContent.trim() ||
  (node.tagName === "BUTTON" ? node.textContent.trim() : "");
const controls = [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button")].filter(visible);
const charts = [...document.querySelectorAll("[role=img]")];
return {
  lang: document.documentElement.lang,
  controls: controls.length,
  unnamed: controls.filter((node) => !named(node)).map((node) => node.outerHTML.slice(0, 120)),
  charts: charts.length,
  bareCharts: charts.filter((node) => !(node.getAttribute("aria-label") || "").trim()).length,
};
"""


def test_every_control_is_labelled_for_a_screen_reader(ward: AppServer, clinician: Any) -> None:
    browser = clinician
    token = ward.token_for("user/*.rs user/AuditEvent.rs", name="ward-admin")
    sign_in(browser, ward, token, "/app/patients")
    pages = {
        "/app/patients": lambda: searched(browser, "5 patients found"),
        "/app/patients/wc": lambda: wait(browser, 30).until(
            lambda _: browser.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1"
        ),
        "/app/audit": lambda: wait(browser).until(lambda _: browser.find_elements(By.CSS_SELECTOR, "main form")),
    }
    for path, loaded in pages.items():
        browser.get(f"{ward.root}{path}")
        loaded()
        found = browser.execute_script(UNNAMED)
        assert found["lang"] == "en", path
        assert found["controls"] > 0 and found["unnamed"] == [], (path, found["unnamed"])
        if path == "/app/patients/wc":
            assert found["charts"] > 0 and found["bareCharts"] == 0


def test_signing_in_and_opening_a_patient_by_keyboard_alone(ward: AppServer, browser: Any) -> None:
    browser.get(f"{ward.root}/app/")
    browser.execute_script("sessionStorage.clear()")

    def tab_to(matches: Any, most: int = 60) -> Any:
        """Press Tab until the focused element matches, as a keyboard user moves through the page."""
        for _ in range(most):
            ActionChains(browser).send_keys(Keys.TAB).perform()
            focused = browser.switch_to.active_element
            if matches(focused):
                return focused
        raise AssertionError("never reached by Tab")

    tab_to(lambda element: element.get_attribute("id") == "token")
    ActionChains(browser).send_keys(ward.token_for("user/*.rs", name="keyboard")).send_keys(Keys.ENTER).perform()
    wait(browser).until(expected_conditions.url_to_be(f"{ward.root}/app/patients"))
    searched(browser, "5 patients found")
    link = tab_to(lambda element: (element.get_attribute("href") or "").endswith("/app/patients/wa"))
    assert link.text == "Ada Alpha"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    wait(browser).until(expected_conditions.url_to_be(f"{ward.root}/app/patients/wa"))
    # Focus is visible: the style sheet outlines the focused control.
    outline = browser.execute_script(
        "const link = document.querySelector('a[href=\"/app/patients\"]'); link.focus();"
        " return getComputedStyle(link).outlineStyle"
    )
    assert outline != "none"
