"""What the browser tests share: signing in through the page, a ward of patients written over
HTTP whose NEWS2 the live Doctor has scored, calls to the API as another client would make them,
and the console's Content-Security-Policy violations."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.app.conftest import AppServer
from tests.ml.doctor_data import Roster, roster_resources, transaction_bundle

# NEWS2 vectors 0-3 score 0, 3 (a 3 in one parameter), 6 and 10.
WARD: Roster = {
    "wa": ("Ada Alpha", 0, 160.0),
    "wb": ("Ben Beta", 1, None),
    "wc": ("Cy Gamma", 3, 280.0),
    "wd": ("Di Delta", None, None),
    "we": ("Eve Epsilon", 2, None),
}
SCORED = [res_id for res_id, (_, vector, _) in WARD.items() if vector is not None]


def call(server: AppServer, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    """``path`` on the server with ``token``, as a client outside the browser; status and JSON body."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{server.root}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/fhir+json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def seed_ward(server: AppServer) -> None:
    """The ward's Patients (identifier ``urn:mrn|mrn-{id}``) and measurements in one transaction;
    returns once the live Doctor has recorded NEWS2 for each patient with a set."""
    status, answer = call(server, "POST", "/fhir", server.token, transaction_bundle(roster_resources(WARD)))
    assert status == 200, answer
    deadline = time.monotonic() + 30
    while True:
        status, listed = call(server, "GET", "/twin/patients?_count=50", server.token)
        assert status == 200, listed
        scored = {row["id"] for row in listed["patients"] if row["news2"] is not None}
        if scored >= set(SCORED):
            return
        assert time.monotonic() < deadline, f"NEWS2 recorded for {sorted(scored)} only"
        time.sleep(0.1)


def sign_in(browser: Any, server: AppServer, token: str, lands: str) -> None:
    """Sign in through the page with ``token`` and wait until the app has moved on to ``lands``."""
    browser.get(f"{server.root}/app/")
    browser.execute_script("sessionStorage.clear()")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "#sign-in-form button").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_to_be(f"{server.root}{lands}"))


def wait(browser: Any, seconds: float = 10) -> WebDriverWait:  # type: ignore[type-arg]
    return WebDriverWait(browser, seconds)


def status_of(browser: Any, path: str) -> int:
    """The status the API gives the signed-in token for ``path``, fetched from the page."""
    script = """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0], {headers: {Authorization: `Bearer ${sessionStorage.getItem("fhir-twin.token")}`}})
          .then((response) => done(response.status), () => done(-1));
    """
    return int(browser.execute_async_script(script, path))


def policy_violations(browser: Any) -> list[str]:
    return [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]
