"""The SMART authorization server's pages in a real browser: a person signs in, picks the patient
the app may see and allows it, and the browser is sent back to the app with a code; the pages
break none of their Content-Security-Policy."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from click.testing import CliRunner
from selenium.webdriver.common.by import By

from fhir_twin.cli import main
from tests.app.browsing import call, policy_violations, wait
from tests.app.conftest import AppServer

REDIRECT = "http://127.0.0.1:9/callback"  # nothing listens: the browser's address is what counts
SCOPES = "launch/patient openid fhirUser patient/*.rs"


def cli(database_url: str, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(main, [*args, "--database", database_url], input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_person_signs_in_picks_a_patient_and_the_app_gets_a_code(
    app_server: AppServer, browser: Any, screenshots: Path
) -> None:
    status, _ = call(app_server, "PUT", "/fhir/Patient/smart-p1", app_server.token, {
        "resourceType": "Patient", "id": "smart-p1", "name": [{"family": "Picked", "given": ["Pat"]}],
    })  # fmt: skip
    assert status in (200, 201)
    created = cli(app_server.database_url, "client", "create", "--name", "Ward chart", "--redirect-uri", REDIRECT,
                  "--public", "--scopes", SCOPES)  # fmt: skip
    found = re.search(r"client_id: (\S+)", created)
    assert found is not None
    cli(app_server.database_url, "user", "create", "nurse", "--password-stdin", stdin="blue lantern\n")
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {
        "response_type": "code",
        "client_id": found.group(1),
        "redirect_uri": REDIRECT,
        "scope": SCOPES,
        "state": "st-browser",
        "aud": app_server.base,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    browser.get(f"{app_server.root}/auth/authorize?{urlencode(query)}")
    wait(browser).until(lambda b: b.find_elements(By.ID, "username"))
    assert "Ward chart" in browser.find_element(By.TAG_NAME, "body").text
    browser.find_element(By.ID, "username").send_keys("nurse")
    browser.find_element(By.ID, "password").send_keys("blue lantern")
    browser.save_screenshot(str(screenshots / "smart-sign-in.png"))
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    picked = wait(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, "input[name=patient][value=smart-p1]"))
    assert "Picked" in browser.find_element(By.TAG_NAME, "body").text
    picked[0].click()
    browser.save_screenshot(str(screenshots / "smart-consent.png"))
    assert policy_violations(browser) == []
    browser.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
    wait(browser).until(lambda b: b.current_url.startswith(REDIRECT))
    answer = parse_qs(urlparse(browser.current_url).query)
    assert answer["state"] == ["st-browser"] and len(answer["code"][0]) > 20
