"""Signing in, in a real browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.app.conftest import AppServer


def _policy_violations(browser: Any) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]


def test_a_refused_token_is_said_so_and_not_kept(app_server: AppServer, browser: Any, screenshots: Path) -> None:
    browser.get(f"{app_server.root}/app/")
    browser.find_element(By.ID, "token").send_keys("ftw_not-a-token")
    browser.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    problem = WebDriverWait(browser, 10).until(expected_conditions.visibility_of_element_located((By.ID, "problem")))
    assert "sign in again" in problem.text
    assert browser.execute_script("return sessionStorage.getItem('fhir-twin.token')") is None
    assert "ftw_not-a-token" not in browser.current_url
    browser.save_screenshot(str(screenshots / "sign-in-refused.png"))
    assert _policy_violations(browser) == []
